"""Load and validate okbx.yaml into frozen objects.

Validation is declarative: each section lists its keys with a type, a default (or REQUIRED)
and an optional check.  Every problem is collected with its key path and reported at once;
unknown keys are errors, so a typo never silently falls back to a default.  `${VAR}` in any
string is replaced from the environment (secrets live there, not in the file).
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from . import bounded
from .errors import ConfigError
from .secrets import Secret

REQUIRED = object()
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class OkdeskConfig:
    url: str
    api_token: Secret
    bot_employee_id: int
    handoff_status: str
    return_status: str = "opened"
    timezone: str | None = None  # "+03:00" or an IANA name; None = learn from the API's offsets
    time_entry_body: str = "auto"  # inferred API fact: flat | wrapped | auto (wrapped, then flat on 4xx)
    comment_detection: str = "updated_since"  # inferred: does a comment bump updated_at? else "full"
    full_scan_minutes: int = 60
    # The periodic scan reads at most this many issues' comments per cycle; a pass spans cycles
    # (a cursor), so no cycle pays for every link at once.  Not with comment_detection: full.
    scan_per_cycle: int = 100
    requests_per_second: float = 3.0
    timeout_seconds: float = 30.0
    allow_insecure_http: bool = False  # plain http to a host that is not loopback (the token travels in clear)


@dataclass(frozen=True)
class Bitrix24Config:
    webhook_url: Secret
    group_id: int
    responsible_id: int
    created_by: int | None = None
    done_statuses: tuple[int, ...] = (5,)
    tags: tuple[str, ...] = ("okdesk",)
    requests_per_second: float = 2.0
    burst: int = 40
    timeout_seconds: float = 65.0
    allow_insecure_http: bool = False  # plain http to a host that is not loopback (the secret travels in clear)


@dataclass(frozen=True)
class CommentsConfig:
    forward_public: bool = True
    forward_internal: bool = True
    summary_public: bool = False


@dataclass(frozen=True)
class TimeConfig:
    default_employee_id: int
    users: Mapping[int, int] = field(default_factory=dict)
    late_window_days: int = 30


@dataclass(frozen=True)
class StateConfig:
    path: Path


@dataclass(frozen=True)
class SyncConfig:
    max_retries: int = 5  # failures of one issue before it is parked
    retry_base_seconds: int = 300  # first retry delay; doubles per failure
    max_requests_per_cycle: int = 2000
    unusual_share: float = 0.5  # a plan touching more than this share of links needs --force
    unusual_min_links: int = 10
    backoff_seconds: float = 1.0  # first wait after a rate-limit answer or a failed read; doubles, with jitter
    max_seconds: float | None = None  # per-run time budget; a run cut short keeps what it finished
    # Between these listings a cycle reads only what changed (Okdesk updated_since, Bitrix24
    # CHANGED_DATE); every `full_listing_minutes` it lists the whole handoff status and every
    # active task, which notices what a change filter cannot show (a deleted task or issue).
    full_listing_minutes: int = 60
    # Below this many active links a full listing costs what the change filters cost (one page
    # of the handoff status, one batch of tasks): then every cycle lists fully.
    full_listing_below: int = 50


@dataclass(frozen=True)
class BillingConfig:
    """Opt-in (issue 10): an invoice in Bitrix24 for each completion returned to Okdesk."""

    default_rate: float  # per hour, in `currency`
    rates: Mapping[int, float] = field(default_factory=dict)  # Bitrix24 user id -> rate per hour
    currency: str = "RUB"
    round_minutes: int = 1  # each programmer's time is rounded UP to this many minutes before pricing
    billable_types: tuple[str, ...] = ()  # Okdesk issue type codes; empty = every handed-off issue
    billable_parameter: str | None = None  # or: an issue parameter (checkbox/text) that must be set
    company_map: Mapping[int, int] = field(default_factory=dict)  # Okdesk company id -> Bitrix24 company id
    origin_source: str = "okdesk"  # inferred: the value of originatorId on companies that carry originId
    inn_parameter: str | None = None  # Okdesk company parameter code holding the INN
    category_id: int | None = None  # invoice pipeline; None = the default one (crm.category.list)
    mycompany_id: int | None = None
    pay_days: int = 7  # closedate = invoice date + pay_days
    note_public: bool = False


@dataclass(frozen=True)
class DebtConfig:
    """Opt-in (issue 10): while a company owes money, its open Okdesk issues wait in `status`."""

    status: str
    grace_days: int = 0
    exempt_types: tuple[str, ...] = ()
    exempt_priorities: tuple[str, ...] = ()
    skip_statuses: tuple[str, ...] = ("completed", "closed")  # never held (finished work)
    max_changes: int = 10  # more holds + releases in one cycle need --force
    note_public: bool = False
    # an issue held while `delayed` goes back to `delayed` with its date; when the date passed
    # during the hold it goes to this status instead (Okdesk refuses `delayed` without a date)
    expired_delay_status: str = "opened"


@dataclass(frozen=True)
class Config:
    okdesk: OkdeskConfig
    bitrix24: Bitrix24Config
    comments: CommentsConfig
    time: TimeConfig
    state: StateConfig
    sync: SyncConfig
    billing: BillingConfig | None = None
    debt: DebtConfig | None = None
    source: str = ""

    def secrets(self) -> list[str]:
        from .secrets import webhook_secret_parts

        return [self.okdesk.api_token.reveal(), *webhook_secret_parts(self.bitrix24.webhook_url.reveal())]


# -- key specifications ---------------------------------------------------------------------
Check = Callable[[Any], str | None]


@dataclass(frozen=True)
class Key:
    kind: str  # str | int | float | bool | url | secret | secret_url | int_list | str_list | int_map | rate_map | path
    default: Any = REQUIRED
    check: Check | None = None
    choices: tuple[str, ...] = ()


MAX_ID = 2**53 - 1  # ids: exact in JSON and in SQLite; anything larger is a typo, not an account's id
DAY = 86_400
WEEK_MINUTES = 7 * 24 * 60
TEN_YEARS_DAYS = 3650
MAX_RATE = 1e9  # per hour, in any currency: far above any programmer


def _range(low: float, high: float, *, above: bool = False, words: str = "") -> Check:
    """Every number has a range (issue 16): a value outside it is a configuration error naming the key.
    `above`: the lower bound itself is excluded (a rate of requests must be more than 0)."""
    words = words or (f"more than {low:g} and at most {high:g}" if above else f"from {low:g} to {high:g}")

    def check(value: Any) -> str | None:
        inside = (value > low if above else value >= low) and value <= high
        return None if inside else f"must be {words}"

    return check


_positive = _range(1, MAX_ID, words="an id: a whole number from 1 to 2**53")
_not_negative = _range(0, MAX_ID, words="a whole number from 0 to 2**53")


def _share(value: Any) -> str | None:
    return None if 0 < value <= 1 else "must be between 0 and 1"


SECTIONS: dict[str, tuple[type, dict[str, Key]]] = {
    "okdesk": (
        OkdeskConfig,
        {
            "url": Key("url"),
            "api_token": Key("secret"),
            "bot_employee_id": Key("int", check=_positive),
            "handoff_status": Key("str"),
            "return_status": Key("str", "opened"),
            "timezone": Key("tz", None),
            "time_entry_body": Key("str", "auto", choices=("auto", "flat", "wrapped")),
            "comment_detection": Key("str", "updated_since", choices=("updated_since", "full")),
            "full_scan_minutes": Key("int", 60, check=_range(1, WEEK_MINUTES)),
            "scan_per_cycle": Key("int", 100, check=_range(1, 100_000)),
            "requests_per_second": Key("float", 3.0, check=_range(0, 1000, above=True)),
            "timeout_seconds": Key("float", 30.0, check=_range(0, 3600, above=True)),
            "allow_insecure_http": Key("bool", False),
        },
    ),
    "bitrix24": (
        Bitrix24Config,
        {
            "webhook_url": Key("secret_url"),
            "group_id": Key("int", check=_positive),
            "responsible_id": Key("int", check=_positive),
            "created_by": Key("int", None, check=_positive),
            "done_statuses": Key("int_list", (5,)),
            "tags": Key("str_list", ("okdesk",)),
            "requests_per_second": Key("float", 2.0, check=_range(0, 1000, above=True)),
            "burst": Key("int", 40, check=_range(1, 10_000)),
            "timeout_seconds": Key("float", 65.0, check=_range(0, 3600, above=True)),
            "allow_insecure_http": Key("bool", False),
        },
    ),
    "comments": (
        CommentsConfig,
        {
            "forward_public": Key("bool", True),
            "forward_internal": Key("bool", True),
            "summary_public": Key("bool", False),
        },
    ),
    "time": (
        TimeConfig,
        {
            "default_employee_id": Key("int", check=_positive),
            "users": Key("int_map", {}),
            "late_window_days": Key("int", 30, check=_range(1, TEN_YEARS_DAYS)),
        },
    ),
    "state": (StateConfig, {"path": Key("path", "./okbx.sqlite3")}),
    "sync": (
        SyncConfig,
        {
            "max_retries": Key("int", 5, check=_range(1, 20)),
            "retry_base_seconds": Key("int", 300, check=_range(1, DAY)),
            "max_requests_per_cycle": Key("int", 2000, check=_range(1, 1_000_000)),
            "unusual_share": Key("float", 0.5, check=_share),
            "unusual_min_links": Key("int", 10, check=_range(1, 1_000_000)),
            "backoff_seconds": Key("float", 1.0, check=_range(0, 3600, above=True)),
            "max_seconds": Key("float", None, check=_range(0, DAY, above=True)),
            "full_listing_minutes": Key("int", 60, check=_range(1, WEEK_MINUTES)),
            "full_listing_below": Key("int", 50, check=_range(0, 1_000_000)),
        },
    ),
}
SECTIONS["billing"] = (
    BillingConfig,
    {
        "default_rate": Key("float", check=_range(0, MAX_RATE)),
        "rates": Key("rate_map", {}),
        "currency": Key("str", "RUB"),
        "round_minutes": Key("int", 1, check=_range(1, 1440)),
        "billable_types": Key("str_list", ()),
        "billable_parameter": Key("str", None),
        "company_map": Key("int_map", {}),
        "origin_source": Key("str", "okdesk"),
        "inn_parameter": Key("str", None),
        "category_id": Key("int", None, check=_not_negative),
        "mycompany_id": Key("int", None, check=_positive),
        "pay_days": Key("int", 7, check=_range(0, TEN_YEARS_DAYS)),
        "note_public": Key("bool", False),
    },
)
SECTIONS["debt"] = (
    DebtConfig,
    {
        "status": Key("str"),
        "grace_days": Key("int", 0, check=_range(0, TEN_YEARS_DAYS)),
        "exempt_types": Key("str_list", ()),
        "exempt_priorities": Key("str_list", ()),
        "skip_statuses": Key("str_list", ("completed", "closed")),
        "max_changes": Key("int", 10, check=_range(1, 100_000)),
        "note_public": Key("bool", False),
        "expired_delay_status": Key("str", "opened"),
    },
)
OPTIONAL_SECTIONS = {"comments", "state", "sync"}
OPT_IN_SECTIONS = {"billing", "debt"}  # absent = the feature is off


# -- conversion -----------------------------------------------------------------------------
class _Problem(Exception):
    pass


def _expand_env(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env or env[name] == "":
            raise _Problem(f"environment variable {name} is not set")
        return env[name]

    return _ENV_REF.sub(replace, value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Problem(f"must be a whole number, got {_show(value)}")
    try:
        number = int(value)
    except ValueError:
        raise _Problem(f"must be a whole number, got {_show(value)}") from None
    if abs(number) > MAX_ID:
        raise _Problem(f"must be a whole number below 2**53, got {_show(value)}")
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _convert(key: Key, value: Any, env: Mapping[str, str], base_dir: Path) -> Any:
    if isinstance(value, str) and _ENV_REF.search(value):
        expanded = _expand_env(value, env)
        try:
            return _convert_value(key, expanded, base_dir)
        except _Problem as problem:
            # The environment may hold a secret put under the wrong key: never echo it.
            raise _Problem(str(problem).replace(_show(expanded), f"the value of {value}")) from None
    return _convert_value(key, value, base_dir)


def _convert_value(key: Key, value: Any, base_dir: Path) -> Any:
    kind = key.kind
    if kind in ("str", "url", "secret", "secret_url", "path", "tz"):
        if not isinstance(value, str) or not value.strip():
            shown = type(value).__name__ if kind in ("secret", "secret_url") else _show(value)
            raise _Problem(f"must be a non-empty text, got {shown}")
        value = value.strip()
        if key.choices and value not in key.choices:
            raise _Problem(f"must be one of {', '.join(key.choices)}, got {_show(value)}")
        if kind in ("url", "secret_url"):
            shown = _show(value) if kind == "url" else "a value that is not a URL"
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
            except ValueError as exc:
                raise _Problem(f"must be an http(s) URL, got {shown}: {exc}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Problem(f"must be an http(s) URL, got {shown}")
            if kind == "secret_url" and not re.search(r"/rest/\d+/[^/]+/?$", parts.path):
                raise _Problem("must be an incoming-webhook URL of the form https://<portal>/rest/<user id>/<secret>/")
            value = value.rstrip("/") + ("/" if kind == "secret_url" else "")
        if kind == "tz":
            _check_timezone(value)
        if kind in ("secret", "secret_url"):
            return Secret(value)
        if kind == "path":
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # "~nosuchuser/..."
                raise _Problem(f"cannot expand the home directory in {_show(value)}") from None
            return path if path.is_absolute() else base_dir / path
        return value
    if kind == "int":
        return _as_int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Problem(f"must be a number, got {_show(value)}")
        if not math.isfinite(value):  # YAML's .inf and .nan are numbers, never a setting
            raise _Problem(f"must be a finite number, got {_show(value)}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise _Problem(f"must be true or false, got {_show(value)}")
        return value
    if kind == "int_list":
        if not isinstance(value, list | tuple) or not value:
            raise _Problem(f"must be a non-empty list of whole numbers, got {_show(value)}")
        return tuple(_as_int(v) for v in value)
    if kind == "str_list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _Problem(f"must be a list of texts, got {_show(value)}")
        return tuple(value)
    if kind == "int_map":
        if not isinstance(value, dict):
            raise _Problem(f"must be a mapping of Bitrix24 user id to Okdesk employee id, got {_show(value)}")
        return {_as_int(k): _as_int(v) for k, v in value.items()}
    if kind == "rate_map":
        if not isinstance(value, dict):
            raise _Problem(f"must be a mapping of Bitrix24 user id to a rate per hour, got {_show(value)}")
        rates = {_as_int(k): v for k, v in value.items()}
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= MAX_RATE
            for v in rates.values()
        ):
            raise _Problem(f"every rate must be a number from 0 to {MAX_RATE:g}")
        return {k: float(v) for k, v in rates.items()}
    raise AssertionError(kind)


def _check_timezone(value: str) -> None:
    from .timeutil import parse_timezone

    try:
        parse_timezone(value)
    except ValueError as exc:
        raise _Problem(str(exc)) from None


def parse_config(raw: Any, *, env: Mapping[str, str], base_dir: Path, source: str = "") -> Config:
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise ConfigError([("", "the file must be a YAML mapping with sections okdesk, bitrix24, time, ...")], source)
    for name in raw:
        if name not in SECTIONS:
            problems.append((str(name), f"unknown section (known: {', '.join(SECTIONS)})"))
    built: dict[str, Any] = {}
    for section, (cls, keys) in SECTIONS.items():
        values = raw.get(section)
        if values is None and section in OPT_IN_SECTIONS:
            continue
        if values is None:
            if section not in OPTIONAL_SECTIONS:
                problems.append((section, "section is missing"))
                continue
            values = {}
        if not isinstance(values, dict):
            problems.append((section, "must be a mapping"))
            continue
        kwargs: dict[str, Any] = {}
        for name in values:
            if name not in keys:
                problems.append((f"{section}.{name}", "unknown key"))
        for name, key in keys.items():
            path = f"{section}.{name}"
            if name not in values or values[name] is None:
                if key.default is REQUIRED:
                    problems.append((path, "is required"))
                elif key.kind == "path":
                    kwargs[name] = _convert(key, key.default, env, base_dir)
                else:
                    kwargs[name] = key.default
                continue
            try:
                kwargs[name] = _convert(key, values[name], env, base_dir)
                if key.check and (message := key.check(kwargs[name])):
                    problems.append((path, message))
            except _Problem as problem:
                problems.append((path, str(problem)))
        if (url_key := _URL_KEYS.get(section)) and url_key in kwargs and not kwargs.get("allow_insecure_http"):
            if message := insecure_http_problem(kwargs[url_key]):
                problems.append((f"{section}.{url_key}", message))
        if not any(p.startswith(section + ".") or p == section for p, _ in problems):
            built[section] = cls(**kwargs)
    problems += _cross_checks(raw)
    if problems:
        raise ConfigError(problems, source)
    return Config(**built, source=source)


_URL_KEYS = {"okdesk": "url", "bitrix24": "webhook_url"}


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_http_problem(url: Any) -> str | None:
    """Plain http sends the Okdesk token (in the query) or the webhook secret (in the path) in clear:
    fine for the emulators on this machine, refused elsewhere unless allow_insecure_http is set."""
    parts = urlsplit(url.reveal() if isinstance(url, Secret) else str(url))
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return (
            f"plain http:// to {parts.hostname} would send the secret in clear: use https://, "
            "or set allow_insecure_http: true in this section if you must"
        )
    return None


def _cross_checks(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Checks across keys, on the raw values so they are reported together with all the others."""
    okdesk: dict[str, Any] = raw["okdesk"] if isinstance(raw.get("okdesk"), dict) else {}
    handoff = okdesk.get("handoff_status")
    back = okdesk.get("return_status", SECTIONS["okdesk"][1]["return_status"].default)
    problems = []
    if isinstance(handoff, str) and isinstance(back, str) and handoff.strip() == back.strip():
        problems.append(("okdesk.return_status", "must differ from okdesk.handoff_status"))
    debt = raw["debt"] if isinstance(raw.get("debt"), dict) else {}
    hold = debt.get("status")
    if isinstance(hold, str) and hold.strip() in {str(handoff).strip(), str(back).strip()}:
        problems.append(("debt.status", "must differ from okdesk.handoff_status and okdesk.return_status"))
    return problems


def config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    """--config, else $OKBX_CONFIG, else ./okbx.yaml."""
    return Path(explicit or env.get("OKBX_CONFIG") or "okbx.yaml")


def load_config(path: Path, env: Mapping[str, str] | None = None) -> Config:
    env = os.environ if env is None else env
    source = str(path)
    try:
        text = bounded.read_text(path, MAX_CONFIG_BYTES)
    except bounded.TooLarge:
        raise ConfigError(
            [("", f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB: not an okbx configuration")], source
        ) from None
    except FileNotFoundError:
        raise ConfigError([("", "file not found (give --config PATH or set OKBX_CONFIG)")], source) from None
    except PermissionError:
        raise ConfigError([("", "cannot read the file: permission denied")], source) from None
    except IsADirectoryError:
        raise ConfigError([("", "cannot read the file: it is a directory")], source) from None
    except UnicodeDecodeError:
        raise ConfigError([("", "cannot read the file: not UTF-8 text")], source) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read the file: {exc.strerror or exc.__class__.__name__}")], source) from None
    try:
        raw = parse_yaml(text)
    except _Problem as problem:
        raise ConfigError([("", str(problem))], source) from None
    return parse_config(raw, env=env, base_dir=path.parent.resolve(), source=source)


MAX_CONFIG_BYTES = 256 * 1024  # a full configuration is about 5 KiB
MAX_NESTING = 20  # sections are 2 levels deep; time.users 3


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys (the later one would silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, str | int | float | bool | None):  # unhashable keys: PyYAML reports them
                if key in seen:
                    mark = key_node.start_mark
                    raise _Problem(f"duplicate key {_show(key)} at line {mark.line + 1}, column {mark.column + 1}")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The YAML document, or _Problem: syntax errors with their place, duplicate keys, too deep nesting.
    The depth is checked on the event stream first: PyYAML builds nested nodes recursively."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise _Problem(f"nested more than {MAX_NESTING} levels deep (line {line})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise _Problem(f"not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise _Problem(f"nested more than {MAX_NESTING} levels deep") from None
