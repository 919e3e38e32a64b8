"""Which files travel now: pure functions of the snapshot and the state store, tested with literals.

Okdesk -> the task (the route calls these where it forwards comments):
  a file of the issue itself (public, or internal when allowed)
      not copied yet                         -> UploadFile, then AttachFileToTask
      copied, not attached to this task      -> AttachFileToTask (a new task after a deletion, say)
      over the cap per file                  -> NoteBigFile in the task, once
  a comment being forwarded, with files      -> UploadFile for each, then the comment carrying
                                                them (ForwardCommentWithFiles); a file over the
                                                cap -> NoteBigFile after the comment
  a comment already forwarded                -> nothing: its files went with it, or were named
The task -> Okdesk (at the completion, and after it while late time would still be copied):
  an attachment okbx has not dealt with      -> PostFilesBack carrying it (several to a comment,
                                                as many as fit in a cycle), naming the ones over
                                                the cap or unreadable; internal unless configured
  an attachment that is okbx's own copy      -> TaskFilesSeen (recorded, never carried back)
                                                (the copy's Drive id tells; its name only
                                                to a store rebuilt from the markers)
  a comment whose write is unsure            -> the very same comment again (its marker is looked
                                                for first), whatever the task holds now
  listed by a comment of okbx in the issue   -> nothing (a store rebuilt from the markers)
The cycle's cap (`fit_cycle_cap`): an issue's actions are cut from the first file that no longer
fits what the cycle may still move (at least one file moves per cycle); the issue waits.
"""

from __future__ import annotations

from collections.abc import Sequence

from ... import keys
from ...clients.files_parse import TaskFile
from ...core.action import Action
from ...core.plan import Plan
from ...filenames import key_in_name
from ...model import Attachment, Comment, Issue
from ...state.store import Link
from ..snapshot import Snapshot, StateView
from ..task_writes import ForwardComment
from .reads import TaskFiles
from .route import FileRoute, big_file_key, big_file_note, reported_files
from .to_issue import BackFile, PostFilesBack, TaskFilesSeen
from .to_task import AttachFileToTask, ForwardCommentWithFiles, NoteBigFile, UploadFile


# -- Okdesk -> the task ---------------------------------------------------------------------------
def issue_files(
    route: FileRoute, issue: Issue | None, comments: Sequence[Comment], cycle: int, state: StateView
) -> list[Action]:
    """The issue's own files into the task of handoff `cycle` (an account that lists its comments'
    files on the issue too has them handled with their comments)."""
    if issue is None:
        return []
    of_comments = {a.id for c in comments for a in c.attachments}
    actions: list[Action] = []
    for file in sorted(issue.attachments, key=lambda a: a.id):
        if file.id in of_comments or not route.travels(file):
            continue
        if route.too_large(file.size):
            actions += _note(route, issue.id, file, cycle, state)
            continue
        if not state.done(keys.FileKey(issue.id, file.id)):
            actions.append(UploadFile(issue.id, file, route.drive))
        if not state.done(keys.AttachKey(issue.id, cycle, file.id)):
            actions.append(AttachFileToTask(issue.id, file, cycle))
    return actions


def comment_files(route: FileRoute, forward: ForwardComment, state: StateView) -> list[Action]:
    """A comment about to be forwarded, with its files: their copies first, then the comment
    carrying them, then a note for each file over the cap."""
    comment = forward.comment
    files = sorted((a for a in comment.attachments if route.travels(a)), key=lambda a: a.id) if comment else []
    if not files:
        return [forward]
    small = [f for f in files if not route.too_large(f.size)]
    actions: list[Action] = [
        UploadFile(forward.issue_id, f, route.drive)
        for f in small
        if not state.done(keys.FileKey(forward.issue_id, f.id))
    ]
    if small:
        copies = tuple(keys.FileKey(forward.issue_id, f.id) for f in small)
        actions.append(
            ForwardCommentWithFiles(
                forward.issue_id, text=forward.text, comment=comment, task_cycle=forward.task_cycle, files=copies
            )
        )
    else:
        actions.append(forward)
    for file in files:
        if route.too_large(file.size):
            actions += _note(route, forward.issue_id, file, forward.task_cycle, state)
    return actions


def _note(route: FileRoute, issue_id: int, file: Attachment, cycle: int, state: StateView) -> list[Action]:
    key = big_file_key(issue_id, cycle, file.id)
    if state.done(key):
        return []
    return [NoteBigFile(issue_id, text=big_file_note(file, route, issue_id, key.marker), note=key, file=file)]


# -- the task -> Okdesk -------------------------------------------------------------------------------
def files_back(
    route: FileRoute,
    issue_id: int,
    task_id: int,
    task: TaskFiles | None,
    comments: Sequence[Comment],
    state: StateView,
    *,
    late: bool,
) -> list[Action]:
    """The task's files okbx has not dealt with, back to the issue; `task` None: not read this cycle."""
    if task is None:
        return []
    pending = [op for op in state.ops_of(issue_id) if op.kind == PostFilesBack.kind and not op.done and op.unsure]
    actions: list[Action] = [_again(issue_id, op.detail) for op in sorted(pending, key=lambda op: op.key)]
    taken = {f.id for action in actions if isinstance(action, PostFilesBack) for f in action.files}
    listed = {i for c in comments if _by_bot(c, route) for i in reported_files(c.content_html)}
    fresh: list[BackFile] = []
    own: list[BackFile] = []
    for file in sorted(task.files, key=lambda f: f.id):
        if file.id in taken or file.id in listed or state.done(keys.FilesBackKey(issue_id, file.id)):
            continue
        if _own_copy(file, issue_id, state):
            own.append(BackFile(file.id, file.name, file.size, "okbx's own copy of an Okdesk file"))
        elif route.too_large(file.size):
            why = f"larger than okbx's limit of {route.policy.max_file_mb} MB per file (files.max_file_mb)"
            fresh.append(BackFile(file.id, file.name, file.size, why))
        else:
            fresh.append(BackFile(file.id, file.name, file.size))
    for attachment_id, why in sorted(task.unreadable.items()):
        if attachment_id not in taken | listed and not state.done(keys.FilesBackKey(issue_id, attachment_id)):
            fresh.append(BackFile(attachment_id, f"attachment {attachment_id}", 0, f"okbx may not read it: {why}"))
    heading = (
        f"More files were attached to Bitrix24 task #{task_id} after it was completed."
        if late
        else f"Files the programmers attached to Bitrix24 task #{task_id}."
    )
    for group in _groups(fresh, route.policy.max_cycle_bytes):
        public = route.policy.results_public
        actions.append(PostFilesBack(issue_id, task_id=task_id, files=group, heading=heading, public=public))
    if own:
        actions.append(TaskFilesSeen(issue_id, tuple(own)))
    return actions


def _own_copy(file: TaskFile, issue_id: int, state: StateView) -> bool:
    """Okbx's copy of one of this issue's Okdesk files.  The name alone does not tell: a programmer
    who downloads a copy, fixes it and attaches the result keeps the name.  The store knows the
    copy's Drive id; only a store that does not (rebuilt from the markers) goes by the name."""
    key = key_in_name(file.name)
    if not isinstance(key, keys.FileKey) or key.issue_id != issue_id:
        return False
    copy = state.ops.get(key.text)
    if copy is None or not copy.done or not copy.remote_id:
        return True
    return str(file.object_id) == copy.remote_id


def _again(issue_id: int, detail: dict[str, object]) -> PostFilesBack:
    """An unsure comment, planned again exactly as it was written (its marker is looked for first)."""
    rows = detail.get("files")
    files = tuple(BackFile.of(r) for r in rows if isinstance(r, dict)) if isinstance(rows, list) else ()
    return PostFilesBack(
        issue_id,
        task_id=int(str(detail.get("task_id") or 0)),
        files=files,
        heading=str(detail.get("heading") or ""),
        public=bool(detail.get("public")),
    )


def _by_bot(comment: Comment, route: FileRoute) -> bool:
    return comment.author.kind == "employee" and comment.author.id == route.bot_employee_id


def _groups(files: list[BackFile], limit: int) -> list[tuple[BackFile, ...]]:
    """Files to comments, in order: as many to a comment as fit the cycle's cap (at least one)."""
    groups: list[list[BackFile]] = []
    size = 0
    for file in files:
        moved = 0 if file.why_not else file.size
        if not groups or (size + moved > limit and size > 0):
            groups.append([])
            size = 0
        groups[-1].append(file)
        size += moved
    return [tuple(g) for g in groups]


def task_files_back(
    route: FileRoute | None, link: Link, snap: Snapshot, state: StateView, *, late: bool
) -> list[Action]:
    """The route's hook: the task's files back to the issue, when the cycle read them."""
    if route is None or link.task_id is None:
        return []
    task = snap.task_files.get(link.task_id)
    return files_back(route, link.issue_id, link.task_id, task, snap.comments.get(link.issue_id, []), state, late=late)


# -- the cycle's cap ---------------------------------------------------------------------------------
def fit_cycle_cap(plan: Plan, cap: int, *, moved: int = 0) -> tuple[Plan, set[int], int]:
    """The plan without what the cycle may no longer move (`moved` of `cap` bytes went in earlier
    pages): for each issue, its actions from the first file that does not fit are cut.  Returns
    the plan, the issues that wait, and the bytes the cycle moves with this page."""
    cut: set[int] = set()
    waiting: set[int] = set()
    used = moved
    for issue_id, actions in plan.by_issue().items():
        for action in actions:
            size = int(getattr(action, "moves_bytes", 0))
            if size and used > 0 and used + size > cap:
                waiting.add(issue_id)
                cut |= {id(a) for a in actions[actions.index(action) :]}
                break
            used += size
    if not waiting:
        return plan, waiting, used
    kept = Plan(
        actions=[a for a in plan.actions if id(a) not in cut],
        skipped=dict(plan.skipped),
        blocked=list(plan.blocked),
        refused=plan.refused,
        held_back=list(plan.held_back),
    )
    for issue_id in waiting:
        kept.skipped[issue_id] = "files wait for the next cycle: this one moved files.max_cycle_mb already"
    return kept, waiting, used
