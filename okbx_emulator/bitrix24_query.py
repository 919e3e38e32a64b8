"""PHP-flavoured parameter handling for the Bitrix24 emulator.

Bitrix24 is PHP, and its REST layer shows it:

* form bodies and batch command strings are decoded with PHP's `parse_str` array syntax
  (`filter[>=CHANGED_DATE]=...`, `select[]=ID`), and arrays whose keys are exactly 0..n-1
  come back from `json_encode` as JSON lists, everything else as objects (empty ones as `[]`);
* legacy `task.*` methods ignore parameter names and take the values in order, then check
  them against a per-method manifest (types, allowed keys, allowed values) -- see
  `CTaskRestService::_parseRestParams` in the tasks module;
* list filters carry operator prefixes (`!`, `>=`, `%`, `@` ...) in their keys.

This module reproduces those rules as pure functions so that `bitrix24.py` only deals with
state.  Nothing here knows about tasks beyond the legacy manifests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from okbx_emulator.http import Request

PAGE_SIZE = 50  # every classic list method pages by 50 and caps nPageSize at 50


class ApiError(Exception):
    """A classic-API error answer: HTTP status, `error` code and `error_description`."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(f"{status} {code}: {description}")
        self.status = status
        self.code = code
        self.description = description

    def payload(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


def core_error(message: str) -> ApiError:
    """400 ERROR_CORE; the portal joins its messages with `<br>`, so one trails each."""
    return ApiError(400, "ERROR_CORE", f"{message}<br>")


# -- PHP arrays ------------------------------------------------------------------------

_PHP_INT_KEY = re.compile(r"^(0|-?[1-9][0-9]*)$")


def is_php_int_key(key: object) -> bool:
    """PHP turns canonical decimal-integer string keys into int keys ("7" yes, "07" no)."""
    return isinstance(key, int) or (isinstance(key, str) and bool(_PHP_INT_KEY.match(key)))


def php_array(mapping: Mapping[Any, Any]) -> dict[str, Any] | list[Any]:
    """How `json_encode` prints a PHP array: a list iff its keys are exactly 0..n-1 in order."""
    keys = list(mapping)
    if all(is_php_int_key(k) for k in keys) and [int(k) for k in keys] == list(range(len(keys))):
        return list(mapping.values())
    return {str(k): v for k, v in mapping.items()}


def phpize(value: Any) -> Any:
    """Deep copy for the wire: empty objects become `[]`, as PHP's empty array does."""
    if isinstance(value, Mapping):
        return {str(k): phpize(v) for k, v in value.items()} if value else []
    if isinstance(value, (list, tuple)):
        return [phpize(v) for v in value]
    return value


def parse_query_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """`parse_str` for already url-decoded pairs, keeping key order (positional methods need it)."""
    root: dict[str, Any] = {}
    for raw_key, value in pairs:
        path = _split_php_key(raw_key)
        if path:
            _assign(root, path, value)
    return {key: _listify(value) for key, value in root.items()}


def parse_query_string(query: str) -> dict[str, Any]:
    """A batch command's query string: decoded exactly once, `+` meaning space, as PHP does."""
    return parse_query_pairs(parse_qsl(query, keep_blank_values=True))


def _split_php_key(raw_key: str) -> list[str]:
    base, bracket, rest = raw_key.partition("[")
    if not bracket:
        return [raw_key] if raw_key else []
    if not base:
        return []  # PHP drops keys that start with "["
    subkeys = re.findall(r"\[([^\]]*)\]", "[" + rest)
    return [base, *subkeys] if subkeys else [raw_key]


def _assign(container: dict[str, Any], path: list[str], value: str) -> None:
    key = path[0]
    if key == "":  # "a[]": PHP appends at max int key + 1
        ints = [int(k) for k in container if is_php_int_key(k)]
        key = str(max(ints) + 1 if ints else 0)
    if len(path) == 1:
        container[key] = value
        return
    child = container.get(key)
    if not isinstance(child, dict):
        child = container[key] = {}
    _assign(child, path[1:], value)


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    return php_array(converted) if converted else converted


def positional_values(params: Any) -> list[Any]:
    """Legacy task.* methods read `foreach ($args as $value)`: names are ignored."""
    if isinstance(params, Mapping):
        return list(params.values())
    if isinstance(params, list):
        return list(params)
    return []


def as_mapping(value: Any) -> dict[str, Any]:
    """A PHP array seen as key -> value (lists get their numeric keys back)."""
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


# -- scalars ---------------------------------------------------------------------------


def lax_int(value: Any) -> int | None:
    """`CTaskAssert::isLaxIntegers`: an int or a canonical decimal string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _PHP_INT_KEY.match(value):
        return int(value)
    return None


def php_intval(value: Any) -> int:
    """PHP `(int)` as used by SQL filters: "12abc" -> 12, junk -> 0."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        found = re.match(r"\s*([+-]?\d+)", value)
        return int(found.group(1)) if found else 0
    return 0


def php_truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "n", "false")
    return bool(value)


def parse_offset(value: str) -> timezone:
    found = re.fullmatch(r"([+-])(\d{2}):(\d{2})", value)
    if not found:
        raise ValueError(f"utc_offset must look like +03:00, got {value!r}")
    sign = -1 if found.group(1) == "-" else 1
    minutes = sign * (int(found.group(2)) * 60 + int(found.group(3)))
    return timezone(timedelta(minutes=minutes))


def parse_datetime(value: Any, tz: timezone) -> datetime:
    """What `strtotime` accepts in practice: ISO 8601 (offset optional) or dd.mm.yyyy [hh:mm[:ss]].

    A value without an offset is read in the portal's zone.  Raises ValueError otherwise.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        dotted = re.fullmatch(r"(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{1,2}):(\d{2})(?::(\d{2}))?)?", text)
        if dotted:
            day, month, year, hour, minute, second = dotted.groups()
            parsed = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    else:
        raise ValueError(f"not a date: {value!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def format_datetime(value: datetime | None, tz: timezone) -> str | None:
    """Bitrix prints seconds and the portal offset: 2025-09-09T12:11:30+03:00."""
    if value is None:
        return None
    return value.astimezone(tz).replace(microsecond=0).isoformat()


# -- filters and sorting ---------------------------------------------------------------

TASK_PREFIXES = ("!=", ">=", "<=", "!%", "!@", "!", ">", "<", "=", "%", "@")
LEGACY_PREFIXES = ("!", "<=", "<", ">=", ">")
_POSITIVE = ("", "=", "@")
_NEGATIVE = ("!", "!=", "!@")


def split_prefix(key: str, prefixes: Sequence[str]) -> tuple[str, str]:
    for prefix in sorted(prefixes, key=len, reverse=True):
        if key.startswith(prefix):
            return prefix, key[len(prefix) :]
    return "", key


def listed(value: Any) -> list[Any]:
    """A filter value is "a single value or an array"."""
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list):
        return value
    return [value]


def like(pattern: str, text: str) -> bool:
    """SQL LIKE with % and _, case-insensitive as MySQL's default collation is."""
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.IGNORECASE | re.DOTALL) is not None


def match(op: str, actual: Any, expected: Any, coerce: Callable[[Any], Any]) -> bool:
    """One filter condition.  Empty expected values mean SQL NULL; NULL never compares."""
    values = [None if v is None or v == "" else coerce(v) for v in listed(expected)]
    if op in _POSITIVE:
        return actual in values
    if op in _NEGATIVE:
        return actual not in values
    if op in ("%", "!%"):
        hit = actual is not None and any(v is not None and like(f"%{v}%", str(actual)) for v in values)
        return hit if op == "%" else not hit
    target = values[0] if values else None
    if actual is None or target is None:
        return False
    return bool({">": actual > target, ">=": actual >= target, "<": actual < target, "<=": actual <= target}[op])


def row_matches(
    filters: Mapping[str, Any],
    prefixes: Sequence[str],
    coercers: Mapping[str, Callable[[Any], Any]],
    value_of: Callable[[str], Any],
) -> bool:
    """All conditions hold; keys naming fields outside `coercers` are ignored, as portals do."""
    for key, expected in filters.items():
        op, field = split_prefix(str(key), prefixes)
        coerce = coercers.get(field.upper())
        if coerce is not None and not match(op, value_of(field.upper()), expected, coerce):
            return False
    return True


def sort_rows(rows: list[Any], order: Mapping[str, Any], value_of: Callable[[Any, str], Any]) -> list[Any]:
    """Multi-key stable sort; NULLs first when ascending, last when descending (MySQL)."""
    result = list(rows)
    for field, direction in reversed(list(order.items())):
        descending = str(direction).strip().lower() == "desc"

        def key(row: Any, field: str = field) -> tuple[bool, Any]:
            value = value_of(row, field.upper())
            return (value is not None, value if value is not None else 0)

        result.sort(key=key, reverse=descending)
    return result


def page(rows: list[Any], start: Any) -> tuple[list[Any], int | None, int | None]:
    """Offset paging by 50: (rows, total, next).  start=-1 skips the COUNT: no total, no next."""
    wanted = php_intval(start)
    if wanted == -1:
        return rows[:PAGE_SIZE], None, None
    # inferred: the REST navigation converts start to a page number, so offsets snap to 50s
    offset = max(wanted, 0) // PAGE_SIZE * PAGE_SIZE
    chunk = rows[offset : offset + PAGE_SIZE]
    following = offset + PAGE_SIZE if offset + PAGE_SIZE < len(rows) else None
    return chunk, len(rows), following


# -- legacy positional methods ---------------------------------------------------------


@dataclass(frozen=True)
class LegacyParam:
    name: str  # the manifest's "description", quoted in error messages
    type: str  # "integer" | "array"
    allowed_keys: tuple[str, ...] | None = None
    key_prefixes: tuple[str, ...] = ()
    allowed_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class LegacySignature:
    cls: str
    method: str
    params: tuple[LegacyParam, ...]
    mandatory: int

    def fail(self, message: str) -> ApiError:
        return core_error(f"TASKS_ERROR_EXCEPTION_#256; {message}; 256/TE/WRONG_ARGUMENTS")

    def where(self, index: int) -> str:
        return f"Param #{index} ({self.params[index].name}) for method {self.cls}::{self.method}()"


def legacy_args(signature: LegacySignature, values: list[Any], *, reject_extra: bool) -> list[Any]:
    """`_parseRestParams`: check each positional value against the method's manifest."""
    parsed: list[Any] = []
    for index, param in enumerate(signature.params):
        if index >= len(values):
            if index < signature.mandatory:
                raise signature.fail(
                    f"Param #{index} ({param.name}) expected by method "
                    f"{signature.cls}::{signature.method}(), but not given."
                )
            break
        parsed.append(_check_param(signature, index, param, values[index]))
    if reject_extra and len(values) > len(signature.params):
        # inferred: this check is commented out in the corp source we could read; the reference
        # asks for it because a stray key shifts every argument after it on real portals.
        raise signature.fail(
            f"Too much params({len(values)}) given for method {signature.cls}::{signature.method}(), "
            f"but expected not more than {len(signature.params)}."
        )
    return parsed


def _check_param(signature: LegacySignature, index: int, param: LegacyParam, value: Any) -> Any:
    if param.type == "integer":
        number = lax_int(value)
        if number is None:
            raise signature.fail(
                f'{signature.where(index)} expected to be of type "integer", but given something else.'
            )
        return number
    if not isinstance(value, (Mapping, list)):
        raise signature.fail(f'{signature.where(index)} expected to be of type "array", but given something else.')
    mapping = as_mapping(value)
    if param.allowed_keys is not None:
        for key, item in list(mapping.items()):
            if key == "0" and item == "":  # the manifest's trick for "skip this argument"
                del mapping[key]
                continue
            _, bare = split_prefix(key, param.key_prefixes)
            if bare not in param.allowed_keys:
                raise signature.fail(f'{signature.where(index)} must not contain key "{key}".')
    if param.allowed_values is not None:
        for item in mapping.values():
            if str(item) not in param.allowed_values:
                raise signature.fail(f'{signature.where(index)} must not contain value "{item}".')
        return [str(item) for item in mapping.values()]
    return mapping


_ELAPSED_READABLE = (
    "ID",
    "TASK_ID",
    "USER_ID",
    "COMMENT_TEXT",
    "SECONDS",
    "MINUTES",
    "SOURCE",
    "CREATED_DATE",
    "DATE_START",
    "DATE_STOP",
)
ELAPSED_AGGREGATES = tuple(
    f"{f}_{a}" for f in ("ID", "USER_ID", "SECONDS", "MINUTES") for a in ("MAX", "MIN", "COUNT", "SUM", "AVG")
)
_TASK_ID = LegacyParam("taskId", "integer")

COMMENT_ADD = LegacySignature(
    "ctaskcommentitem",
    "add",
    (
        _TASK_ID,
        LegacyParam("arFields", "array", ("POST_MESSAGE", "AUTHOR_ID", "POST_DATE", "UF_FORUM_MESSAGE_DOC")),
    ),
    mandatory=2,
)
COMMENT_GETLIST = LegacySignature(
    "ctaskcommentitem",
    "getlist",
    (
        _TASK_ID,
        LegacyParam("arOrder", "array", ("ID", "AUTHOR_ID", "AUTHOR_NAME", "AUTHOR_EMAIL", "POST_DATE")),
        LegacyParam("arFilter", "array", ("ID", "AUTHOR_ID", "AUTHOR_NAME", "POST_DATE"), LEGACY_PREFIXES),
    ),
    mandatory=1,
)
ELAPSED_GETLIST = LegacySignature(
    "ctaskelapseditem",
    "getlist",
    (
        _TASK_ID,
        LegacyParam(
            "order",
            "array",
            ("ID", "TASK_ID", "USER_ID", "SECONDS", "MINUTES", "CREATED_DATE", "DATE_START", "DATE_STOP"),
        ),
        LegacyParam("filter", "array", ("ID", "TASK_ID", "USER_ID", "CREATED_DATE"), LEGACY_PREFIXES),
        LegacyParam("select", "array", allowed_values=("", "*", *_ELAPSED_READABLE, *ELAPSED_AGGREGATES)),
        LegacyParam("params", "array", ("NAV_PARAMS",)),
    ),
    mandatory=0,
)
ELAPSED_ADD = LegacySignature(
    "ctaskelapseditem",
    "add",
    (
        _TASK_ID,
        LegacyParam(
            "fields",
            "array",
            ("USER_ID", "COMMENT_TEXT", "SECONDS", "SOURCE", "CREATED_DATE", "DATE_START", "DATE_STOP"),
        ),
    ),
    mandatory=2,
)
ELAPSED_FIELDS = _ELAPSED_READABLE


# -- requests ----------------------------------------------------------------------------


def method_name(segment: str) -> str:
    """Method names are case-insensitive and `.json` is the default suffix."""
    return segment.strip().strip("/").lower().removesuffix(".json")


def route(path: str) -> tuple[str, str, str] | None:
    """(user id, webhook secret, method) of `/rest/{user}/{secret}/{method}`; REST 3.0 is None."""
    parts = path.strip("/").split("/")
    if len(parts) != 4 or parts[0] != "rest" or parts[1] == "api":
        return None
    return parts[1], parts[2], method_name(parts[3])


def request_params(request: Request) -> dict[str, Any] | list[Any]:
    """Query string first, then the body, as PHP merges them; `auth` is never a parameter.

    Raises ValueError for a body the emulator cannot read.
    """
    params = parse_query_pairs((k, v) for k, v in request.query if k != "auth")
    body = _body_params(request)
    if isinstance(body, list):
        return body  # a JSON array body is a positional argument list
    params.update(body)
    return params


def _body_params(request: Request) -> dict[str, Any] | list[Any]:
    if not request.body.strip():
        return {}
    content_type = request.headers.get("content-type", "")
    if "json" in content_type or (not content_type and request.body.lstrip()[:1] in (b"{", b"[")):
        data = json.loads(request.body.decode("utf-8"))
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k != "auth"}
        if isinstance(data, list):
            return data
        raise ValueError("a JSON body must be an object or an array")
    if "multipart" in content_type:
        raise ValueError("multipart bodies are not emulated")
    pairs = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
    return parse_query_pairs((k, v) for k, v in pairs if k != "auth")


def select_param(named: Mapping[str, Any]) -> list[str] | None:
    """`select` of tasks.task.get/list: None for the default field set, else upper-cased names."""
    if "select" not in named:
        return None
    select = named["select"]
    if not isinstance(select, (list, Mapping)):
        description = "Invalid value {} to match with parameter {select}. Should be value of type array."
        raise ApiError(400, "100", f"{description} (internal error)")
    return [str(v).upper() for v in as_mapping(select).values()] or None


def nav_params(nav: Any, *, by_task: bool) -> tuple[int, int]:
    """(page size, offset) of task.elapseditem.getlist; size 0 means every row.

    Without NAV_PARAMS a single task's rows all come back, all tasks only the first 50.
    """
    if not isinstance(nav, Mapping):
        return (0 if by_task else PAGE_SIZE), 0
    size = php_intval(nav.get("nPageSize", PAGE_SIZE))
    size = PAGE_SIZE if size <= 0 else min(size, PAGE_SIZE)  # inferred: <= 0 falls back to 50
    number = php_intval(nav.get("iNumPage", 0))  # 1-based
    return size, (number - 1) * size if number > 0 else 0


def tag_list(value: Any) -> list[str]:
    """TAGS on write: an array of strings, or one comma-separated string."""
    items = value.split(",") if isinstance(value, str) else listed(value) if value else []
    return list(dict.fromkeys(str(t).strip() for t in items if str(t).strip()))


def arg(args: list[Any], index: int, default: Any = None) -> Any:
    """A parsed positional argument, or an empty array when the caller stopped earlier."""
    if index < len(args):
        return args[index]
    return {} if default is None else default
