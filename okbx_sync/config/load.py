"""Load and validate okbx.yaml into frozen objects.

Every problem is collected with its key path and reported at once; unknown keys are errors, so
a typo never silently falls back to a default.  `${VAR}` in any string is replaced from the
environment (secrets live there, not in the file).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .. import bounded
from ..errors import ConfigError
from ..secrets import Secret
from .convert import Problem, parse_block, show
from .routes import RouteConfig, legacy_route, parse_routes
from .sections import OPT_IN_SECTIONS, OPTIONAL_SECTIONS, SECTIONS, CommentsConfig, Config


def parse_config(raw: Any, *, env: Mapping[str, str], base_dir: Path, source: str = "") -> Config:
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        raise ConfigError([("", "the file must be a YAML mapping with sections okdesk, bitrix24, time, ...")], source)
    for name in raw:
        if name not in SECTIONS and name != "routes":
            problems.append((str(name), f"unknown section (known: {', '.join(SECTIONS)}, routes)"))
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
        kwargs, found = parse_block(section, keys, values, env, base_dir)
        problems += found
        if (url_key := _URL_KEYS.get(section)) and url_key in kwargs and not kwargs.get("allow_insecure_http"):
            if message := insecure_http_problem(kwargs[url_key]):
                problems.append((f"{section}.{url_key}", message))
        if not any(p.startswith(section + ".") or p == section for p, _ in problems):
            built[section] = cls(**kwargs)
    routes, found = _routes(raw, built, env, base_dir)
    problems += found
    problems += _cross_checks(raw, routes)
    if problems:
        raise ConfigError(problems, source)
    return Config(**built, source=source, routes=routes)


def _routes(
    raw: dict[str, Any], built: dict[str, Any], env: Mapping[str, str], base_dir: Path
) -> tuple[tuple[RouteConfig, ...], list[tuple[str, str]]]:
    """`routes:`, or the one route the okdesk, bitrix24 and comments sections describe."""
    route_keys = [
        (section, name, key) for section, (_, keys) in SECTIONS.items() for name, key in keys.items() if key.route_key
    ]
    given = [(s, n, k) for s, n, k in route_keys if isinstance(raw.get(s), dict) and raw[s].get(n) is not None]
    if "routes" in raw:
        problems = [
            (f"{s}.{n}", "describes the one route of a configuration without routes:; say it in a route instead")
            for s, n, _ in given
        ]
        routes, found = parse_routes(raw["routes"], env, base_dir)
        return routes, problems + found
    missing = [
        (f"{s}.{n}", "is required")  # the one route's; a configuration with routes: has none of these
        for s, n, k in route_keys
        if k.needed and isinstance(raw.get(s), dict) and raw[s].get(n) is None
    ]
    if missing or not {"okdesk", "bitrix24"} <= set(built):
        return (), missing
    route = legacy_route(built["okdesk"], built["bitrix24"], built.get("comments") or CommentsConfig())
    return (route,), [(f"okdesk.{k}", m) for k, m in _legacy_problems(route)]


def _legacy_problems(route: RouteConfig) -> list[tuple[str, str]]:
    if route.finish.return_status == route.status:
        return [("return_status", "must differ from okdesk.handoff_status")]
    return []


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


def _cross_checks(raw: dict[str, Any], routes: tuple[RouteConfig, ...]) -> list[tuple[str, str]]:
    """Checks across sections, reported together with all the others."""
    debt = raw["debt"] if isinstance(raw.get("debt"), dict) else {}
    hold = debt.get("status")
    taken = {r.status for r in routes} | {r.finish.return_status for r in routes if not r.returns_previous}
    if isinstance(hold, str) and hold.strip() in taken:
        return [("debt.status", "must differ from every route's trigger and return status")]
    return []


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
    except bounded.NoWriter as exc:
        raise ConfigError([("", f"cannot read the file: {exc}")], source) from None
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
    except Problem as problem:
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
                    raise Problem(f"duplicate key {show(key)} at line {mark.line + 1}, column {mark.column + 1}")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The YAML document, or Problem: syntax errors with their place, duplicate keys, too deep nesting.
    The depth is checked on the event stream first: PyYAML builds nested nodes recursively."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise Problem(f"nested more than {MAX_NESTING} levels deep (line {line})")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise Problem(f"not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise Problem(f"nested more than {MAX_NESTING} levels deep") from None
