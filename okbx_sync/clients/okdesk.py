"""Okdesk REST client: a thin set of verbs returning our model objects.

Facts used (../shared/api/okdesk.md): `api_token` in the query of every call (masked in
every message), JSON bodies, `{"errors": ...}` in three shapes, `/issues/list` paged by
`page[number]`/`page[size]` (max 50, inferred), filters in `dd-mm-yyyy HH:MM` of the account's
time zone, comments wrapped as {"comment": {...}}, status changes flat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ..clock import REAL_CLOCK, Clock
from ..config import OkdeskConfig
from ..errors import ApiError, MalformedResponse, NotFound
from ..model import Comment, Company, Issue, TimeEntry
from ..secrets import Redactor
from ..timeutil import format_duration, okdesk_filter_time, okdesk_logged_at, parse_timezone
from .http import (
    Downloaded,
    HttpAnswer,
    RequestBudget,
    RetryPolicy,
    Sink,
    Throttle,
    Transport,
    flatten_errors,
)
from .okdesk_parse import (
    parse_comment,
    parse_comments,
    parse_companies,
    parse_company,
    parse_issue,
    parse_issue_list,
    parse_statuses,
    parse_time_entries,
)
from .parse import ParseError

log = logging.getLogger(__name__)
SYSTEM = "Okdesk"
PAGE_SIZE = 50  # inferred maximum of /issues/list


def _classify(status: int, body: Any) -> str:
    # Okdesk documents no rate limit; 429 is treated as "not executed, slow down" (inferred).
    return "retry" if status == 429 else "ok"


class OkdeskClient:
    def __init__(
        self,
        config: OkdeskConfig,
        redactor: Redactor,
        *,
        budget: RequestBudget | None = None,
        backoff_seconds: float = 1.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.config = config
        self.base = config.url.rstrip("/") + "/api/v1"
        self.transport = Transport(
            SYSTEM,
            throttle=Throttle(
                config.requests_per_second,
                max(1, int(config.requests_per_second * 2)),
                clock=clock.monotonic,
                sleep=clock.sleep,
            ),
            redactor=redactor,
            timeout=(5.0, config.timeout_seconds),
            classify=_classify,
            policy=RetryPolicy(backoff_seconds=backoff_seconds),
            budget=budget,
            sleep=clock.sleep,
        )
        self._tz: tzinfo | None = parse_timezone(config.timezone) if config.timezone else None

    def server_skew(self, now: datetime) -> float | None:
        """Seconds the server's clock is ahead of `now` (negative: behind), from its last answer."""
        return self.transport.server_skew(now)

    # -- plumbing ------------------------------------------------------------------------
    def _call(
        self,
        http_method: str,
        path: str,
        op: str,
        *,
        params: list[tuple[str, Any]] | None = None,
        body: Any = None,
        write: bool = False,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        query = [("api_token", self.config.api_token.reveal()), *(params or [])]
        answer = self.transport.request(
            http_method, self.base + path, op, params=query, body=body, write=write, data=data, headers=headers
        )
        return self._check(answer, op)

    def call(self, http_method: str, path: str, op: str, **kwargs: Any) -> Any:
        """One API call (`/api/v1` + `path`, the token added), for the verbs of other modules
        (files): same transport, budget and retry policy.  `data`: a streamed body, a write."""
        return self._call(http_method, path, op, **kwargs)

    def download(self, url: str, op: str, sink: Sink, *, max_bytes: int | None) -> Downloaded:
        """Stream a file from a link Okdesk gave (no token added: the link is its own pass)."""
        return self.transport.download(url, op, sink, max_bytes=max_bytes, headers={"Accept": "*/*"})

    def read(self, path: str, op: str, params: list[tuple[str, Any]] | None = None) -> Any:
        """A GET of any documented path, for the verbs built on this client (equipment)."""
        return self._call("GET", path, op, params=params)

    def _check(self, answer: HttpAnswer, op: str) -> Any:
        body = answer.body
        # Server messages may quote the request (token included): scrub them like our own.
        text = self.transport.redact(_errors_text(body))
        if answer.status == 404:
            raise NotFound(SYSTEM, op, text or "not found", status=404)
        if answer.status >= 400:
            raise ApiError(SYSTEM, op, text or "request rejected", status=answer.status)
        if isinstance(body, dict) and "errors" in body:
            raise ApiError(SYSTEM, op, text, status=answer.status)
        return body

    def _parse(self, op: str, parser: Callable[..., Any], *args: Any) -> Any:
        try:
            return parser(*args)
        except ParseError as exc:
            raise MalformedResponse(SYSTEM, op, str(exc)) from None

    @property
    def requests_sent(self) -> int:
        return self.transport.requests_sent

    def close(self) -> None:
        self.transport.close()

    def account_tz(self) -> tzinfo | None:
        return self._tz

    def learned_offset(self) -> str | None:
        """The account's UTC offset as '+07:00', once a timestamp has shown it (for the store)."""
        offset = self._tz.utcoffset(None) if self._tz is not None else None
        if offset is None:
            return None
        minutes = int(offset.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"

    def assume_offset(self, offset: str) -> None:
        """A zone learned by an earlier run (state store meta): a fresh process need not widen
        its first `updated_since` window by 14 hours.  The configured zone still wins."""
        if self._tz is None:
            self._tz = parse_timezone(offset)

    def _learn_tz(self, issues: list[Issue]) -> None:
        # Okdesk writes timestamps in the account's zone; filters are read in that zone too.
        if self._tz is None:
            for issue in issues:
                if issue.updated_at is not None:
                    self._tz = issue.updated_at.tzinfo
                    return

    # -- issues --------------------------------------------------------------------------
    def list_issues(
        self,
        *,
        status_codes: list[str] | None = None,
        updated_since: datetime | None = None,
        company_ids: list[int] | None = None,
    ) -> list[Issue]:
        op = "GET /issues/list"
        params: list[tuple[str, Any]] = [("status_codes[]", code) for code in status_codes or []]
        params += [("company_ids[]", int(company_id)) for company_id in company_ids or []]
        if updated_since is not None:
            tz = self._tz
            if tz is None:
                # Zone not learned yet (no issue seen): a window 14 h wider than asked, read as
                # UTC, covers every possible account offset, so nothing is missed.
                updated_since, tz = updated_since - timedelta(hours=14), UTC
            params.append(("updated_since", okdesk_filter_time(updated_since, tz)))
        result: list[Issue] = []
        seen: set[int] = set()
        page = 1
        while True:
            batch = self.list_issues_page(params, page)
            result.extend(i for i in batch if i.id not in seen)
            seen.update(i.id for i in batch)
            if len(batch) < PAGE_SIZE:
                return result
            page += 1
            if page > 10000:
                raise MalformedResponse(SYSTEM, op, "paging does not end")

    def list_issues_page(self, params: list[tuple[str, Any]], page: int, size: int = PAGE_SIZE) -> list[Issue]:
        op = "GET /issues/list"
        raw = self._call("GET", "/issues/list", op, params=[*params, ("page[size]", size), ("page[number]", page)])
        issues: list[Issue] = self._parse(op, parse_issue_list, raw)
        self._learn_tz(issues)
        return issues

    def get_issue(self, issue_id: int) -> Issue:
        op = "GET /issues/{id}"
        issue: Issue = self._parse(op, parse_issue, self._call("GET", f"/issues/{int(issue_id)}", op))
        if issue.id != int(issue_id):
            raise MalformedResponse(SYSTEM, op, f"asked for issue {issue_id}, the answer is about issue {issue.id}")
        self._learn_tz([issue])
        return issue

    def change_status(
        self,
        issue_id: int,
        code: str,
        *,
        comment_html: str | None = None,
        public: bool = False,
        delay_to: datetime | None = None,
    ) -> Issue:
        op = "POST /issues/{id}/statuses"
        # skip_webhooks: our own change must not echo back to other integrations as an event.
        body: dict[str, Any] = {"code": code, "skip_options": ["skip_webhooks"]}
        if delay_to is not None:  # required for `delayed` only, ignored otherwise (crm-billing.md 1.7)
            body["delay_to"] = delay_to.isoformat()
        if comment_html is not None:  # written by the token's employee, together with the change
            body.update({"comment": comment_html, "comment_public": public})
        raw = self._call("POST", f"/issues/{int(issue_id)}/statuses", op, body=body, write=True)
        issue: Issue = self._parse(op, parse_issue, raw)
        return issue

    def list_statuses_dated(self) -> tuple[list[tuple[str, str]], str | None]:
        """The statuses and the answer's HTTP Date header (doctor compares the clocks with it)."""
        op = "GET /issues/statuses"
        query = [("api_token", self.config.api_token.reveal())]
        answer = self.transport.request("GET", self.base + "/issues/statuses", op, params=query, write=False)
        statuses: list[tuple[str, str]] = self._parse(op, parse_statuses, self._check(answer, op))
        return statuses, answer.headers.get("date")

    def list_statuses(self) -> list[tuple[str, str]]:
        op = "GET /issues/statuses"
        result: list[tuple[str, str]] = self._parse(op, parse_statuses, self._call("GET", "/issues/statuses", op))
        return result

    # -- comments ------------------------------------------------------------------------
    def list_comments(self, issue_id: int) -> list[Comment]:
        op = "GET /issues/{id}/comments"
        raw = self._call("GET", f"/issues/{int(issue_id)}/comments", op)
        comments: list[Comment] = self._parse(op, parse_comments, raw, issue_id)
        return comments

    def add_comment(self, issue_id: int, content_html: str, *, public: bool) -> Comment:
        op = "POST /issues/{id}/comments"
        body = {
            "comment": {
                "content": content_html,
                "author_id": self.config.bot_employee_id,
                "author_type": "employee",
                "public": public,
            }
        }
        raw = self._call("POST", f"/issues/{int(issue_id)}/comments", op, body=body, write=True)
        comment: Comment = self._parse(op, parse_comment, raw, issue_id)
        return comment

    # -- time entries --------------------------------------------------------------------
    def list_time_entries(self, issue_id: int) -> list[TimeEntry]:
        op = "GET /issues/{id}/time_entries"
        raw = self._call("GET", f"/issues/{int(issue_id)}/time_entries", op)
        entries: list[TimeEntry] = self._parse(op, parse_time_entries, raw, issue_id)
        return entries

    def add_time_entry(
        self, issue_id: int, *, employee_id: int, seconds: int, logged_at: datetime, comment: str
    ) -> None:
        op = "POST /issues/{id}/time_entries"
        entry = {
            "employee_id": employee_id,
            "formatted_spent_time": format_duration(seconds),
            "logged_at": okdesk_logged_at(logged_at, self._tz or logged_at.tzinfo),  # type: ignore[arg-type]
            "comment": comment,
        }
        mode = self.config.time_entry_body
        path = f"/issues/{int(issue_id)}/time_entries"
        wrapped = {"time_entries": [entry]}
        if mode == "flat":
            self._call("POST", path, op, body=entry, write=True)
            return
        try:
            # The only public client that posts time entries sends the wrapped form: try it first.
            self._call("POST", path, op, body=wrapped, write=True)
            return
        except ApiError as error:
            # inferred API fact: the doc table lists flat fields. A 4xx means nothing was written,
            # so trying the other form is safe; anything else (5xx, no answer, 404) is not.
            if (
                mode == "wrapped"
                or error.ambiguous
                or not error.status
                or not 400 <= error.status < 500
                or isinstance(error, NotFound)
            ):
                raise
            log.info("Okdesk refused the wrapped time-entry body (%s); trying the flat form", error.message)
        self._call("POST", path, op, body=entry, write=True)

    # -- companies -----------------------------------------------------------------------
    def list_companies(self) -> list[Company]:
        """Every company, by the documented cursor (`page[from_id]`, forward, 100 a page)."""
        op = "GET /companies/list"
        result: list[Company] = []
        from_id: int | None = None
        while True:
            params: list[tuple[str, Any]] = [("page[size]", 100), ("page[direction]", "forward")]
            if from_id is not None:
                params.append(("page[from_id]", from_id))
            page: list[Company] = self._parse(
                op, parse_companies, self._call("GET", "/companies/list", op, params=params)
            )
            result.extend(page)
            if len(page) < 100:
                return result
            from_id = max(c.id for c in page)

    def find_company(self, *, company_id: int | None = None, name: str | None = None) -> Company | None:
        """`GET /companies/?id=|name=` answers one company (exact match), or 404 when none matches."""
        op = "GET /companies"
        params: list[tuple[str, Any]] = [("id", int(company_id))] if company_id is not None else [("name", name)]
        try:
            company: Company = self._parse(op, parse_company, self._call("GET", "/companies/", op, params=params))
        except NotFound:
            return None
        return company

    # -- people --------------------------------------------------------------------------
    def list_employees(self) -> list[dict[str, Any]]:
        op = "GET /employees/list"
        result: list[dict[str, Any]] = []
        from_id: int | None = None  # the first page has no cursor (from_id must be > 0)
        while True:
            params: list[tuple[str, Any]] = [("page[size]", 100), ("page[direction]", "forward")]
            if from_id is not None:
                params.append(("page[from_id]", from_id))
            raw = self._call("GET", "/employees/list", op, params=params)
            if not isinstance(raw, list):
                raise MalformedResponse(SYSTEM, op, "expected a list of employees")
            page = [e for e in raw if isinstance(e, dict) and str(e.get("id", "")).isdigit()]
            result.extend(page)
            if len(raw) < 100 or not page:
                return result
            from_id = max(int(e["id"]) for e in page)


def _errors_text(body: Any) -> str:
    if isinstance(body, dict) and "errors" in body:
        return flatten_errors(body["errors"])
    return ""
