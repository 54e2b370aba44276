"""The `dermdesk` command end to end, as a user runs it (real processes, real files)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import encode, manifest_count, skin_like


def run(
    lib: Path,
    *args: str | Path,
    check: bool = True,
    extra_env: dict[str, str] | None = None,
    **kw: object,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI on library ``lib``; raise with its output if it fails and ``check``."""
    env = {**os.environ, "DERMDESK_HOME": str(lib), **(extra_env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "dermdesk", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "lib"


def test_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dermdesk", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("dermdesk ")


def test_import_list_show_stats_verify_backup(
    home: Path, shared_data: Path, tmp_path: Path
) -> None:
    out = run(home, "import", shared_data / "pad_ufes_20", "--quiet").stdout
    assert "500 added, 0 already in library, 0 refused" in out
    again = run(home, "import", shared_data / "pad_ufes_20", "--quiet").stdout
    assert "0 added, 500 already in library" in again
    assert "already in library (" not in again  # quiet: no line per file
    loud = run(home, "import", shared_data / "pad_ufes_20" / "images").stdout
    assert loud.count("already in library (") == 500
    listing = run(home, "ls", "--diagnosis", "MEL", "--fitzpatrick", "I-III", "--limit", "5").stdout
    assert listing.splitlines()[0].split()[:3] == ["id", "diagnosis", "fitzpatrick"]
    assert listing.strip().endswith(" images") and "5 of " in listing
    image_id = listing.splitlines()[1].split()[0]
    shown = run(home, "show", image_id).stdout
    assert "pad_ufes_20" in shown and "MEL" in shown and "histopathology" in shown
    assert "fitzpatrick: " in shown and "rated by dataset:pad_ufes_20" in shown
    stats = run(home, "stats").stdout
    assert "500 images" in stats and "clinical (500): diagnosis x rated Fitzpatrick" in stats
    flat = run(home, "stats", "--by", "diagnosis,modality").stdout
    assert "BCC" in flat and "clinical" in flat
    assert "verify OK: 500 images" in run(home, "verify").stdout
    backup = tmp_path / "backup"
    assert "backed up 500 images" in run(home, "backup", backup).stdout
    assert "verify OK: 500 images" in run(backup, "verify").stdout


def test_output_into_a_closed_pipe_ends_quietly(home: Path, shared_data: Path) -> None:
    run(home, "import", shared_data / "ham10000", "--quiet", "--no-checks")
    env = {**os.environ, "DERMDESK_HOME": str(home)}
    for command in ("ls --json --limit 1000", "ls --limit 1000", "stats"):
        proc = subprocess.run(
            f"{sys.executable} -m dermdesk {command} | head -1",
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.stdout.strip() and proc.stderr == "", (command, proc.stderr[-500:])


def test_help_reads_as_plain_text() -> None:
    for command in ([], ["train", "finetune"], ["import"], ["jobs", "list"], ["models"]):
        proc = subprocess.run(
            [sys.executable, "-m", "dermdesk", *command, "--help"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "``" not in proc.stdout and "OPT_" not in proc.stdout, command
    assert (
        "--img-size IMG_SIZE"
        in subprocess.run(
            [sys.executable, "-m", "dermdesk", "train", "finetune", "--help"],
            capture_output=True,
            text=True,
        ).stdout
    )


def test_estimated_skin_tone_is_never_shown_or_counted_as_rated(
    home: Path, shared_data: Path
) -> None:
    """HAM10000 has no skin-type data: every type the app shows for it is an estimate."""
    run(home, "import", shared_data / "ham10000", "--quiet")
    stats = run(home, "stats").stdout
    rated = stats.split("diagnosis x rated Fitzpatrick")[1].split("\n\n")[0]
    rows = [line.split() for line in rated.strip().splitlines()[2:]]
    assert rows and all(len(r) == 3 and r[1] == r[2] for r in rows)  # only "?" and the total
    assert "automatic estimate (ITA; not a rating)" in stats
    listing = run(home, "ls", "--limit", "200").stdout
    assert "~ = automatic estimate" in listing
    fitz_cells = {line.split()[2] for line in listing.splitlines()[1:-2] if len(line.split()) > 6}
    assert fitz_cells and all(c.startswith("~") for c in fitz_cells)
    assert "0 of 0 images" in run(home, "ls", "--fitzpatrick", "1-6", "--tone", "rated").stdout
    assert "0 of 0" not in run(home, "ls", "--fitzpatrick", "1-2", "--tone", "estimated").stdout
    image_id = listing.splitlines()[1].split()[0]
    shown = run(home, "show", image_id).stdout
    assert "estimated (ITA" in shown and "rated by" not in shown


def test_bad_files_are_refused_one_line_each_and_nothing_is_lost(
    home: Path, tmp_path: Path
) -> None:
    from tests.unit.imaging.test_decode import png_bomb

    folder = tmp_path / "camera roll"
    folder.mkdir()
    good = encode(skin_like(640, 480), "JPEG")
    (folder / "good.jpg").write_bytes(good)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "bomb.png").write_bytes(png_bomb())
    proc = run(home, "import", folder, "--quiet", check=False)
    assert proc.returncode == 1
    refused = [line for line in proc.stdout.splitlines() if ": refused: " in line]
    assert len(refused) == 4
    text = "\n".join(refused)
    for name, reason in [
        ("empty.jpg", "empty file"),
        ("truncated.jpg", "truncated"),
        ("notes.jpg", "not an image"),
        ("bomb.png", "decompression bomb"),
    ]:
        assert f"{name}: refused: " in text and reason in text
    assert "1 added" in proc.stdout
    assert run(home, "verify").returncode == 0
    (folder / "second.jpg").write_bytes(encode(skin_like(seed=3), "JPEG"))
    assert (
        "1 added, 1 already in library, 4 refused"
        in run(home, "import", folder, "--quiet", check=False).stdout
    )


def test_unicode_and_spaced_paths(home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Dr. Müller – Läsionen" / "rücken links"
    folder.mkdir(parents=True)
    (folder / "nävus 1.jpg").write_bytes(encode(skin_like(), "JPEG"))
    assert "1 added" in run(home, "import", folder.parent, "--quiet").stdout
    assert "nävus 1.jpg" in run(home, "ls", "--json").stdout


def test_errors_are_one_line_with_exit_2(home: Path, tmp_path: Path) -> None:
    proc = run(home, "import", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "no such file or folder" in proc.stderr
    proc = run(tmp_path / "empty-lib", "ls", check=False)
    assert proc.returncode == 2 and "no library here" in proc.stderr
    run(home, "import", tmp_path / "nowhere", check=False)
    proc = run(home, "ls", "--fitzpatrick", "VII", check=False)
    assert proc.returncode == 2 and "not a Fitzpatrick type" in proc.stderr


def test_locked_library(home: Path, tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(encode(skin_like(), "JPEG"))
    run(home, "import", photo, "--quiet")
    holder = sqlite3.connect(home / "library.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        photo2 = tmp_path / "b.jpg"
        photo2.write_bytes(encode(skin_like(seed=2), "JPEG"))
        proc = run(
            home,
            "import",
            photo2,
            "--quiet",
            check=False,
            extra_env={"DERMDESK_BUSY_TIMEOUT_S": "0.5"},
        )
        assert proc.returncode != 0
        assert "locked by another process" in proc.stdout + proc.stderr
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "verify OK: 1 images" in run(home, "verify").stdout
    assert "1 added" in run(home, "import", tmp_path, "--quiet").stdout


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A temp folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="dermdesk-ro-"))
    folder.chmod(0o755)
    yield folder
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(folder)


def run_as_nobody(lib: Path, *args: str | Path) -> tuple[int, str]:
    """Run the CLI in a forked child that dropped root (root ignores file permissions).

    The interpreter itself may live where 'nobody' cannot execute it, so the child
    calls ``cli.main`` in the already-running interpreter instead of exec'ing.
    """
    import concurrent.futures.thread  # noqa: F401 - the child may not read the stdlib
    import pwd

    from PIL import Image

    import dermdesk.exchange.csvmap  # noqa: F401 - preloaded for the same reason
    from dermdesk import cli

    Image.init()

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop to")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 99
        try:
            sys.stderr = os.fdopen(write_fd, "w")
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.environ["DERMDESK_HOME"] = str(lib)
            code = cli.main([str(a) for a in args])
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        stderr = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


def test_read_only_library_folder(world_dir: Path) -> None:
    home = world_dir / "lib"
    photo = world_dir / "a.jpg"
    photo.write_bytes(encode(skin_like(), "JPEG"))
    run(home, "import", photo, "--quiet")
    photo2 = world_dir / "b.jpg"
    photo2.write_bytes(encode(skin_like(seed=5), "JPEG"))
    for p in [world_dir, *world_dir.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    if os.geteuid() == 0:
        code, stderr = run_as_nobody(home, "import", photo2, "--quiet")
    else:
        proc = run(home, "import", photo2, "--quiet", check=False)
        code, stderr = proc.returncode, proc.stderr
    assert code == 2, stderr
    assert "read-only" in stderr and stderr.count("\n") == 1
    # reading a library on read-only media still works
    if os.geteuid() == 0:
        assert run_as_nobody(home, "stats") == (0, "")
    else:
        assert "1 images" in run(home, "stats").stdout
    for p in [world_dir, *world_dir.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert "verify OK: 1 images" in run(home, "verify").stdout


def test_killed_import_leaves_a_consistent_library(home: Path, shared_data: Path) -> None:
    env = {**os.environ, "DERMDESK_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "import", str(shared_data), "--quiet", "--no-checks"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(f"file:{home / 'library.sqlite'}?mode=ro", uri=True)
            committed = db.execute("SELECT count(*) FROM image").fetchone()[0]
            db.close()
        except sqlite3.Error:
            continue
        if committed >= 400:
            break
    assert proc.poll() is None, "import finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check = run(home, "verify", "--quick", check=False)
    # Consistent rows; the only finding may be the originals the killed import had
    # stored but not yet written rows for: reported, never deleted.
    errors = [line for line in check.stdout.splitlines() if line.startswith("error: ")]
    assert all("originals/masks have no row" in line for line in errors), errors
    out = run(home, "import", shared_data, "--quiet", "--no-checks").stdout
    assert "0 refused" in out
    expected = f"verify OK: {manifest_count(shared_data)} images"
    assert expected in run(home, "verify", "--quick").stdout


def test_two_processes_importing_at_once(home: Path, shared_data: Path) -> None:
    env = {**os.environ, "DERMDESK_HOME": str(home)}
    cmds = [
        [
            sys.executable,
            "-m",
            "dermdesk",
            "import",
            str(shared_data / name),
            "--quiet",
            "--no-checks",
        ]
        for name in ("pad_ufes_20", "fitzpatrick17k")
    ]
    cmds.append(cmds[0])  # and one more importing the same folder as the first
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in cmds
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert "verify OK: 740 images" in run(home, "verify").stdout


def test_jobs_list_shortens_a_message_at_a_word(capsys: pytest.CaptureFixture[str]) -> None:
    from dermdesk.cli_ml import _print_jobs

    message = "model M-0123456789: test n=109 balanced accuracy 0.234 [0.082, 0.362], " * 2
    row = {"id": 1, "kind": "finetune", "status": "done", "progress": 1.0, "model_id": None}
    _print_jobs([{**row, "created_at": "2026-12-02T10:00:00", "message": message}])
    shown = capsys.readouterr().out.splitlines()[1]
    assert shown.endswith(" …")
    words = shown.split("done")[-1].split()[:-1]
    assert all(w in message.split() for w in words[2:])  # no word cut in half


def test_recover_brings_back_originals_whose_rows_were_lost(home: Path, shared_data: Path) -> None:
    run(home, "import", shared_data / "ham10000", "--quiet", "--no-checks")
    db = sqlite3.connect(home / "library.sqlite")
    ids = [r[0] for r in db.execute("SELECT id FROM image LIMIT 5")]
    marks = ", ".join("?" * len(ids))
    for table in ("label", "skin_tone", "quality", "image_hash", "image"):
        column = "id" if table == "image" else "image_id"
        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", ids)
    db.commit()
    db.close()
    bad = run(home, "verify", "--quick", check=False)
    assert bad.returncode == 1 and "5 originals/masks have no row" in bad.stdout
    assert "`dermdesk recover`" in bad.stdout
    out = run(home, "recover", "--no-checks").stdout
    assert "recovered 5 images (5 with their labels" in out
    assert "verify OK: 126 images" in run(home, "verify").stdout
    assert "nothing to recover" in run(home, "recover").stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_and_a_link_to_dev_zero_are_refused_without_hanging(
    home: Path, tmp_path: Path, shared_data: Path
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    shutil.copy(next((shared_data / "ham10000" / "images").glob("*.jpg")), folder / "ok.jpg")
    proc = run(home, "import", folder, "--quiet", check=False)
    assert proc.returncode == 1
    for name in ("pipe.jpg", "zero.jpg"):
        assert f"{name}: refused: not a regular file" in proc.stdout
    assert "1 added" in proc.stdout


def test_ctrl_c_stops_an_import_cleanly(home: Path, shared_data: Path) -> None:
    """Ctrl-C reaches the whole process group, pool workers included: the import stops
    within seconds, says what it kept, and leaves no original without its row."""
    env = {**os.environ, "DERMDESK_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "import", str(shared_data), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            db = sqlite3.connect(f"file:{home / 'library.sqlite'}?mode=ro", uri=True)
            committed = db.execute("SELECT count(*) FROM image").fetchone()[0]
            db.close()
        except sqlite3.Error:
            continue
        if committed >= 200:
            break
    assert proc.poll() is None, "import finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted: run the same import again" in out
    assert "verify OK" in run(home, "verify", "--quick").stdout


def _tiny_disk_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run ``body`` (sh) with $LIB on a 3 MB tmpfs of its own (a private mount namespace:
    nothing outside the test sees it). Skips where such a mount cannot be made."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private tmpfs")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    script = tmp_path / "run.sh"
    dermdesk = f"{sys.executable} -m dermdesk"
    script.write_text(
        f"mount -t tmpfs -o size=3m tmpfs {mnt} || exit 77\n"
        f"export LIB={mnt}/lib DERMDESK='{dermdesk}'\n{body}\n"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", str(script)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    return proc


def test_a_full_disk_ends_import_check_and_backup_with_clear_lines(
    tmp_path: Path, shared_data: Path
) -> None:
    ham = shared_data / "ham10000"
    out = tmp_path / "out.txt"
    proc = _tiny_disk_script(
        tmp_path,
        f"$DERMDESK --library $LIB import {ham} --quiet --no-checks > {out}.import 2>&1;"
        f" echo rc=$? >> {out}.import\n"
        f"$DERMDESK --library $LIB verify --quick > {out}.verify 2>&1\n"
        f"$DERMDESK --library $LIB backup $LIB/../bak > {out}.backup 2>&1;"
        f" echo rc=$? >> {out}.backup\n",
    )
    assert proc.returncode == 0, proc.stderr
    imported = Path(f"{out}.import").read_text()
    assert "Traceback" not in imported and "rc=1" in imported
    assert "(stopped: the disk is full; free some space and run it again" in imported
    refused = [line for line in imported.splitlines() if ": refused: " in line]
    assert len(refused) >= 100 and all("full" in line for line in refused)
    # the files of batches whose rows did not fit were taken back: nothing half-added
    assert "verify OK" in Path(f"{out}.verify").read_text()
    backed = Path(f"{out}.backup").read_text()
    assert "Traceback" not in backed
    assert "backup failed (the disk is full" in backed or "backed up" in backed


def test_pool_workers_end_with_a_killed_import(home: Path, shared_data: Path) -> None:
    """kill -9 of an import (quality checks on: a process pool) must not leave its
    workers and resource tracker behind for minutes, ~90 MB each."""
    import psutil

    env = {**os.environ, "DERMDESK_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "import", str(shared_data), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and len(children) < 2 and proc.poll() is None:
        time.sleep(0.2)
        children = me.children(recursive=True)
    assert len(children) >= 2, "the import started no worker pool"
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for p in alive:
        p.kill()
    assert not alive, [p.pid for p in alive]
