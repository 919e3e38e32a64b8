"""Pure parsers from Okdesk JSON (../shared/api/okdesk.md) to our model."""

from __future__ import annotations

from typing import Any

from ..model import Agreement, Comment, Company, Issue, Person, TimeEntry
from .files_parse import parse_attachments
from .parse import ParseError, integer, items, number, obj, opt_integer, text, timestamp


def _named(value: Any, what: str) -> str | None:
    if value in (None, [], {}):
        return None
    data = obj(value, what)
    return text(data, "name", what, default="") or None


def parse_issue(raw: Any) -> Issue:
    """Both the full issue and the /issues/list summary (which has company/contact objects)."""
    data = obj(raw, "issue")
    what = f"issue {data.get('id', '?')}"
    status = obj(data.get("status"), f"{what}.status")
    priority = data.get("priority")
    company = obj(data.get("company"), f"{what}.company") if data.get("company") not in (None, []) else {}
    company_id = opt_integer(data, "company_id", what) or opt_integer(company, "id", f"{what}.company")
    return Issue(
        id=integer(data, "id", what),
        title=text(data, "title", what, default=""),
        status=text(status, "code", f"{what}.status"),
        updated_at=timestamp(data, "updated_at", what),
        description_html=text(data, "description", what, default=""),
        company=_named(data.get("company"), f"{what}.company"),
        contact=_named(data.get("contact"), f"{what}.contact"),
        priority=_named(priority, f"{what}.priority"),
        deadline_at=timestamp(data, "deadline_at", what),
        company_id=company_id,
        type_code=_code(data.get("type"), f"{what}.type"),
        priority_code=_code(priority, f"{what}.priority"),
        parameters=parse_parameters(data.get("parameters"), what),
        # `delayed_to` in the full issue, `delay_to` in the list (okdesk.md)
        delayed_to=timestamp(data, "delayed_to", what) or timestamp(data, "delay_to", what),
        equipment_ids=parse_equipment_ids(data, what),
        agreement=parse_agreement(data.get("agreement"), f"{what}.agreement"),
        contact_id=_ref_id(data.get("contact"), f"{what}.contact"),
        attachments=tuple(parse_attachments(data.get("attachments"), what)),
        # the status before this one (okdesk.md 3: the full issue carries it): where `previous` returns
        old_status=_code(data.get("old_status"), f"{what}.old_status"),
    )


def parse_equipment_ids(data: dict[str, Any], what: str) -> tuple[int, ...] | None:
    """`equipment_ids: [int]` in the full issue, `equipments: [{id, ...}]` in list items and webhooks
    (routes-files.md §5.1); None when the answer carries neither (not the same as "none")."""
    if data.get("equipment_ids") is not None:
        ids = items(data["equipment_ids"], f"{what}.equipment_ids")
        return tuple(integer({"equipment_ids[]": v}, "equipment_ids[]", what) for v in ids)
    if data.get("equipments") is not None:
        found = [obj(e, f"{what}.equipments[]") for e in items(data["equipments"], f"{what}.equipments")]
        return tuple(integer(e, "id", f"{what}.equipments[]") for e in found)
    return None


def parse_agreement(raw: Any, what: str) -> Agreement | None:
    if raw in (None, [], {}):
        return None
    data = obj(raw, what)
    return Agreement(integer(data, "id", what), text(data, "title", what, default=""))


def _ref_id(value: Any, what: str) -> int | None:
    return None if value in (None, [], {}) else opt_integer(obj(value, what), "id", what)


def _code(value: Any, what: str) -> str | None:
    if value in (None, [], {}):
        return None
    return text(obj(value, what), "code", what, default="") or None


def parse_parameters(raw: Any, what: str) -> tuple[tuple[str, object], ...]:
    """Custom attributes `[{code, name, field_type, value}]` (issues and companies alike)."""
    if raw in (None, [], {}):
        return ()
    result = []
    for item in items(raw, f"{what}.parameters"):
        data = obj(item, f"{what}.parameters[]")
        result.append((text(data, "code", f"{what}.parameters[]"), data.get("value")))
    return tuple(result)


def parse_company(raw: Any) -> Company:
    data = obj(raw, "company")
    what = f"company {data.get('id', '?')}"
    return Company(
        id=integer(data, "id", what),
        name=text(data, "name", what, default=""),
        parameters=parse_parameters(data.get("parameters"), what),
    )


def parse_companies(raw: Any) -> list[Company]:
    if not isinstance(raw, list):  # a bare array, like every Okdesk list
        raise ParseError(f"company list: expected a list, got {type(raw).__name__}")
    return [parse_company(item) for item in raw]


def parse_issue_list(raw: Any) -> list[Issue]:
    if not isinstance(raw, list):  # Okdesk answers a bare array; `{}` is not "no issues"
        raise ParseError(f"issue list: expected a list, got {type(raw).__name__}")
    return [parse_issue(item) for item in raw]


def parse_comment(raw: Any, issue_id: int) -> Comment:
    data = obj(raw, "comment")
    what = f"issue {issue_id} comment {data.get('id', '?')}"
    public = data.get("public")
    if not isinstance(public, bool):
        raise ParseError(f"{what}.public: expected true or false, got {public!r}")
    return Comment(
        id=integer(data, "id", what),
        issue_id=issue_id,
        content_html=text(data, "content", what, default=""),
        public=public,
        published_at=timestamp(data, "published_at", what),
        author=_comment_author(data.get("author"), f"{what}.author"),
        attachments=tuple(parse_attachments(data.get("attachments"), what, integer(data, "id", what))),
    )


SYSTEM_AUTHOR = "system"


def _comment_author(raw: Any, what: str) -> Person:
    """The comment's author; a comment Okdesk wrote itself may have none (`null`, `{}` or no id:
    the docs leave "an automated or system author type" unknown), and is then "system", never a
    person, so that one such comment cannot break the whole list or pass for a consultant's."""
    author = obj(raw, what) if raw is not None else {}
    if author.get("id") in (None, "", 0, "0"):
        return Person(id=0, name=text(author, "name", what, default="") or SYSTEM_AUTHOR, kind=SYSTEM_AUTHOR)
    return Person(
        id=integer(author, "id", what),
        name=text(author, "name", what, default=""),
        kind=text(author, "type", what, default="employee"),
    )


def parse_comments(raw: Any, issue_id: int) -> list[Comment]:
    return [parse_comment(item, issue_id) for item in items(raw, f"issue {issue_id} comments")]


def parse_time_entries(raw: Any, issue_id: int) -> list[TimeEntry]:
    # Documented as {"time_entries": [...]}; a bare list is tolerated (one client parses it so).
    entries = raw if isinstance(raw, list) else obj(raw, "time entries").get("time_entries", [])
    result = []
    for item in items(entries, f"issue {issue_id} time_entries"):
        data = obj(item, "time entry")
        what = f"issue {issue_id} time entry {data.get('id', '?')}"
        employee = data.get("employee")
        result.append(
            TimeEntry(
                id=integer(data, "id", what),
                issue_id=issue_id,
                employee_id=opt_integer(obj(employee, f"{what}.employee"), "id", what) if employee else None,
                spent_hours=number(data, "spent_time", what),
                comment=text(data, "comment", what, default=""),
            )
        )
    return result


def parse_statuses(raw: Any) -> list[tuple[str, str]]:
    result = []
    for item in items(raw, "statuses"):
        data = obj(item, "status")
        result.append((text(data, "code", "status"), text(data, "name", "status", default="")))
    return result
