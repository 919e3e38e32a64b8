"""`okbx doctor`: check a configuration against both live systems and say what to fix.

Each check is a plain `Check(name, ok, detail, fix)`; nothing here prints (the CLI prints the
table).  Checks are independent: a failing API call is caught and reported as that check's
failure, and the others still run.  Checks whose prerequisite failed (the Okdesk token, the
Bitrix24 webhook, a missing webhook scope, an unknown status) are left out rather than reported
as a second failure of the same cause; the failing check says which ones were skipped.

Details are built only from ids, status codes, our own words and the errors' messages (already
scrubbed by the transport); as a last guard every detail also goes through a Redactor holding
the configuration's secrets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from .clients.bitrix24 import Bitrix24Client
from .clients.okdesk import OkdeskClient
from .config import Config
from .errors import ApiError, OkbxError, StateError
from .secrets import Redactor
from .state.store import Store

MAX_SKEW_SECONDS = 120
NEEDED_SCOPES = {"task": ("task",), "user": ("user", "user_brief", "user_basic"), "sonet": ("sonet",)}
USER_PAGE = 50


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False  # passes, but deserves a look (shown as WARN; doctor still exits 0)


def _fail_text(error: Exception) -> str:
    if isinstance(error, OkbxError):
        return str(error)
    # ParseError (a ValueError) can escape the clients' people/group verbs on a malformed answer
    return f"unexpected answer: {error}"


@dataclass
class _Seen:
    """Server times observed along the way: (label, server time, local time of the request)."""

    times: list[tuple[str, datetime, datetime]]


def run_checks(
    config: Config, okdesk: OkdeskClient, bitrix: Bitrix24Client, *, now: Callable[[], datetime]
) -> list[Check]:
    """Every check, in a fixed order; `now` is the local clock (aware datetimes) compared with the servers'."""
    redact = Redactor(config.secrets())
    seen = _Seen([])
    checks: list[Check] = []
    okdesk_works = False

    def okdesk_status_checks() -> list[Check]:
        nonlocal okdesk_works
        found = _okdesk_checks(config, okdesk, now, seen)
        okdesk_works = found[0].ok
        return found

    checks += _guarded("Okdesk credentials", okdesk_status_checks)
    if okdesk_works:
        checks += _guarded("Okdesk employees", lambda: _okdesk_employee_checks(config, okdesk))
    checks += _guarded("Bitrix24 webhook", lambda: _bitrix_checks(config, bitrix))
    checks += _guarded("State store", lambda: [_state_check(config.state.path)])
    if config.billing is not None or config.debt is not None:  # issue 10
        from .billing.doctor import billing_checks

        checks += _guarded("Billing", lambda: billing_checks(config, okdesk, bitrix))
    checks += _guarded("Clock", lambda: [_clock_check(bitrix, now, seen)])
    checks += _guarded("Transport", lambda: [_transport_check(config)])
    checks += _guarded("File permissions", lambda: _permission_checks(config))
    return [replace(c, detail=redact(c.detail), fix=redact(c.fix)) for c in checks]


def _guarded(name: str, body: Callable[[], list[Check]]) -> list[Check]:
    """A bug in one group of checks becomes a failed check, never a lost report."""
    try:
        return body()
    except Exception as error:  # reported as a failed check, never swallowed
        return [
            Check(
                name,
                False,
                f"the check itself failed: {error.__class__.__name__}: {error}",
                "this is a bug in okbx doctor; please report it with the output of okbx doctor -v",
            )
        ]


# -- Okdesk --------------------------------------------------------------------------------------
def _okdesk_fix(error: Exception) -> str:
    status = getattr(error, "status", None)
    if status == 401:
        return (
            "the token is wrong or revoked: Settings → API in Okdesk shows the employees' API tokens; "
            "copy the bot employee's token into OKDESK_API_TOKEN"
        )
    if status == 403:
        return "the token's employee lacks API rights: give its role access to the API in Okdesk"
    if status == 404:
        return "check okdesk.url: the account's base URL such as https://yourcompany.okdesk.ru, without /api/v1"
    if isinstance(error, ApiError) and error.ambiguous:
        return "Okdesk did not answer properly: check okdesk.url, the network and proxy, then try again"
    return "check okdesk.url and okdesk.api_token"


def _okdesk_statuses(okdesk: OkdeskClient, now: Callable[[], datetime], seen: _Seen) -> list[tuple[str, str]]:
    """GET /issues/statuses, keeping the answer's Date header for the clock check."""
    before = now()
    statuses, date = okdesk.list_statuses_dated()
    after = now()
    server = _http_date(date)
    if server is not None:
        seen.times.append(("Okdesk (HTTP Date header)", server, before + (after - before) / 2))
    return statuses


def _okdesk_checks(config: Config, okdesk: OkdeskClient, now: Callable[[], datetime], seen: _Seen) -> list[Check]:
    cfg = config.okdesk
    try:
        statuses = dict(_okdesk_statuses(okdesk, now, seen))
    except (OkbxError, ValueError) as error:
        return [
            Check(
                "Okdesk credentials",
                False,
                f"{_fail_text(error)} (the other Okdesk checks were skipped until this works)",
                _okdesk_fix(error),
            )
        ]
    checks = [Check("Okdesk credentials", True, f"the API token works; the account has {len(statuses)} statuses")]
    known = ", ".join(sorted(statuses)) or "none"
    present = {}
    for name, key, code in (
        ("Okdesk handoff status", "okdesk.handoff_status", cfg.handoff_status),
        ("Okdesk return status", "okdesk.return_status", cfg.return_status),
    ):
        present[key] = code in statuses
        if code in statuses:
            checks.append(Check(name, True, f"{key} {code!r} exists ({statuses[code]})"))
        else:
            checks.append(
                Check(
                    name,
                    False,
                    f"{key} {code!r} is not a status code of this Okdesk account (known codes: {known})",
                    f"set {key} to one of the codes above (Okdesk: Settings → Issues → Statuses shows the codes)",
                )
            )
    if all(present.values()):
        manual = (
            f"whether Okdesk allows the change from {cfg.handoff_status!r} to {cfg.return_status!r} is set in "
            "Okdesk's status settings (Settings → Issues → Statuses → transitions), which okbx cannot read: "
            "check it there, or returning issues will fail"
        )
        if cfg.handoff_status == cfg.return_status:
            checks.append(
                Check(
                    "Okdesk return transition",
                    False,
                    f"okdesk.handoff_status and okdesk.return_status are both {cfg.handoff_status!r}: "
                    "a finished issue would never leave the programmers' status",
                    "set okdesk.return_status to the status a finished issue should go back to (e.g. opened)",
                )
            )
        else:
            checks.append(Check("Okdesk return transition", True, f"both statuses exist and differ; {manual}"))
    return checks


def _okdesk_employee_checks(config: Config, okdesk: OkdeskClient) -> list[Check]:
    try:
        employees = {int(e["id"]): e for e in list_okdesk_employees(okdesk) if "id" in e}
    except (OkbxError, ValueError, TypeError) as error:
        detail = f"cannot read the Okdesk employees: {_fail_text(error)}"
        fix = _okdesk_fix(error)
        return [Check("Okdesk bot employee", False, detail, fix), Check("Okdesk time employees", False, detail, fix)]

    def problem(employee_id: int) -> str | None:
        employee = employees.get(employee_id)
        if employee is None:
            return "does not exist"
        if employee.get("active") is False:
            return "is deactivated"
        return None

    checks = []
    bot = config.okdesk.bot_employee_id
    if (trouble := problem(bot)) is None:
        checks.append(
            Check("Okdesk bot employee", True, f"employee {bot} exists and is active ({_name(employees[bot])})")
        )
    else:
        checks.append(
            Check(
                "Okdesk bot employee",
                False,
                f"okdesk.bot_employee_id {bot} {trouble} in Okdesk",
                "set okdesk.bot_employee_id to the active employee the API token belongs to "
                "(Okdesk: Settings → Employees shows the id in the employee's URL)",
            )
        )
    wanted = [("time.default_employee_id", config.time.default_employee_id)]
    wanted += [(f"time.users[{bx}]", ok) for bx, ok in sorted(config.time.users.items())]
    problems = [f"{key} → Okdesk employee {eid} {trouble}" for key, eid in wanted if (trouble := problem(eid))]
    if problems:
        checks.append(
            Check(
                "Okdesk time employees",
                False,
                "; ".join(problems) + " (time logged by such a user cannot be copied to Okdesk)",
                "point these keys at active Okdesk employees, or remove the mapping so the time goes to "
                "time.default_employee_id",
            )
        )
    else:
        checks.append(
            Check(
                "Okdesk time employees", True, f"all {len(wanted)} Okdesk employees used for time exist and are active"
            )
        )
    return checks


def list_okdesk_employees(okdesk: OkdeskClient) -> list[dict[str, Any]]:
    """All employees with a numeric id (the client pages forward by `page[from_id]`)."""
    return [e for e in okdesk.list_employees() if str(e.get("id", "")).isdigit()]


def _name(employee: dict[str, Any]) -> str:
    return " ".join(str(employee.get(k) or "") for k in ("first_name", "last_name")).strip() or "no name"


# -- Bitrix24 ------------------------------------------------------------------------------------
def _bitrix_fix(error: Exception) -> str:
    status = getattr(error, "status", None)
    code = getattr(error, "code", None)
    if status == 401:
        return (
            "the webhook URL is wrong, expired, or was rotated: copy it again from Bitrix24 (Developer resources "
            "→ Other → Incoming webhook) into BITRIX24_WEBHOOK_URL"
        )
    if code == "insufficient_scope":
        return "tick the missing scope on the incoming webhook in Bitrix24 and save it"
    if status == 403:
        return "the portal refused the webhook: REST needs a paid plan, and the webhook's user must be active"
    if status == 404:
        return "check the portal part of BITRIX24_WEBHOOK_URL: https://<portal>/rest/<user id>/<secret>/"
    if isinstance(error, ApiError) and error.ambiguous:
        return "Bitrix24 did not answer properly: check the portal address, the network and proxy, then try again"
    return "check BITRIX24_WEBHOOK_URL and the webhook's settings in Bitrix24"


def _bitrix_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    try:
        scopes = set(bitrix.scopes())
    except (OkbxError, ValueError) as error:
        return [
            Check(
                "Bitrix24 webhook",
                False,
                f"{_fail_text(error)} (the other Bitrix24 checks were skipped until this works)",
                _bitrix_fix(error),
            )
        ]
    checks = [Check("Bitrix24 webhook", True, "the incoming webhook works")]
    missing = [name for name, accepted in NEEDED_SCOPES.items() if not scopes & set(accepted)]
    if missing:
        skipped = []
        if "sonet" in missing:
            skipped.append("group")
        if "user" in missing:
            skipped.append("users")
        if "task" in missing:
            skipped.append("task card")
        checks.append(
            Check(
                "Bitrix24 webhook scopes",
                False,
                f"the webhook lacks the scope(s) okbx needs: {', '.join(missing)} "
                f"(has: {', '.join(sorted(scopes)) or 'none'}; checks skipped: {', '.join(skipped)})",
                f"in Bitrix24 open the incoming webhook, tick {', '.join(missing)} and save; if the URL changes, "
                "update BITRIX24_WEBHOOK_URL",
            )
        )
    else:
        checks.append(Check("Bitrix24 webhook scopes", True, "the webhook has the scopes task, user and sonet"))
    checks.append(_admin_check(bitrix))
    if "sonet" not in missing:
        checks.append(_group_check(config, bitrix))
    if "user" not in missing:
        checks += _user_checks(config, bitrix)
    if "task" not in missing:
        checks.append(_task_card_check(config, bitrix))
    return checks


NOT_ADMIN_WARNING = (
    "Warning: the webhook user {user} is not a Bitrix24 administrator. It sees only the tasks it takes part "
    "in (creator, responsible, accomplice, auditor, or member of the task's workgroup); a task it cannot "
    "see answers like a deleted one, so okbx never concludes 'deleted' but reports the link as failing "
    "('task not visible to the webhook user'), retries it, parks it, and resumes once the task is visible"
)


def _admin_check(bitrix: Bitrix24Client) -> Check:
    """Only an administrator's webhook tells a deleted task from a hidden one (issue 7)."""
    name = "Bitrix24 administrator"
    try:
        admin = bitrix.is_admin()
    except OkbxError as error:
        return Check(name, False, f"cannot ask user.admin: {_fail_text(error)}", _bitrix_fix(error))
    user = bitrix.webhook_user()
    if admin:
        return Check(name, True, f"the webhook user {user} is an administrator: it sees every task")
    return Check(
        name,
        True,
        NOT_ADMIN_WARNING.format(user=user),
        "create the incoming webhook as a Bitrix24 administrator, or make its user a member of the workgroup "
        "and keep the tasks there",
    )


def _yes(value: Any) -> bool:
    return value is True or str(value).strip().upper() in ("Y", "1", "TRUE")


def _group_check(config: Config, bitrix: Bitrix24Client) -> Check:
    group_id = config.bitrix24.group_id
    try:
        group = bitrix.group(group_id)
    except (OkbxError, ValueError) as error:
        return Check("Bitrix24 group", False, f"cannot read group {group_id}: {_fail_text(error)}", _bitrix_fix(error))
    fix = "set bitrix24.group_id to an active, open workgroup (okbx init lists them)"
    if group is None:
        return Check(
            "Bitrix24 group",
            False,
            f"bitrix24.group_id {group_id}: no such workgroup, or the webhook's user cannot see it",
            fix + ", or make the webhook's user a member or administrator of the group",
        )
    name = str(group.get("NAME") or "")
    if "ACTIVE" in group and not _yes(group.get("ACTIVE")):
        return Check("Bitrix24 group", False, f"workgroup {group_id} ({name}) is archived (not active)", fix)
    if _yes(group.get("CLOSED")):
        return Check("Bitrix24 group", False, f"workgroup {group_id} ({name}) is closed: no tasks can be created", fix)
    return Check("Bitrix24 group", True, f"workgroup {group_id} ({name}) exists, is active and open")


def _user_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    cfg = config.bitrix24
    roles: list[tuple[str, str, list[tuple[str, int]]]] = [
        ("Bitrix24 responsible user", "bitrix24.responsible_id", [("bitrix24.responsible_id", cfg.responsible_id)])
    ]
    if cfg.created_by is not None:
        roles.append(("Bitrix24 creator", "bitrix24.created_by", [("bitrix24.created_by", cfg.created_by)]))
    mapped = [(f"time.users key {bx}", bx) for bx in sorted(config.time.users)]
    roles.append(("Bitrix24 mapped users", "time.users", mapped))
    ids = {uid for _, _, wanted in roles for _, uid in wanted}
    try:
        users = _users_by_id(bitrix, ids)
    except (OkbxError, ValueError, TypeError) as error:
        detail = f"cannot read the Bitrix24 users: {_fail_text(error)}"
        return [Check(name, False, detail, _bitrix_fix(error)) for name, _, _ in roles]
    checks = []
    for name, key, wanted in roles:
        problems = []
        for label, uid in wanted:
            user = users.get(uid)
            if user is None:
                problems.append(f"{label}: Bitrix24 user {uid} does not exist")
            elif "ACTIVE" in user and not _yes(user.get("ACTIVE")):
                problems.append(f"{label}: Bitrix24 user {uid} ({_user_name(user)}) is dismissed (not active)")
        if problems:
            checks.append(Check(name, False, "; ".join(problems), f"set {key} to active Bitrix24 users"))
        elif not wanted:
            checks.append(Check(name, True, "time.users maps no Bitrix24 users; all time goes to the default"))
        elif len(wanted) == 1:
            uid = wanted[0][1]
            checks.append(Check(name, True, f"user {uid} ({_user_name(users[uid])}) exists and is active"))
        else:
            checks.append(Check(name, True, f"all {len(wanted)} mapped users exist and are active"))
    return checks


def _users_by_id(bitrix: Bitrix24Client, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    wanted = sorted(set(ids))
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(wanted), USER_PAGE):
        for user in bitrix.users(wanted[start : start + USER_PAGE]):
            if str(user.get("ID", "")).isdigit():
                found[int(user["ID"])] = user
    return found


def _user_name(user: dict[str, Any]) -> str:
    return " ".join(str(user.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or "no name"


NEW_CARD_WARNING = (
    "this portal uses the new task card (tasks have a chat): okbx still posts comments with "
    "task.commentitem.add, and looks for what it wrote in the task chat (im.dialog.messages.get, scope im), "
    "since task.commentitem.getlist does not work there"
)


def _task_card_check(config: Config, bitrix: Bitrix24Client) -> Check:
    group_id = config.bitrix24.group_id
    try:
        raw = bitrix.call(
            "tasks.task.list",
            {"order": {"ID": "desc"}, "filter": {"GROUP_ID": group_id}, "select": ["ID", "CHAT_ID"], "start": -1},
        )
    except OkbxError as error:
        return Check("Bitrix24 task card", False, f"cannot list tasks: {_fail_text(error)}", _bitrix_fix(error))
    tasks = raw.get("tasks") if isinstance(raw, dict) else None
    tasks = [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []
    if not tasks:
        return Check(
            "Bitrix24 task card",
            True,
            f"workgroup {group_id} has no tasks yet, so the task card cannot be told; run okbx doctor again "
            "after the first task",
        )
    for task in tasks:
        chat = task.get("chatId", task.get("CHAT_ID"))
        if str(chat or "").isdigit() and int(str(chat)) > 0:
            try:
                has_im = "im" in set(bitrix.scopes())
            except OkbxError as error:
                return Check("Bitrix24 task card", False, f"cannot read the webhook's scopes: {_fail_text(error)}")
            if not has_im:
                return Check(
                    "Bitrix24 task card",
                    False,
                    NEW_CARD_WARNING + "; the webhook has no im scope, so every look-up before a comment fails",
                    "add the scope im (chats) to the incoming webhook in Bitrix24",
                )
            return Check("Bitrix24 task card", True, "Warning: " + NEW_CARD_WARNING)
    return Check("Bitrix24 task card", True, "classic task card: okbx can look its comments up after a lost answer")


# -- local ---------------------------------------------------------------------------------------
def _state_check(path: Path) -> Check:
    name = "State store"
    fix = "set state.path to a file in a directory the okbx user can write"
    try:
        if path.exists():
            if path.is_dir():
                return Check(name, False, f"state.path {path} is a directory, not a file", fix)
            store = Store(path)  # raises StateError for a newer schema or a damaged file
            store.close()
            if not os.access(path, os.W_OK):
                return Check(name, False, f"state store {path} is read-only", fix)
            _probe(path.parent)
            return Check(name, True, f"state store {path} opens and its directory is writable")
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return Check(name, False, f"state store {path} cannot be created: {ancestor} is not a directory", fix)
        _probe(ancestor)
        return Check(name, True, f"state store {path} does not exist yet; it will be created on the first run")
    except OkbxError as error:
        fix = "upgrade okbx, or point state.path elsewhere" if isinstance(error, StateError) else fix
        return Check(name, False, str(error), fix)
    except OSError as error:
        return Check(name, False, f"state store {path} is not writable: {error.strerror or error}", fix)


def _probe(directory: Path) -> None:
    """Create and remove a temporary file: the only reliable writability test (root ignores modes)."""
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".okbx-doctor-", delete=True):
        pass


def _clock_check(bitrix: Bitrix24Client, now: Callable[[], datetime], seen: _Seen) -> Check:
    name = "Clock"
    times = list(seen.times)
    try:
        before = now()
        raw = bitrix.call("server.time")
        after = now()
        server = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        if server is not None and server.tzinfo is not None:
            times.append(("Bitrix24 server.time", server, before + (after - before) / 2))
    except (OkbxError, ValueError):
        pass  # a missing server time is tolerated; the webhook check reports a broken webhook
    if not times:
        return Check(name, True, "neither server reported its time, so the local clock was not compared")
    parts, worst = [], 0.0
    for label, server, local in times:
        skew = (local - server).total_seconds()
        worst = max(worst, abs(skew))
        ahead = "ahead of" if skew >= 0 else "behind"
        parts.append(f"{abs(skew):.0f} s {ahead} {label}")
    detail = "local clock is " + "; ".join(parts)
    if worst > MAX_SKEW_SECONDS:
        return Check(
            name,
            False,
            f"{detail} (more than {MAX_SKEW_SECONDS} s): change windows and retry times would be wrong",
            "synchronise this machine's clock with NTP (e.g. timedatectl set-ntp true, or chrony)",
        )
    return Check(name, True, detail)


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # the header has whole seconds, truncated: the mean truncation is half a second
    return moment + timedelta(seconds=0.5) if moment.tzinfo is not None else None


def _transport_check(config: Config) -> Check:
    from urllib.parse import urlsplit

    from .config import is_loopback

    clear = []
    for name, url in (
        ("okdesk.url", config.okdesk.url),
        ("bitrix24.webhook_url", config.bitrix24.webhook_url.reveal()),
    ):
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            clear.append(f"{name} uses plain http:// to {parts.hostname}")
    if clear:
        return Check(
            "Transport",
            True,
            "; ".join(clear) + " (allow_insecure_http: true): the secrets travel in clear",
            "use https:// and remove allow_insecure_http",
            warn=True,
        )
    return Check("Transport", True, "https, or plain http only to this machine (the emulators)")


def _permission_checks(config: Config) -> list[Check]:
    """The env file holds the secrets, the state store client names and comment titles: owner only."""
    from .envfile import env_file_for

    checks = []
    files = [("secrets file", env_file_for(Path(config.source)))] if config.source else []
    files.append(("state store", config.state.path))
    for what, path in files:
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            continue  # not there (yet): the store is created 0600; no env file means the environment
        name = f"File permissions: {what}"
        if mode & 0o077:
            checks.append(
                Check(name, True, f"{path} has mode {mode:o}: other users can read it", f"chmod 600 {path}", warn=True)
            )
        else:
            checks.append(Check(name, True, f"{path} has mode {mode:o} (owner only)"))
    return checks
