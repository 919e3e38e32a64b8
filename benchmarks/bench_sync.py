"""Request counts and wall time of sync cycles, against the emulators over loopback.

    python benchmarks/bench_sync.py --links 200 --changes 5

Measures: the first run over a backlog of N handoffs, an idle cycle with N active links, and a
cycle in which K of them changed (a comment each, and one task completed). The point to watch:
idle and small-change cycles should cost about the same whatever N is.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from okbx_emulator.world import HANDOFF, World
from okbx_sync.config import load_config
from okbx_sync.cycle import opened, sync_cycle
from okbx_sync.secrets import Redactor


def cycle(world: World, config_path: Path) -> dict[str, float]:
    config = load_config(config_path, env=world.env())
    world.okdesk_server.reset_log()
    world.bitrix_server.reset_log()
    started = time.perf_counter()
    with opened(config, Redactor(config.secrets())) as (clients, store):
        result = sync_cycle(config, clients, store)
    applied = result.applied
    assert applied is not None
    return {
        "okdesk": world.okdesk_server.count(),
        "bitrix24": world.bitrix_server.count(),
        "writes": len(applied.done),
        "left": len(applied.not_reached) + len(result.left),  # not reached, and issues not read (budget)
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--changes", type=int, default=5)
    args = parser.parse_args()
    world = World.start()
    try:
        directory = Path(tempfile.mkdtemp(prefix="okbx-bench-"))
        config_path = world.write_config(directory, sync={"max_requests_per_cycle": 100000})
        ok, p = world.okdesk, world.people
        issues = [ok.create_issue(f"Issue {n}", "d", company_id=p.company) for n in range(args.links)]
        for issue in issues:
            ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
        rows = [("first run (backlog)", cycle(world, config_path))]
        rows.append(("second run", cycle(world, config_path)))
        rows.append(("idle", cycle(world, config_path)))
        for issue in issues[: args.changes]:
            ok.add_comment(issue, "news", author_id=p.client, author_type="contact")
        world.bitrix.complete_task(int(world.bitrix.tasks()[0]["ID"]))
        rows.append((f"{args.changes} changed", cycle(world, config_path)))
        rows.append(("idle again", cycle(world, config_path)))
        print(f"links={args.links} changes={args.changes}")
        print(f"{'cycle':22} {'okdesk':>7} {'bitrix24':>8} {'writes':>7} {'left':>5} {'seconds':>8}")
        for name, r in rows:
            print(
                f"{name:22} {r['okdesk']:7.0f} {r['bitrix24']:8.0f} {r['writes']:7.0f} {r['left']:5.0f} "
                f"{r['seconds']:8.2f}"
            )
    finally:
        world.close()


if __name__ == "__main__":
    main()
