"""The issue-8 table: what okbx costs at 500, 2,000 and 10,000 links, against the emulators.

    python benchmarks/bench_engine.py                       # 500, 2000 and 10000 links
    python benchmarks/bench_engine.py --sizes 500 2000 --handoffs 100

Every figure comes from real `okbx sync` processes over HTTP (requests counted by the emulators,
CPU time of the okbx process from the kernel).  The worlds are seeded directly instead of
through thousands of slow syncs: the remote records are created through the emulators' own API
handlers (the same code okbx's requests run) and the state store through its public methods,
exactly as okbx would have left them.  Each seeded world is checked before it is measured: a
`--dry-run` must plan nothing, otherwise the seeding is not what okbx would have left and the
benchmark stops.

Figures (issue 8): requests of a no-change cycle with N open links; client CPU of a no-change
cycle with N links done within the late-time window; Bitrix24 requests to create `--handoffs`
tasks with one forwarded comment each; `okbx --help` wall time; cost of the cycle that does the
hourly comment scan over N open links.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from okbx_emulator.http import Request
from okbx_emulator.world import HANDOFF, World
from okbx_sync import keys
from okbx_sync.config import load_config
from okbx_sync.state import lifecycle
from okbx_sync.state.lifecycle import LinkChange
from okbx_sync.state.store import Store

SUMMARY = re.compile(r"(\d+) left for the next run; requests: Okdesk (\d+), Bitrix24 (\d+)")
FAST_CLIENT = {"requests_per_second": 1000, "burst": 5000}  # measure okbx, not its throttle (1000: the config's most)
HISTORY_AGO = timedelta(hours=2)  # when the seeded handoffs were handled


# -- running okbx ------------------------------------------------------------------------------------
def okbx_command() -> list[str]:
    found = shutil.which("okbx")
    return [found] if found else [sys.executable, "-m", "okbx_sync"]


@dataclass
class Run:
    okdesk: int
    bitrix24: int
    left: int
    cpu: float  # user + system seconds of the okbx process
    wall: float
    output: str


def okbx(world: World, config: Path, *args: str) -> Run:
    """One real `okbx` process; requests counted by the emulators, CPU by the kernel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKBX_")}
    env.update(world.env())
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    ok_before, bx_before = world.okdesk_server.count(), world.bitrix_server.count()
    started = time.perf_counter()
    done = subprocess.run([*okbx_command(), *args, "--config", str(config)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = done.stdout + done.stderr
    if done.returncode not in (0, 1):
        raise SystemExit(f"okbx {' '.join(args)} exited {done.returncode}:\n{output[-2000:]}")
    match = SUMMARY.search(output)
    left = int(match.group(1)) if match else 0
    return Run(
        world.okdesk_server.count() - ok_before, world.bitrix_server.count() - bx_before, left, cpu, wall, output
    )


def assert_nothing_planned(world: World, config: Path, what: str) -> None:
    plan = okbx(world, config, "sync", "--dry-run")
    first = plan.output.splitlines()[0] if plan.output else ""
    if not first.startswith("okbx sync --dry-run: 0 actions"):
        raise SystemExit(f"the seeded {what} is not what okbx would have left; it plans:\n{plan.output[:3000]}")


# -- seeding -----------------------------------------------------------------------------------------
class SeedingClock:
    """Real time, or earlier: the seeded history happens `offset` ago, as in a steady state where
    the links were handled in earlier cycles (and fall outside the next cycle's change window)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) - self.offset


class Seeder:
    """Both systems and the state store as okbx leaves them after handling N handoffs."""

    def __init__(self, world: World, config: Path, clock: SeedingClock) -> None:
        self.world = world
        self.clock = clock
        clock.offset = HISTORY_AGO
        self.config = load_config(config, env=world.env())
        self.store = Store(self.config.state.path, clock=clock)
        self.store.conn.execute("PRAGMA synchronous=OFF")  # seeding only: no fsync per small transaction
        self.last_item = 0  # the newest elapsed item: okbx's elapsed watermark once all are copied

    def close(self) -> None:
        self.store.close()

    def _bitrix(self, method: str, params: dict[str, Any]) -> Any:
        bx = self.world.bitrix
        body = json.dumps(params).encode()
        request = Request("POST", bx.webhook_path + method, [], {"content-type": "application/json"}, body)
        response = bx.handle(request)
        answer = json.loads(response.body)
        if response.status != 200 or "error" in answer:
            raise SystemExit(f"seeding {method} failed: {answer}")
        return answer["result"]

    def _op(
        self,
        key: keys.Key,
        issue: int,
        kind: str,
        remote_id: str | None,
        *,
        cycle: int | None = 1,
        report: keys.Key | None = None,
        change: LinkChange | None = None,
    ) -> None:
        """A write okbx made, recorded as the applier records it (intent, then done, with its link change)."""
        report_key = report.text if report else None
        self.store.begin_op(key.text, issue, kind, cycle=cycle, report_key=report_key)
        done = {"remote_id": remote_id, "outcome": "done", "summary": "seeded", "change": change}
        self.store.finish_op(key.text, issue, kind, **done)

    def handed_off(self, n: int) -> tuple[int, int]:
        """An issue handed off, its task created with okbx's marker, the link comment posted."""
        ok, p, cfg = self.world.okdesk, self.world.people, self.config
        issue = ok.create_issue(
            f"Seeded issue {n}", "<p>Something fails</p>", company_id=p.company, contact_id=p.client
        )
        ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
        fields = {
            "TITLE": f"[Okdesk #{issue}] Seeded issue {n}",
            "XML_ID": keys.task_xml_id(issue),
            "GROUP_ID": cfg.bitrix24.group_id,
            "RESPONSIBLE_ID": cfg.bitrix24.responsible_id,
            "CREATED_BY": cfg.bitrix24.created_by,
        }
        task = int(self._bitrix("tasks.task.add", {"fields": fields})["task"]["id"])
        marker = keys.LinkCommentKey(issue, 1).marker
        comment = ok.add_comment(issue, f"<p>Task #{task}</p><p>{marker}</p>", author_id=p.bot, public=False)
        self.store.apply(lifecycle.handed_off(issue, 1, HANDOFF, existing=None))
        self._op(keys.TaskKey(issue, 1), issue, "task", str(task), change=lifecycle.target_made(issue, task))
        self._op(keys.LinkCommentKey(issue, 1), issue, "link_comment", str(comment))
        return issue, task

    def open_links(self, count: int) -> list[int]:
        issues = [self.handed_off(n)[0] for n in range(count)]
        self.settled()
        return issues

    def done_links(self, count: int) -> list[int]:
        """Handed off, time logged, task completed, the time copied, the summary posted with the return."""
        ok, bx, p = self.world.okdesk, self.world.bitrix, self.world.people
        issues = []
        done_at = self.clock()  # hours ago: well within the late-time window
        for n in range(count):
            issue, task = self.handed_off(n)
            item = bx.log_time(task, p.bx_ivan, 1800, "fixed")
            self.last_item = max(self.last_item, item)
            bx.complete_task(task)
            report = keys.SummaryKey(issue, 1)
            self._op(keys.TimeKey(item), issue, "time", None, report=report)
            summary = f"<p>Done: 0:30</p><p>{keys.items_line([item])}</p><p>{report.marker}</p>"
            ok.set_status(issue, "opened", by_employee_id=p.bot, comment=summary)
            self._op(keys.ReturnKey(issue, 1), issue, "return", "opened")
            self._op(report, issue, "summary", None)
            self._op(keys.CloseKey(issue, 1), issue, "close", None, change=lifecycle.completed(issue, done_at))
            issues.append(issue)
        self.settled()
        return issues

    def settled(self) -> None:
        """What the end of okbx's last cycle records: statuses and read marks, the watermarks."""
        self.clock.offset = timedelta(0)  # the history is over; okbx's last cycle ran just now
        ok = self.world.okdesk
        links = self.store.links()
        statuses = {i: ok.status_of(i) for i in links}
        read_at = {i: datetime.fromisoformat(ok.issue(i)["updated_at"]) for i in links}
        self.store.observe_statuses(statuses, read_at)
        now = datetime.now(UTC).isoformat()
        self.store.set_meta("okdesk_watermark", now)
        self.store.set_meta("last_full_scan", now)
        self.store.set_meta("full_scan_cursor", "0")
        self.store.set_meta("elapsed_watermark", str(self.last_item))


# -- the figures ---------------------------------------------------------------------------------------
def world_and_config(directory: Path, **sync: Any) -> tuple[World, Path, SeedingClock]:
    directory.mkdir(parents=True, exist_ok=True)
    clock = SeedingClock()
    world = World.start(okdesk_clock=clock, bitrix_clock=clock)
    config = world.write_config(
        directory,
        okdesk={"requests_per_second": FAST_CLIENT["requests_per_second"]},
        bitrix24=dict(FAST_CLIENT),
        sync={"max_requests_per_cycle": 10**6, **sync},
    )
    return world, config, clock


def measure_open(size: int, directory: Path) -> dict[str, Any]:
    world, config, clock = world_and_config(directory)
    try:
        seeder = Seeder(world, config, clock)
        seeded = time.perf_counter()
        seeder.open_links(size)
        seeded = time.perf_counter() - seeded
        assert_nothing_planned(world, config, f"{size} open links")
        okbx(world, config, "sync")  # the first cycle after seeding may learn the time zone
        idle = okbx(world, config, "sync")
        # the hourly comment scan: the next cycle is due for it
        store = Store(load_config(config, env=world.env()).state.path)
        try:
            store.set_meta("last_full_scan", (datetime.now(UTC) - timedelta(hours=2)).isoformat())
        finally:
            seeder.close()
            store.close()
        scan = okbx(world, config, "sync")
        return {"seed_s": seeded, "idle": idle, "scan": scan}
    finally:
        world.close()


def measure_done(size: int, directory: Path) -> dict[str, Any]:
    world, config, clock = world_and_config(directory)
    try:
        seeder = Seeder(world, config, clock)
        seeder.done_links(size)
        seeder.close()
        assert_nothing_planned(world, config, f"{size} done links")
        okbx(world, config, "sync")
        return {"idle": okbx(world, config, "sync")}
    finally:
        world.close()


def measure_creates(handoffs: int, directory: Path) -> dict[str, Any]:
    world, config, _ = world_and_config(directory)
    try:
        ok, p = world.okdesk, world.people
        for n in range(handoffs):
            issue = ok.create_issue(f"Backlog {n}", "<p>d</p>", company_id=p.company, contact_id=p.client)
            ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment=f"Please look {n}")
        runs = []
        while not runs or runs[-1].left:
            runs.append(okbx(world, config, "sync"))
            if len(runs) > 20:
                raise SystemExit("the backlog did not settle in 20 cycles")
        return {"bitrix24": sum(r.bitrix24 for r in runs), "okdesk": sum(r.okdesk for r in runs), "runs": len(runs)}
    finally:
        world.close()


def help_seconds(times: int = 5) -> float:
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        subprocess.run([*okbx_command(), "--help"], capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def timed(label: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    result = work()
    print(f"  {label}: measured in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 10000], help="numbers of links")
    parser.add_argument("--handoffs", type=int, default=200, help="new handoffs for the task-creation figure")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="okbx-bench-"))
    rows: list[tuple[str, list[str]]] = []
    opened, done = {}, {}
    for size in args.sizes:
        print(f"{size} links:", file=sys.stderr)
        opened[size] = timed("open links", lambda size=size: measure_open(size, base / f"open-{size}"))
        idle, scan = opened[size]["idle"], opened[size]["scan"]
        print(
            f"  no-change cycle: Okdesk {idle.okdesk} + Bitrix24 {idle.bitrix24} requests, {idle.cpu:.2f}s CPU; "
            f"scan cycle: {scan.okdesk} + {scan.bitrix24} requests, {scan.wall:.1f}s",
            file=sys.stderr,
        )
        done[size] = timed("done links", lambda size=size: measure_done(size, base / f"done-{size}"))
        idle = done[size]["idle"]
        print(
            f"  no-change cycle over done links: {idle.cpu:.2f}s CPU, {idle.okdesk} + {idle.bitrix24} requests",
            file=sys.stderr,
        )
    creates = timed("creates", lambda: measure_creates(args.handoffs, base / "creates"))
    help_time = help_seconds()

    def per_size(cell: Callable[[int], str]) -> list[str]:
        return [cell(size) for size in args.sizes]

    rows.append(
        (
            "requests of a no-change cycle, open links (Okdesk + Bitrix24)",
            per_size(lambda s: f"{opened[s]['idle'].okdesk} + {opened[s]['idle'].bitrix24}"),
        )
    )
    rows.append(("  its okbx CPU (s)", per_size(lambda s: f"{opened[s]['idle'].cpu:.2f}")))
    rows.append(
        (
            "client CPU of a no-change cycle, links done within the late window (s)",
            per_size(lambda s: f"{done[s]['idle'].cpu:.2f}"),
        )
    )
    rows.append(
        (
            "  its requests (Okdesk + Bitrix24)",
            per_size(lambda s: f"{done[s]['idle'].okdesk} + {done[s]['idle'].bitrix24}"),
        )
    )
    rows.append(
        (
            "hourly comment scan: requests of the scan cycle (Okdesk + Bitrix24)",
            per_size(lambda s: f"{opened[s]['scan'].okdesk} + {opened[s]['scan'].bitrix24}"),
        )
    )
    rows.append(("  its wall time (s, throttle off)", per_size(lambda s: f"{opened[s]['scan'].wall:.1f}")))
    width = max(len(label) for label, _ in rows)
    print(f"{'figure':{width}}  " + "  ".join(f"{size:>10}" for size in args.sizes))
    for label, cells in rows:
        print(f"{label:{width}}  " + "  ".join(f"{c:>10}" for c in cells))
    print(
        f"Bitrix24 requests to create {args.handoffs} tasks with a comment each: {creates['bitrix24']} "
        f"(Okdesk {creates['okdesk']}, {creates['runs']} cycles)"
    )
    print(f"okbx --help: {help_time:.2f}s (median of 5)")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
