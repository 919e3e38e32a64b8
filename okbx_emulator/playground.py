"""The people around okbx, in the playground of `okbx emulate`: sample data, and their actions.

An administrator rehearses a configuration (routes, billing, the debt hold) before pointing okbx
at real accounts: a consultant hands an issue off, a client comments, a programmer logs time and
completes the task, an accountant marks an invoice paid or declined, a manager moves a deal.

Why a control endpoint, not the emulated REST APIs: those people act in the web interfaces, as
themselves.  Over the APIs (as documented, and as emulated) the only credentials are okbx's, so
time logged that way would be the webhook user's, a comment would be the bot's, and there is no
verb to create the sample clients and users at all.  So the `okbx emulate` process, which holds
the emulators, also serves a tiny JSON endpoint on 127.0.0.1 (a random port and a random token,
written to CONTROL_FILE, mode 600, in the playground directory), and `okbx emulate seed` / `okbx
emulate act ...` post to it.  Each verb calls the same World methods the tests use to play people.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import error as urlerror
from urllib import request as urlrequest

from .world import HANDOFF, World

CONTROL_FILE = ".okbx-emulate.json"
MAX_BODY = 64 * 1024
SAMPLE_ISSUES = (
    ("Printer jams on every second page", "<p>Since Monday the office printer jams.</p>"),
    ("Report export fails", "<p>The monthly report export ends with an error.</p>"),
    ("VPN drops at night", "<p>The VPN connection drops every night around 2 am.</p>"),
)


class PlaygroundError(ValueError):
    """An action the playground cannot do (an unknown issue, task or invoice; a verb it lacks)."""


@dataclass
class Playground:
    """The verbs; each returns a small dict that `okbx emulate act` prints."""

    world: World
    seeded: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seed(self) -> dict[str, Any]:
        """Sample clients, contacts and issues in Okdesk, and CRM companies matching them (one by
        its Okdesk id, one by INN) with an overdue invoice for the debt hold.  Once per playground."""
        with self._lock:
            if self.seeded:
                return {"seeded": False, **self.seeded}
            ok, p = self.world.okdesk, self.world.people
            crm = self.world.billing_story()
            debtor_contact = ok.add_contact("Maria", "Volkova", company_id=crm["debtor"])
            issues = [
                ok.create_issue(title, text, contact_id=contact)
                for (title, text), contact in zip(SAMPLE_ISSUES, (p.client, p.client, debtor_contact), strict=True)
            ]
            overdue = self.world.bitrix.crm.add_invoice(
                crm["crm_vasilek"], 12000, closedate=date.today() - timedelta(days=10), stage="S"
            )
            self.seeded = {"issues": len(issues), "first_issue": issues[0], "overdue_invoice": overdue, **crm}
            return {"seeded": True, **self.seeded}

    def new_issue(self, title: str, company: int | None = None) -> dict[str, Any]:
        contact = self.world.people.client if company is None else None
        issue = self.world.okdesk.create_issue(title, "", company_id=company, contact_id=contact)
        return {"issue": issue}

    def handoff(self, issue: int, comment: str | None = None) -> dict[str, Any]:
        """The consultant sets the handoff status (with an optional comment)."""
        self.world.okdesk.set_status(issue, HANDOFF, by_employee_id=self.world.people.consultant, comment=comment)
        return {"issue": issue, "status": HANDOFF}

    def set_status(self, issue: int, status: str) -> dict[str, Any]:
        self.world.okdesk.set_status(issue, status, by_employee_id=self.world.people.consultant)
        return {"issue": issue, "status": status}

    def comment(self, issue: int, text: str, author: str = "client") -> dict[str, Any]:
        """A comment in the issue by the client (public) or the consultant (internal)."""
        p = self.world.people
        if author == "client":
            found = self.world.okdesk.add_comment(issue, text, author_id=p.client, author_type="contact")
        elif author == "consultant":
            found = self.world.okdesk.add_comment(issue, text, author_id=p.consultant, public=False)
        else:
            raise PlaygroundError(f"--as must be client or consultant, not {author!r}")
        return {"issue": issue, "comment": found}

    def task_comment(self, task: int, text: str, user: int) -> dict[str, Any]:
        return {"task": task, "comment": self.world.bitrix.add_comment(task, user, text)}

    def log_time(self, task: int, seconds: int, user: int, comment: str = "") -> dict[str, Any]:
        """A programmer logs time on the task (Bitrix24 user `user`)."""
        return {"task": task, "elapsed_item": self.world.bitrix.log_time(task, user, seconds, comment)}

    def complete(self, task: int) -> dict[str, Any]:
        self.world.bitrix.complete_task(task)
        return {"task": task, "status": "completed"}

    def pay(self, invoice: int) -> dict[str, Any]:
        """The accountant moves the invoice to the paid stage (semantics S)."""
        self.world.bitrix.crm.move_invoice(invoice, "P")
        return {"invoice": invoice, "stage": "paid"}

    def decline(self, invoice: int) -> dict[str, Any]:
        self.world.bitrix.crm.move_invoice(invoice, "D")
        return {"invoice": invoice, "stage": "declined"}

    def move_deal(self, deal: int, stage: str) -> dict[str, Any]:
        """A salesperson moves a deal to a stage (a code of its pipeline such as WON or LOSE, or a stage id)."""
        try:
            self.world.bitrix.deals.move_deal(deal, stage, by_user=self.world.people.bx_sales)
        except (ValueError, KeyError) as problem:
            raise PlaygroundError(f"cannot move deal {deal} to {stage!r}: {problem}") from None
        return {"deal": deal, "stage": self.world.bitrix.deals.deal(deal)["stageId"]}

    def look(self) -> dict[str, Any]:
        """What both systems hold now: issues with their status, tasks (of every group), invoices, deals."""
        ok, bx = self.world.okdesk, self.world.bitrix
        issues = [(ok.issue(i), ok.status_of(i)) for i in ok.issue_ids()]
        return {
            "issues": [{"id": i["id"], "title": i["title"], "status": status} for i, status in issues],
            "tasks": [
                {
                    "id": int(t["ID"]),
                    "title": t["TITLE"],
                    "group": int(t.get("GROUP_ID") or 0),
                    "status": int(t["STATUS"]),
                    "xml_id": t.get("XML_ID"),
                }
                for t in bx.tasks()
            ],
            "invoices": [
                {"id": i["id"], "company": i["companyId"], "sum": i["opportunity"], "stage": i["stageId"]}
                for i in bx.crm.invoices()
            ],
            "deals": [
                {"id": d["id"], "title": d["title"], "stage": d["stageId"], "origin": d.get("originId")}
                for d in bx.deals.all_deals()
            ],
        }

    def verbs(self) -> dict[str, Callable[..., dict[str, Any]]]:
        names = ["seed", "new_issue", "handoff", "set_status", "comment", "task_comment", "log_time", "complete"]
        names += ["pay", "decline", "move_deal", "look"]
        return {name: getattr(self, name) for name in names}


# -- the control endpoint ---------------------------------------------------------------------------
class ControlServer:
    """POST /<verb> with a JSON object of arguments and the token in X-Okbx-Playground; loopback only."""

    def __init__(self, playground: Playground, directory: Path) -> None:
        self.token = secrets.token_urlsafe(24)
        verbs, token = playground.verbs(), self.token

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # the emulate process prints its own lines
                pass

            def do_POST(self) -> None:
                status, answer = _answer(self, verbs, token)
                body = json.dumps(answer, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.control_file = directory / CONTROL_FILE

    def start(self) -> ControlServer:
        self._thread.start()
        fd = os.open(self.control_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"url": self.url, "token": self.token, "pid": os.getpid()}, handle)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.control_file.unlink(missing_ok=True)


def _answer(
    handler: BaseHTTPRequestHandler, verbs: dict[str, Callable[..., dict[str, Any]]], token: str
) -> tuple[int, dict[str, Any]]:
    if not secrets.compare_digest(handler.headers.get("X-Okbx-Playground", ""), token):
        return 403, {"error": "wrong or missing playground token"}
    verb = handler.path.strip("/")
    if verb not in verbs:
        return 404, {"error": f"no such action: {verb}"}
    length = int(handler.headers.get("Content-Length") or 0)
    if not 0 <= length <= MAX_BODY:
        return 413, {"error": "request too large"}
    try:
        args = json.loads(handler.rfile.read(length) or b"{}")
        if not isinstance(args, dict):
            raise PlaygroundError("the arguments must be a JSON object")
        return 200, verbs[verb](**args)
    except (ValueError, KeyError, TypeError) as error:  # the emulators' own refusals are ValueErrors
        return 400, {"error": str(error) or error.__class__.__name__}


def call(directory: Path, verb: str, **args: Any) -> dict[str, Any]:
    """Ask the playground of `directory` (a running `okbx emulate`) to act; PlaygroundError if it cannot."""
    try:
        control = json.loads((directory / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise PlaygroundError(
            f"no running playground in {directory}: start `okbx emulate --dir {directory}` first"
        ) from None
    data = json.dumps({k: v for k, v in args.items() if v is not None}).encode()
    req = urlrequest.Request(f"{control['url']}/{verb}", data=data, method="POST")
    req.add_header("X-Okbx-Playground", str(control["token"]))
    req.add_header("Content-Type", "application/json")
    try:
        with urlrequest.urlopen(req, timeout=30) as answer:
            result: dict[str, Any] = json.loads(answer.read())
            return result
    except urlerror.HTTPError as refused:
        raise PlaygroundError(json.loads(refused.read() or b"{}").get("error", str(refused))) from None
    except urlerror.URLError:
        raise PlaygroundError(
            f"the playground in {directory} does not answer: is `okbx emulate` still running?"
        ) from None
