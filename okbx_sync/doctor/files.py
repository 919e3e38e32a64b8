"""Doctor checks of the local setup: plain http to a remote host, and who can read the files that
hold secrets and client names."""

from __future__ import annotations

import stat
from pathlib import Path

from ..config import Config
from .base import Check, Context, check_group


@check_group(70, "Transport")
def transport_checks(ctx: Context) -> list[Check]:
    return [transport_check(ctx.config)]


@check_group(80, "File permissions")
def permission_checks(ctx: Context) -> list[Check]:
    return _permission_checks(ctx.config)


def transport_check(config: Config) -> Check:
    from urllib.parse import urlsplit

    from ..config import is_loopback

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
    from ..envfile import env_file_for

    checks = []
    files = [("secrets file", env_file_for(Path(config.source)))] if config.source else []
    files.append(("state store", config.state.path))
    for what, path in files:
        try:
            info = path.stat()
        except OSError:
            continue  # not there (yet): the store is created 0600; no env file means the environment
        if not stat.S_ISREG(info.st_mode):
            continue  # a device or a pipe is refused by its own check; `chmod` would change /dev/zero
        mode = info.st_mode & 0o777
        name = f"File permissions: {what}"
        if mode & 0o077:
            checks.append(
                Check(name, True, f"{path} has mode {mode:o}: other users can read it", f"chmod 600 {path}", warn=True)
            )
        else:
            checks.append(Check(name, True, f"{path} has mode {mode:o} (owner only)"))
    return checks
