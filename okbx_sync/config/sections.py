"""The sections of okbx.yaml as frozen dataclasses: each key declared once, with its kind,
default, range and choices (`setting`); `SECTIONS` is derived from them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from ..secrets import Secret
from .routes import RouteConfig
from .spec import DAY, MAX_RATE, TEN_YEARS_DAYS, WEEK_MINUTES, Key, in_range, not_negative, positive_id, setting, share

_RATE = in_range(0, 1000, above=True)  # requests per second
_TIMEOUT = in_range(0, 3600, above=True)


@dataclass(frozen=True)
class OkdeskConfig:
    url: str = setting("url")
    api_token: Secret = setting("secret")
    bot_employee_id: int = setting("int", check=positive_id)
    # the one route of a configuration without `routes:` (the programmers'); with routes, each says its own
    handoff_status: str | None = setting("str", None, needed=True)
    return_status: str = setting("str", "opened", route_key=True)
    timezone: str | None = setting("tz", None)  # "+03:00" or an IANA name; None = learn from the API's offsets
    # inferred API fact: flat | wrapped | auto (wrapped, then flat on a 4xx)
    time_entry_body: str = setting("str", "auto", choices=("auto", "flat", "wrapped"))
    # inferred: does a comment bump updated_at? else "full" (read every active link's comments)
    comment_detection: str = setting("str", "updated_since", choices=("updated_since", "full"))
    full_scan_minutes: int = setting("int", 60, check=in_range(1, WEEK_MINUTES))
    # the periodic scan reads at most this many issues' comments per cycle; a pass spans cycles
    scan_per_cycle: int = setting("int", 100, check=in_range(1, 100_000))
    requests_per_second: float = setting("float", 3.0, check=_RATE)
    timeout_seconds: float = setting("float", 30.0, check=_TIMEOUT)
    allow_insecure_http: bool = setting("bool", False)  # plain http beyond loopback: the token travels in clear


@dataclass(frozen=True)
class Bitrix24Config:
    webhook_url: Secret = setting("secret_url")
    group_id: int | None = setting("int", None, check=positive_id, needed=True)  # the one route's, as above
    responsible_id: int | None = setting("int", None, check=positive_id, needed=True)
    created_by: int | None = setting("int", None, check=positive_id)
    done_statuses: tuple[int, ...] = setting("int_list", (5,))
    tags: tuple[str, ...] = setting("str_list", ("okdesk",))
    requests_per_second: float = setting("float", 2.0, check=_RATE)
    burst: int = setting("int", 40, check=in_range(1, 10_000))
    timeout_seconds: float = setting("float", 65.0, check=_TIMEOUT)
    allow_insecure_http: bool = setting("bool", False)


@dataclass(frozen=True)
class CommentsConfig:
    """The one route's flows (a configuration without `routes:`; each route has its own `flows:`)."""

    forward_public: bool = setting("bool", True, route_key=True)
    forward_internal: bool = setting("bool", True, route_key=True)
    summary_public: bool = setting("bool", False, route_key=True)


@dataclass(frozen=True)
class TimeConfig:
    default_employee_id: int = setting("int", check=positive_id)
    users: Mapping[int, int] = setting("int_map", {})  # Bitrix24 user id -> Okdesk employee id
    late_window_days: int = setting("int", 30, check=in_range(1, TEN_YEARS_DAYS))


@dataclass(frozen=True)
class StateConfig:
    path: Path = setting("path", "./okbx.sqlite3")


@dataclass(frozen=True)
class SyncConfig:
    max_retries: int = setting("int", 5, check=in_range(1, 20))  # failures of one track before it is parked
    retry_base_seconds: int = setting("int", 300, check=in_range(1, DAY))  # first wait; doubles per failure
    max_requests_per_cycle: int = setting("int", 2000, check=in_range(1, 1_000_000))
    unusual_share: float = setting("float", 0.5, check=share)  # more links stopping at once need --force
    unusual_min_links: int = setting("int", 10, check=in_range(1, 1_000_000))
    # first wait after a rate-limit answer or a failed read; doubles, with jitter
    backoff_seconds: float = setting("float", 1.0, check=in_range(0, 3600, above=True))
    # per-run time budget; a run cut short keeps what it finished
    max_seconds: float | None = setting("float", None, check=in_range(0, DAY, above=True))
    # between full listings a cycle reads only what changed (updated_since, CHANGED_DATE)
    full_listing_minutes: int = setting("int", 60, check=in_range(1, WEEK_MINUTES))
    # below this many active links a full listing costs what the change filters cost
    full_listing_below: int = setting("int", 50, check=in_range(0, 1_000_000))


@dataclass(frozen=True)
class FilesConfig:
    """Files travel with the comments (issue 15): on unless `enabled: false`; the webhook needs the
    `disk` scope (okbx doctor checks it and that the folder takes files)."""

    enabled: bool = setting("bool", True)
    internal_files: bool = setting("bool", True)  # internal (is_public: false) Okdesk files go too
    max_file_mb: int = setting("int", 100, check=in_range(1, 2048))  # larger files are named in a note
    max_cycle_mb: int = setting("int", 500, check=in_range(1, 100_000))  # the rest waits for the next cycle
    folder_id: int | None = setting("int", None, check=positive_id)  # Drive folder; None: the group's drive
    results_public: bool = setting("bool", False)  # the files coming back from the task reach the client

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * MB

    @property
    def max_cycle_bytes(self) -> int:
        return self.max_cycle_mb * MB


MB = 1024 * 1024


@dataclass(frozen=True)
class BillingConfig:
    """Opt-in (issue 10): an invoice in Bitrix24 for each completion returned to Okdesk."""

    default_rate: float = setting("float", check=in_range(0, MAX_RATE))  # per hour, in `currency`
    rates: Mapping[int, float] = setting("rate_map", {})  # Bitrix24 user id -> rate per hour
    currency: str = setting("str", "RUB")
    round_minutes: int = setting("int", 1, check=in_range(1, 1440))  # time rounded UP to this step
    billable_types: tuple[str, ...] = setting("str_list", ())  # issue type codes; empty = every one
    billable_parameter: str | None = setting("str", None)  # or: an issue parameter that must be set
    company_map: Mapping[int, int] = setting("int_map", {})  # Okdesk company id -> Bitrix24 company id
    # inferred: the value of originatorId on companies that carry originId
    origin_source: str = setting("str", "okdesk")
    inn_parameter: str | None = setting("str", None)  # Okdesk company parameter code holding the INN
    category_id: int | None = setting("int", None, check=not_negative)  # None: the default pipeline
    mycompany_id: int | None = setting("int", None, check=positive_id)
    pay_days: int = setting("int", 7, check=in_range(0, TEN_YEARS_DAYS))  # closedate = invoice date + pay_days
    note_public: bool = setting("bool", False)


@dataclass(frozen=True)
class DebtConfig:
    """Opt-in (issue 10): while a company owes money, its open Okdesk issues wait in `status`."""

    status: str = setting("str")
    grace_days: int = setting("int", 0, check=in_range(0, TEN_YEARS_DAYS))
    exempt_types: tuple[str, ...] = setting("str_list", ())
    exempt_priorities: tuple[str, ...] = setting("str_list", ())
    skip_statuses: tuple[str, ...] = setting("str_list", ("completed", "closed"))  # never held
    max_changes: int = setting("int", 10, check=in_range(1, 100_000))  # more holds + releases need --force
    note_public: bool = setting("bool", False)
    # an issue held while `delayed` goes back to `delayed` with its date; when the date passed
    # during the hold it goes to this status instead (Okdesk refuses `delayed` without a date)
    expired_delay_status: str = setting("str", "opened")


@dataclass(frozen=True)
class Config:
    okdesk: OkdeskConfig
    bitrix24: Bitrix24Config
    comments: CommentsConfig
    time: TimeConfig
    state: StateConfig
    sync: SyncConfig
    files: FilesConfig = FilesConfig()
    billing: BillingConfig | None = None
    debt: DebtConfig | None = None
    source: str = ""
    routes: tuple[RouteConfig, ...] = ()  # `routes:`, or the one route the sections above describe

    def route(self, name: str) -> RouteConfig | None:
        return next((r for r in self.routes if r.name == name), None)

    def secrets(self) -> list[str]:
        from ..secrets import webhook_secret_parts

        return [self.okdesk.api_token.reveal(), *webhook_secret_parts(self.bitrix24.webhook_url.reveal())]


def keys_of(section: type) -> dict[str, Key]:
    """A section's keys, in declaration order, as declared on its dataclass."""
    return {f.name: f.metadata["key"] for f in fields(section)}


_CLASSES: dict[str, type] = {
    "okdesk": OkdeskConfig,
    "bitrix24": Bitrix24Config,
    "comments": CommentsConfig,
    "time": TimeConfig,
    "state": StateConfig,
    "sync": SyncConfig,
    "files": FilesConfig,
    "billing": BillingConfig,
    "debt": DebtConfig,
}
SECTIONS: dict[str, tuple[type, dict[str, Key]]] = {name: (cls, keys_of(cls)) for name, cls in _CLASSES.items()}
OPTIONAL_SECTIONS = {"comments", "state", "sync", "files"}
OPT_IN_SECTIONS = {"billing", "debt"}  # absent = the feature is off
