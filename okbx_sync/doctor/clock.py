"""Doctor check of the local clock against the servers' (the Okdesk Date header, Bitrix24 server.time)."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from ..errors import OkbxError
from .base import Check, Context, check_group

MAX_SKEW_SECONDS = 120


@check_group(60, "Clock")
def clock_checks(ctx: Context) -> list[Check]:
    return [_clock_check(ctx)]


def _clock_check(ctx: Context) -> Check:
    bitrix, now = ctx.bitrix, ctx.now
    name = "Clock"
    times = list(ctx.server_times)
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


def http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # the header has whole seconds, truncated: the mean truncation is half a second
    return moment + timedelta(seconds=0.5) if moment.tzinfo is not None else None
