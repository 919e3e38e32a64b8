"""Rate limits and request budgets, against both emulators over HTTP (no mocks).

Bitrix24: `503 QUERY_LIMIT_EXCEEDED` (rejected before execution, so even writes are repeated)
and `429 OPERATION_TIME_LIMIT` (a method is blocked: the cycle stops cleanly and the rest is
left for the next run).  Okdesk: `429` with `Retry-After` and 5xx on reads (retried).
`sync.max_requests_per_cycle` stops a cycle cleanly.  A first run over a backlog of handoffs
against the emulator's real leaky bucket finishes over one or several cycles with no duplicate.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e import FAST, Okbx, TestClock, clean, hand_off, in_task, query_limit, start_world, summary

from okbx_emulator.http import HTML_500, Fault, Response
from okbx_emulator.world import World


@pytest.fixture
def okbx(world: World, tmp_path: Path, clock: TestClock) -> Okbx:
    return Okbx(world, tmp_path, {"sync": FAST}, clock=clock)


def operation_limit() -> Response:
    return Response.json(
        429, {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}
    )


def statuses(server: Any, op: str) -> list[int]:
    """HTTP statuses of the requests that carried `op`: alone, or inside a batch."""
    return [entry.status for entry in server.log if entry.op == op or op in entry.carried]


def assert_one_task_per_issue(world: World, issues: list[int]) -> None:
    by_xml = Counter(t["XML_ID"] for t in world.bitrix.tasks())
    assert by_xml == Counter(f"okdesk:{i}" for i in issues), by_xml


def forwarded_once(world: World, issue: int, phrase: str) -> bool:
    return in_task(world, issue, phrase) == 1


def okbx_status(okbx: Okbx) -> list[dict[str, Any]]:
    return list(okbx.status_rows().values())


# -- Bitrix24 503 QUERY_LIMIT_EXCEEDED -------------------------------------------------------------
@pytest.mark.parametrize(
    ("op", "times"),
    [("tasks.task.add", 3), ("tasks.task.add", 5), ("task.commentitem.add", 4), ("tasks.task.list", 5)],
)
def test_a_query_limit_storm_is_waited_out_and_every_write_happens_once(world, okbx, op, times):
    issue = hand_off(world, comment="Please look at the export")
    world.bitrix_server.inject(Fault(op=op, when="before", response=query_limit(), times=times))
    result = clean(okbx("sync"))
    assert result.exit_code == 0 and summary(result)["left"] == 0 and summary(result)["failed"] == 0
    seen = statuses(world.bitrix_server, op)  # a new store also lists recently closed tasks once
    assert seen[: times + 1] == [503] * times + [200] and set(seen[times:]) == {200}
    assert summary(result)["bitrix24"] == len(world.bitrix_server.log)  # rejected requests are counted too
    assert_one_task_per_issue(world, [issue])
    assert forwarded_once(world, issue, "Please look at the export")


def test_a_query_limit_storm_on_the_batched_task_listing_is_waited_out(world, okbx):
    issue = hand_off(world)
    okbx.sync()
    world.okdesk.add_comment(issue, "Any news?", author_id=world.people.client, author_type="contact")
    world.bitrix_server.inject(Fault(op="batch", when="before", response=query_limit(), times=5))
    result = clean(okbx("sync"))
    assert result.exit_code == 0 and summary(result)["done"] == 1
    seen = statuses(world.bitrix_server, "batch")  # the cycle's batches: tasks, and their comments to look at
    first = seen.index(503)
    assert seen[first : first + 6] == [503] * 5 + [200] and set(seen[first + 5 :]) == {200}
    assert forwarded_once(world, issue, "Any news?")


def test_a_storm_longer_than_the_retries_stops_the_cycle_cleanly_and_the_next_run_finishes(world, okbx):
    issues = [hand_off(world, f"Issue {n}", comment=f"first words {n}") for n in range(3)]
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="before", response=query_limit(), times=6))
    stopped = clean(okbx("sync"))
    assert stopped.exit_code in (0, 1)
    assert "stopped early" in stopped.output and "QUERY_LIMIT_EXCEEDED" in stopped.output
    assert summary(stopped)["left"] > 0 and "left for the next run" in stopped.output
    assert world.bitrix.tasks() == []
    assert statuses(world.bitrix_server, "tasks.task.add") == [503] * 6  # given up after 6, not hammering

    finished = clean(okbx("sync"))
    assert finished.exit_code == 0 and summary(finished)["left"] == 0
    assert_one_task_per_issue(world, issues)
    for n, issue in enumerate(issues):
        assert forwarded_once(world, issue, f"first words {n}")
    assert all(row["failures"] == 0 and row["state"] == "active" for row in okbx_status(okbx))


# -- Bitrix24 429 OPERATION_TIME_LIMIT -------------------------------------------------------------
def test_a_blocked_method_stops_the_cycle_cleanly_and_leaves_the_rest_for_the_next_run(world, okbx):
    issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(2)]
    world.bitrix_server.inject(Fault(op="task.commentitem.add", when="before", response=operation_limit()))
    stopped = clean(okbx("sync"))
    assert stopped.exit_code in (0, 1)
    assert "stopped early" in stopped.output and "OPERATION_TIME_LIMIT" in stopped.output
    assert summary(stopped)["left"] >= 2 and "left for the next run" in stopped.output
    # both tasks went out in one batch; the comments' batch met the block, which is not retried in the cycle
    assert statuses(world.bitrix_server, "task.commentitem.add") == [200]
    assert len(world.bitrix.tasks()) == 2
    assert [c for t in world.bitrix.tasks() for c in world.bitrix.comments(int(t["ID"]))] == []

    finished = clean(okbx("sync"))
    assert finished.exit_code == 0 and summary(finished)["left"] == 0
    assert_one_task_per_issue(world, issues)
    assert all(forwarded_once(world, i, f"words {n}") for n, i in enumerate(issues))


def test_comments_left_by_a_stopped_cycle_are_forwarded_by_the_next_run(world, okbx):
    issues = [hand_off(world, f"Issue {n}") for n in range(4)]
    okbx.sync()
    for issue in issues:
        world.okdesk.add_comment(issue, f"news {issue}", author_id=world.people.client, author_type="contact")
    world.bitrix_server.inject(Fault(op="task.commentitem.add", when="before", response=operation_limit()))
    stopped = clean(okbx("sync"))
    assert "stopped early" in stopped.output and summary(stopped)["left"] == 4
    for _ in range(3):
        clean(okbx("sync"))
    assert [forwarded_once(world, issue, f"news {issue}") for issue in issues] == [True] * 4


def test_the_portal_operating_limit_blocks_methods_until_their_window_passes(tmp_path, clock):
    # 0.05 s charged per call, blocked above 0.1 s: the 4th call of a method within 10 minutes is refused
    world = start_world(clock, bitrix_operating_limit_seconds=0.1)
    try:
        okbx = Okbx(world, tmp_path, {"sync": FAST}, clock=clock)
        issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(5)]
        outputs = []
        for _ in range(12):
            result = clean(okbx("sync"))
            outputs.append(result.output)
            assert result.exit_code in (0, 1), result.output
            by_xml = Counter(t["XML_ID"] for t in world.bitrix.tasks())
            assert all(n == 1 for n in by_xml.values()), f"duplicate tasks: {by_xml}"
            if result.exit_code == 0 and summary(result)["done"] == 0 and summary(result)["left"] == 0:
                break
            clock.advance(minutes=11)  # the blocked method's window passes
            for row in okbx_status(okbx):  # read failures during the block back off; do not wait for it
                if row["failures"]:
                    assert okbx("retry", str(row["issue"])).exit_code == 0
        else:
            raise AssertionError("never finished:\n" + "\n".join(outputs))
        assert any("OPERATION_TIME_LIMIT" in o and "stopped early" in o for o in outputs)
        assert_one_task_per_issue(world, issues)
        assert all(forwarded_once(world, i, f"words {n}") for n, i in enumerate(issues))
        print(f"operating limit: finished after {len(outputs)} cycles")
    finally:
        world.close()


# -- Okdesk 429 with Retry-After, 5xx on reads ------------------------------------------------------
def test_okdesk_429_with_retry_after_on_a_read_is_honoured_and_the_read_succeeds(world, okbx, clock):
    issue = hand_off(world, comment="Please look")
    too_many = Response.json(429, {"errors": "Превышен лимит запросов"}, headers={"Retry-After": "1"})
    world.okdesk_server.inject(Fault(op="GET /issues/{id}/comments", when="before", response=too_many, times=2))
    result = clean(okbx("sync"))
    assert result.exit_code == 0 and summary(result)["failed"] == 0
    assert statuses(world.okdesk_server, "GET /issues/{id}/comments")[:3] == [429, 429, 200]
    waited = sum(clock.slept)
    assert waited >= 1.8, f"Retry-After: 1 twice, but the sync waited {waited:.2f}s"
    assert forwarded_once(world, issue, "Please look")


def test_okdesk_429_on_a_write_is_repeated_because_it_was_not_executed(world, okbx):
    issue = hand_off(world)
    too_many = Response.json(429, {"errors": "Превышен лимит запросов"}, headers={"Retry-After": "0"})
    world.okdesk_server.inject(Fault(op="POST /issues/{id}/comments", when="before", response=too_many, times=3))
    result = clean(okbx("sync"))
    assert result.exit_code == 0
    assert statuses(world.okdesk_server, "POST /issues/{id}/comments") == [429, 429, 429, 200]
    bot = [c for c in world.okdesk.comments(issue) if c["author"]["id"] == world.people.bot]
    assert len(bot) == 1


@pytest.mark.parametrize(
    ("op", "response", "times"),
    [
        ("GET /issues/list", Response.json(500, {"errors": "Внутренняя ошибка сервера"}), 3),
        ("GET /issues/{id}", Response.html(502, HTML_500), 3),
        ("GET /issues/{id}/comments", Response.html(503, "<html><body>Service Unavailable</body></html>"), 2),
        ("GET /issues/{id}/comments", None, 3),  # the connection drops without an answer
    ],
    ids=["list-json-500", "issue-html-502", "comments-html-503", "comments-dropped"],
)
def test_okdesk_5xx_and_dropped_reads_are_retried_and_succeed(world, okbx, op, response, times):
    issue = hand_off(world, comment="Please look")
    kind = "drop" if response is None else "response"
    world.okdesk_server.inject(Fault(op=op, when="before", kind=kind, response=response, times=times))
    result = clean(okbx("sync"))
    assert result.exit_code == 0, result.output
    assert summary(result)["failed"] == 0 and summary(result)["left"] == 0
    assert statuses(world.okdesk_server, op)[times] == 200
    assert_one_task_per_issue(world, [issue])
    assert forwarded_once(world, issue, "Please look")


def test_okdesk_real_rate_limit_is_waited_out(tmp_path, clock):
    # 5 requests/s, bursts of 10; okbx asks for 50/s. Both measure time on the test clock.
    world = start_world(clock, okdesk_rate=5, okdesk_rate_clock=clock.monotonic)
    try:
        okbx = Okbx(world, tmp_path, {"sync": FAST}, clock=clock)
        issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(5)]
        result = clean(okbx("sync"))
        assert result.exit_code == 0 and summary(result)["left"] == 0, result.output
        codes = Counter(entry.status for entry in world.okdesk_server.log)
        print(f"Okdesk at 5/s: {sum(codes.values())} requests, {codes[429]} answered 429")
        assert codes[429] >= 1  # the limit was really hit...
        assert codes[429] <= codes[200]  # ...and okbx slowed down instead of hammering
        assert_one_task_per_issue(world, issues)
    finally:
        world.close()


# -- the request budget ------------------------------------------------------------------------------
def test_a_request_budget_stops_cycles_cleanly_and_later_cycles_finish_without_duplicates(world, okbx):
    budget = 20  # batched Bitrix24 writes: ten handoffs cost 36 requests
    okbx.reconfigure(sync={**FAST, "max_requests_per_cycle": budget})
    issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(10)]
    results = []
    for _ in range(10):
        result = clean(okbx("sync"))
        assert result.exit_code == 0, result.output
        counts = summary(result)
        assert counts["okdesk"] + counts["bitrix24"] <= budget
        results.append(result)
        if counts["left"] == 0:
            break
    assert len(results) > 1 and "request budget of 20 per cycle used up" in results[0].output
    assert_one_task_per_issue(world, issues)
    assert all(forwarded_once(world, i, f"words {n}") for n, i in enumerate(issues))
    for issue in issues:
        bot = [c for c in world.okdesk.comments(issue) if c["author"]["id"] == world.people.bot]
        assert len(bot) == 1, bot
    assert len(world.okdesk_server.log) + len(world.bitrix_server.log) <= budget * len(results)


def test_a_budget_smaller_than_the_reads_of_the_backlog_still_makes_progress(world, okbx):
    okbx.reconfigure(sync={**FAST, "max_requests_per_cycle": 15})
    issues = [hand_off(world, f"Issue {n}") for n in range(10)]
    for _ in range(15):
        result = clean(okbx("sync"))
        if result.exit_code == 0 and summary(result)["left"] == 0:
            break
    assert_one_task_per_issue(world, issues)


# -- a backlog against the emulator's real leaky bucket ----------------------------------------------
@pytest.mark.parametrize(
    ("handoffs", "portal_rate", "client_rate", "budget"),
    [
        pytest.param(40, 20, 25, 150, id="40-handoffs"),
        pytest.param(200, 40, 50, 600, id="200-handoffs", marks=pytest.mark.slow),
    ],
)
def test_a_first_run_over_a_backlog_finishes_without_duplicates(
    tmp_path, clock, handoffs, portal_rate, client_rate, budget
):
    # The portal drains `portal_rate` requests/s from a bucket of 50; okbx is configured a bit
    # faster (a misconfigured client), so some requests are rejected with 503 and waited out.
    # Both sides measure time on the test clock: okbx's waits move it, the bucket drains by it.
    world = start_world(clock, bitrix_rate=portal_rate, bitrix_bucket_size=50)
    try:
        okbx = Okbx(
            world,
            tmp_path,
            {
                "okdesk": {"requests_per_second": 500},
                "bitrix24": {"requests_per_second": client_rate, "burst": 50},
                "sync": {"backoff_seconds": 0.2, "retry_base_seconds": 1, "max_requests_per_cycle": budget},
            },
            clock=clock,
        )
        issues = [hand_off(world, f"Backlog {n}", comment=f"words {n}" if n % 2 else None) for n in range(handoffs)]
        started = clock.monotonic()
        reported: Counter[str] = Counter()
        cycles = 0
        while cycles < 20:
            cycles += 1
            result = clean(okbx("sync"))
            assert result.exit_code == 0, result.output
            counts = summary(result)
            reported.update(okdesk=counts["okdesk"], bitrix24=counts["bitrix24"])
            if counts["left"] == 0:
                break
        took = clock.monotonic() - started
        codes = Counter(entry.status for entry in world.bitrix_server.log)
        total_bitrix, rejected = sum(codes.values()), codes[503]
        total_okdesk = len(world.okdesk_server.log)
        print(
            f"backlog of {handoffs}: {cycles} cycles in {took:.1f}s; Bitrix24 {total_bitrix} requests "
            f"({rejected} rejected with 503), Okdesk {total_okdesk} requests"
        )
        assert summary(result)["left"] == 0
        assert_one_task_per_issue(world, issues)
        assert all(forwarded_once(world, i, f"words {n}") for n, i in enumerate(issues) if n % 2)
        assert reported == Counter(okdesk=total_okdesk, bitrix24=total_bitrix)  # okbx's own figures are right
        assert rejected <= 0.35 * total_bitrix, f"{rejected} of {total_bitrix} Bitrix24 requests rejected"
        assert total_bitrix - rejected <= 3 * handoffs + 5 * cycles  # ~2.5 writes and reads per handoff
        assert total_okdesk <= 6 * handoffs + 10 * cycles
    finally:
        world.close()


def test_a_client_configured_under_the_portal_rate_is_never_rejected(tmp_path, clock):
    world = start_world(clock, bitrix_rate=20, bitrix_bucket_size=50)
    try:
        okbx = Okbx(
            world,
            tmp_path,
            {"okdesk": {"requests_per_second": 500}, "bitrix24": {"requests_per_second": 18, "burst": 40}},
            clock=clock,
        )
        issues = [hand_off(world, f"Backlog {n}") for n in range(30)]
        result = clean(okbx("sync"))
        assert result.exit_code == 0 and summary(result)["left"] == 0
        codes = Counter(entry.status for entry in world.bitrix_server.log)
        print(
            f"30 handoffs at 18/s under a 20/s portal: {sum(codes.values())} Bitrix24 requests, {codes[503]} rejected"
        )
        assert codes[503] == 0
        assert_one_task_per_issue(world, issues)
    finally:
        world.close()
