"""Peak memory of okbx's side while a large file travels both ways, against the emulators.

    python benchmarks/bench_files.py --sizes 1 100        # file sizes in MB: the clients alone
    python benchmarks/bench_files.py --sync --sizes 1 100 # the same through `okbx sync` (issue 15)

With --sync, each size is a whole story played by the real command in its own process: a client's
comment carries a file of that size; `okbx sync` copies it to the task's Drive folder and the
forwarded comment (a fresh 30 s Okdesk link, the bytes through a spool file, the two-step upload);
a programmer attaches a result file of the same size and completes the task; `okbx sync` carries it
back in one multipart Okdesk comment.  The peak RSS of each `okbx sync` process is read from
`wait4` (the emulators run in this process and are not counted); checksums are compared on both
sides.

For each size: the emulators (this process) hold an Okdesk issue with a file of that size; a
fresh client process moves it Okdesk -> Drive (fresh 30 s link, streamed download into a
temporary file, two-step streamed upload, attached to the task) and back Drive -> Okdesk (the
task's files, streamed download, a comment with the file as a streamed multipart form).  The
client process reports its peak RSS (`resource.getrusage`, so the emulators' memory is not
counted) before and after; the checksums of what arrived on both sides are compared with the
original.  The point to watch: the peak does not grow with the file size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MB = 1024 * 1024


def client_side(config_path: Path, env_path: Path, issue_id: int, task_id: int, control: bool) -> None:
    """Runs in its own process: only okbx's client code, no emulator."""
    from okbx_sync.clients.bitrix24 import Bitrix24Client
    from okbx_sync.clients.bitrix24_disk import Bitrix24Drive
    from okbx_sync.clients.multipart import FileSource
    from okbx_sync.clients.okdesk import OkdeskClient
    from okbx_sync.clients.okdesk_files import OkdeskFiles, Upload
    from okbx_sync.config import load_config
    from okbx_sync.secrets import Redactor

    config = load_config(config_path, env=json.loads(env_path.read_text()))
    redactor = Redactor(config.secrets())
    okdesk, bitrix = OkdeskClient(config.okdesk, redactor), Bitrix24Client(config.bitrix24, redactor)
    files, drive = OkdeskFiles(okdesk, max_download_bytes=None), Bitrix24Drive(bitrix, max_bytes=None)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (attachment,) = files.issue_attachments(issue_id)
    with tempfile.TemporaryFile() as spool:  # Okdesk -> Drive
        _, got = files.download(issue_id, attachment.id, spool)
        spool.seek(0)
        storage = drive.group_storage(config.bitrix24.group_id)
        assert storage is not None
        folder = drive.folder(storage.root_folder_id, "Okdesk")
        uploaded = drive.upload(folder.id, FileSource(attachment.name, spool, got.size))
        drive.attach_to_task(task_id, uploaded.id)
    (task_file,) = drive.task_files(task_id) or []
    with tempfile.TemporaryFile() as spool:  # Drive -> Okdesk
        back = drive.download(task_file, spool)
        spool.seek(0)
        if control:  # what a client that reads the file whole would cost: proves the measure sees it
            assert len(spool.read()) == back.size
            spool.seek(0)
        _, attached = files.add_comment_with_files(
            issue_id, "Файл из Битрикс24", [Upload(FileSource(task_file.name, spool, back.size))], public=False
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "baseline_kib": baseline, "peak_kib": peak, "okdesk_sha256": got.sha256, "drive_sha256": back.sha256,
        "drive_file": uploaded.id, "okdesk_file": attached[0].id,
    }))  # fmt: skip


def run(size_mb: float, control: bool = False) -> dict[str, float]:
    from okbx_emulator.world import World

    world = World.start()
    try:
        directory = Path(tempfile.mkdtemp(prefix="okbx-bench-files-"))
        config_path = world.write_config(directory)
        env_path = directory / "env.json"
        env_path.write_text(json.dumps(world.env()))
        ok, people = world.okdesk, world.people
        issue = ok.create_issue("Большой файл", contact_id=people.client)
        size = int(size_mb * MB)
        attachment = ok.files.add(issue, "выгрузка 1С.zip", size=size, seed=7)
        task = world.bitrix.create_task("[Okdesk #1] Большой файл", responsible_id=people.bx_ivan, group_id=42)
        script = Path(__file__).resolve()
        args = [sys.executable, str(script), "--client", str(config_path), str(env_path), str(issue), str(task)]
        args.append("1" if control else "0")
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"client process failed:\n{done.stderr}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        original = ok.files.blob(attachment).sha256
        assert result["okdesk_sha256"] == original, "Okdesk -> okbx: the bytes changed"
        assert world.bitrix.drive.blob(result["drive_file"]).sha256 == original, "okbx -> Drive: the bytes changed"
        assert result["drive_sha256"] == original, "Drive -> okbx: the bytes changed"
        assert ok.files.blob(result["okdesk_file"]).sha256 == original, "okbx -> Okdesk: the bytes changed"
        return {"size_mb": size_mb, "baseline_mb": result["baseline_kib"] / 1024, "peak_mb": result["peak_kib"] / 1024}
    finally:
        world.close()


def _okbx_sync(config_path: Path, env: dict[str, str]) -> float:
    """Run `okbx sync` in its own process; its peak RSS in MB."""
    import os

    proc = subprocess.Popen([sys.executable, "-m", "okbx_sync", "sync"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = (proc.stdout.read().decode(), proc.stderr.read().decode()) if proc.stdout and proc.stderr else ("", "")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"okbx sync failed:\n{out}\n{err}")
    return usage.ru_maxrss / 1024


def run_sync(size_mb: float) -> dict[str, float]:
    import os

    from okbx_emulator.world import HANDOFF, World

    world = World.start()
    try:
        directory = Path(tempfile.mkdtemp(prefix="okbx-bench-sync-"))
        config_path = world.write_config(directory, files={"max_file_mb": 2048, "max_cycle_mb": 100_000})
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKBX_")}
        env |= {**world.env(), "OKBX_CONFIG": str(config_path)}
        ok, bx, people = world.okdesk, world.bitrix, world.people
        size = int(size_mb * MB)
        issue = ok.create_issue("Большой файл", contact_id=people.client, company_id=people.company)
        comment = ok.add_comment(issue, "Выгрузка", author_id=people.client, author_type="contact")
        sent = ok.files.add(issue, "выгрузка 1С.zip", size=size, seed=7, comment_id=comment, is_public=True)
        ok.set_status(issue, HANDOFF, by_employee_id=people.consultant)
        to_task = _okbx_sync(config_path, env)
        (copy,) = [f for f in bx.drive.every_file() if "[okbx-file-" in f["NAME"]]
        assert bx.drive.blob(copy["ID"]).sha256 == ok.files.blob(sent).sha256, "Okdesk -> Drive: the bytes changed"
        task = int(next(t["ID"] for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}"))
        root = bx.drive.storage_of("user", people.bx_ivan)["root_id"]
        result = bx.drive.add_file(root, "результат.bin", size=size, seed=9, created_by=people.bx_ivan)
        bx.drive.attach_to_task(task, result, people.bx_ivan)
        bx.log_time(task, people.bx_ivan, 600, "done")
        bx.complete_task(task)
        back = _okbx_sync(config_path, env)
        ours = {c["id"] for c in ok.comments(issue) if c["author"]["type"] == "employee" and c["author"]["id"] == 1}
        (arrived,) = [f for f in ok.files.of_issue(issue) if f["comment_id"] in ours]
        assert ok.files.blob(arrived["id"]).sha256 == bx.drive.blob(result).sha256, "Drive -> Okdesk: the bytes changed"
        return {"size_mb": size_mb, "to_task_mb": to_task, "back_mb": back}
    finally:
        world.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_side(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1")
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 100], help="file sizes in MB")
    parser.add_argument("--control", action="store_true", help="also a run that reads the file whole once")
    parser.add_argument("--sync", action="store_true", help="through `okbx sync`, both directions")
    args = parser.parse_args()
    if args.sync:
        print(f"{'file':>10} {'okbx sync peak RSS: to the task':>32} {'back to Okdesk':>15}   checksums")
        for size in args.sizes:
            row = run_sync(size)
            print(f"{row['size_mb']:>7.0f} MB {row['to_task_mb']:>29.1f} MB {row['back_mb']:>12.1f} MB   equal")
        return
    print(f"{'file':>10} {'client RSS before':>18} {'client peak RSS':>16} {'growth':>8}   checksums")
    runs = [(size, False) for size in args.sizes] + ([(max(args.sizes), True)] if args.control else [])
    for size, control in runs:
        row = run(size, control)
        growth = row["peak_mb"] - row["baseline_mb"]
        print(
            f"{row['size_mb']:>7.0f} MB {row['baseline_mb']:>15.1f} MB {row['peak_mb']:>13.1f} MB "
            f"{growth:>5.1f} MB   equal on all four legs" + ("  (control: file read whole once)" if control else "")
        )


if __name__ == "__main__":
    main()
