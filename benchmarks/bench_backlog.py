"""A first installation on a busy account (issue 13 item 4): N issues handed off at once, every
`okbx sync` killed by cron's `timeout -s KILL` after S seconds, the default configuration.

    python benchmarks/bench_backlog.py                      # 500 handoffs, runs killed after 60 s
    python benchmarks/bench_backlog.py --handoffs 100 --kill-after 20

A run reads, plans and writes a page of issues at a time, committing as it goes, so each killed
run leaves work done in proportion to its time; the table shows tasks, link comments and
forwarded comments after each run, and the number of runs until a run ends on its own with
nothing left.  The emulators keep the portals' real rate limits (Bitrix24: 2 requests/s with a
burst of 50; okbx's own throttles are the defaults: Okdesk 3/s, Bitrix24 2/s).  At the end every
handed-off issue must have exactly one task, one link comment and its comment forwarded once.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from okbx_emulator.world import HANDOFF, World

SUMMARY = re.compile(r"okbx sync: (\d+) done, (\d+) adopted, (\d+) failed, (\d+) left")


def okbx() -> list[str]:
    found = shutil.which("okbx")
    return [found] if found else [sys.executable, "-m", "okbx_sync"]


def counts(world: World, issues: list[int]) -> tuple[int, int, int]:
    tasks = sum(1 for t in world.bitrix.tasks() if str(t.get("XML_ID", "")).startswith("okdesk:"))
    links = sum(1 for i in issues for c in world.okdesk.comments(i) if "okbx:linkcomment:" in str(c.get("content", "")))
    forwarded = sum(
        1
        for t in world.bitrix.tasks()
        for c in world.bitrix.comments(int(t["ID"]))
        if "okbx:comment:" in c["POST_MESSAGE"]
    )
    return tasks, links, forwarded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--handoffs", type=int, default=500)
    parser.add_argument("--kill-after", type=float, default=60.0)
    parser.add_argument("--max-runs", type=int, default=40)
    args = parser.parse_args()
    world = World.start(bitrix_rate=2.0)
    directory = Path(tempfile.mkdtemp(prefix="okbx-backlog-"))
    try:
        # the product's defaults: the emulators' test configuration throttles less
        defaults = {"okdesk": {"requests_per_second": 3.0}, "bitrix24": {"requests_per_second": 2.0, "burst": 40}}
        config = world.write_config(directory, **defaults)
        ok, p = world.okdesk, world.people
        issues = []
        for n in range(args.handoffs):
            issue = ok.create_issue(f"Backlog issue {n}", "<p>x</p>", company_id=p.company, contact_id=p.client)
            ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment=f"please look at #{n}")
            issues.append(issue)
        env = {**world.env(), "OKBX_CONFIG": str(config), "PATH": "/usr/bin:/bin"}
        print(f"{args.handoffs} handoffs; each run killed after {args.kill_after:.0f} s (SIGKILL), default config")
        print("run  ended    seconds  tasks  link comments  forwarded  summary")
        settled = None
        for run in range(1, args.max_runs + 1):
            started = time.monotonic()
            process = subprocess.Popen(
                [*okbx(), "sync"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            try:
                out, _ = process.communicate(timeout=args.kill_after)
                ended = "itself"
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
                ended = "KILLED"
            seconds = time.monotonic() - started
            tasks, links, forwarded = counts(world, issues)
            line = next((m.group(0) for m in SUMMARY.finditer(out or "")), "-")
            print(f"{run:>3}  {ended:7}  {seconds:7.1f}  {tasks:5}  {links:13}  {forwarded:9}  {line}")
            summary = SUMMARY.search(out or "")
            if ended == "itself" and summary and summary.group(4) == "0" and tasks == args.handoffs:
                settled = run
                break
        per_issue = Counter(str(t.get("XML_ID")) for t in world.bitrix.tasks())
        duplicates = {k: n for k, n in per_issue.items() if n > 1}
        print(f"settled after {settled} runs" if settled else f"NOT settled after {args.max_runs} runs")
        print(f"tasks {len(per_issue)} for {args.handoffs} issues; duplicated: {duplicates or 'none'}")
        tasks, links, forwarded = counts(world, issues)
        ok_ = settled and tasks == links == forwarded == args.handoffs and not duplicates
        print("every issue: one task, one link comment, its comment forwarded once" if ok_ else "MISMATCH")
        return 0 if ok_ else 1
    finally:
        world.close()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
