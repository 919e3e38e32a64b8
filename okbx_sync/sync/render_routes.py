"""The words of the routes beyond the programmers': the document task's description, a deal's
title, description and result, notes about moves.  Pure functions; user text neutralised as in
render.py (BB-code into Bitrix24, plain text into okbx's Okdesk notes, which escape it)."""

from __future__ import annotations

from decimal import Decimal

from ..clients.okdesk_equipment_parse import Equipment
from ..markup import MAX_LINE, MAX_NAME, html_to_text, neutralise_bbcode, one_line
from ..model import Issue
from .render import task_description, task_title
from .snapshot import EquipmentSheet


def _bb(text: str, limit: int = MAX_NAME) -> str:
    return neutralise_bbcode(one_line(text, limit)) or "—"


def _piece(equipment: Equipment) -> str:
    kind = equipment.kind.name if equipment.kind else "—"
    model = " ".join(r.name for r in (equipment.manufacturer, equipment.model) if r is not None and r.name) or "—"
    return (
        f"[*] #{equipment.id} {_bb(kind)}, model {_bb(model)}, serial No. {_bb(equipment.serial_number or '—')}, "
        f"inventory No. {_bb(equipment.inventory_number or '—')}"
    )


def equipment_description(issue: Issue, okdesk_url: str, sheet: EquipmentSheet | None) -> str:
    """The issue as usual, then the equipment of the issue and the company's equipment under the
    issue's service agreement, each with kind, model, serial and inventory numbers."""
    lines = [task_description(issue, okdesk_url), ""]
    if sheet is None:
        return "\n".join([*lines, "[B]Equipment:[/B] not known (the issue lists none)"])
    lines.append("[B]Equipment of the issue:[/B]")
    lines += ["[LIST]", *(_piece(e) for e in sheet.on_issue), "[/LIST]"] if sheet.on_issue else ["none"]
    if sheet.agreement is None:
        lines.append("[B]Service agreement:[/B] none on the issue")
    else:
        lines.append(f"[B]Equipment under the service agreement {_bb(sheet.agreement.title)}:[/B]")
        listed = sheet.under_agreement
        lines += ["[LIST]", *(_piece(e) for e in listed), "[/LIST]"] if listed else ["none"]
    return "\n".join(lines)


def deal_title(issue: Issue) -> str:
    return task_title(issue)


def deal_comments(issue: Issue, okdesk_url: str) -> str:
    return task_description(issue, okdesk_url)


def money(amount: Decimal | None, currency: str) -> str:
    """120000 -> "120 000 RUB" (a space between thousands, kopecks only when there are any)."""
    value = amount or Decimal(0)
    whole = f"{value:,.2f}".replace(",", " ").removesuffix(".00")
    return f"{whole} {currency}".strip()


def deal_result(won: bool, amount: Decimal | None, currency: str, stage_name: str, deal_id: int) -> str:
    if won:
        return f"Deal won: {money(amount, currency)} (Bitrix24 deal #{deal_id})."
    return f"Deal lost: {one_line(stage_name, MAX_NAME)} (Bitrix24 deal #{deal_id})."


def result_note(heading: str, result: str | None, footer: str) -> str:
    """A report of a route that copies no time: what happened and the department's result."""
    lines = [heading]
    if result:
        lines.append(f"Result: {one_line(html_to_text(result), MAX_LINE * 4)}")
    if footer:
        lines.append(footer)
    return "\n".join(lines)


def moved_note(route: str, kind: str, status_name: str, *, reported: bool) -> str:
    text = (
        f"The Okdesk issue moved to route {route} (status '{one_line(status_name, MAX_NAME)}'); okbx stopped "
        f"syncing this {kind} for it."
    )
    return text + (" The time logged here until now is copied to the issue." if reported else "")
