"""A seeded chaos story: random human activity on both systems interleaved with sync runs that
crash, lose answers, hit rate-limit storms and overlap; then a few clean runs settle it and
every invariant of the product is checked on the emulators themselves (never on okbx's own
state store):

  1. one task per handed-off Okdesk issue, none for any other issue;
  2. every qualifying Okdesk comment (not the bot's, on a handed-off issue) is in its task
     exactly once, under the marker `okbx:comment:<issue>:<cycle>:<comment id>`;
  3. no Bitrix24 comment text ever reaches Okdesk;
  4. the time entries of an issue are exactly the elapsed items of its task (`[okbx:time:<id>]`
     once each, with the duration rounded to whole minutes);
  5. one summary per completion, one link comment per task;
  6. issues never handed off are never touched;
  7. after settling, a sync writes nothing;
  8. billing (issue 10): one invoice per completion at most, each with its note once; a payment
     or decline note once per invoice in a final stage; a debtor's issues are held while it owes
     and back in their own status once it paid, each hold and release note once;
  9. routes (issue 14): issues sent to the document department and to sales, moved between the
     two, finished there: one document task per issue, one deal per sales handoff (by its origin
     marker), each timeline comment and note once, every okbx marker in the issue once, and every
     such issue back out of the routes' statuses with its link done.

Run a longer or different story with `--chaos-steps N --chaos-seed S` (the long version is
`@pytest.mark.slow`, run with `--runslow`).  Every assertion message carries the seed and the
tail of the story, so a failure can be replayed with `--chaos-seed`.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e import (
    BITRIX_WRITES,
    HTML_TAG,
    ISSUE_MARKER,
    OKDESK_WRITES,
    TASK_MARKER,
    TIME_MARKER,
    Okbx,
    OnWorld,
    expected_hours,
    okbx_command,
    own_output,
    start_world,
)

from okbx_emulator.http import HTML_500, Fault, Response
from okbx_emulator.world import DOCS_STATUS, HANDOFF, SALES_STATUS, World
from okbx_sync import keys

DEFAULT_SEED = 20261127
SHORT_STEPS = 30
LONG_STEPS = 200
LONG_SEEDS = (101, 202, 303)
MAX_ISSUES = 7

COMMENT_POST = "POST /issues/{id}/comments"  # billing's notes
SUMMARY_LINE = re.compile(r"okbx sync: (\d+) done, (\d+) adopted, (\d+) failed, (\d+) left")

BILLING_WRITES = ("crm.item.add", "crm.item.productrow.set")  # issue 10 (its Okdesk writes are shared)
ROUTE_WRITES = ("crm.timeline.comment.add",)  # issue 14: deals are crm.item.add too
ROUTE_STATUSES = (DOCS_STATUS, SALES_STATUS)
MAX_ROUTE_ISSUES = 3
BITRIX_READS = ("batch", "tasks.task.list", "tasks.task.get", "task.elapseditem.getlist", "user.get")
OKDESK_READS = ("GET /issues/list", "GET /issues/{id}", "GET /issues/{id}/comments", "GET /issues/{id}/time_entries")
# OKBX_CRASH_AFTER=<point>:<n>: SIGKILL right after the n-th commit of that kind (state/store.py)
CRASH_POINTS = (
    "begin_op:1",
    "begin_op:2",
    "finish_op:1",
    "finish_op:2",
    "fail_op:1",
    "create_link:1",
    "local_change:1",
    "update_link:1",
    "observe_statuses:1",
    "set_meta:1",
)
COMMENT_TEXTS = (
    "Any news? {tok}",
    "<p>Checked on <b>staging</b>: still broken {tok}</p>",
    "<script>alert(1)</script>{tok}",
    "[URL=javascript:alert(1)]x[/URL] {tok}",
    "[/QUOTE] {tok} [I]okbx:comment:1:1:99[/I]",
    "emoji 🚀👍🏽 {tok}",
    "bin\x01\x02\x1b[0m {tok}",
)


@dataclass
class IssueModel:
    id: int
    completions: int = 0  # tasks completed by a programmer, each needs one summary
    awaiting_close: bool = False  # completed by a programmer; no Okdesk comments until handed off again


@dataclass
class Untouched:
    id: int
    comments: list[int] = field(default_factory=list)
    status: str = "opened"


class Story(OnWorld):
    def __init__(self, world: World, okbx: Okbx, seed: int, steps: int) -> None:
        self.world, self.okbx, self.seed, self.steps = world, okbx, seed, steps
        self.rng = random.Random(seed)
        self.issues: dict[int, IssueModel] = {}
        self.untouched: dict[int, Untouched] = {}
        self.counter = 0
        self.events: list[str] = []
        self.crashes = 0
        self.syncs = 0
        # issue 10: a second client company that falls into debt and pays, with its own issues
        self.debtor = world.okdesk.add_company("Debtor LLC")
        self.crm_debtor = world.bitrix.crm.add_company("Debtor LLC")
        world.bitrix.crm.add_company("Romashka LLC")
        self.debtor_issues: dict[int, str] = {}  # issue -> the status it has when not held
        self.debts: list[int] = []  # overdue invoices of the debtor, paid or not
        # issue 14: issues on the document and sales routes, moved between them and finished there
        world.routes_story()
        self.route_issues: list[int] = []

    # -- helpers -----------------------------------------------------------------------------
    def tok(self, prefix: str = "tok") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def note(self, text: str) -> None:
        self.events.append(text)

    def where(self) -> str:
        tail = "\n    ".join(self.events[-40:])
        return (
            f"chaos seed {self.seed}, {self.steps} steps (replay: --chaos-seed {self.seed} "
            f"--chaos-steps {self.steps}); story tail:\n    {tail}"
        )

    def check(self, condition: bool, message: str) -> None:
        assert condition, f"{message}\n{self.where()}"

    def task_of(self, issue_id: int) -> dict[str, Any] | None:
        tasks = [t for t in self.bx.tasks() if t.get("XML_ID") == f"okdesk:{issue_id}"]
        return tasks[-1] if tasks else None

    def summaries(self, issue_id: int) -> list[str]:
        return [m for m in self.bot_markers(issue_id) if m.startswith(f"okbx:summary:{issue_id}:")]

    def bot_markers(self, issue_id: int) -> list[str]:
        found = []
        for comment in self.ok.comments(issue_id):
            if comment["author"]["type"] == "employee" and comment["author"]["id"] == self.p.bot:
                match = ISSUE_MARKER.search(HTML_TAG.sub("", comment["content"]))
                if match:
                    found.append(match.group(1))
        return found

    def clear_faults(self) -> None:
        self.world.okdesk_server.clear_faults()
        self.world.bitrix_server.clear_faults()

    # -- running okbx --------------------------------------------------------------------------
    def sync(self, *args: str) -> Any:
        self.syncs += 1
        result = self.okbx("sync", *args)
        own = own_output(result.output)
        self.check("internal error" not in own and "Traceback" not in own, result.output)
        if result.exit_code == 1 and "refused:" in result.stderr:
            self.note("  refused as unusual; forced")  # a person checks both systems, then forces
            result = self.okbx("sync", "--force", *args)
        self.check(result.exit_code in (0, 1), f"sync exited {result.exit_code}: {result.output}")
        line = SUMMARY_LINE.search(result.stdout)
        self.note(f"  sync -> {result.exit_code}: {line.group(0) if line else result.output.strip()[-160:]}")
        return result

    def subprocess(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        full_env = {**os.environ, **self.okbx.env, **(env or {})}
        return subprocess.Popen(
            [*okbx_command(), *args], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    @staticmethod
    def wait_for(fault: Fault, process: subprocess.Popen[str], seconds: float = 20) -> bool:
        """True once the fault holds a request of the process; False if the process ended first."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            if fault.hit.wait(0.02):
                return True
        return fault.hit.is_set()

    def finish(self, process: subprocess.Popen[str], what: str) -> None:
        out, err = process.communicate(timeout=60)
        self.check("Traceback" not in out + err and "internal error" not in err, f"{what}: {out}{err}")
        self.check(process.returncode in (0, 1, -signal.SIGKILL), f"{what} exited {process.returncode}: {out}{err}")
        self.note(f"  {what} -> {process.returncode}")

    # -- the story -------------------------------------------------------------------------------
    def play(self) -> None:
        steps = [
            (self.handoff, 3),
            (self.untouched_issue, 1),
            (self.okdesk_comment, 5),
            (self.bitrix_comment, 3),
            (self.log_time, 4),
            (self.complete, 3),
            (self.reopen, 2),
            (self.sync_step, 6),
            (self.lost_answer, 3),
            (self.storm, 3),
            (self.failing_read, 2),
            (self.crash_env, 2),
            (self.crash_hang, 1),
            (self.overlap, 1),
            (self.lose_store, 1),
            (self.second_installation, 2),
            (self.billing_event, 3),
            (self.sigterm_during_billing, 1),
            (self.route_event, 3),
        ]
        actions, weights = zip(*steps, strict=True)
        for number in range(self.steps):
            action = self.rng.choices(actions, weights)[0]
            self.note(f"{number}: {action.__name__}")
            action()
        self.clear_faults()

    def handoff(self) -> None:
        if len(self.issues) >= MAX_ISSUES:
            return self.sync_step()
        tok, p = self.tok(), self.p
        issue = self.ok.create_issue(f"Chaos {tok}", f"<p>Broken {tok}</p>", company_id=p.company, contact_id=p.client)
        if self.rng.random() < 0.4:
            self.ok.add_comment(issue, f"Before the handoff {self.tok()}", author_id=p.client, author_type="contact")
        comment = f"Please look {self.tok()}" if self.rng.random() < 0.5 else None
        self.ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment=comment)
        self.issues[issue] = IssueModel(issue)
        self.note(f"  issue {issue} handed off")
        return None

    def untouched_issue(self) -> None:
        if len(self.untouched) >= 2:
            if self.untouched and self.rng.random() < 0.5:
                quiet = self.rng.choice(list(self.untouched.values()))
                quiet.comments.append(
                    self.ok.add_comment(
                        quiet.id, f"Untouched {self.tok()}", author_id=self.p.client, author_type="contact"
                    )
                )
                return
            quiet = self.rng.choice(list(self.untouched.values()))
            quiet.status = "in_progress" if quiet.status == "opened" else "opened"
            self.ok.set_status(quiet.id, quiet.status, by_employee_id=self.p.consultant)
            return
        issue = self.ok.create_issue(f"Never handed off {self.tok()}", "x", company_id=self.p.company)
        self.untouched[issue] = Untouched(issue)
        self.note(f"  untouched issue {issue}")

    def okdesk_comment(self) -> None:
        open_issues = [m for m in self.issues.values() if not m.awaiting_close]
        if not open_issues:
            return
        m = self.rng.choice(open_issues)
        text = self.rng.choice(COMMENT_TEXTS).format(tok=self.tok())
        if self.rng.random() < 0.5:
            cid = self.ok.add_comment(m.id, text, author_id=self.p.client, author_type="contact")
        else:
            cid = self.ok.add_comment(m.id, text, author_id=self.p.consultant, public=self.rng.random() < 0.5)
        self.note(f"  okdesk comment {cid} on issue {m.id}")

    def bitrix_comment(self) -> None:
        tasks = self.bx.tasks()
        if tasks:
            task = int(self.rng.choice(tasks)["ID"])
            self.bx.add_comment(task, self.p.bx_olga, f"Internal programmer talk {self.tok('bxsay')}")
            self.note(f"  bitrix comment on task {task}")

    def log_time(self) -> None:
        tasks = self.bx.tasks()
        if tasks:
            task = int(self.rng.choice(tasks)["ID"])
            user = self.rng.choice([self.p.bx_ivan, self.p.bx_olga, self.p.bx_sergey])
            seconds = self.rng.choice([30, 89, 90, 600, 5400, self.rng.randint(1, 20000)])
            self.bx.log_time(task, user, seconds, self.rng.choice(["", f"work {self.tok()}", "<img src=x onerror=1>"]))
            self.note(f"  {seconds}s logged on task {task}")

    def complete(self) -> None:
        candidates = []
        for m in self.issues.values():
            task = self.task_of(m.id)
            if not m.awaiting_close and task is not None and int(task["STATUS"]) != 5:
                candidates.append((m, int(task["ID"])))
        if candidates:
            m, task_id = self.rng.choice(candidates)
            self.bx.complete_task(task_id)
            m.awaiting_close, m.completions = True, m.completions + 1
            self.note(f"  task {task_id} of issue {m.id} completed (#{m.completions})")

    def reopen(self) -> None:
        candidates = [
            m
            for m in self.issues.values()
            if m.awaiting_close and self.ok.status_of(m.id) == "opened" and len(self.summaries(m.id)) == m.completions
        ]
        if candidates:
            m = self.rng.choice(candidates)
            comment = f"Back again {self.tok()}" if self.rng.random() < 0.5 else None
            self.ok.set_status(m.id, HANDOFF, by_employee_id=self.p.consultant, comment=comment)
            m.awaiting_close = False
            self.note(f"  issue {m.id} handed off again")

    def sync_step(self) -> None:
        self.sync()

    def lose_store(self) -> None:
        path = self.okbx.config().state.path
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        self.note("  state store deleted")
        self.sync()

    def second_installation(self) -> None:
        """Another okbx with its own store, against the same accounts (a second server, a test config)."""
        directory = self.okbx.directory / "second"
        directory.mkdir(exist_ok=True)
        result = Okbx(self.world, directory, {"routes": self.world.routes()})("sync", "--force")
        self.check(result.exit_code in (0, 1), f"second installation exited {result.exit_code}: {result.output}")
        self.note(f"  second installation synced -> {result.exit_code}")

    def billing_event(self) -> None:
        crm = self.bx.crm
        ours = [i for i in crm.invoices() if (i["xmlId"] or "").startswith("okbx:invoice:")]
        open_ours = [i for i in ours if i["stageId"].endswith(":N")]
        unpaid = [d for d in self.debts if crm.invoices() and self._stage(d).endswith(":N")]
        choice = self.rng.choice(["pay", "debt", "settle_debt", "debtor_issue"])
        if choice == "pay" and open_ours:
            invoice = self.rng.choice(open_ours)
            stage = self.rng.choice(["P", "D"])
            crm.move_invoice(invoice["id"], stage)
            self.note(f"  invoice {invoice['id']} moved to {stage}")
        elif choice == "debt" or (choice == "settle_debt" and not unpaid):
            when = date.today() - timedelta(days=self.rng.choice([5, 40]))
            self.debts.append(crm.add_invoice(self.crm_debtor, 1000, closedate=when))
            self.note(f"  debtor owes invoice {self.debts[-1]} (due {when})")
        elif choice == "settle_debt":
            paid = self.rng.choice(unpaid)
            crm.move_invoice(paid, "P")
            self.note(f"  debt invoice {paid} paid")
        elif len(self.debtor_issues) < 4:
            status = self.rng.choice(["opened", "in_progress", "delayed"])
            issue = self.ok.create_issue(f"Debtor {self.tok()}", "x", company_id=self.debtor)
            if status != "opened":  # `delayed` needs its date (crm-billing.md 1.7): a release must keep it
                until = datetime.now(UTC) + timedelta(days=30) if status == "delayed" else None
                self.ok.set_status(issue, status, by_employee_id=self.p.consultant, comment="x", delay_to=until)
            self.debtor_issues[issue] = status
            self.note(f"  debtor issue {issue} ({status})")

    def sigterm_during_billing(self) -> None:
        """SIGTERM (a cron timeout, a systemd stop) while a billing or debt write is in flight: the
        run finishes that write, records it and exits 143; nothing is lost or written twice."""
        self.billing_event()
        server, op = self.rng.choice(
            [(self.world.bitrix_server, op) for op in BILLING_WRITES]
            + [(self.world.okdesk_server, "POST /issues/{id}/statuses"), (self.world.okdesk_server, COMMENT_POST)]
        )
        fault = server.inject(Fault(op=op, when=self.rng.choice(["before", "after"]), kind="hang", hang_seconds=30))
        process = self.subprocess("sync")
        if self.wait_for(fault, process):
            process.send_signal(signal.SIGTERM)
            self.note(f"  SIGTERM while {op} was in flight")
        fault.release()
        out, err = process.communicate(timeout=60)
        self.check("Traceback" not in out + err and "internal error" not in err, f"terminated sync: {out}{err}")
        self.check(process.returncode in (0, 1, 143), f"terminated sync exited {process.returncode}: {out}{err}")
        self.note(f"  terminated sync -> {process.returncode}")
        self.clear_faults()

    def route_event(self) -> None:
        """A consultant sends an issue to the document department or to sales, moves it from one to
        the other, or a department finishes (a document task completed, a deal won or lost)."""
        ok, p = self.ok, self.p
        choice = self.rng.choice(["enter", "move", "finish", "finish", "comment"])
        if choice == "enter" and len(self.route_issues) < MAX_ROUTE_ISSUES:
            issue = ok.create_issue(f"Routed {self.tok()}", "x", company_id=p.company, contact_id=p.client)
            ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
            status = self.rng.choice(ROUTE_STATUSES)
            ok.set_status(issue, status, by_employee_id=p.consultant, comment=f"Please {self.tok()}")
            self.route_issues.append(issue)
            self.note(f"  issue {issue} sent to {status}")
            return
        if not self.route_issues:
            return
        issue = self.rng.choice(self.route_issues)
        status = ok.status_of(issue)
        if choice == "move":
            target = self.rng.choice([s for s in (*ROUTE_STATUSES, "in_progress") if s != status])
            ok.set_status(issue, target, by_employee_id=p.consultant)
            self.note(f"  issue {issue} moved {status} -> {target}")
        elif choice == "comment":
            ok.add_comment(issue, f"About the route {self.tok()}", author_id=p.client, author_type="contact")
            self.note(f"  client comment on routed issue {issue}")
        else:
            self.finish_route_target(issue)

    def finish_route_target(self, issue: int) -> None:
        for task in self.bx.tasks():
            if task.get("XML_ID") == keys.task_xml_id(issue, "documents") and int(task["STATUS"]) != 5:
                self.bx.add_comment(int(task["ID"]), self.p.bx_olga, f"Documents checked {self.tok('bxsay')}")
                self.bx.complete_task(int(task["ID"]))
                self.note(f"  document task {task['ID']} of issue {issue} completed")
        for deal in self.bx.deals.all_deals():
            if str(deal.get("originId", "")).startswith(f"okdesk:{issue}:") and deal["closed"] == "N":
                stage = self.rng.choice(["WON", "LOSE"])
                self.bx.deals.move_deal(deal["id"], stage, by_user=self.p.bx_sales)
                self.note(f"  deal {deal['id']} of issue {issue} moved to {stage}")

    def _stage(self, invoice_id: int) -> str:
        return next(str(i["stageId"]) for i in self.bx.crm.invoices() if i["id"] == invoice_id)

    def lost_answer(self) -> None:
        server, op = self.rng.choice(
            [(self.world.okdesk_server, op) for op in OKDESK_WRITES]
            + [(self.world.bitrix_server, op) for op in BITRIX_WRITES + BILLING_WRITES + ROUTE_WRITES]
        )
        kind = self.rng.choice(["drop", "html", "json500"])
        response = {"html": Response.html(502, HTML_500), "json500": Response.json(500, {"errors": "boom"})}.get(kind)
        server.inject(Fault(op=op, when="after", kind="drop" if kind == "drop" else "response", response=response))
        self.note(f"  answer of {op} lost ({kind})")
        self.sync()
        self.clear_faults()

    def storm(self) -> None:
        times = self.rng.randint(1, 8)
        if self.rng.random() < 0.6:
            op = self.rng.choice(BITRIX_WRITES + BITRIX_READS)
            response = Response.json(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
            self.world.bitrix_server.inject(Fault(op=op, when="before", response=response, times=times))
        else:
            op = self.rng.choice(OKDESK_WRITES + OKDESK_READS)
            response = Response.json(429, {"errors": "Превышен лимит запросов"}, headers={"Retry-After": "0"})
            self.world.okdesk_server.inject(Fault(op=op, when="before", response=response, times=times))
        self.note(f"  rate-limit storm of {times} on {op}")
        self.sync()
        self.clear_faults()

    def failing_read(self) -> None:
        op = self.rng.choice((*OKDESK_READS[1:], "batch", "tasks.task.get", "task.commentitem.getlist"))
        server = self.world.okdesk_server if op.startswith("GET") else self.world.bitrix_server
        times = self.rng.randint(1, 5)
        server.inject(Fault(op=op, when="before", response=Response.html(502, HTML_500), times=times))
        self.note(f"  {times} HTML 502s on {op}")
        self.sync()
        self.clear_faults()

    def crash_env(self) -> None:
        self.okdesk_comment()  # give the run something to write, so the crash point is reached
        point = self.rng.choice(CRASH_POINTS)
        self.note(f"  okbx sync subprocess with OKBX_CRASH_AFTER={point}")
        process = self.subprocess("sync", env={"OKBX_CRASH_AFTER": point})
        self.finish(process, "crashing sync")
        self.crashes += process.returncode == -signal.SIGKILL

    def crash_hang(self) -> None:
        self.okdesk_comment()
        server, op = self.rng.choice(
            [(self.world.bitrix_server, "task.commentitem.add")] * 3
            + [(self.world.okdesk_server, op) for op in OKDESK_WRITES]
            + [(self.world.bitrix_server, op) for op in BITRIX_WRITES + BILLING_WRITES + ROUTE_WRITES]
        )
        when = self.rng.choice(["before", "after"])
        fault = server.inject(Fault(op=op, when=when, kind="hang", hang_seconds=30))
        process = self.subprocess("sync")
        if self.wait_for(fault, process):
            process.kill()  # SIGKILL while the request is in flight
            self.note(f"  killed while {op} hung ({when})")
        fault.release()
        self.finish(process, "hung sync")
        self.crashes += process.returncode == -signal.SIGKILL
        self.clear_faults()

    def overlap(self) -> None:
        fault = self.world.okdesk_server.inject(
            Fault(op="GET /issues/list", when="before", kind="hang", hang_seconds=30)
        )
        process = self.subprocess("sync")
        if self.wait_for(fault, process):
            second = self.okbx("sync")
            self.check(second.exit_code == 75, f"an overlapping run must exit 75: {second.output}")
            self.check("another okbx run" in second.stderr, second.output)
            self.note("  overlapping run refused with 75")
        fault.release()
        self.finish(process, "held sync")
        self.clear_faults()

    # -- settling --------------------------------------------------------------------------------
    def retry_failed(self) -> None:
        status = self.okbx("status", "--json")
        self.check(status.exit_code in (0, 1), status.output)  # 1: some link is failing or parked
        for row in json.loads(status.stdout)["links"]:
            if row["failures"] or row["state"] == "parked" or row["next_retry_at"]:
                result = self.okbx("retry", str(row["issue"]))
                self.check(result.exit_code == 0, result.output)
                self.note(f"  okbx retry {row['issue']} (was {row['state']}, {row['failures']} failures)")

    def settle(self) -> None:
        self.clear_faults()
        for _ in range(8):
            self.retry_failed()
            self.complete_rowless_invoices()
            result = self.sync()
            line = SUMMARY_LINE.search(result.stdout)
            quiet = "okbx billing:" not in result.stdout  # billing wrote nothing either
            if result.exit_code == 0 and line and line.groups() == ("0", "0", "0", "0") and quiet:
                return
        raise AssertionError(f"okbx did not settle in 8 clean syncs\n{self.where()}")

    def complete_rowless_invoices(self) -> None:
        """What `okbx status` asks a person to do: an okbx invoice whose run was cut short before its
        rows, with the store lost meanwhile, gets its rows by hand (its sum is in the invoice)."""
        crm = self.bx.crm
        for invoice in crm.invoices():
            if (invoice["xmlId"] or "").startswith("okbx:invoice:") and not invoice["rows"]:
                crm.set_rows(invoice["id"], [("Work, added by hand", invoice["opportunity"], 1)])
                self.note(f"  a person added the rows of rowless invoice {invoice['id']}")

    def complete_everything(self) -> None:
        for issue in self.route_issues:  # the departments finish what is still open
            if self.ok.status_of(issue) not in ROUTE_STATUSES:
                self.ok.set_status(issue, self.rng.choice(ROUTE_STATUSES), by_employee_id=self.p.consultant)
                self.note(f"  settle: issue {issue} sent to a department once more")
        if self.route_issues:
            self.settle()
        for issue in self.route_issues:
            self.finish_route_target(issue)
        for m in self.issues.values():
            task = self.task_of(m.id)
            if task is not None and int(task["STATUS"]) != 5:
                self.bx.complete_task(int(task["ID"]))
                m.awaiting_close, m.completions = True, m.completions + 1
                self.note(f"  settle: task {task['ID']} of issue {m.id} completed (#{m.completions})")

    # -- invariants --------------------------------------------------------------------------------
    def check_invariants(self) -> None:
        ok, bx, p = self.ok, self.bx, self.p
        tasks_by_xml = Counter(t.get("XML_ID") for t in bx.tasks())
        expected_xml = {f"okdesk:{i}" for i in self.issues}
        expected_xml |= {x for x in tasks_by_xml if str(x).endswith(":documents")}  # checked in check_routes
        self.check(set(tasks_by_xml) == expected_xml, f"tasks {dict(tasks_by_xml)} for issues {sorted(self.issues)}")
        self.check(all(n == 1 for n in tasks_by_xml.values()), f"duplicate tasks: {dict(tasks_by_xml)}")

        for m in self.issues.values():
            task = self.task_of(m.id)
            assert task is not None
            task_id = int(task["ID"])
            task_comments = bx.comments(task_id)
            markers = [mt.group(1) for c in task_comments if (mt := TASK_MARKER.search(c["POST_MESSAGE"]))]
            forwarded = Counter(int(k.split(":")[4]) for k in markers if k.startswith(f"okbx:comment:{m.id}:"))
            qualifying = {
                c["id"]
                for c in ok.comments(m.id)
                if not (c["author"]["type"] == "employee" and c["author"]["id"] == p.bot)
            }
            self.check(
                set(forwarded) == qualifying,
                f"issue {m.id}: forwarded {sorted(forwarded)} but qualifying {sorted(qualifying)}",
            )
            doubles = {c: n for c, n in forwarded.items() if n != 1}
            self.check(not doubles, f"issue {m.id}: comments forwarded more than once: {doubles}")
            for c in ok.comments(m.id):
                for token in re.findall(r"\btok\d+\b", c["content"]):
                    hits = sum(len(re.findall(rf"\b{token}\b", t["POST_MESSAGE"])) for t in task_comments)
                    if c["id"] in qualifying:
                        self.check(hits == 1, f"issue {m.id}: {token} appears {hits} times in task {task_id}")

            texts = [c["content"] for c in ok.comments(m.id)]
            self.check(not any("bxsay" in t for t in texts), f"issue {m.id}: Bitrix24 comment text reached Okdesk")

            items = {int(e["ID"]): int(e["SECONDS"]) for e in bx.elapsed(task_id)}
            entries = ok.time_entries(m.id)
            copied = Counter()
            for entry in entries:
                match = TIME_MARKER.search(entry["comment"] or "")
                self.check(match is not None, f"issue {m.id}: time entry without a marker: {entry}")
                assert match is not None
                item = int(match.group(1))
                copied[item] += 1
                if item in items:
                    self.check(
                        entry["spent_time"] == expected_hours(items[item]),
                        f"issue {m.id}: item {item} of {items[item]}s copied as {entry['spent_time']} h",
                    )
            self.check(set(copied) == set(items), f"issue {m.id}: time entries {dict(copied)} vs items {items}")
            self.check(all(n == 1 for n in copied.values()), f"issue {m.id}: items copied twice: {dict(copied)}")

            bot = self.bot_markers(m.id)
            summaries = [k for k in bot if k.startswith(f"okbx:summary:{m.id}:")]
            # one report per completion; posted while the return was refused, its marker ends ':pending'
            reports = [keys.parse_as(keys.SummaryKey, k.removeprefix(keys.PREFIX)) for k in summaries]
            self.check(
                sorted(r.cycle if r is not None else -1 for r in reports) == list(range(1, m.completions + 1)),
                f"issue {m.id}: {m.completions} completions but summaries {summaries}",
            )
            links = [k for k in bot if k.startswith(f"okbx:linkcomment:{m.id}:")]
            self.check(links == [f"okbx:linkcomment:{m.id}:1"], f"issue {m.id}: link comments {links}")
            self.check(ok.status_of(m.id) == "opened", f"issue {m.id} ends in {ok.status_of(m.id)}")

        self.check_billing()
        self.check_routes()

        for quiet in self.untouched.values():
            self.check(
                [c["id"] for c in ok.comments(quiet.id)] == quiet.comments, f"untouched issue {quiet.id} got comments"
            )
            self.check(ok.time_entries(quiet.id) == [], f"untouched issue {quiet.id} got time entries")
            self.check(ok.status_of(quiet.id) == quiet.status, f"untouched issue {quiet.id} changed status")

    def check_billing(self) -> None:
        ok, crm = self.ok, self.bx.crm
        invoices = [i for i in crm.invoices() if (i["xmlId"] or "").startswith("okbx:invoice:")]
        by_xml = Counter(i["xmlId"] for i in invoices)
        self.check(all(n == 1 for n in by_xml.values()), f"duplicate invoices: {dict(by_xml)}")
        for m in self.issues.values():
            mine = [i for i in invoices if i["xmlId"].startswith(f"okbx:invoice:{m.id}:")]
            self.check(len(mine) <= m.completions, f"issue {m.id}: {len(mine)} invoices, {m.completions} completions")
            bot = Counter(self.bot_markers(m.id))
            notes = {k for k in bot if k.startswith(f"okbx:invnote:{m.id}:")}
            wanted = {i["xmlId"].replace("okbx:invoice:", "okbx:invnote:") for i in mine}
            self.check(notes == wanted and all(bot[k] == 1 for k in notes), f"issue {m.id}: notes {bot}")
            for invoice in mine:
                total = round(sum(r["price"] * r["quantity"] for r in invoice["rows"]), 2)
                self.check(invoice["rows"] and invoice["opportunity"] == total, f"invoice without rows: {invoice}")
                paid = f"okbx:paid:{m.id}:{invoice['id']}"
                final = invoice["stageId"].split(":")[1] in ("P", "D")
                self.check(bot[paid] == (1 if final else 0), f"issue {m.id}: {bot[paid]} notes of {paid}")
        owes = any(
            i["id"] in self.debts and i["stageId"].endswith(":N") and i["closedate"][:10] < date.today().isoformat()
            for i in crm.invoices()
        )
        for issue, status in self.debtor_issues.items():
            want = "debt" if owes else status
            self.check(ok.status_of(issue) == want, f"debtor issue {issue} is {ok.status_of(issue)}, not {want}")
            marks = Counter(self.bot_markers(issue))
            self.check(all(n == 1 for n in marks.values()), f"debtor issue {issue}: notes {dict(marks)}")
            holds = sum(n for k, n in marks.items() if k.startswith("okbx:hold:"))
            releases = sum(n for k, n in marks.items() if k.startswith("okbx:release:"))
            self.check(holds - releases == (1 if owes else 0), f"debtor issue {issue}: {dict(marks)}, owes {owes}")

    def check_routes(self) -> None:
        ok, bx = self.ok, self.bx
        docs = Counter(t.get("XML_ID") for t in bx.tasks() if str(t.get("XML_ID")).endswith(":documents"))
        self.check(all(n == 1 for n in docs.values()), f"document tasks made twice: {dict(docs)}")
        self.check(
            set(docs) <= {keys.task_xml_id(i, "documents") for i in self.route_issues},
            f"document tasks {dict(docs)} for routed issues {self.route_issues}",
        )
        deals = [d for d in bx.deals.all_deals() if d.get("originatorId") == keys.DEAL_ORIGINATOR]
        origins = Counter(d["originId"] for d in deals)
        self.check(all(n == 1 for n in origins.values()), f"deals made twice: {dict(origins)}")
        for deal in deals:
            marks = Counter(
                key.marker for c in bx.timeline.comments("deal", deal["id"]) if (key := keys.in_bbcode(c["COMMENT"]))
            )
            self.check(all(n == 1 for n in marks.values()), f"deal {deal['id']}: timeline markers {dict(marks)}")
        for task in bx.tasks():
            if str(task.get("XML_ID")).endswith(":documents"):
                marks = Counter(
                    m.group(1) for c in bx.comments(int(task["ID"])) if (m := TASK_MARKER.search(c["POST_MESSAGE"]))
                )
                self.check(all(n == 1 for n in marks.values()), f"task {task['ID']}: markers {dict(marks)}")
        status = json.loads(self.okbx("status", "--json").stdout)
        links = {row["issue"]: row for row in status["links"]}
        for issue in self.route_issues:
            marks = Counter(self.bot_markers(issue))
            self.check(all(n == 1 for n in marks.values()), f"routed issue {issue}: notes {dict(marks)}")
            # the document route quotes the department's last comment in its report, by design; nothing else
            texts = [c["content"] for c in ok.comments(issue) if "okbx:summary:" not in c["content"]]
            self.check(not any("bxsay" in t for t in texts), f"routed issue {issue}: Bitrix24 comment text in Okdesk")
            self.check(ok.status_of(issue) not in ROUTE_STATUSES, f"routed issue {issue} is {ok.status_of(issue)}")
            row = links.get(issue)
            self.check(row is not None and row["state"] == "done", f"routed issue {issue}: link {row}")


def writes_with_billing(world: World) -> int:
    counts = world.okdesk_server.counts() + world.bitrix_server.counts()
    return sum(counts[op] for op in OKDESK_WRITES + BITRIX_WRITES + BILLING_WRITES + ROUTE_WRITES)


def run_story(tmp_path: Path, seed: int, steps: int) -> Story:
    world = start_world()  # the real clock: runs in killed processes mix with in-process ones
    try:
        okbx = Okbx(
            world,
            tmp_path,
            {
                "sync": {"backoff_seconds": 0.01, "retry_base_seconds": 1, "max_retries": 3},
                "billing": {"default_rate": 3000, "round_minutes": 15},
                "debt": {"status": "debt", "grace_days": 3},
                "routes": world.routes(),  # the programmers' as before, plus documents and sales
            },
        )
        story = Story(world, okbx, seed, steps)
        story.play()
        story.settle()
        story.complete_everything()
        story.settle()
        before = writes_with_billing(world)
        story.sync()
        story.check(writes_with_billing(world) == before, "a sync right after settling wrote something")
        story.check_invariants()
        print(
            f"chaos seed {seed}: {steps} steps, {len(story.issues)} issues, {story.syncs} syncs, "
            f"{story.crashes} crashes, requests Okdesk {len(world.okdesk_server.log)} "
            f"Bitrix24 {len(world.bitrix_server.log)}"
        )
        return story
    finally:
        world.close()


def test_chaos_short(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    seed = request.config.getoption("--chaos-seed") or DEFAULT_SEED
    steps = request.config.getoption("--chaos-steps") or SHORT_STEPS
    run_story(tmp_path, seed, steps)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(LONG_SEEDS)))
def test_chaos_long(request: pytest.FixtureRequest, tmp_path: Path, index: int) -> None:
    chosen = request.config.getoption("--chaos-seed")
    if chosen is not None and index > 0:
        pytest.skip("one seed was chosen with --chaos-seed")
    seed = chosen if chosen is not None else LONG_SEEDS[index]
    steps = request.config.getoption("--chaos-steps") or LONG_STEPS
    run_story(tmp_path, seed, steps)


@pytest.mark.slow
def test_chaos_seed_23_at_3000_steps_posts_each_summary_once(tmp_path: Path) -> None:
    """Regression (issue 7): this story once posted `okbx:summary:1:5` twice right after
    `okbx retry 1`.  Every write now looks for its marker first, whatever the store says."""
    run_story(tmp_path, 23, 3000)
