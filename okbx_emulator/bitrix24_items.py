"""Typed `crm.item.*` records for the Bitrix24 emulator: field specs, writes, the list filter.

What routes-files.md §1.1/§1.5 says about every `crm.item` entity, in one place so that deals
and contacts behave alike:

* values are typed on the wire: ids and amounts are JSON numbers, booleans `"Y"`/`"N"`, dates
  carry the portal offset (`begindate`/`closedate` are local midnight rendered as a datetime);
* on add and update, unknown keys and read-only keys are dropped silently, never refused; a
  multiple field given a scalar is refused with `100` "Expected iterable value ...";
* `crm.item.list` filters on any declared field with the prefixes `>=` `>` `<=` `<` `@` `!@`
  `%` `=%` `%=` `!%` `!=%` `!%=` `=` `!=` `!`, nested `{"logic": "OR", ...}` groups under numeric
  keys, orders on any declared field, selects fields (`*` for all, and only `*` brings `fm`),
  and pages by 50 with `start` (`-1`: no total).  A filter or order on a field the entity does
  not have is `INVALID_ARG_VALUE` "Invalid filter: field '<f>' is not allowed in filter".

Records are plain dicts with native values (int, str, aware datetime, list[int]); `Table`
owns one entity's rows and id counter.  Nothing here knows about pipelines or stages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timezone
from functools import partial
from typing import Any, Literal

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_query import ApiError

Kind = Literal["int", "str", "yn", "datetime", "date", "number", "ints", "fm"]
# longest first, so that "!=%" is not read as "!=" plus a field named "%..."
_PREFIXES = ("!=%", "!%=", "=%", "%=", "!%", ">=", "<=", "!@", "!=", "@", "%", ">", "<", "=", "!")


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    title: str  # as quoted in error texts (inferred: English portal titles)
    writable: bool = True


class Table:
    """One entity's records: `rows` by id, in creation order."""

    def __init__(self, entity_type_id: int, fields: tuple[Field, ...], tz: timezone) -> None:
        self.entity_type_id = entity_type_id
        self.fields = {f.name: f for f in fields}
        self.tz = tz
        self.rows: dict[int, dict[str, Any]] = {}
        self.last_id = 0

    def new_id(self) -> int:
        self.last_id += 1
        return self.last_id

    # -- writes --------------------------------------------------------------------------------
    def clean(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The writable declared fields of an add/update payload, typed; the rest is dropped."""
        result: dict[str, Any] = {}
        for key, value in fields.items():
            spec = self.fields.get(key)
            if spec is not None and spec.writable:
                result[key] = self.coerce(spec, value)
        return result

    def coerce(self, spec: Field, value: Any) -> Any:
        if spec.kind in ("ints", "fm"):
            if value in (None, ""):
                return []
            if not isinstance(value, (list, Mapping)):
                kind = {bool: "boolean", int: "integer", float: "double", str: "string"}.get(type(value), "unknown")
                raise ApiError(400, "100", f"Expected iterable value for multiple field, but got `{kind}` instead")
            if spec.kind == "fm":
                return [dict(q.as_mapping(v)) for v in q.as_mapping(value).values()]
            return [self._one(spec, v) for v in q.as_mapping(value).values()]
        if value is None or (value == "" and spec.kind != "str"):
            return None
        return self._one(spec, value)

    def _one(self, spec: Field, value: Any) -> Any:
        try:
            if spec.kind in ("int", "ints"):
                whole = isinstance(value, float) and value.is_integer()
                parsed = q.lax_int(int(value) if whole else value)
                if parsed is None:
                    raise ValueError(value)
                return parsed
            if spec.kind == "number":
                amount = float(value)
                if not math.isfinite(amount):
                    raise ValueError(value)
                return amount
            if spec.kind == "yn":
                flag = {"Y": "Y", "N": "N", "1": "Y", "0": "N", "true": "Y", "false": "N"}
                return flag[str(value).strip() if not isinstance(value, bool) else str(value).lower()]
            if spec.kind in ("datetime", "date"):
                moment = q.parse_datetime(value, self.tz)
                if spec.kind == "date":  # a date is local midnight (inferred: the server's zone)
                    return datetime.combine(moment.astimezone(self.tz).date(), time(), self.tz)
                return moment.replace(microsecond=0)
            return str(value)
        except (ValueError, KeyError, TypeError, OverflowError):
            raise invalid_value(spec.title) from None

    # -- reads ---------------------------------------------------------------------------------
    def select(self, named: Mapping[str, Any]) -> list[str] | None:
        """None: every field but `fm` (routes-files.md §1.1: only `*` brings it)."""
        names = [str(v) for v in q.as_mapping(named.get("select")).values()]
        return names or None

    def render(self, row: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
        if select is None:
            names = [n for n, f in self.fields.items() if f.kind != "fm"]
        elif "*" in select:
            names = list(self.fields)
        else:  # inferred: unknown names in select are skipped; the id always comes back
            names = [n for n in self.fields if n in select or n == "id"]
        out = {name: self.wire(self.fields[name], row.get(name)) for name in names}
        return out | {"entityTypeId": self.entity_type_id}

    def wire(self, spec: Field, value: Any) -> Any:
        if spec.kind in ("datetime", "date"):
            return q.format_datetime(value, self.tz)
        if spec.kind == "number" and isinstance(value, float) and value.is_integer():
            return int(value)
        if spec.kind in ("ints", "fm"):
            return list(value or [])
        return value

    def listing(self, named: Mapping[str, Any], visible: Callable[[dict[str, Any]], bool]) -> tuple[Any, ...]:
        """(rendered rows of the page, total, next) of a `crm.item.list` call."""
        filters = q.as_mapping(named.get("filter"))
        self.check_filter(filters)
        order = q.as_mapping(named.get("order")) or {"id": "ASC"}  # inferred default; always send one
        for key in order:
            if key not in self.fields or self.fields[key].kind in ("ints", "fm"):
                raise ApiError(400, "INVALID_ARG_VALUE", f"Invalid order: field '{key}' is not allowed in order")
        rows = [row for _, row in sorted(self.rows.items()) if visible(row) and self.matches(row, filters)]
        for key, direction in reversed(list(order.items())):
            # MySQL: NULLs first ascending, last descending
            rows.sort(key=partial(_sort_key, key), reverse=str(direction).strip().upper() == "DESC")
        chunk, total, following = q.page(rows, named.get("start", 0))
        select = self.select(named)
        return {"items": [self.render(row, select) for row in chunk]}, total, following

    def check_filter(self, filters: Mapping[str, Any]) -> None:
        for key, value in filters.items():
            if key == "logic":
                continue
            if q.is_php_int_key(key) and isinstance(value, (Mapping, list)):
                self.check_filter(q.as_mapping(value))
                continue
            _, name = q.split_prefix(key, _PREFIXES)
            if name not in self.fields or self.fields[name].kind == "fm":
                raise ApiError(400, "INVALID_ARG_VALUE", f"Invalid filter: field '{name}' is not allowed in filter")
            for item in q.listed(value):
                if item not in (None, ""):
                    self._filter_value(self.fields[name], item)

    def matches(self, row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
        outcomes = []
        for key, value in filters.items():
            if key == "logic":
                continue
            if q.is_php_int_key(key) and isinstance(value, (Mapping, list)):
                outcomes.append(self.matches(row, q.as_mapping(value)))
                continue
            op, name = q.split_prefix(key, _PREFIXES)
            outcomes.append(self._condition(self.fields[name], row.get(name), op, value))
        either = str(filters.get("logic", "AND")).upper() == "OR"
        return any(outcomes) if either else all(outcomes)

    def _condition(self, spec: Field, actual: Any, op: str, expected: Any) -> bool:
        def coerce(value: Any) -> Any:
            return self._filter_value(spec, value)

        if spec.kind == "ints":  # a multiple field matches when any of its values does
            values = actual or [None]
            if op in ("!", "!=", "!@"):
                return all(q.match(op, v, expected, coerce) for v in values)
            return any(q.match(op, v, expected, coerce) for v in values)
        if op in ("=%", "%=", "!=%", "!%="):
            hit = actual is not None and any(q.like(str(v), str(actual)) for v in q.listed(expected))
            return hit != op.startswith("!")
        if spec.kind in ("str", "yn"):
            actual = None if actual is None else str(actual)
        return q.match(op, actual, expected, coerce)

    def _filter_value(self, spec: Field, value: Any) -> Any:
        if spec.kind in ("str", "yn"):
            return str(value)
        try:
            if spec.kind in ("int", "ints"):
                parsed = q.lax_int(value)
                if parsed is None:
                    raise ValueError(value)
                return parsed
            if spec.kind == "number":
                return float(value)
            return q.parse_datetime(value, self.tz)
        except (ValueError, TypeError):
            message = f"Invalid filter: field '{spec.name}' has invalid value"
            raise ApiError(400, "INVALID_ARG_VALUE", message) from None


def _sort_key(field: str, row: Mapping[str, Any]) -> tuple[bool, Any]:
    value = row.get(field)
    return value is not None, value if value is not None else 0


def invalid_value(title: str) -> ApiError:
    """`CRM_FIELD_ERROR_VALUE_NOT_VALID` with its documented text template (§1.3, §1.5)."""
    return ApiError(400, "CRM_FIELD_ERROR_VALUE_NOT_VALID", f'Invalid value for field "{title}"')


def required(title: str) -> ApiError:
    return ApiError(400, "CRM_FIELD_ERROR_REQUIRED", f'The "{title}" field is required')


def empty(value: Any) -> bool:
    return value is None or value == "" or value == []
