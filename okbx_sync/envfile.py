"""The `okbx.env` secrets file: one file for cron, systemd and okbx itself.

It is parsed the way systemd's `EnvironmentFile=` reads it: `KEY=value` lines, blank lines and
lines starting with `#` or `;` skipped, a value in single quotes taken literally, one in double
quotes with `\\"`, `\\\\`, `\\$` and `` \\` `` unescaped, an unquoted value stripped of surrounding
blanks.  An `export ` prefix is tolerated (shell habit).  okbx reads the file next to its
configuration itself, so a cron line needs no sourcing, and a systemd unit names the same file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from . import bounded
from .errors import UsageError

ENV_FILE_NAME = "okbx.env"
MAX_ENV_BYTES = 64 * 1024  # two secrets take a few hundred bytes
ENV_TOKEN = "OKDESK_API_TOKEN"
ENV_WEBHOOK = "BITRIX24_WEBHOOK_URL"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOUBLE_QUOTED_ESCAPE = re.compile(r"\\([\"\\$`])")


class EnvFileError(UsageError):
    """The env file cannot be read or has a line that is not KEY=value."""


class UnsafeEnvValue(UsageError, ValueError):
    """A secret that cannot be written as a plain KEY=value line (quotes, spaces, `$`, ...)."""


def parse_env_file(text: str, source: str = ENV_FILE_NAME) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        if not sep or not _KEY.fullmatch(key):
            # never echo the line: it may be a secret pasted without its KEY=
            raise EnvFileError(f"{source} line {number}: expected KEY=value")
        env[key] = _unquote(value.strip(), f"{source} line {number}")
    return env


def _unquote(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        if len(value) < 2 or not value.endswith(quote):
            raise EnvFileError(f"{where}: the value opens a {quote} quote that is not closed at the end of the line")
        inner = value[1:-1]
        return inner if quote == "'" else _DOUBLE_QUOTED_ESCAPE.sub(r"\1", inner)
    return value


def env_file_for(config_file: Path) -> Path:
    return config_file.parent / ENV_FILE_NAME


def read_env_file(path: Path) -> dict[str, str]:
    """The file's variables; {} when there is no such file; a clear error when it cannot be read."""
    try:
        text = bounded.read_text(path, MAX_ENV_BYTES)
    except FileNotFoundError:
        return {}
    except bounded.TooLarge:
        raise EnvFileError(f"cannot read {path}: larger than {MAX_ENV_BYTES // 1024} KiB, not an env file") from None
    except bounded.NoWriter as exc:
        raise EnvFileError(f"cannot read {path}: {exc}") from None
    except PermissionError:
        raise EnvFileError(f"cannot read {path}: permission denied (run okbx as the user that owns it)") from None
    except IsADirectoryError:
        raise EnvFileError(f"cannot read {path}: it is a directory") from None
    except UnicodeDecodeError:
        raise EnvFileError(f"cannot read {path}: not UTF-8 text") from None
    except OSError as exc:
        raise EnvFileError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}") from None
    return parse_env_file(text, str(path))


def environment(config_file: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The process environment, completed by the `okbx.env` next to the configuration.
    A value set (non-empty) in the environment wins: systemd's EnvironmentFile= set it already."""
    env = dict(environ)
    for key, value in read_env_file(env_file_for(config_file)).items():
        if not env.get(key):
            env[key] = value
    return env


def render_env_file(api_token: str, webhook_url: str) -> str:
    """KEY=value lines for the two secrets, valid unchanged for okbx, systemd and `set -a; . file`."""
    lines = ["# okbx-sync secrets, read by okbx.yaml as ${...}. Keep this file private (mode 0600)."]
    for key, value in ((ENV_TOKEN, api_token.strip()), (ENV_WEBHOOK, webhook_url.strip())):
        if not value or any(c in value for c in "\n\r\0'\"\\ $`"):
            raise UnsafeEnvValue(f"{key} is empty or contains characters an env file cannot carry safely")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def write_private_file(path: Path, text: str) -> None:
    """Write `text` so that only the owner can read it (0600 from creation, also when replacing a file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
