"""Doctor checks of the Bitrix24 portal: the webhook, its scopes and rights, the group, the users
and the task card."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..clients.bitrix24 import Bitrix24Client
from ..config import Config, RouteConfig
from ..errors import ApiError, OkbxError
from .base import Check, Context, check_group, fail_text, yes

NEEDED_SCOPES = {"task": ("task",), "user": ("user", "user_brief", "user_basic"), "sonet": ("sonet",)}
USER_PAGE = 50


@check_group(30, "Bitrix24 webhook")
def bitrix_checks(ctx: Context) -> list[Check]:
    return _bitrix_checks(ctx.config, ctx.bitrix)


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
                f"{fail_text(error)} (the other Bitrix24 checks were skipped until this works)",
                _bitrix_fix(error),
            )
        ]
    checks = [Check("Bitrix24 webhook", True, "the incoming webhook works")]
    needed = {**NEEDED_SCOPES, **({"disk": ("disk",)} if config.files.enabled else {})}  # disk: files travel
    missing = [name for name, accepted in needed.items() if not scopes & set(accepted)]
    if missing:
        skipped = []
        if "sonet" in missing:
            skipped.append("group")
        if "user" in missing:
            skipped.append("users")
        if "task" in missing:
            skipped.append("task card")
        if "disk" in missing:
            skipped.append("Drive folder")
        checks.append(
            Check(
                "Bitrix24 webhook scopes",
                False,
                f"the webhook lacks the scope(s) okbx needs: {', '.join(missing)} "
                f"(has: {', '.join(sorted(scopes)) or 'none'}; checks skipped: {', '.join(skipped)})",
                f"in Bitrix24 open the incoming webhook, tick {', '.join(missing)} and save; if the URL changes, "
                "update BITRIX24_WEBHOOK_URL" + (" (or set files.enabled: false)" if "disk" in missing else ""),
            )
        )
    else:
        names = ", ".join(needed)
        checks.append(Check("Bitrix24 webhook scopes", True, f"the webhook has the scopes okbx needs: {names}"))
    checks.append(_admin_check(bitrix))
    if "sonet" not in missing:
        checks += _group_checks(config, bitrix)
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
        return Check(name, False, f"cannot ask user.admin: {fail_text(error)}", _bitrix_fix(error))
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


def route_key(config: Config, route: RouteConfig, key: str) -> tuple[str, str]:
    """(check name prefix, configuration key) of a route's target key: the old names without routes:."""
    if config.okdesk.handoff_status is not None:  # the one route of a configuration without routes:
        return "Bitrix24", f"bitrix24.{key}"
    return f"Route {route.name}: Bitrix24", f"routes.{route.name}.target.{key}"


def _group_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    return [_group_check(config, route, bitrix) for route in config.routes if route.kind == "task"]


def _group_check(config: Config, route: RouteConfig, bitrix: Bitrix24Client) -> Check:
    prefix, key = route_key(config, route, "group_id")
    name, group_id = f"{prefix} group", route.target.group_id or 0
    try:
        group = bitrix.group(group_id)
    except (OkbxError, ValueError) as error:
        return Check(name, False, f"cannot read group {group_id}: {fail_text(error)}", _bitrix_fix(error))
    fix = f"set {key} to an active, open workgroup (okbx init lists them)"
    if group is None:
        return Check(
            name,
            False,
            f"{key} {group_id}: no such workgroup, or the webhook's user cannot see it",
            fix + ", or make the webhook's user a member or administrator of the group",
        )
    title = str(group.get("NAME") or "")
    if "ACTIVE" in group and not yes(group.get("ACTIVE")):
        return Check(name, False, f"workgroup {group_id} ({title}) is archived (not active)", fix)
    if yes(group.get("CLOSED")):
        return Check(name, False, f"workgroup {group_id} ({title}) is closed: no tasks can be created", fix)
    return Check(name, True, f"workgroup {group_id} ({title}) exists, is active and open")


def _user_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    cfg = config.bitrix24
    roles: list[tuple[str, str, list[tuple[str, int]]]] = []
    for route in config.routes:
        prefix, key = route_key(config, route, "responsible_id")
        people = [
            (f"{key[: -len('responsible_id')]}{k}", uid)
            for k in ("accomplices", "auditors")
            for uid in getattr(route.target, k)
        ]
        if route.kind == "task":
            roles.append((f"{prefix} responsible user", key, [(key, route.target.responsible_id or 0), *people]))
        elif route.target.assigned_by_id is not None:
            deal_key = key[: -len("responsible_id")] + "assigned_by_id"
            roles.append((f"{prefix} deal user", deal_key, [(deal_key, route.target.assigned_by_id)]))
    if cfg.created_by is not None:
        roles.append(("Bitrix24 creator", "bitrix24.created_by", [("bitrix24.created_by", cfg.created_by)]))
    mapped = [(f"time.users key {bx}", bx) for bx in sorted(config.time.users)]
    roles.append(("Bitrix24 mapped users", "time.users", mapped))
    ids = {uid for _, _, wanted in roles for _, uid in wanted}
    try:
        users = _users_by_id(bitrix, ids)
    except (OkbxError, ValueError, TypeError) as error:
        detail = f"cannot read the Bitrix24 users: {fail_text(error)}"
        return [Check(name, False, detail, _bitrix_fix(error)) for name, _, _ in roles]
    checks = []
    for name, key, wanted in roles:
        problems = []
        for label, uid in wanted:
            user = users.get(uid)
            if user is None:
                problems.append(f"{label}: Bitrix24 user {uid} does not exist")
            elif "ACTIVE" in user and not yes(user.get("ACTIVE")):
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
    group_id = next((r.target.group_id for r in config.routes if r.kind == "task"), None)
    if group_id is None:
        return Check("Bitrix24 task card", True, "no route makes tasks")
    try:
        raw = bitrix.call(
            "tasks.task.list",
            {"order": {"ID": "desc"}, "filter": {"GROUP_ID": group_id}, "select": ["ID", "CHAT_ID"], "start": -1},
        )
    except OkbxError as error:
        return Check("Bitrix24 task card", False, f"cannot list tasks: {fail_text(error)}", _bitrix_fix(error))
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
                return Check("Bitrix24 task card", False, f"cannot read the webhook's scopes: {fail_text(error)}")
            if not has_im:
                return Check(
                    "Bitrix24 task card",
                    False,
                    NEW_CARD_WARNING + "; the webhook has no im scope, so every look-up before a comment fails",
                    "add the scope im (chats) to the incoming webhook in Bitrix24",
                )
            return Check("Bitrix24 task card", True, "Warning: " + NEW_CARD_WARNING)
    return Check("Bitrix24 task card", True, "classic task card: okbx can look its comments up after a lost answer")
