"""`okbx demo`: the whole story on the built-in emulators, with real sync cycles over HTTP."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from okbx_emulator.world import HANDOFF, World

from . import keys
from .config import load_config
from .cycle import opened, sync_cycle
from .markup import html_to_text
from .secrets import Redactor
from .state.store import Store

Say = Callable[[str], None]
SCREENSHOT = b"\x89PNG\r\n\x1a\n" + b"(a screenshot of the export error)" * 30
RESULT = b"date;total\n2026-11-30;1250.00\n"


def _sync(config_path: Path, world: World, say: Say, label: str) -> None:
    config = load_config(config_path, env=world.env())
    with opened(config, Redactor(config.secrets())) as (clients, store):
        result = sync_cycle(config, clients, store)
    applied = result.applied
    assert applied is not None
    sent = clients.requests_sent()
    say(f"  $ okbx sync    # {label}")
    for action in applied.done + applied.adopted:
        say(f"    {action.side or 'state':8} {action.name:16} issue {action.issue_id}: {action.detail}")
    for action, error in applied.failed:
        say(f"    FAILED {action.name} issue {action.issue_id}: {error}")
    say(
        f"    -> {len(applied.done)} done, {len(applied.failed)} failed; "
        f"requests: Okdesk {sent['okdesk']}, Bitrix24 {sent['bitrix24']}"
    )


class _Portal:
    """The Bitrix24 emulator's clock: the real one, moved on a little where the story needs people
    to act a few seconds apart (a comment, then the task completed)."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.ahead)


def run_demo(say: Say, keep: bool = False) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="okbx-demo-"))
    portal = _Portal()
    world = World.start(bitrix_clock=portal)
    world.portal_clock = portal  # type: ignore[attr-defined]
    try:
        return (
            _story(world, workdir, say) and _billing_story(world, workdir, say) and _routes_story(world, workdir, say)
        )
    finally:
        world.close()
        if keep:
            say(f"\nThe demo's config and state are kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _story(world: World, workdir: Path, say: Say) -> bool:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    config_path = world.write_config(workdir)
    say(
        "okbx demo: Okdesk and Bitrix24 emulators are running on "
        f"{world.okdesk_server.url} and {world.bitrix_server.url}\n"
    )

    say("1. A client reports a problem in Okdesk with a screenshot; the consultant asks a question.")
    issue = ok.create_issue(
        "Report export fails",
        "<p>Exporting the <b>monthly report</b> to CSV fails.<br>Error: <i>encoding</i></p>",
        company_id=p.company,
        contact_id=p.client,
        priority="high",
    )
    shot = ok.add_comment(issue, "It started after the update on Monday.", author_id=p.client, author_type="contact")
    ok.files.add(issue, "error-screenshot.png", SCREENSHOT, comment_id=shot, is_public=True)
    ok.add_comment(issue, "Checked: reproducible on the test server.", author_id=p.consultant, public=False)
    _sync(config_path, world, say, "nothing to do yet: the issue is not handed off")

    say("\n2. The consultant sets the status 'transfer to programmers' with a comment.")
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment="Please look at the CSV export code.")
    _sync(config_path, world, say, "creates the task and forwards the conversation")
    task_id = bx.tasks()[0]["ID"] if bx.tasks() else None
    if task_id is None:
        say("FAILED: no task was created")
        return False

    say("\n3. The client writes again; the programmers talk among themselves in Bitrix24.")
    ok.add_comment(issue, "Any news? We need the report by Friday.", author_id=p.client, author_type="contact")
    bx.add_comment(int(task_id), p.bx_ivan, "Olga, can you review my fix?")
    _sync(config_path, world, say, "forwards only the client's new question")

    say("\n4. Programmers log their time, attach the fixed report to the task and complete it.")
    root = bx.drive.storage_of("user", p.bx_ivan)["root_id"]
    fixed = bx.drive.add_file(root, "monthly-report-fixed.csv", RESULT, created_by=p.bx_ivan)
    bx.drive.attach_to_task(int(task_id), fixed, p.bx_ivan)
    bx.log_time(int(task_id), p.bx_ivan, 5400, "Fixed the CSV encoding")
    bx.log_time(int(task_id), p.bx_olga, 2700, "Code review")
    bx.log_time(int(task_id), p.bx_sergey, 1200, "Deployed to production")
    bx.complete_task(int(task_id))
    _sync(config_path, world, say, "copies the time, posts one summary, returns the issue, brings the file back")

    say("\n5. Nothing changed since: a sync writes nothing.")
    _sync(config_path, world, say, "idempotent")

    say(f"\nOkdesk issue #{issue} is now '{ok.status_of(issue)}'. Its comments:")
    for comment in ok.comments(issue):
        scope = "public  " if comment["public"] else "internal"
        say(f"  [{scope}] {comment['author']['name']}: {html_to_text(comment['content'])[:110]!s}".replace("\n", " "))
    back = _files_back(world, issue, say)
    say("Time entries:")
    for entry in ok.time_entries(issue):
        say(f"  {entry['spent_time']:.2f} h  {entry['employee']['name']}: {entry['comment']}")
    task = bx.task(int(task_id)) or {}
    say(f"\nBitrix24 task #{task_id} '{task.get('TITLE')}' status {task.get('STATUS')}; comments:")
    carried = _task_comments(world, int(task_id), say)

    store = Store(load_config(config_path, env=world.env()).state.path)
    try:
        link = store.link(issue)
    finally:
        store.close()
    checks = {
        "one task": len(bx.tasks()) == 1,
        "issue returned to opened": ok.status_of(issue) == "opened",
        "three time entries": len(ok.time_entries(issue)) == 3,
        "link done": link is not None and link.state == "done",
        "the screenshot reached the programmers once": [n.startswith("error-screenshot [okbx-") for n in carried]
        == [True],
        "the fixed report came back once": back == ["monthly-report-fixed.csv"],
    }
    failed = [name for name, passed in checks.items() if not passed]
    say("\n" + ("The story played out as expected." if not failed else f"FAILED checks: {', '.join(failed)}"))
    return not failed


def _files_back(world: World, issue: int, say: Say) -> list[str]:
    """The files okbx's comments carry in the issue (the programmers' results), named."""
    ok, bot = world.okdesk, world.people.bot
    ours = {c["id"] for c in ok.comments(issue) if c["author"]["type"] == "employee" and c["author"]["id"] == bot}
    back = [f for f in ok.files.of_issue(issue) if f["comment_id"] in ours]
    for file in back:
        scope = "public" if file["is_public"] else "internal"
        say(f"  file from the programmers in an okbx comment: {file['attachment_file_name']} ({scope})")
    return [f["attachment_file_name"] for f in back]


def _task_comments(world: World, task_id: int, say: Say) -> list[str]:
    """The task's comments, each with the files it carries; the names of those files."""
    bx, carried = world.bitrix, []
    for comment in bx.comments(task_id):
        say(f"  user {comment['AUTHOR_ID']}: {comment['POST_MESSAGE'].splitlines()[0][:100]}")
        for name in bx.drive.comment_file_names(comment["ID"]):
            carried.append(name)
            say(f"    with the file {name} (a copy on the Drive; its name carries okbx's marker)")
    return carried


def _billing_story(world: World, workdir: Path, say: Say) -> bool:
    """Issue 10: an invoice for finished work, its payment, and a debtor's issue held and released."""
    from datetime import date, timedelta

    ok, bx, p = world.okdesk, world.bitrix, world.people
    seeded = world.billing_story()
    billing = {"default_rate": 3000, "rates": {p.bx_olga: 4500}, "round_minutes": 15, "inn_parameter": "inn"}
    config_path = world.write_config(workdir, billing=billing, debt={"status": "debt", "grace_days": 3})
    say("\n--- Billing (okbx.yaml now has billing: and debt: sections) ---")
    say("\n6. Another issue of Romashka LLC is handed off, worked on and completed.")
    issue = ok.create_issue("Add a discount field", "<p>Please add it</p>", company_id=p.company, contact_id=p.client)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    _sync(config_path, world, say, "creates the task")
    task_id = int(next(t["ID"] for t in bx.tasks() if t.get("XML_ID") == keys.task_xml_id(issue)))
    bx.log_time(task_id, p.bx_ivan, 6000, "Discount field")
    bx.log_time(task_id, p.bx_olga, 2000, "Review")
    bx.complete_task(task_id)
    _sync(config_path, world, say, "returns the issue, then invoices the client company in Bitrix24")
    invoices = [i for i in bx.crm.invoices() if i["xmlId"] == keys.InvoiceKey(issue, 1).marker]
    for invoice in invoices:
        say(f"  Bitrix24 invoice No. {invoice['accountNumber']} to CRM company {invoice['companyId']}: ")
        for row in invoice["rows"]:
            say(f"    {row['productName']}: {row['quantity']} h x {row['price']:.2f}")
        say(f"    total {invoice['opportunity']:.2f} {invoice['currencyId']}, pay by {invoice['closedate'][:10]}")

    say("\n7. The accountant marks the invoice paid in Bitrix24.")
    for invoice in invoices:
        bx.crm.move_invoice(invoice["id"], "P")
    _sync(config_path, world, say, "notes the payment in the Okdesk issue")

    say("\n8. Vasilek JSC (matched by INN) has an invoice overdue by 10 days; it has an open issue.")
    bx.crm.add_invoice(seeded["crm_vasilek"], 12000, closedate=date.today() - timedelta(days=10))
    debtor_issue = ok.create_issue("Printer offline", "<p>x</p>", company_id=seeded["debtor"], status="in_progress")
    _sync(config_path, world, say, "holds the debtor's issue")
    held = ok.status_of(debtor_issue)
    say(f"  Okdesk issue #{debtor_issue} is now '{held}'")
    say("\n9. Vasilek pays.")
    for invoice in bx.crm.invoices():
        if invoice["companyId"] == seeded["crm_vasilek"]:
            bx.crm.move_invoice(invoice["id"], "P")
    _sync(config_path, world, say, "releases the issue to the status it had")
    say(f"  Okdesk issue #{debtor_issue} is now '{ok.status_of(debtor_issue)}'. Its okbx notes:")
    for comment in ok.comments(debtor_issue):
        say(f"  [internal] {html_to_text(comment['content'])[:110]}".replace("\n", " "))
    notes = [
        html_to_text(c["content"])
        for c in ok.comments(issue)
        if "okbx:invnote" in c["content"] or "okbx:paid" in c["content"]
    ]
    say("Notes in the invoiced issue:")
    for note in notes:
        say(f"  [internal] {note[:110]}".replace("\n", " "))
    checks = {
        "one invoice": len(invoices) == 1,
        "invoice and payment notes": len(notes) == 2,
        "debtor's issue held": held == "debt",
        "and released": ok.status_of(debtor_issue) == "in_progress",
    }
    failed = [name for name, passed in checks.items() if not passed]
    say("\n" + ("The billing story played out as expected." if not failed else f"FAILED checks: {', '.join(failed)}"))
    return not failed


def _routes_story(world: World, workdir: Path, say: Say) -> bool:
    """Issue 14: one issue through the document department's route, then the sales department's."""
    from okbx_emulator.world import DOCS_STATUS, SALES_STATUS

    ok, bx, p = world.okdesk, world.bitrix, world.people
    seeded = world.routes_story()
    billing = {"default_rate": 3000, "rates": {p.bx_olga: 4500}, "round_minutes": 15, "inn_parameter": "inn"}
    config_path = world.write_config(workdir, routes=world.routes(), billing=billing)
    say("\n--- Routes (okbx.yaml now has routes: programmers, documents, sales) ---")
    issue = seeded["issue"]
    say(f"\n10. Issue #{issue} 'Printer prints stripes' is being worked on; the consultant asks the document")
    say("    department to check the equipment under the client's service agreement.")
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant, comment="Is the printer under contract 12/24?")
    _sync(config_path, world, say, "creates a task in the document department's group, listing the equipment")
    (task,) = [t for t in bx.tasks() if t.get("XML_ID") == keys.task_xml_id(issue, "documents")]
    for line in str(task["DESCRIPTION"]).splitlines():
        if line.startswith(("[*]", "[B]Equipment")):
            say(f"    {line.replace('[B]', '').replace('[/B]', '')}")
    say("\n11. The document department answers in the task and completes it.")
    bx.add_comment(int(task["ID"]), p.bx_olga, "Yes: the printer and the laptop are both under contract 12/24.")
    getattr(world, "portal_clock", _Portal()).ahead += 2  # completed two seconds after the answer
    bx.complete_task(int(task["ID"]))
    _sync(config_path, world, say, "the issue returns to the status it had, with the department's result")
    back_from_docs = ok.status_of(issue)
    say(f"  Okdesk issue #{issue} is now '{back_from_docs}'")

    say("\n12. The client wants to buy three more printers: the consultant hands the issue to sales.")
    ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant, comment="Quote for 3 LaserJet M404, please")
    _sync(config_path, world, say, "creates a deal for the client's CRM company; the comment goes to its timeline")
    deals = [d for d in bx.deals.all_deals() if str(d.get("originId", "")).startswith(f"okdesk:{issue}:")]
    for deal in deals:
        say(f"  Bitrix24 deal #{deal['id']} '{deal['title']}'")
        say(f"    for CRM company {deal['companyId']}, contact {deal['contactIds']}, stage {deal['stageId']}")
    say("\n13. The salesperson wins the deal: 120 000 RUB.")
    for deal in deals:
        bx.deals.edit_deal(deal["id"], by_user=p.bx_sales, opportunity=120000)
        bx.deals.move_deal(deal["id"], "WON", by_user=p.bx_sales)
    _sync(config_path, world, say, "one note in the issue, which returns to opened")
    notes = [html_to_text(c["content"]) for c in ok.comments(issue) if "okbx:summary" in c["content"]]
    say("okbx's reports in the issue:")
    for note in notes:
        say(f"  [internal] {note[:110]}".replace("\n", " "))
    checks = {
        "one document task": len([t for t in bx.tasks() if t.get("XML_ID") == task["XML_ID"]]) == 1,
        "back where it was": back_from_docs == "in_progress",
        "one deal": len(deals) == 1,
        "deal won noted": any("Deal won: 120 000 RUB" in n for n in notes),
        "returned to opened": ok.status_of(issue) == "opened",
    }
    failed = [name for name, passed in checks.items() if not passed]
    say("\n" + ("The routes story played out as expected." if not failed else f"FAILED checks: {', '.join(failed)}"))
    return not failed
