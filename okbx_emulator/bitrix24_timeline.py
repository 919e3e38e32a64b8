"""CRM timeline comments in the Bitrix24 emulator (routes-files.md §2; scope `crm`).

* `crm.timeline.comment.add {"fields": {...}}`: only lowercase `fields`; the owner is
  `ENTITY_TYPE_ID` (wins) or `ENTITY_TYPE` (`deal`, `contact`, `company`, ... `dynamic_<n>`, read
  case-insensitively) plus `ENTITY_ID`; `COMMENT` is trimmed and an empty one is refused;
  `AUTHOR_ID` missing or <= 0 means the webhook user, any other value is taken unchecked;
  `FILES` are `[name, base64]` pairs.  Answers the new comment's id.
* `list` honours only `filter.ENTITY_ID` + `filter.ENTITY_TYPE` (both required), orders only on
  `ID`, `CREATED`, `AUTHOR_ID` (anything but `DESC` ascends), pages by 50 with `total`, answers
  strings, `ENTITY_TYPE` lowercase, and `FILES` only for comments that have files.
* `get`, `update` (only `COMMENT` and `FILES`; `FILES` replaces all, `[]` deletes), `delete`
  (`null`), `fields`; errors in the `{"error": "", "error_description": "Not found."}` form.
* Side effect (§2.6): a comment on a deal by anyone but its assignee moves the deal's
  `lastActivityTime`/`lastActivityBy` and `updatedTime` (so it shows in a `>updatedTime` poll).

Each comment has one owner here, so an update never makes a bound copy with a new id (§2.3).
Markup is stored as sent (BB-code is rendered only in the UI); mentions and emoji encoding are
not emulated.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from functools import partial
from typing import Any, Literal

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_crm import Page
from okbx_emulator.bitrix24_deals import DEAL, DealPortal
from okbx_emulator.bitrix24_query import ApiError

TIMELINE_METHODS = {
    f"crm.timeline.comment.{verb}": f"comment_{verb}" for verb in ("add", "list", "get", "update", "delete", "fields")
}
OWNER_TYPES = {"lead": 1, "deal": 2, "contact": 3, "company": 4, "order": 14}
_ORDER_KEYS = ("ID", "CREATED", "AUTHOR_ID")
_FIELDS = {
    "ID": ("integer", True), "CREATED": ("datetime", True), "ENTITY_ID": ("integer", False),
    "ENTITY_TYPE": ("string", False), "AUTHOR_ID": ("user", False), "COMMENT": ("string", False),
    "FILES": ("attached_diskfile", False),
}  # fmt: skip


def _plain(text: str) -> ApiError:
    """The timeline's own error form: an empty code and a sentence (documented)."""
    return ApiError(400, "", text)


class Timeline:
    def __init__(
        self,
        lock: threading.Lock,
        now: Callable[[], datetime],
        tz: timezone,
        deals: DealPortal,
        webhook_user: Callable[[], int],
        user_name: Callable[[int], str],
        *,
        files_shape: Literal["object", "ids"] = "object",  # docs: object by Drive id; source: a list of ids
        max_length: int | None = None,  # unknown (§2.4): a limit a test may impose
        bumps_deal: bool = True,  # source (§2.6): a non-assignee's comment moves the deal
    ) -> None:
        self._lock, self._now, self._tz, self._deals = lock, now, tz, deals
        self._user, self._user_name = webhook_user, user_name
        self.files_shape, self.max_length, self.bumps_deal = files_shape, max_length, bumps_deal
        self._comments: dict[int, dict[str, Any]] = {}
        self._last = {"comment": 0, "file": 900}  # file ids stand for Drive object ids

    # -- seeding and human actions ------------------------------------------------------------
    def add_comment(self, entity: str, owner_id: int, text: str, *, author_id: int) -> int:
        """A person writes in the timeline of a deal (or contact, company) in the UI."""
        with self._lock:
            try:
                return self.comment_add({"fields": {"ENTITY_TYPE": entity, "ENTITY_ID": owner_id}
                                         | {"COMMENT": text, "AUTHOR_ID": author_id}})  # fmt: skip
            except ApiError as error:
                raise ValueError(error.description) from error

    def comments(self, entity: str, owner_id: int) -> list[dict[str, Any]]:
        """Inspection: the owner's comments, oldest first, as the API prints them."""
        with self._lock:
            type_id = OWNER_TYPES[entity.lower()]
            return [self._render(c, None) for c in self._of(type_id, owner_id)]

    # -- REST methods ---------------------------------------------------------------------------
    def comment_add(self, params: Any) -> int:
        named = q.as_mapping(params)
        if not isinstance(named.get("fields"), Mapping):  # `Fields`, `FIELDS`, `arFields`: refused
            raise ApiError(400, "100", "Could not find value for parameter {fields}")  # inferred wording
        fields = q.as_mapping(named["fields"])
        type_id = q.lax_int(fields.get("ENTITY_TYPE_ID")) or _type_id(fields.get("ENTITY_TYPE"))
        owner_id = q.lax_int(fields.get("ENTITY_ID"))
        if not type_id or owner_id is None or owner_id <= 0:
            raise ApiError(400, "OWNER_NOT_FOUND", "Owner not found")  # inferred wording
        if self._deals.owner(type_id, owner_id) is None:
            raise ApiError(400, "ACCESS_DENIED", "Access denied")  # inferred: missing reads as no right
        text = self._text(fields.get("COMMENT"))
        author = q.lax_int(fields.get("AUTHOR_ID"))
        author = author if author is not None and author > 0 else self._user()
        self._last["comment"] += 1
        comment: dict[str, Any] = {"ID": self._last["comment"], "ENTITY_TYPE_ID": type_id, "ENTITY_ID": owner_id}
        comment |= {"CREATED": self._now(), "AUTHOR_ID": author, "COMMENT": text}
        comment["FILES"] = self._files(fields.get("FILES"), author)
        self._comments[comment["ID"]] = comment
        if type_id == DEAL and self.bumps_deal:
            self._deals.touch_activity(owner_id, author)
        return int(comment["ID"])

    def comment_list(self, params: Any) -> Page:
        named = q.as_mapping(params)
        filters = q.as_mapping(named.get("filter"))
        if "ENTITY_ID" not in filters or "ENTITY_TYPE" not in filters:
            raise ApiError(400, "INVALID_ARG_VALUE", "ENTITY_ID and ENTITY_TYPE are required")  # inferred
        type_id, owner_id = _type_id(filters["ENTITY_TYPE"]), q.lax_int(filters["ENTITY_ID"])
        if not type_id or owner_id is None or self._deals.owner(type_id, owner_id) is None:
            raise _plain("Access denied.")
        rows = self._of(type_id, owner_id)
        for key, direction in reversed(list(q.as_mapping(named.get("order")).items())):
            if key.upper() in _ORDER_KEYS:
                rows.sort(key=partial(_value, key.upper()), reverse=str(direction).upper() == "DESC")
        # inferred: no `start: -1` shortcut here; a negative start reads the first page
        chunk, total, following = q.page(rows, max(q.php_intval(named.get("start", 0)), 0))
        select = [str(v).upper() for v in q.as_mapping(named.get("select")).values()] or None
        return Page([self._render(c, select) for c in chunk], total, following)

    def comment_get(self, params: Any) -> dict[str, Any]:
        return self._render(self._readable(q.as_mapping(params)), None)

    def comment_update(self, params: Any) -> int:
        named = q.as_mapping(params)
        comment = self._readable(named)
        fields = q.as_mapping(named.get("fields"))
        if "COMMENT" in fields:  # AUTHOR_ID, ENTITY_*, CREATED cannot change: ignored
            comment["COMMENT"] = self._text(fields["COMMENT"])
        if "FILES" in fields:  # documented: FILES replaces every old file; [] deletes them
            comment["FILES"] = self._files(fields["FILES"], comment["AUTHOR_ID"])
        return int(comment["ID"])

    def comment_delete(self, params: Any) -> None:
        del self._comments[self._readable(q.as_mapping(params))["ID"]]

    def comment_fields(self, params: Any) -> dict[str, Any]:
        return {
            name: {"type": kind, "isRequired": name == "COMMENT", "isReadOnly": readonly}
            | {"isImmutable": name == "AUTHOR_ID", "isMultiple": name == "FILES", "title": name}
            for name, (kind, readonly) in _FIELDS.items()
        }

    # -- internals --------------------------------------------------------------------------------
    def _readable(self, named: Mapping[str, Any]) -> dict[str, Any]:
        comment_id = q.lax_int(named.get("id"))
        if comment_id is None or comment_id <= 0:
            raise _plain("ID is not defined or invalid.")
        comment = self._comments.get(comment_id)
        owner = (q.lax_int(named.get("ownerTypeId")), q.lax_int(named.get("ownerId")))
        if comment is None or owner[0] not in (None, comment["ENTITY_TYPE_ID"]) or owner[1] not in (
            None, comment["ENTITY_ID"],
        ):  # fmt: skip
            raise _plain("Not found.")
        if self._deals.owner(comment["ENTITY_TYPE_ID"], comment["ENTITY_ID"]) is None:
            raise _plain("Access denied.")
        return comment

    def _of(self, type_id: int, owner_id: int) -> list[dict[str, Any]]:
        return [c for c in self._comments.values() if (c["ENTITY_TYPE_ID"], c["ENTITY_ID"]) == (type_id, owner_id)]

    def _text(self, value: Any) -> str:
        text = value.strip() if isinstance(value, str) else str(value if value is not None else "").strip()
        if not text:
            raise ApiError(400, "INVALID_ARG_VALUE", "Empty comment message")  # source wording
        if self.max_length is not None and len(text) > self.max_length:
            raise ApiError(400, "INVALID_ARG_VALUE", "Comment is too long")  # inferred: no known limit
        return text

    def _files(self, value: Any, author: int) -> list[dict[str, Any]]:
        files = []
        for pair in q.as_mapping(value).values():
            name, content = [*q.as_mapping(pair).values(), "", ""][:2]
            try:
                data = base64.b64decode(str(content), validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "INVALID_ARG_VALUE", f"Invalid file content: {name}") from None  # inferred
            self._last["file"] += 1
            files.append({"id": self._last["file"], "name": str(name), "size": len(data), "authorId": author})
        return files

    def _render(self, comment: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
        names = [k for k, _ in OWNER_TYPES.items()]
        type_id = comment["ENTITY_TYPE_ID"]
        entity = names[list(OWNER_TYPES.values()).index(type_id)] if type_id in OWNER_TYPES.values() else None
        out = {
            "ID": str(comment["ID"]), "ENTITY_ID": str(comment["ENTITY_ID"]),
            "ENTITY_TYPE": entity or f"dynamic_{type_id}", "CREATED": q.format_datetime(comment["CREATED"], self._tz),
            "COMMENT": comment["COMMENT"], "AUTHOR_ID": str(comment["AUTHOR_ID"]),
        }  # fmt: skip
        if comment["FILES"]:  # source: the key exists only when the comment has files
            out["FILES"] = self._files_json(comment)
        return {k: v for k, v in out.items() if select is None or k in select or k == "ID"}

    def _files_json(self, comment: Mapping[str, Any]) -> Any:
        if self.files_shape == "ids":
            return [f["id"] for f in comment["FILES"]]
        created = q.format_datetime(comment["CREATED"], self._tz)
        shown = {}
        for f in comment["FILES"]:
            url = f"/bitrix/tools/disk/uf.php?attachedId={f['id']}&action=download&ncc=1"  # a browser-session link
            shown[str(f["id"])] = {"id": f["id"], "date": created, "type": "file", "name": f["name"]}
            shown[str(f["id"])] |= {"size": f["size"], "image": False, "authorId": f["authorId"]}
            shown[str(f["id"])] |= {"authorName": self._user_name(f["authorId"]), "urlPreview": "", "urlShow": url}
            shown[str(f["id"])]["urlDownload"] = url
        return shown


def _value(key: str, comment: Mapping[str, Any]) -> Any:
    return comment[key]


def _type_id(value: Any) -> int | None:
    name = str(value or "").strip().lower()  # inferred: names resolve case-insensitively
    if name.startswith("dynamic_"):
        return q.lax_int(name.removeprefix("dynamic_"))
    return OWNER_TYPES.get(name)
