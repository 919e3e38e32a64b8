"""In-process emulator of the Okdesk REST API (the part okbx-sync uses), strict on purpose.

It follows /work/shared/api/okdesk.md: bare JSON arrays from list endpoints, summary objects on
`/issues/list` versus full objects on `/issues/{id}`, `api_token` on every call, Russian error
bodies in all three shapes (string, list, field dict), `dd-mm-yyyy HH:MM` filters in the account
offset, page-size caps, allowed status transitions and the time-entry body shape.  A client that
passes its tests against this emulator should not be surprised by a real account.

`EmulatorServer` (okbx_emulator.http) serves an `OkdeskEmulator` over loopback; tests play
the consultant or the client through plain methods (`create_issue`, `set_status`, `add_comment`).
Facts the reference only infers are tagged `# inferred:`; the uncertain ones are constructor options.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, Literal

from okbx_emulator.http import Request, Response
from okbx_emulator.okdesk_equipment import EQUIPMENT_ROUTES, EquipmentBook
from okbx_emulator.okdesk_files import OkdeskFiles

DEFAULT_STATUSES: list[tuple[str, str]] = [
    ("opened", "Открыта"),
    ("in_progress", "В работе"),
    ("delayed", "Отложена"),
    ("completed", "Решена"),
    ("closed", "Закрыта"),
    ("to_programmers", "Передана программистам"),
]
_STATUS_COLORS = {"opened": "#5cb85c", "in_progress": "#337ab7", "delayed": "#f0ad4e", "completed": "#5bc0de"}
_STATUS_COLORS |= {"closed": "#777777", "to_programmers": "#9b59b6"}  # other custom codes: #999999
PRIORITIES = {"low": ("Низкий", "#5bc0de"), "normal": ("Обычный", "#f0ad4e"), "high": ("Высокий", "#d9534f")}
SKIP_OPTIONS = ("skip_notifications", "skip_webhooks", "skip_triggers")
_FINAL_STATUSES = frozenset({"completed", "closed"})
_ISSUE_TYPE = {"id": 1, "code": "service", "name": "Обслуживание", "available_for_client": True}
# inferred: a few more type codes seen in real payloads (crm-billing.md §1.3); ids are ours
ISSUE_TYPES = {"service": (1, "Обслуживание"), "incident": (2, "Инцидент"), "consult": (3, "Консультация")}
_TIMESTAMPS = ("created_at", "updated_at", "completed_at", "deadline_at")
# Parts of Okdesk the emulator does not model: present in every answer, always null or empty.
_ISSUE_NULLS = ["start_execution_until", "planned_reaction_at", "reacted_at", "group_id", "service_object_id"]
_ISSUE_NULLS += ["parent_id", "rate", "assignee", "agreement"]
_ISSUE_LISTS = ["equipment_ids", "child_ids", "coexecutors", "observers", "observer_groups", "attachments"]

_BOOL_FORMS = {"true": True, "1": True, "false": False, "0": False}
_BLANK, _BAD_FORMAT, _NOT_INT = "не может быть пустым", "имеет неверный формат", "должно быть целым числом"

Predicate = Callable[["_Issue"], bool]
Errors = dict[str, Any]  # field -> [messages], or group -> {field -> [messages]}
Body = dict[str, Any]
EntryInput = tuple[int, int, datetime, "str | None"]  # employee_id, minutes, logged_at, comment


class ApiError(Exception):
    """An error answer; `errors` is the string, list or dict Okdesk puts under "errors"."""

    def __init__(self, status: int, errors: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(str(errors))
        self.status, self.errors, self.headers = status, errors, headers or {}


@contextmanager
def _as_value_error() -> Iterator[None]:
    """Human actions share the API's rules but report breaking them as ValueError."""
    try:
        yield
    except ApiError as error:
        raise ValueError(str(error.errors)) from None


@dataclass
class _Person:
    """An employee or a contact (`kind`); comments may be written by either."""

    id: int
    first_name: str
    last_name: str
    kind: str
    email: str = ""
    active: bool = True
    company_id: int | None = None

    @property
    def name(self) -> str:  # inferred: employees read "Last First", contacts "First Last" (doc samples)
        first, last = self.first_name, self.last_name
        return f"{last} {first}" if self.kind == "employee" else f"{first} {last}"

    @property
    def login(self) -> str:  # inferred: the doc sample has login == email
        return self.email or f"employee{self.id}"


@dataclass
class _Issue:
    id: int
    title: str
    description: str
    status: str
    priority: str
    created_at: datetime
    updated_at: datetime
    company_id: int | None = None
    contact_id: int | None = None
    author_employee_id: int | None = None
    deadline_at: datetime | None = None
    completed_at: datetime | None = None
    old_status: str | None = None
    delayed_to: datetime | None = None
    deleted: bool = False
    type: str = "service"
    parameters: dict[str, Any] | None = None  # code -> value, shown as parameters[] (ftstring/ftcheckbox)


@dataclass
class _Comment:
    id: int
    issue_id: int
    content: str
    public: bool
    published_at: datetime
    author_id: int
    author_type: str


@dataclass
class _TimeEntry:
    id: int
    issue_id: int
    employee_id: int
    minutes: int
    logged_at: datetime
    comment: str | None


# -- parsing helpers (pure) ---------------------------------------------------------------------
_FILTER_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})(?: (\d{2}):(\d{2})(?::([0-5]\d))?)?")
_BODY_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?")
_H_MM = re.compile(r"(\d{1,3}):([0-5]\d)")
_HOUR_WORD = r"(?:ч\.?|час(?:а|ов)?)"
_DECIMAL_HOURS = re.compile(rf"(\d{{1,3}}[.,]\d{{1,4}})(?:\s*{_HOUR_WORD})?")
_WORDS = re.compile(rf"(?:(\d{{1,3}})\s*{_HOUR_WORD})?\s*(?:(\d{{1,4}})\s*мин\.?)?")


def _parse_offset(text: str) -> timezone:
    if not re.fullmatch(r"[+-]\d{2}:\d{2}", text):
        raise ValueError(f"utc_offset must look like +03:00, got {text!r}")
    return datetime.strptime(text, "%z").tzinfo  # type: ignore[return-value]


def _utc_ms(moment: datetime) -> datetime:
    """UTC, truncated to the milliseconds Okdesk keeps, so rendered values round-trip exactly."""
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def _aware(moment: datetime | None, what: str) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise ValueError(f"{what} must be a timezone-aware datetime")
    return None if moment is None else _utc_ms(moment)


def _as_int(value: Any) -> int | None:
    """Rails-style coercion: ints and digit strings, never bools."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _flag(data: Body, key: str, errors: Errors) -> bool:
    """An optional boolean field (default false), cast the way Rails casts booleans."""
    value = data.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value) in _BOOL_FORMS:
        return _BOOL_FORMS[str(value)]
    errors[key] = ["должно быть true или false"]
    return False


def _filter_window(text: str, tz: timezone) -> tuple[datetime, datetime] | None:
    """A `dd-mm-yyyy[ HH:MM[:SS]]` filter value as the [start, end) span it names, in the account offset.

    inferred: minute precision, so seconds are dropped and a value names its whole minute (or day);
    `*_since` includes its whole span and so does `*_until`.
    """
    match = _FILTER_DATE.fullmatch(text.strip())
    if not match:
        return None
    day, month, year, hour, minute, _second = match.groups()
    try:
        start = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), tzinfo=tz)
    except ValueError:
        return None
    return start, start + (timedelta(minutes=1) if hour else timedelta(days=1))


def _parse_duration(text: str) -> int | None:
    """Minutes from "2:30", "2,5" / "2.5 часа" (hours) or "2 ч. 30 мин."; None when unrecognised.

    inferred: a bare integer ("30") is refused, since it is ambiguous between hours and minutes.
    """
    text = text.strip()
    if match := _H_MM.fullmatch(text):
        return int(match[1]) * 60 + int(match[2])
    if match := _DECIMAL_HOURS.fullmatch(text):
        return round(float(match[1].replace(",", ".")) * 60)
    if (match := _WORDS.fullmatch(text)) and (match[1] or match[2]):
        return int(match[1] or 0) * 60 + int(match[2] or 0)
    return None


def _parse_body_datetime(value: Any, tz: timezone) -> datetime | None:
    """`YYYY-MM-DD[ HH:MM]` or ISO-8601; naive values are in the account offset."""
    if not isinstance(value, str) or not _BODY_DATETIME.fullmatch(value.strip()):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return _utc_ms(moment if moment.tzinfo else moment.replace(tzinfo=tz))


def _hours(minutes: int) -> float:  # inferred: decimal hours with two places, as in "0.25"
    return round(minutes / 60, 2)


def _page_param(request: Request, name: str, default: int, maximum: int | None, errors: Errors) -> int:
    if (raw := request.query_value(f"page[{name}]")) is None:
        return default
    if (value := _as_int(raw)) is None:
        message = _NOT_INT
    elif value < 1:
        message = "должно быть больше 0"
    elif maximum is not None and value > maximum:
        message = f"должно быть меньше или равно {maximum}"
    else:
        return value
    errors.setdefault("page", {})[name] = [message]
    return default


def _time_bound(attr: str, window: tuple[datetime, datetime], since: bool) -> Predicate:
    """`*_since` keeps issues from the window's start on; `*_until` keeps them up to its end."""
    if since:
        return lambda issue: getattr(issue, attr) >= window[0]
    return lambda issue: getattr(issue, attr) < window[1]


def _choice(request: Request, group: str, name: str, options: tuple[str, ...], errors: Errors, default: str) -> str:
    """`group[name]` among `options`, or `default` when absent; an error entry otherwise."""
    value = request.query_value(f"{group}[{name}]")
    if value is None:
        return default
    if value not in options:
        errors.setdefault(group, {})[name] = [f"должен быть одним из: {', '.join(options)}"]
    return value


def _sorted_issues(issues: list[_Issue], request: Request, errors: Errors) -> list[_Issue]:
    field = _choice(request, "sorting", "field", ("created_at", "updated_at"), errors, default="id")
    direction = _choice(request, "sorting", "direction", ("forward", "reverse"), errors, default="forward")
    order_by = field if field in ("created_at", "updated_at") else "id"
    return sorted(issues, key=lambda i: (getattr(i, order_by), i.id), reverse=direction == "reverse")


_ID = r"(?P<id>[^/]+)"
_ROUTES = [
    (method, re.compile(f"/api/v1/{pattern}"), op, handler)
    for method, pattern, op, handler in [
        ("GET", "issues/list", "GET /issues/list", "_api_list"),
        ("GET", "issues/count", "GET /issues/count", "_api_count"),
        ("GET", "issues/statuses", "GET /issues/statuses", "_api_statuses"),
        ("GET", "employees/list", "GET /employees/list", "_api_employees"),
        ("GET", "companies/list", "GET /companies/list", "_api_companies"),
        ("GET", "companies", "GET /companies", "_api_company"),
        ("GET", f"issues/{_ID}", "GET /issues/{id}", "_api_issue"),
        ("GET", f"issues/{_ID}/comments", "GET /issues/{id}/comments", "_api_comments"),
        ("POST", f"issues/{_ID}/comments", "POST /issues/{id}/comments", "_api_add_comment"),
        ("GET", f"issues/{_ID}/attachments/[^/]+", "GET /issues/{id}/attachments/{id}", "_api_attachment"),
        ("POST", f"issues/{_ID}/statuses", "POST /issues/{id}/statuses", "_api_set_status"),
        ("GET", f"issues/{_ID}/time_entries", "GET /issues/{id}/time_entries", "_api_time_entries"),
        ("POST", f"issues/{_ID}/time_entries", "POST /issues/{id}/time_entries", "_api_add_time_entries"),
        *EQUIPMENT_ROUTES,  # handlers on `self.equipment`
    ]
]


class OkdeskEmulator:
    """One Okdesk account: employees, companies, contacts, issues, comments, time entries, webhooks."""

    def __init__(
        self,
        api_token: str = "demo-okdesk-token",
        *,
        utc_offset: str = "+03:00",
        statuses: list[tuple[str, str]] | None = None,
        transitions: dict[str, set[str]] | None = None,  # None: any status to any other
        time_entry_body: Literal["flat", "wrapped"] = "wrapped",  # inferred: what apepenkov sends
        comment_touches_issue: bool = True,  # inferred: a new comment bumps updated_at
        clock: Callable[[], datetime] | None = None,
        rate_limit_per_second: float | None = None,
        rate_clock: Callable[[], float] = time.monotonic,  # seconds; tests pass their clock's
        token_employee_id: int = 1,  # the employee the api_token belongs to
        comment_required_for: Iterable[str] = ("delayed",),  # doc §4: mandatory for delayed by default
        file_options: dict[str, Any] | None = None,  # attachments: see okdesk_files.OkdeskFiles
    ) -> None:
        pairs = DEFAULT_STATUSES if statuses is None else statuses
        self._statuses = dict(pairs)
        if not pairs or len(self._statuses) != len(pairs) or not all(self._statuses):
            raise ValueError("statuses must be a non-empty list with unique, non-empty codes")
        for source, targets in (transitions or {}).items():
            if unknown := ({source} | set(targets)) - set(self._statuses):
                raise ValueError(f"transitions name unknown status codes: {sorted(unknown)}")
        if time_entry_body not in ("flat", "wrapped"):
            raise ValueError("time_entry_body must be 'flat' or 'wrapped'")
        if rate_limit_per_second is not None and rate_limit_per_second <= 0:
            raise ValueError("rate_limit_per_second must be positive or None")
        self.api_token, self._tz, self._transitions = api_token, _parse_offset(utc_offset), transitions
        self.time_entry_body, self.comment_touches_issue = time_entry_body, comment_touches_issue
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rate = rate_limit_per_second
        self._rate_clock = rate_clock
        self._tokens, self._stamp = max(1.0, 2 * (rate_limit_per_second or 0)), rate_clock()
        self.token_employee_id, self.comment_required_for = token_employee_id, frozenset(comment_required_for)
        self._lock = threading.Lock()  # the server is multi-threaded; every state access goes through it
        self._companies: dict[int, str] = {}
        self._company_extra: dict[int, tuple[str | None, dict[str, Any]]] = {}  # crm_1c_id, parameters
        self._people: dict[str, dict[int, _Person]] = {"employee": {}, "contact": {}}
        self._employees, self._contacts = self._people["employee"], self._people["contact"]
        self._issues: dict[int, _Issue] = {}
        self._comments: dict[int, _Comment] = {}
        self._entries: dict[int, _TimeEntry] = {}
        self._last_id = {"company": 0, "contact": 0, "issue": 0, "comment": 0, "entry": 0}
        self.webhooks: list[dict[str, Any]] = []  # what Okdesk would have POSTed to a webhook URL
        self.files = OkdeskFiles(self, ApiError, **(file_options or {}))  # attachments of issues and comments
        self.equipment = EquipmentBook(  # equipment, its dictionaries, agreements (the document route)
            self._lock, self._now, self._tz, ApiError, company_name=self._companies.get,
            touch_issue=lambda issue_id: setattr(self._live_issue(issue_id), "updated_at", self._now()),
        )  # fmt: skip

    # -- seeding and human actions (not HTTP) -------------------------------------------------
    def add_employee(
        self, first_name: str, last_name: str, email: str = "", active: bool = True, id: int | None = None
    ) -> int:
        with self._lock:
            if not first_name.strip() or not last_name.strip():
                raise ValueError("employee first_name and last_name must be non-empty")
            if id is not None and (id < 1 or id in self._employees):
                raise ValueError(f"employee id {id} is taken or not positive")
            new_id = id if id is not None else max(self._employees, default=0) + 1
            self._employees[new_id] = _Person(new_id, first_name, last_name, "employee", email, active)
            return new_id

    def add_company(self, name: str, *, crm_1c_id: str | None = None, parameters: dict[str, Any] | None = None) -> int:
        """A client company; `parameters` are custom attributes (code -> text), e.g. {"inn": "7701..."}."""
        with self._lock:
            if not name.strip():
                raise ValueError("company name must be non-empty")
            new_id = self._take_id("company")
            self._companies[new_id] = name
            self._company_extra[new_id] = (crm_1c_id, dict(parameters or {}))
            return new_id

    def add_contact(self, first_name: str, last_name: str, company_id: int | None = None) -> int:
        with self._lock:
            if company_id is not None and company_id not in self._companies:
                raise ValueError(f"unknown company_id {company_id}")
            new_id = self._take_id("contact")
            self._contacts[new_id] = _Person(new_id, first_name, last_name, "contact", company_id=company_id)
            return new_id

    def create_issue(
        self,
        title: str,
        description: str = "",
        *,
        company_id: int | None = None,
        contact_id: int | None = None,
        priority: str = "normal",
        deadline_at: datetime | None = None,
        status: str = "opened",
        author_employee_id: int | None = None,
        type: str = "service",
        parameters: dict[str, Any] | None = None,
    ) -> int:
        with self._lock:
            if not title.strip():
                raise ValueError("issue title must be non-empty")
            if type not in ISSUE_TYPES:
                raise ValueError(f"unknown issue type {type!r}")
            if priority not in PRIORITIES or status not in self._statuses:
                raise ValueError(f"unknown priority {priority!r} or status {status!r}")
            known: dict[str, dict[int, Any]] = {
                "company": self._companies,
                "contact": self._contacts,
                "employee": self._employees,
            }
            refs = {"company": company_id, "contact": contact_id, "employee": author_employee_id}
            for kind, ref in refs.items():
                if ref is not None and ref not in known[kind]:
                    raise ValueError(f"unknown {kind} id {ref}")
            if contact_id is not None and company_id is None:
                company_id = self._contacts[contact_id].company_id  # Okdesk fills in the contact's company
            now, deadline = self._now(), _aware(deadline_at, "deadline_at")
            issue = _Issue(self._take_id("issue"), title, description, status, priority, now, now)
            issue.company_id, issue.contact_id, issue.deadline_at = company_id, contact_id, deadline
            issue.author_employee_id, issue.type, issue.parameters = author_employee_id, type, parameters
            issue.completed_at = now if status in _FINAL_STATUSES else None
            self._issues[issue.id] = issue
            return issue.id

    def set_status(
        self,
        issue_id: int,
        code: str,
        *,
        by_employee_id: int,
        comment: str | None = None,
        comment_public: bool = False,
        delay_to: datetime | None = None,
    ) -> None:
        """A consultant's status change: the API's transition rules, without its field requirements."""
        with self._lock, _as_value_error():
            issue = self._live_issue(issue_id)
            if code not in self._statuses:
                raise ValueError(f"unknown status code {code!r}")
            problems: dict[str, Any] = {}
            if (employee_id := self._author(by_employee_id, "employee", problems, "by_employee_id")) is None:
                raise ApiError(422, problems)
            self._check_transition(issue, code)
            self._change_status(issue, code, _aware(delay_to, "delay_to"), webhook=True)
            if comment:
                self._new_comment(issue, comment, employee_id, "employee", comment_public, webhook=False)

    def set_deadline(self, issue_id: int, deadline_at: datetime | None) -> None:
        """A consultant moves the issue's deadline (the UI, or PATCH /issues/{id}/deadlines)."""
        with self._lock:
            issue = self._live_issue(issue_id)
            issue.deadline_at = _aware(deadline_at, "deadline_at")
            issue.updated_at = self._now()

    def add_comment(
        self,
        issue_id: int,
        content_html: str,
        *,
        author_id: int,
        author_type: Literal["employee", "contact"] = "employee",
        public: bool = True,
    ) -> int:
        with self._lock, _as_value_error():
            issue = self._live_issue(issue_id)
            data = {"content": content_html, "author_id": author_id, "author_type": author_type}
            data["public"] = public
            return self._new_comment(issue, *self._comment_input(data), webhook=True).id

    def add_system_comment(self, issue_id: int, content_html: str, *, public: bool = False) -> int:
        """A comment Okdesk writes itself (an automation rule, an e-mail bounce): it has no author.

        inferred: the API docs leave "an automated or system author type" unknown; this emulator
        answers `"author": null` for it, the shape most likely to break a strict parser."""
        with self._lock:
            issue = self._live_issue(issue_id)
            return self._new_comment(issue, content_html, 0, "system", public, webhook=True).id

    def delete_time_entry(self, entry_id: int) -> None:
        """A consultant deletes a time entry in the UI (issue 10: the ledger's --verify notices)."""
        with self._lock:
            if self._entries.pop(entry_id, None) is None:
                raise ValueError(f"no time entry {entry_id}")

    def delete_issue(self, issue_id: int) -> None:
        with self._lock:
            self._live_issue(issue_id).deleted = True

    # -- inspection ---------------------------------------------------------------------------
    def issue_ids(self) -> list[int]:
        """Every issue not deleted (for the playground's look at what Okdesk holds)."""
        with self._lock:
            return sorted(i.id for i in self._issues.values() if not i.deleted)

    def issue(self, issue_id: int) -> dict[str, Any]:
        with self._lock:
            return self._issue_json(self._live_issue(issue_id))

    def comments(self, issue_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [self._comment_json(c) for c in self._comments_of(self._live_issue(issue_id))]

    def time_entries(self, issue_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [self._entry_json(e) for e in self._entries_of(self._live_issue(issue_id))]

    def status_of(self, issue_id: int) -> str:
        with self._lock:
            return self._live_issue(issue_id).status

    # -- EmulatorApp --------------------------------------------------------------------------
    def operation_name(self, request: Request) -> str:
        if self.files.is_link(request):
            return "GET attachment link"
        route = self._route(request)
        return route[0] if route else f"{request.method} {request.path}"

    def handle(self, request: Request) -> Response:
        if (download := self.files.serve_link(request)) is not None:  # a file's temporary link, no token
            return download
        with self._lock:
            try:
                if self._throttled():
                    raise ApiError(429, "Превышен лимит запросов, повторите позже", {"Retry-After": "1"})
                route = self._route(request)
                if route is None:
                    raise ApiError(404, "Not found")  # routing runs before authentication, as in Rails
                if request.query_value("api_token") != self.api_token:
                    raise ApiError(401, "Unauthorized: invalid api_token")
                body = self._body(request) if request.method == "POST" else {}
                return Response.json(200, attrgetter(route[1])(self)(request, route[2], body))
            except ApiError as error:
                return Response.json(error.status, {"errors": error.errors}, headers=error.headers)

    def _throttled(self) -> bool:
        """Token bucket (bursts of twice the rate) on its own clock: a frozen test `clock` cannot stall it."""
        if self._rate is None:
            return False
        now = self._rate_clock()
        self._tokens = min(max(1.0, 2 * self._rate), self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return True
        self._tokens -= 1
        return False

    def _route(self, request: Request) -> tuple[str, str, str | None] | None:
        path = request.path.rstrip("/")
        for method, pattern, op, handler in _ROUTES:
            if method == request.method and (match := pattern.fullmatch(path)):
                return op, handler, match.groupdict().get("id")
        return None

    def _body(self, request: Request) -> dict[str, Any]:
        if not request.body.strip() and request.body_file is None:  # body_file: a large upload
            return {}
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/form-data"):
            return self.files.form(request)  # a comment with files (crm-billing.md §1.5)
        if "json" not in content_type:
            # inferred: form and multipart bodies (attachments) are outside the emulator; refuse loudly
            raise ApiError(400, f"Unsupported Content-Type {content_type!r}: send application/json")
        try:
            data = request.json()
        except ValueError:
            raise ApiError(400, "Invalid JSON in request body") from None
        # Rails files a non-object JSON body under "_json", so the required fields then come up missing
        return data if isinstance(data, dict) else {"_json": data}

    # -- endpoints ----------------------------------------------------------------------------
    def _api_list(self, request: Request, _ref: str | None, _body: Body) -> list[dict[str, Any]]:
        errors: Errors = {}
        predicates = self._issue_filters(request, errors, status_param="status_codes")
        number = _page_param(request, "number", 1, None, errors)
        size = _page_param(request, "size", 50, 50, errors)  # inferred: 50 is the Okdesk maximum
        issues = _sorted_issues(self._matching(predicates), request, errors)
        if errors:
            raise ApiError(400, errors)
        return [self._summary_json(issue) for issue in issues[(number - 1) * size : number * size]]

    def _api_count(self, request: Request, _ref: str | None, _body: Body) -> list[int]:
        errors: Errors = {}
        predicates = self._issue_filters(request, errors, status_param="status")
        if errors:
            raise ApiError(400, errors)
        ids = [issue.id for issue in self._matching(predicates)]
        return sorted(ids, reverse=True)  # newest first, as in the doc sample

    def _api_statuses(self, _request: Request, _ref: str | None, _body: Body) -> list[dict[str, Any]]:
        return [self._status_json(code, color=True) for code in self._statuses]

    def _api_employees(self, request: Request, _ref: str | None, _body: Body) -> list[dict[str, Any]]:
        errors: Errors = {}
        size = _page_param(request, "size", 50, 100, errors)  # inferred: default size 50
        direction = _choice(request, "page", "direction", ("reverse", "forward"), errors, default="reverse")
        from_id = _page_param(request, "from_id", 0, None, errors)  # 0: from the start
        if errors:
            raise ApiError(400, errors)
        ids = sorted(self._employees, reverse=direction == "reverse")
        if from_id:
            ids = [i for i in ids if (i < from_id if direction == "reverse" else i > from_id)]
        return [self._employee_json(self._employees[i]) for i in ids[:size]]

    def _api_companies(self, request: Request, _ref: str | None, _body: Body) -> list[dict[str, Any]]:
        """`/companies/list`: a bare array, cursor paging (`page[from_id]`, default direction reverse)."""
        errors: Errors = {}
        size = _page_param(request, "size", 50, 100, errors)  # doc: at most 100; inferred: default 50
        direction = _choice(request, "page", "direction", ("reverse", "forward"), errors, default="reverse")
        from_id = _page_param(request, "from_id", 0, None, errors)
        if errors:
            raise ApiError(400, errors)
        ids = sorted(self._companies, reverse=direction == "reverse")
        if from_id:
            ids = [i for i in ids if (i < from_id if direction == "reverse" else i > from_id)]
        return [self._company_json(i) for i in ids[:size]]

    def _api_company(self, request: Request, _ref: str | None, _body: Body) -> dict[str, Any]:
        """`/companies/?id=|name=|crm_1c_id=`: ONE company object (doc); inferred: 404 when none matches."""
        if (raw_id := request.query_value("id")) is not None:
            found = [i for i in self._companies if i == _as_int(raw_id)]
        elif (name := request.query_value("name")) is not None:
            found = [i for i, n in self._companies.items() if n == name]  # exact, as documented
        elif (crm_1c_id := request.query_value("crm_1c_id")) is not None:
            found = [i for i, (c, _) in self._company_extra.items() if crm_1c_id in (c or "")]  # substring
        else:
            raise ApiError(400, "Не указаны параметры поиска")  # inferred wording
        if not found:
            raise ApiError(404, "Компания не найдена")  # inferred wording
        return self._company_json(min(found))

    def _company_json(self, company_id: int) -> dict[str, Any]:
        crm_1c_id, parameters = self._company_extra.get(company_id, (None, {}))
        unmodelled = dict.fromkeys(("additional_name", "site", "email", "phone", "address", "comment"))
        return {
            "id": company_id,
            "name": self._companies[company_id],
            **unmodelled,
            "crm_1c_id": crm_1c_id,
            "active": True,
            "coordinates": None,
            "observers": [],
            "contacts": [],
            "default_assignee": None,
            "category": None,
            "attachments": [],
            "parameters": [_parameter_json(code, value) for code, value in parameters.items()],
        }

    def _api_issue(self, _request: Request, ref: str | None, _body: Body) -> dict[str, Any]:
        return self._issue_json(self._issue_ref(ref))

    def _api_comments(self, _request: Request, ref: str | None, _body: Body) -> list[dict[str, Any]]:
        return [self._comment_json(c) for c in self._comments_of(self._issue_ref(ref))]

    def _api_add_comment(self, request: Request, ref: str | None, body: Body) -> dict[str, Any]:
        issue = self._issue_ref(ref)
        data = body.get("comment") if "comment" in body else body  # inferred: Rails wrap_parameters
        uploads = self.files.comment_uploads(request, body, data)
        comment = self._new_comment(issue, *self._comment_input(data), webhook=True)
        self.files.attach(issue.id, comment.id, uploads)
        return self._comment_json(comment)

    def _api_attachment(self, request: Request, ref: str | None, _body: Body) -> dict[str, Any]:
        return self.files.api_attachment(request, ref)

    def _api_set_status(self, _request: Request, ref: str | None, body: Body) -> dict[str, Any]:
        issue, code = self._issue_ref(ref), body.get("code")
        if code in (None, ""):
            raise ApiError(422, {"code": [_BLANK]})
        if not isinstance(code, str) or code not in self._statuses:
            raise ApiError(422, {"code": ["Статус не найден"]})
        self._check_transition(issue, code)
        errors: Errors = {}
        skip = body.get("skip_options") or []
        if not isinstance(skip, list) or any(option not in SKIP_OPTIONS for option in skip):
            errors["skip_options"] = [f"должны быть из: {', '.join(SKIP_OPTIONS)}"]
        comment = body.get("comment")
        if comment is not None and not isinstance(comment, str):
            errors["comment"] = ["должен быть строкой"]
        elif code in self.comment_required_for and not (comment or "").strip():
            errors["comment"] = [_BLANK]
        public = _flag(body, "comment_public", errors)
        delay_to = self._delay_to(code, body.get("delay_to"), errors)
        if not isinstance(body.get("custom_parameters", {}), dict):
            errors["custom_parameters"] = ["должен быть объектом"]
        entries = self._status_time_entries(body.get("time_entry"), errors)
        if errors:
            raise ApiError(422, errors)
        author_id = self._token_employee().id
        self._change_status(issue, code, delay_to, webhook="skip_webhooks" not in skip)
        if comment and comment.strip():  # the form's comment travels in the status webhook, not new_comment
            self._new_comment(issue, comment, author_id, "employee", public, webhook=False)
        for entry in entries:
            self._new_time_entry(issue, *entry)
        return self._issue_json(issue)

    def _api_time_entries(self, _request: Request, ref: str | None, _body: Body) -> dict[str, Any]:
        entries = self._entries_of(self._issue_ref(ref))
        total = _hours(sum(e.minutes for e in entries))
        return {"spent_time_total": total, "time_entries": [self._entry_json(e) for e in entries]}

    def _api_add_time_entries(self, _request: Request, ref: str | None, body: Body) -> dict[str, Any]:
        issue, errors = self._issue_ref(ref), Errors()
        if self.time_entry_body == "flat":
            parsed = [self._entry_input(body, errors)]
        else:
            items = body.get("time_entries")
            if not isinstance(items, list) or not items:
                raise ApiError(422, {"time_entries": [_BLANK]})
            parsed = [self._entry_input(item, errors, f"time_entries[{k}]") for k, item in enumerate(items)]
        if errors:
            raise ApiError(422, errors)
        created = [self._new_time_entry(issue, *entry) for entry in parsed if entry is not None]
        if self.time_entry_body == "flat":
            return self._entry_json(created[0])
        return {"time_entries": [self._entry_json(e) for e in created]}

    # -- validation ---------------------------------------------------------------------------
    def _issue_filters(self, request: Request, errors: Errors, status_param: str) -> list[Predicate]:
        """Filters of /list (`status_codes[]`) and /count (`status[]`); a bare `status_codes` is ignored."""
        predicates: list[Predicate] = []
        if wanted := request.query_values(f"{status_param}[]"):
            predicates.append(lambda issue: issue.status in wanted)
        if unwanted := request.query_values(f"{status_param}_not[]"):
            predicates.append(lambda issue: issue.status not in unwanted)
        if companies := request.query_values("company_ids[]"):
            wanted_ids = {_as_int(c) for c in companies}
            if None in wanted_ids:
                errors["company_ids"] = [_NOT_INT]
            predicates.append(lambda issue: (issue.company_id or 0) in wanted_ids)  # 0: "without a company"
        for key in ("created_since", "created_until", "updated_since", "updated_until"):
            if (raw_value := request.query_value(key)) is None:
                continue
            if (window := _filter_window(raw_value, self._tz)) is None:
                errors[key] = ["Неверный формат даты"]
            else:
                predicates.append(_time_bound(key.split("_")[0] + "_at", window, since=key.endswith("since")))
        if status_param == "status":  # /issues/count: equipment_ids[], agreement_ids[]
            predicates += self.equipment.count_filters(request, errors)
        return predicates

    def _check_transition(self, issue: _Issue, code: str) -> None:
        if code == issue.status:
            raise ApiError(422, "Заявка уже находится в этом статусе")
        if self._transitions is not None and code not in self._transitions.get(issue.status, set()):
            old, new = self._statuses[issue.status], self._statuses[code]
            raise ApiError(422, [f"Переход из статуса «{old}» в статус «{new}» запрещён"])

    def _delay_to(self, code: str, value: Any, errors: Errors) -> datetime | None:
        if code != "delayed":
            return None  # the doc: ignored for other statuses
        moment = _parse_body_datetime(value, self._tz)
        if moment is None:
            errors["delay_to"] = [_BLANK if value in (None, "") else _BAD_FORMAT]
        return moment

    def _comment_input(self, data: Any) -> tuple[str, int, str, bool]:
        """(content, author_id, author_type, public) of a comment body, or a 422."""
        if not isinstance(data, dict):
            raise ApiError(422, {"comment": ["должен быть объектом"]})
        errors: Errors = {}
        content = data.get("content")
        if not isinstance(content, str) or not content.strip():
            errors["content"] = [_BLANK]
        author_type, author_id = data.get("author_type", "employee"), None
        if author_type in ("employee", "contact"):
            author_id = self._author(data.get("author_id"), author_type, errors, "author_id")
        else:
            errors["author_type"] = ["должен быть одним из: employee, contact"]
        # inferred: clients cannot write internal comments, so a contact's comment is always public
        public = _flag(data, "public", errors) or author_type == "contact"
        if errors or author_id is None or not isinstance(content, str):
            raise ApiError(422, errors)
        return content, author_id, author_type, public

    def _status_time_entries(self, value: Any, errors: Errors) -> list[EntryInput]:
        """`time_entry` of a status change: employee defaults to the token's, logged_at to now."""
        if not isinstance(value, list | None):
            errors["time_entry"] = ["должен быть массивом"]
        entries = []
        for k, item in enumerate(value if isinstance(value, list) else []):
            defaults: dict[str, Any] = {"logged_at": self._ts(self._now())}
            if isinstance(item, dict) and "employee_id" not in item:
                defaults["employee_id"] = self._token_employee().id
            data = defaults | item if isinstance(item, dict) else item
            entries.append(self._entry_input(data, errors, f"time_entry[{k}]"))
        return [entry for entry in entries if entry is not None]

    def _entry_input(self, data: Any, errors: Errors, prefix: str = "") -> EntryInput | None:
        """One time entry, or None with `errors` filled; `prefix` names its place in a list."""

        def key(name: str) -> str:
            return f"{prefix}[{name}]" if prefix else name

        if not isinstance(data, dict):
            errors[prefix or "time_entry"] = ["должен быть объектом"]
            return None
        employee_id = self._author(data.get("employee_id"), "employee", errors, key("employee_id"))
        minutes = self._duration(data.get("formatted_spent_time"), errors, key("formatted_spent_time"))
        logged_at = _parse_body_datetime(raw := data.get("logged_at"), self._tz)
        if logged_at is None:
            errors[key("logged_at")] = [_BLANK if raw in (None, "") else _BAD_FORMAT]
        if (comment := data.get("comment")) is not None and not isinstance(comment, str):
            errors[key("comment")] = ["должен быть строкой"]
        if not isinstance(comment, str | None) or employee_id is None or minutes is None or logged_at is None:
            return None
        return employee_id, minutes, logged_at, comment

    @staticmethod
    def _duration(value: Any, errors: Errors, key: str) -> int | None:
        minutes = _parse_duration(value) if isinstance(value, str) else None
        if minutes is not None and minutes > 0:
            return minutes
        if value in (None, ""):
            errors[key] = [_BLANK]
        else:
            errors[key] = [_BAD_FORMAT if minutes is None else "должно быть больше 0"]
        return None

    def _author(self, raw_id: Any, kind: str, errors: Errors, key: str) -> int | None:
        """The id of an existing person allowed to write, or None with the reason in `errors[key]`."""
        author_id = _as_int(raw_id)
        person = None if author_id is None else self._people[kind].get(author_id)
        if raw_id in (None, ""):
            problem = _BLANK
        elif author_id is None:
            problem = _NOT_INT
        elif person is None:
            problem = "Сотрудник не найден" if kind == "employee" else "Контакт не найден"
        elif not person.active:
            problem = "Сотрудник заблокирован"  # a deactivated employee may no longer act
        else:
            return author_id
        errors[key] = [problem]
        return None

    # -- state changes ------------------------------------------------------------------------
    def _change_status(self, issue: _Issue, code: str, delay_to: datetime | None, webhook: bool) -> None:
        now = self._now()
        issue.old_status, issue.status, issue.updated_at = issue.status, code, now
        issue.delayed_to = delay_to if code == "delayed" else None
        # inferred: completed_at is stamped on entering a final status and cleared on reopening
        issue.completed_at = (issue.completed_at or now) if code in _FINAL_STATUSES else None
        if webhook:
            self.webhooks.append({"event_type": "new_ticket_status", "issue_id": issue.id, "new_status": code})

    def _new_comment(
        self, issue: _Issue, content: str, author_id: int, author_type: str, public: bool, webhook: bool
    ) -> _Comment:
        now, comment_id = self._now(), self._take_id("comment")
        comment = _Comment(comment_id, issue.id, content, public, now, author_id, author_type)
        self._comments[comment_id] = comment
        if self.comment_touches_issue:
            issue.updated_at = now
        if webhook:
            event = {"event_type": "new_comment", "issue_id": issue.id, "comment_id": comment_id}
            self.webhooks.append(event | {"author_id": author_id, "author_type": author_type})
        return comment

    def _new_time_entry(
        self, issue: _Issue, employee_id: int, minutes: int, logged_at: datetime, comment: str | None
    ) -> _TimeEntry:
        entry = _TimeEntry(self._take_id("entry"), issue.id, employee_id, minutes, logged_at, comment)
        self._entries[entry.id] = entry
        issue.updated_at = self._now()
        return entry

    # -- lookups ------------------------------------------------------------------------------
    def _take_id(self, kind: str) -> int:
        self._last_id[kind] += 1
        return self._last_id[kind]

    def clock_now(self) -> datetime:
        """The emulated server's clock (its HTTP Date header follows it)."""
        return self._clock()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("clock() must return a timezone-aware datetime")
        return _utc_ms(now)

    def _live_issue(self, issue_id: int) -> _Issue:
        issue = self._issues.get(issue_id)
        if issue is None or issue.deleted:
            raise ValueError(f"no issue {issue_id} (unknown or deleted)")
        return issue

    def _issue_ref(self, ref: str | None) -> _Issue:
        issue = self._issues.get(int(ref)) if ref and ref.isdigit() else None
        if issue is None or issue.deleted:
            raise ApiError(404, "Заявка не найдена")
        return issue

    def _token_employee(self) -> _Person:
        employee = self._employees.get(self.token_employee_id)
        if employee is None:  # a setup mistake in the test, not an API answer: make it obvious
            raise ApiError(500, f"emulator: token employee {self.token_employee_id} missing; call add_employee()")
        return employee

    def _matching(self, predicates: list[Predicate]) -> list[_Issue]:
        return [i for i in self._issues.values() if not i.deleted and all(p(i) for p in predicates)]

    def _comments_of(self, issue: _Issue) -> list[_Comment]:
        return [c for c in self._comments.values() if c.issue_id == issue.id]  # dicts keep creation order

    def _entries_of(self, issue: _Issue) -> list[_TimeEntry]:
        return [e for e in self._entries.values() if e.issue_id == issue.id]

    # -- JSON rendering -----------------------------------------------------------------------
    def _ts(self, moment: datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(self._tz).isoformat(timespec="milliseconds")

    def _timestamps(self, issue: _Issue) -> dict[str, str | None]:
        return {key: self._ts(getattr(issue, key)) for key in _TIMESTAMPS}

    def _status_json(self, code: str, color: bool = False) -> dict[str, Any]:
        status = {"code": code, "name": self._statuses[code]}
        return (status | {"color": _STATUS_COLORS.get(code, "#999999")}) if color else status

    @staticmethod
    def _person(person: _Person | None) -> dict[str, Any] | None:
        return None if person is None else {"id": person.id, "name": person.name}

    def _summary_json(self, issue: _Issue) -> dict[str, Any]:
        """A `/issues/list` item: nested company and contact, colours, no description and no assignee."""
        priority_name, priority_color = PRIORITIES[issue.priority]
        company = self._companies.get(issue.company_id or 0)
        return {
            "id": issue.id,
            "title": issue.title,
            **self._timestamps(issue),
            "planned_reaction_at": None,
            "reacted_at": None,
            "delay_to": self._ts(issue.delayed_to),  # named delay_to here, delayed_to in the full issue
            "status": self._status_json(issue.status, color=True),
            "type": {"code": issue.type, "name": ISSUE_TYPES[issue.type][1]},
            "priority": {"code": issue.priority, "name": priority_name, "color": priority_color},
            "company": None if company is None else {"id": issue.company_id, "name": company},
            "contact": self._person(self._contacts.get(issue.contact_id or 0)),
            "service_object": None,
            "agreement": None,
            "equipments": [],
            **self.equipment.summary_fields(issue.id),
        }

    def _issue_json(self, issue: _Issue) -> dict[str, Any]:
        """The full `GET /issues/{id}` object (also the answer to a status change)."""
        comments = self._comments_of(issue)
        contact = self._contacts.get(issue.contact_id or 0)
        return {
            "id": issue.id,
            "title": issue.title,
            "description": issue.description,
            **self._timestamps(issue),
            **dict.fromkeys(_ISSUE_NULLS),
            **{key: [] for key in _ISSUE_LISTS},
            "attachments": self.files.issue_json(issue.id),
            "delayed_to": self._ts(issue.delayed_to),
            "source": "from_employee" if issue.author_employee_id else "from_client",  # inferred value names
            "spent_time_total": _hours(sum(e.minutes for e in self._entries_of(issue))),
            "company_id": issue.company_id,
            "type": _ISSUE_TYPE
            | {"id": ISSUE_TYPES[issue.type][0], "code": issue.type, "name": ISSUE_TYPES[issue.type][1]},
            "parameters": [_parameter_json(code, value) for code, value in (issue.parameters or {}).items()],
            "priority": {"code": issue.priority, "name": PRIORITIES[issue.priority][0]},
            "status": self._status_json(issue.status),
            "old_status": self._status_json(issue.old_status) if issue.old_status else None,
            "status_times": {},
            "author": self._person(self._employees.get(issue.author_employee_id or 0) or contact),
            "contact": self._person(contact),
            "comments": {
                "count": len(comments),
                "last_at": self._ts(comments[-1].published_at) if comments else None,
            },
            **self.equipment.issue_fields(issue.id),  # equipment_ids, agreement
        }

    def _comment_json(self, comment: _Comment) -> dict[str, Any]:
        people: dict[int, Any] = self._contacts if comment.author_type == "contact" else self._employees
        author = people.get(comment.author_id) if comment.author_type != "system" else None
        return {
            "id": comment.id,
            "content": comment.content,
            "public": comment.public,
            "published_at": self._ts(comment.published_at),
            "author": {"id": author.id, "name": author.name, "type": comment.author_type} if author else None,
            "attachments": self.files.comment_json(comment.id),
        }

    def _entry_json(self, entry: _TimeEntry) -> dict[str, Any]:
        employee = self._employees[entry.employee_id]
        return {
            "id": entry.id,
            "comment": entry.comment,
            "spent_time": _hours(entry.minutes),
            "logged_at": self._ts(entry.logged_at),
            "employee": {"id": employee.id, "login": employee.login, "name": employee.name},
            "parameters": [],
        }

    def _employee_json(self, employee: _Person) -> dict[str, Any]:
        fields = ("id", "first_name", "last_name", "active", "email", "login")
        unmodelled = dict.fromkeys(("patronymic", "position", "phone", "telephony_number", "comment"), "")
        return {key: getattr(employee, key) for key in fields} | unmodelled | {"groups": [], "roles": []}


def _parameter_json(code: str, value: Any) -> dict[str, Any]:
    """A custom attribute as Okdesk shows it: {code, name, field_type, value} (doc §1.1)."""
    field_type = "ftcheckbox" if isinstance(value, bool) else "ftstring"
    return {"code": code, "name": code, "field_type": field_type, "value": value}
