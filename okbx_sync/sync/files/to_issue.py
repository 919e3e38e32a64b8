"""The task's files toward the Okdesk issue: each write kind in one place.

PostFilesBack   one Okdesk comment by okbx carrying the files the programmers attached to the task
                (the documented multipart form, each file streamed from a spool file), naming the
                ones it could not carry and where to find them; its marker is the key of its first
                file and a line lists every file it dealt with, so it is found again among the
                bot's comments (core/remote.py) and a rebuilt store never carries a file twice
TaskFilesSeen   what okbx records about task files it dealt with otherwise (its own copies of
                Okdesk files), or that a comment carried besides its first: one key per file, so
                the check for files added after the completion asks the store by key
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ... import keys
from ...clients.http import TooLarge
from ...core.action import Action, Context, Effect, LocalAction, OpRecord
from ...core.notes import IssueComment
from .route import file_name, files_back_html, size_text
from .transfer import task_files_to_okdesk

REFUSED = "Okdesk refused it as too large"


@dataclass(frozen=True)
class BackFile:
    """A task attachment as the planner decided it: carried back, or only named (`why_not`)."""

    id: int
    name: str
    size: int
    why_not: str = ""

    @classmethod
    def of(cls, row: dict[str, Any]) -> BackFile:
        return cls(int(row["id"]), str(row["name"]), int(row["size"]), str(row.get("why_not") or ""))


@dataclass(frozen=True)
class TaskFilesSeen(LocalAction):
    files: tuple[BackFile, ...] = ()
    why: str = "okbx's own copy of an Okdesk file"
    kind: ClassVar[str] = "taskfile"

    @property
    def ref(self) -> keys.Key:
        return keys.FilesBackKey(self.issue_id, self.files[0].id)

    @property
    def detail(self) -> str:
        if len(self.files) == 1:
            return f"task file {file_name(self.files[0].name)}: {self.why}"
        return f"{len(self.files)} task files: {self.why}"

    def also_completes(self) -> list[Action]:
        return [TaskFilesSeen(self.issue_id, (file,), self.why) for file in self.files[1:]]


@dataclass(frozen=True)
class PostFilesBack(IssueComment):
    task_id: int = 0
    files: tuple[BackFile, ...] = ()  # by attachment id; the first names the comment
    heading: str = ""
    public: bool = False
    kind: ClassVar[str] = "files"

    @property
    def ref(self) -> keys.Key:
        return keys.FilesBackKey(self.issue_id, self.files[0].id)

    @property
    def carried(self) -> list[BackFile]:
        return [f for f in self.files if not f.why_not]

    @property
    def moves_bytes(self) -> int:
        return sum(f.size for f in self.carried)

    @property
    def detail(self) -> str:
        carried = ", ".join(f"{file_name(f.name)} ({size_text(f.size)})" for f in self.carried)
        named = [f for f in self.files if f.why_not]
        text = f"files of task #{self.task_id} back: {carried or 'none carried'}"
        return text + (f"; named only: {', '.join(file_name(f.name) for f in named)}" if named else "")

    def op_record(self) -> OpRecord:
        # everything needed to plan the very same comment again while it is unsure
        detail = {"detail": self.detail, "task_id": self.task_id, "heading": self.heading, "public": self.public}
        return OpRecord(None, None, detail | {"files": [asdict(f) for f in self.files]})

    def also_completes(self) -> list[Action]:
        return [TaskFilesSeen(self.issue_id, (f,), f.why_not or "carried back to Okdesk") for f in self.files[1:]]

    def perform(self, ctx: Context) -> Effect:
        carried = [(f.id, f.name) for f in self.carried]
        if not carried:
            return self.post(ctx, self._html(ctx, refused=False), self.public)
        try:
            comment = task_files_to_okdesk(
                ctx.remote.files, self.issue_id, self._html(ctx, refused=False), carried,
                public=self.public, spool_dir=ctx.config.state.path.parent,
            )  # fmt: skip
        except TooLarge as error:
            if error.system != "Okdesk":
                raise
            # Okdesk refused the upload (its limit is undocumented) and wrote nothing: the same
            # comment goes without the files, naming them, so the handoff goes on.
            return self.post(ctx, self._html(ctx, refused=True), self.public)
        ctx.remote.issue(self.issue_id)[self.key] = str(comment.id)
        if comment.published_at is not None:
            ctx.own_writes[self.issue_id] = comment.published_at
        return str(comment.id), None

    def _html(self, ctx: Context, *, refused: bool) -> str:
        copied = [] if refused else [(f.name, f.size) for f in self.carried]
        left = [(f.name, f.size, f.why_not or REFUSED) for f in self.files if f.why_not or refused]
        where = f"#{self.task_id}: {ctx.bitrix.task_url(self.task_id)}"
        ids = [f.id for f in self.files]
        return files_back_html(self.heading, copied, left, where, ids, self.marker)
