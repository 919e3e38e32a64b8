"""The logic behind `okbx init`, apart from the prompting: discover, propose, render.

`discover` reads what a person has to choose from (Okdesk statuses and employees, Bitrix24
workgroups and users) with nothing but the two secrets and the account URL;
`propose_user_map` pairs Bitrix24 users with Okdesk employees by e-mail; `render_config`
writes a complete okbx.yaml (every key of config.example.yaml, with its comments) that keeps
the secrets in the environment.  The env file for the secrets is `envfile`'s (re-exported here).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .clients.bitrix24 import Bitrix24Client
from .clients.okdesk import OkdeskClient
from .config import OPT_IN_SECTIONS, REQUIRED, SECTIONS, Bitrix24Config, OkdeskConfig, insecure_http_problem
from .envfile import ENV_TOKEN, ENV_WEBHOOK, parse_env_file, render_env_file, write_private_file  # noqa: F401 - their old home
from .errors import UsageError
from .secrets import Redactor, Secret, webhook_secret_parts

SECRET_KEYS = {"okdesk.api_token": "${" + ENV_TOKEN + "}", "bitrix24.webhook_url": "${" + ENV_WEBHOOK + "}"}
_WEBHOOK = re.compile(r"^https?://[^/\s]+/rest/(\d+)/[^/\s?#]+/?$")
_PAGE = 50
_MAX_PAGES = 2000


@dataclass(frozen=True)
class Discovery:
    statuses: list[tuple[str, str]]  # (code, name)
    okdesk_employees: list[dict[str, Any]]  # {id, name, email, active}
    groups: list[dict[str, Any]]  # {id, name}: active, open workgroups only
    bitrix_users: list[dict[str, Any]]  # {id, name, email, active}
    webhook_user_id: int | None = None  # the webhook's owner: the default creator of tasks
    scopes: list[str] = field(default_factory=list)


# -- discovery ----------------------------------------------------------------------------------
def discover(okdesk_url: str, api_token: str, webhook_url: str, *, redactor: Redactor) -> Discovery:
    """Read the choices from both systems.  Raises UsageError for a malformed URL, ApiError
    (message scrubbed of both secrets) when a system refuses or cannot be reached."""
    okdesk_url = okdesk_url.strip().rstrip("/")
    webhook_url = webhook_url.strip()
    redactor.add(api_token)
    for part in webhook_secret_parts(webhook_url):
        redactor.add(part)
    if not re.match(r"^https?://[^/\s]+", okdesk_url):
        raise UsageError("the Okdesk URL must look like https://yourcompany.okdesk.ru")
    match = _WEBHOOK.match(webhook_url)
    if match is None:
        raise UsageError("the webhook URL must look like https://<portal>/rest/<user id>/<secret>/")
    for what, url in (("the Okdesk URL", okdesk_url), ("the webhook URL", webhook_url)):
        if problem := insecure_http_problem(url):  # before a single request carries a secret
            raise UsageError(f"{what}: {problem.replace('in this section', 'in okbx.yaml')}")
    okdesk, bitrix = build_clients(okdesk_url, api_token, webhook_url, redactor=redactor)
    try:
        statuses = okdesk.list_statuses()
        employees = [_okdesk_person(e) for e in okdesk.list_employees()]
        scopes = sorted(str(s) for s in bitrix.scopes())
        groups = [
            {"id": int(g["ID"]), "name": str(g.get("NAME") or ""), "owner": _int_or_none(g.get("OWNER_ID"))}
            for g in _bitrix_pages(bitrix, "sonet_group.get", {"IS_ADMIN": "Y", "ORDER": {"ID": "ASC"}})
            if str(g.get("ID", "")).isdigit() and _yes(g.get("ACTIVE", "Y")) and not _yes(g.get("CLOSED", "N"))
        ]
        users = [
            _bitrix_person(u)
            for u in _bitrix_pages(bitrix, "user.get", {"SORT": "ID", "ORDER": "ASC", "ADMIN_MODE": True})
            if str(u.get("ID", "")).isdigit()
        ]
    finally:
        okdesk.close()
        bitrix.close()
    return Discovery(statuses, employees, groups, users, int(match.group(1)), scopes)


def build_clients(
    okdesk_url: str, api_token: str, webhook_url: str, *, redactor: Redactor
) -> tuple[OkdeskClient, Bitrix24Client]:
    """Clients from the two secrets alone: the other required keys get placeholders no verb used here reads."""
    okdesk = OkdeskClient(
        OkdeskConfig(url=okdesk_url, api_token=Secret(api_token), bot_employee_id=1, handoff_status="-"),
        redactor,
    )
    bitrix = Bitrix24Client(
        Bitrix24Config(webhook_url=Secret(webhook_url.rstrip("/") + "/"), group_id=1, responsible_id=1), redactor
    )
    return okdesk, bitrix


def _bitrix_pages(bitrix: Bitrix24Client, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of a list method, paged by `start` and the answer's `next`."""
    return bitrix.list_all(method, params, max_pages=_MAX_PAGES)


def _yes(value: Any) -> bool:
    return value is True or str(value).strip().upper() in ("Y", "1", "TRUE")


def _int_or_none(value: Any) -> int | None:
    return int(value) if str(value or "").isdigit() else None


_BOT_WORDS = re.compile(r"okbx|\bbot\b|bridge|integration|bitrix|интеграц|бот", re.IGNORECASE)


def likely_bot(employees: list[dict[str, Any]]) -> str | None:
    """The employee the token probably belongs to, as a default to confirm: Okdesk's API (as far
    as our notes go) cannot say whose token it is, and the README asks for a dedicated employee,
    so the one active employee whose name or e-mail reads like one (okbx, bot, bridge,
    integration, Bitrix)."""
    found = [e for e in employees if e.get("active", True) and _BOT_WORDS.search(f"{e['name']} {e.get('email', '')}")]
    return str(found[0]["id"]) if len(found) == 1 else None


def group_owner(groups: list[dict[str, Any]], group_id: str) -> str | None:
    """The owner of the chosen workgroup (sonet_group.get OWNER_ID): the default responsible user."""
    owner = next((g.get("owner") for g in groups if str(g["id"]) == group_id), None)
    return str(owner) if owner else None


def _okdesk_person(raw: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(str(raw.get(k) or "") for k in ("first_name", "last_name")).strip()
    return {
        "id": int(raw["id"]),
        "name": name or str(raw.get("login") or ""),
        "email": str(raw.get("email") or ""),
        "active": raw.get("active") is not False,
    }


def _bitrix_person(raw: dict[str, Any]) -> dict[str, Any]:
    name = " ".join(str(raw.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
    return {
        "id": int(raw["ID"]),
        "name": name,
        "email": str(raw.get("EMAIL") or ""),
        "active": _yes(raw.get("ACTIVE", True)),
    }


# -- proposal -----------------------------------------------------------------------------------
def propose_user_map(bitrix_users: list[dict[str, Any]], okdesk_employees: list[dict[str, Any]]) -> dict[int, int]:
    """Bitrix24 user id -> Okdesk employee id for active people sharing an e-mail address (any case).

    An address used by two active Okdesk employees is ambiguous and proposes nothing.
    """
    by_email: dict[str, list[int]] = {}
    for employee in okdesk_employees:
        email = str(employee.get("email") or "").strip().casefold()
        if email and employee.get("active", True):
            by_email.setdefault(email, []).append(int(employee["id"]))
    proposal: dict[int, int] = {}
    for user in bitrix_users:
        email = str(user.get("email") or "").strip().casefold()
        matches = by_email.get(email, []) if email and user.get("active", True) else []
        if len(matches) == 1:
            proposal[int(user["id"])] = matches[0]
    return dict(sorted(proposal.items()))


# -- rendering ----------------------------------------------------------------------------------
# A copy of config.example.yaml (a test keeps the two in step); values are replaced per key.
TEMPLATE = """\
# okbx-sync configuration, written by `okbx init`. Every key is listed; the ones with no
# "required" note have the default shown unless init chose otherwise. Unknown keys are errors.
# ${VAR} is replaced from the environment: the Okdesk token and the Bitrix24 webhook URL live
# there (see the env file init wrote), not in this file. Check it with `okbx doctor`.

okdesk:
  url: https://yourcompany.okdesk.ru      # required. Account base URL; okbx appends /api/v1/...
  api_token: ${OKDESK_API_TOKEN}          # required. Settings -> API; the key of a dedicated employee
  bot_employee_id: 1                      # required. The employee the token belongs to; okbx writes as it,
                                          #   and its comments are never forwarded
  handoff_status: to_programmers          # required. Status code that hands an issue to programmers
  return_status: opened                   # status set when the task is done
  timezone: null                          # account time zone (+03:00 or Europe/Moscow); null = learn it
                                          #   from the offsets of the API's timestamps
  time_entry_body: auto                   # flat | wrapped | auto. The POST body form of time entries is an
                                          #   inferred API fact: auto sends the wrapped {"time_entries": [...]}
                                          #   form (what the one public client sends), and on a 4xx
                                          #   (nothing written) the flat form of the doc table
  comment_detection: updated_since        # updated_since | full. Whether a new comment bumps an issue's
                                          #   updated_at is inferred; "full" reads the comments of every
                                          #   active link each cycle (more requests, no assumption)
  full_scan_minutes: 60                   # read the comments of all active links at least this often anyway
  scan_per_cycle: 100                     #   at most this many per cycle: a scan pass spans cycles
  requests_per_second: 3.0                # client-side throttle (Okdesk documents no limit; 2-3/s advised)
  timeout_seconds: 30.0                   # read timeout of one request
  allow_insecure_http: false              # plain http:// is accepted only for 127.0.0.1/localhost (the emulators);
                                          #   true allows it elsewhere, sending the token in clear (doctor warns)

bitrix24:
  webhook_url: ${BITRIX24_WEBHOOK_URL}    # required. Incoming webhook: https://portal.bitrix24.ru/rest/<user>/<secret>/
                                          #   scopes needed: task, user, sonet, disk (files)
  group_id: 42                            # required. Workgroup/project the tasks are created in
  responsible_id: 7                       # required. Bitrix24 user responsible for new tasks
  created_by: null                        # optional. Creator of new tasks (null: the webhook's user)
  done_statuses: [5]                      # task statuses that mean "done" (5 completed; add 4 to count
                                          #   "supposedly completed, awaiting control")
  tags: [okdesk]                          # tags put on new tasks
  requests_per_second: 2.0                # client-side throttle: 2/s for most plans, 5/s on Enterprise
  burst: 40                               # requests allowed at once (the portal's bucket is 50, or 250)
  timeout_seconds: 65.0                   # read timeout; Bitrix24 may take up to 60 s
  allow_insecure_http: false              # as for okdesk: plain http:// only to loopback unless true

comments:
  forward_public: true                    # forward public Okdesk comments (client and consultant) to the task
  forward_internal: true                  # forward internal Okdesk comments (consultants only) to the task
  summary_public: false                   # the completion summary is internal unless set to true

time:
  default_employee_id: 1                  # required. Okdesk employee for time of unmapped Bitrix24 users
  users: {}                               # Bitrix24 user id -> Okdesk employee id
  late_window_days: 30                    # copy time logged on a completed task for this many days after

state:
  path: ./okbx.sqlite3                    # the state store (relative paths are relative to this file)

sync:
  max_retries: 5                          # failures of one issue before it is parked (okbx retry ISSUE)
  retry_base_seconds: 300                 # wait after the first failure; doubles with each further one
  max_requests_per_cycle: 2000            # a cycle stops cleanly after this many requests; the next continues
  unusual_share: 0.5                      # refuse (unless --force) a plan that stops or completes more than
  unusual_min_links: 10                   #   this share of active links, when at least this many
  backoff_seconds: 1.0                    # first wait after a rate-limit answer or a failed read (doubles,
                                          #   with jitter, up to 60 s; Retry-After is honoured when given)
  max_seconds: null                       # a run stops cleanly after this many seconds (null: no limit);
                                          #   give cron a harder timeout and the backlog still shrinks
  full_listing_minutes: 60                # list the whole handoff status and every active task this often;
                                          #   between, only what changed (updated_since, CHANGED_DATE)
  full_listing_below: 50                  # with fewer active links, every cycle lists fully (as cheap)

files:                                    # files travel with the comments (the webhook needs the disk scope)
  enabled: true                           # false: only the words of comments travel, as before
  internal_files: true                    # internal Okdesk files (is_public: false) go to the programmers too
  max_file_mb: 100                        # a larger file is not copied: the task (or the issue) gets a note
                                          #   naming it and where to find it, and the handoff goes on
  max_cycle_mb: 500                       # at most this much is moved per cycle (at least one file);
                                          #   the rest waits for the next cycle
  folder_id: null                         # Bitrix24 Drive folder for the copies; null = a folder "Okdesk files"
                                          #   on the workgroup's drive (each issue gets a subfolder "Okdesk #<id>")
  results_public: false                   # files the programmers attached to the task come back to the issue
                                          #   in an internal comment unless true (then the client sees them)
"""
_SECTION_LINE = re.compile(r"^([a-z_0-9]+):\s*(#.*)?$")
_KEY_LINE = re.compile(r"^  ([a-z_0-9]+):(\s+)(.*?)(\s+#.*)?$")
_COMMENT_COLUMN = 42


def render_config(choices: Mapping[str, Any]) -> str:
    """A complete okbx.yaml.  `choices` maps dotted key paths ("okdesk.url", "time.users", ...) to
    values; every required key except the two secrets must be given, every other key gets its
    default.  The secrets are always written as ${OKDESK_API_TOKEN} / ${BITRIX24_WEBHOOK_URL}."""
    known = {
        f"{section}.{key}": spec
        for section, (_, keys) in SECTIONS.items()
        if section not in OPT_IN_SECTIONS  # billing and debt are added by hand (README)
        for key, spec in keys.items()
    }
    problems = [f"{path}: unknown key" for path in choices if path not in known]
    problems += [
        f"{path}: the secret stays in the environment, not in the file" for path in choices if path in SECRET_KEYS
    ]
    # init writes the one-route form (the programmers'): its route keys are required here
    needed = {p for p, spec in known.items() if spec.default is REQUIRED or spec.needed}
    missing = [p for p in needed if p not in SECRET_KEYS and p not in choices]
    problems += [f"{path}: is required" for path in missing]
    if problems:
        raise ValueError("cannot render the configuration: " + "; ".join(problems))
    lines, section, written = [], "", set()
    for line in TEMPLATE.splitlines():
        if match := _SECTION_LINE.match(line):
            section = match.group(1)
        elif match := _KEY_LINE.match(line):
            path = f"{section}.{match.group(1)}"
            if path not in known:
                raise AssertionError(f"template key {path} is not a configuration key")
            if path in SECRET_KEYS:
                value = SECRET_KEYS[path]
            elif path in choices:
                value = _yaml_value(choices[path])
            else:
                value = _yaml_value(_default(known[path].default))
            head = f"  {match.group(1)}: {value}"
            comment = (match.group(4) or "").strip()
            line = f"{head.ljust(_COMMENT_COLUMN - 2)}  {comment}".rstrip() if comment else head
            written.add(path)
        lines.append(line)
    if written != set(known):
        raise AssertionError(f"template misses keys: {sorted(set(known) - written)}")
    return "\n".join(lines) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def _yaml_value(value: Any) -> str:
    """One YAML flow value: null, true/false, numbers, [a, b], {7: 11}, strings quoted when needed."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return value if _plain(value) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_yaml_value(k)}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    raise ValueError(f"cannot write a {type(value).__name__} into the configuration")


def _plain(text: str) -> bool:
    if not text or text != text.strip() or not re.fullmatch(r"[\w./:+@-]+", text) or text.startswith(("@", "-")):
        return False
    return yaml.safe_load(text) == text  # "null", "true", "12", "1e3" would change type
