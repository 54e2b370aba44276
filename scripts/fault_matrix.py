"""The fault matrix: each fault injected into a real library, its outcome, whether anything
was lost, and whether the user got one clear line.

    python scripts/fault_matrix.py [--only NAME] [--keep DIR]

Every fault runs on a fresh library made from real images of ../shared/data (HAM10000),
through the `dermdesk` command as a user runs it. "Nothing lost" means: every original
the library held (or was given) is still on disk with its SHA-256, and after the step
the message names (re-import, `recover`, `recover --database`) `verify` passes. "One
line" means: no traceback, and every line the user got is a sentence of at most 300
characters. Mounts (a tiny tmpfs, read-only views) are made in a private mount namespace
(`unshare -rm`); where that is impossible the fault is reported as skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import SHARED_DATA  # noqa: E402

HAM = SHARED_DATA / "ham10000"
MAX_LINE = 300


@dataclass
class Outcome:
    fault: str
    outcome: str
    nothing_lost: bool
    one_line: bool
    skipped: bool = False


class Skip(Exception):
    pass


def cli(
    lib: Path, *args: object, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DERMDESK_HOME": str(lib), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dermdesk", *map(str, args)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def clear(*procs: subprocess.CompletedProcess[str]) -> bool:
    """No traceback, and every line short."""
    text = "".join(p.stdout + p.stderr for p in procs)
    return "Traceback" not in text and all(len(line) <= MAX_LINE for line in text.splitlines())


def originals(lib: Path) -> dict[str, str]:
    """name -> sha256 of every original in the store and in quarantine/."""
    out = {}
    for sub in ("originals", "quarantine/originals"):
        for p in (lib / sub).rglob("*"):
            if p.is_file() and not p.name.endswith(".part"):
                out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def intact(before: dict[str, str], lib: Path) -> bool:
    after = originals(lib)
    return all(after.get(name) == sha for name, sha in before.items())


def verified(lib: Path) -> bool:
    return "verify OK" in cli(lib, "verify").stdout


def make_library(work: Path, n: int = 40, checks: bool = False) -> Path:
    lib = work / "lib"
    sources = work / "photos"
    sources.mkdir()
    for p in sorted((HAM / "images").glob("*.jpg"))[:n]:
        shutil.copy(p, sources / p.name)
    args = ["import", sources, "--quiet"] + ([] if checks else ["--no-checks"])
    cli(lib, *args)
    return lib


def private_mounts(script: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None:
        raise Skip("no unshare(1)")
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=600
    )
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        raise Skip("cannot mount here")
    return proc


# -- the faults ------------------------------------------------------------------------------


def kill_import(work: Path, checks: bool) -> Outcome:
    lib = work / "lib"
    env = {**os.environ, "DERMDESK_HOME": str(lib)}
    args = [sys.executable, "-m", "dermdesk", "import", str(SHARED_DATA), "--quiet"]
    proc = subprocess.Popen(
        args + ([] if checks else ["--no-checks"]),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import psutil

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _rows(lib) < 300:
        time.sleep(0.2)
    kids = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(kids, timeout=10)
    for p in alive:
        p.kill()
    before = originals(lib)
    again = cli(lib, "import", SHARED_DATA, "--quiet", "--no-checks")
    ok = intact(before, lib) and verified(lib) and not alive
    workers = f", {len(alive)} workers left" if alive else ", no worker left"
    return Outcome("", f"re-import finished it{workers}", ok, clear(again))


def _rows(lib: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{lib / 'library.sqlite'}?mode=ro", uri=True)
        n = db.execute("SELECT count(*) FROM image").fetchone()[0]
        db.close()
        return int(n)
    except sqlite3.Error:
        return 0


def ctrl_c_import(work: Path) -> Outcome:
    lib = work / "lib"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "import", str(SHARED_DATA), "--quiet"],
        env={**os.environ, "DERMDESK_HOME": str(lib)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and _rows(lib) < 200:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    ok = verified(lib)
    said = "interrupted: run the same import again" in out
    done = subprocess.CompletedProcess([], proc.returncode, out, err)
    return Outcome("", f"exit {proc.returncode}, summary said interrupted: {said}", ok, clear(done))


def concurrent_imports(work: Path) -> Outcome:
    lib = work / "lib"
    env = {**os.environ, "DERMDESK_HOME": str(lib)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dermdesk", "import", str(HAM), "--quiet", "--no-checks"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    ok = verified(lib) and _rows(lib) == 126
    done = [subprocess.CompletedProcess([], 0, o, e) for o, e in outs]
    return Outcome("", "3 importers at once: 126 images once each", ok, clear(*done))


def lost_rows(work: Path) -> Outcome:
    """Committed rows lost (a truncated WAL, a user's sqlite3): verify says so, recover
    brings them back with their labels from the audit log."""
    lib = make_library(work)
    before = originals(lib)
    db = sqlite3.connect(lib / "library.sqlite")
    ids = [r[0] for r in db.execute("SELECT id FROM image LIMIT 15")]
    marks = ", ".join("?" * len(ids))
    for table in ("label", "skin_tone", "quality", "image_hash"):
        db.execute(f"DELETE FROM {table} WHERE image_id IN ({marks})", ids)
    db.execute(f"DELETE FROM image WHERE id IN ({marks})", ids)
    db.commit()
    db.close()
    found = cli(lib, "verify", "--quick")
    repaired = cli(lib, "verify", "--repair")
    recovered = cli(lib, "recover")
    ok = intact(before, lib) and verified(lib) and _rows(lib) == 40
    said = "have no row" in found.stdout and "recovered 15 images" in recovered.stdout
    return Outcome(
        "", f"reported, quarantined, recovered: {said}", ok, clear(found, repaired, recovered)
    )


def older_database(work: Path) -> Outcome:
    lib = make_library(work, 20)
    old = work / "old.sqlite"
    with sqlite3.connect(lib / "library.sqlite") as src, sqlite3.connect(old) as dst:
        src.backup(dst)
    more = work / "more"
    more.mkdir()
    for p in sorted((HAM / "images").glob("*.jpg"))[20:30]:
        shutil.copy(p, more / p.name)
    cli(lib, "import", more, "--quiet", "--no-checks")
    before = originals(lib)
    for suffix in ("", "-wal", "-shm"):
        (lib / f"library.sqlite{suffix}").unlink(missing_ok=True)
    shutil.copy(old, lib / "library.sqlite")
    found = cli(lib, "verify", "--quick")
    recovered = cli(lib, "recover")
    ok = intact(before, lib) and verified(lib) and _rows(lib) == 30
    said = "older database was put back" in found.stdout
    return Outcome(
        "", f"found the restore: {said}; 10 photos recovered", ok, clear(found, recovered)
    )


def repair_keeps_originals(work: Path) -> Outcome:
    lib = make_library(work, 10)
    extra = work / "extra"
    extra.mkdir()
    shutil.copy(sorted((HAM / "images").glob("*.jpg"))[50], extra / "x.jpg")
    sys.path.insert(0, str(ROOT))
    from dermdesk.exchange.ingest import ingest_file
    from dermdesk.library.store import Store

    stored = ingest_file(extra / "x.jpg", Store(lib))  # a file, no row
    old = time.time() - 7200
    os.utime(lib / stored.file, (old, old))  # type: ignore[union-attr]
    before = originals(lib)
    repaired = cli(lib, "verify", "--repair")
    kept = (lib / "quarantine" / stored.file).is_file()  # type: ignore[union-attr]
    recovered = cli(lib, "recover")
    ok = intact(before, lib) and verified(lib) and kept
    return Outcome("", f"moved to quarantine/ ({kept}), recovered", ok, clear(repaired, recovered))


def killed_backup(work: Path) -> Outcome:
    """Killed at ten moments of a backup: the target is absent, or a complete backup."""
    lib = make_library(work, 126)
    half = 0
    for n in range(10):
        target = work / "usb" / f"bak{n}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dermdesk", "backup", str(target)],
            env={**os.environ, "DERMDESK_HOME": str(lib)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.15 + 0.08 * n)
        proc.kill()
        proc.wait()
        if target.exists() and not verified(target):
            half += 1
    ok = verified(lib) and half == 0
    return Outcome("", f"killed 10 times: {half} half backups under a backup's name", ok, True)


def tiny_disk(work: Path, body: str) -> subprocess.CompletedProcess[str]:
    mnt = work / "tiny"
    mnt.mkdir()
    return private_mounts(
        f"mount -t tmpfs -o size=3m tmpfs {mnt} || exit 77\nLIB={mnt}/lib\n"
        f"D='{sys.executable} -m dermdesk --library'\n{body}"
    )


def full_disk_import(work: Path) -> Outcome:
    proc = tiny_disk(
        work, f"$D $LIB import {HAM} --quiet --no-checks; echo rc=$?\n$D $LIB verify --quick"
    )
    said = "stopped: the disk is full" in proc.stdout
    consistent = "verify OK" in proc.stdout  # batches that did not fit were taken back
    return Outcome("", f"stopped with 'disk is full': {said}", consistent, said and clear(proc))


def full_disk_backup(work: Path) -> Outcome:
    lib = make_library(work, 60)
    mnt = work / "tiny"
    mnt.mkdir()
    proc = private_mounts(
        f"mount -t tmpfs -o size=1m tmpfs {mnt} || exit 77\n"
        f"DERMDESK_HOME={lib} {sys.executable} -m dermdesk backup {mnt}/bak; echo rc=$?\n"
        f"ls {mnt}\n"
    )
    said = "backup failed (the disk is full" in proc.stdout + proc.stderr
    left = "bak" in proc.stdout.split("rc=")[-1]
    return Outcome(
        "",
        f"'disk is full', no half backup: {not left}",
        verified(lib) and not left,
        said and clear(proc),
    )


def read_only_mount(work: Path) -> Outcome:
    lib = make_library(work, 20)
    ro = work / "ro"
    ro.mkdir()
    script = f"mount --bind {lib} {ro} && mount -o remount,bind,ro {ro} || exit 77\n"
    run = f"DERMDESK_HOME={ro} {sys.executable} -m dermdesk"
    commands = ["ls", "stats", "verify", "verify --quick", "models list", "jobs list"]
    for command in [*commands, f"backup {work}/bak"]:
        script += f"{run} {command} >/dev/null 2>&1 || echo FAIL {command}\n"
    proc = private_mounts(script)
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    return Outcome(
        "", "read commands and backup work" if not failed else "; ".join(failed), True, not failed
    )


def unmerged_wal(work: Path) -> Outcome:
    sys.path.insert(0, str(ROOT))
    from dermdesk.exchange.datasets import plan_path
    from dermdesk.exchange.importer import run_import
    from dermdesk.library import Library

    lib_dir, copy = work / "lib", work / "copy"
    with Library.open(lib_dir, actor="faults") as lib:
        run_import(lib, plan_path(HAM).items[:10], checks=False)
        lib.conn.execute("PRAGMA wal_autocheckpoint = 0")
        run_import(lib, plan_path(HAM).items[10:20], checks=False)
        shutil.copytree(lib_dir, copy)
    ro = work / "ro"
    ro.mkdir()
    proc = private_mounts(
        f"mount --bind {copy} {ro} && mount -o remount,bind,ro {ro} || exit 77\n"
        f"DERMDESK_HOME={ro} {sys.executable} -m dermdesk ls --limit 1\n"
    )
    fresh = "of 20 images" in proc.stdout
    return Outcome("", f"the WAL's changes shown (20 images): {fresh}", fresh, clear(proc))


def damaged_header(work: Path) -> Outcome:
    lib = make_library(work, 30)
    before = originals(lib)
    with open(lib / "library.sqlite", "r+b") as fh:
        fh.write(b"garbage garbage!")
    said = [cli(lib, c) for c in ("ls", "stats", "verify")]
    ok_lines = all("database is damaged" in p.stdout + p.stderr for p in said)
    rebuilt = cli(lib, "recover", "--database")
    ok = intact(before, lib) and verified(lib) and _rows(lib) == 30
    return Outcome(
        "", f"every command said so: {ok_lines}; rebuilt", ok, ok_lines and clear(*said, rebuilt)
    )


def damaged_page(work: Path) -> Outcome:
    lib = make_library(work, 60)
    before = originals(lib)
    db = sqlite3.connect(lib / "library.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name = 'image'")]
    db.close()
    with open(lib / "library.sqlite", "r+b") as fh:
        fh.seek((pages[len(pages) // 2] - 1) * size + 100)
        fh.write(b"\xde\xad\xbe\xef" * 200)
    found = cli(lib, "verify")
    rebuilt = cli(lib, "recover", "--database")
    ok = intact(before, lib) and verified(lib) and _rows(lib) == 60
    return Outcome(
        "", "verify reported it; rebuilt, lost rows re-imported", ok, clear(found, rebuilt)
    )


def hostile_file(work: Path, make: Callable[[Path], None], expect: str) -> Outcome:
    lib = make_library(work, 5)
    folder = work / "incoming"
    folder.mkdir()
    make(folder)
    shutil.copy(sorted((HAM / "images").glob("*.jpg"))[60], folder / "good.jpg")
    before = originals(lib)
    try:
        proc = cli(lib, "import", folder, "--quiet")
    except subprocess.TimeoutExpired:
        return Outcome("", "HUNG", False, False)
    refused = [line for line in proc.stdout.splitlines() if ": refused: " in line]
    said = bool(refused) and all(expect in line for line in refused)
    ok = intact(before, lib) and verified(lib) and "1 added" in proc.stdout
    return Outcome(
        "",
        f"refused: {refused[0].split(': refused: ')[1] if refused else '-'}",
        ok,
        said and clear(proc),
    )


def fifo(folder: Path) -> None:
    os.mkfifo(folder / "pipe.jpg")


def dev_zero(folder: Path) -> None:
    (folder / "zero.jpg").symlink_to("/dev/zero")


def huge_png(folder: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 16_000, 15_600, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\0" * 1000)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    (folder / "scan.png").write_bytes(png)


def truncated_jpeg(folder: Path) -> None:
    data = sorted((HAM / "images").glob("*.jpg"))[61].read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])


def text_as_jpeg(folder: Path) -> None:
    (folder / "notes.jpg").write_text("patient: Jane Doe\n")


def bad_csv(work: Path, row: str, expect: str) -> Outcome:
    lib = make_library(work, 3)
    folder = work / "clinic"
    (folder / "img").mkdir(parents=True)
    for i, p in enumerate(sorted((HAM / "images").glob("*.jpg"))[70:73]):
        shutil.copy(p, folder / "img" / f"p{i}.jpg")
    (folder / "labels.csv").write_text(
        "file,diagnosis\n" + row + "img/p1.jpg,NEV\nimg/p2.jpg,BCC\n", encoding="utf-8"
    )
    proc = cli(lib, "import", "--csv", folder / "labels.csv")
    said = expect in proc.stdout
    ok = verified(lib) and "2 added" in proc.stdout
    return Outcome("", f"row refused ('{expect}'), the rest imported", ok, said and clear(proc))


def crafted_model(work: Path, meta: dict[str, str], expect: str) -> Outcome:
    sys.path.insert(0, str(ROOT))
    import onnx
    from onnx import TensorProto, helper

    from dermdesk.inference.predictor import ModelLoadError, OnnxClassifier

    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1.0] * 6)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "crafted",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    base = {
        "classes": '["MEL", "NEV"]',
        "preprocess": '{"size": 16, "crop_fraction": 0.875, '
        '"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}',
    }
    for key, value in {**base, **meta}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"dermdesk.{key}", value
    path = work / "crafted.onnx"
    onnx.save(model, str(path))
    try:
        OnnxClassifier(path)
    except ModelLoadError as exc:
        text = str(exc)
        return Outcome(
            "", f"refused: {text.split(': ', 1)[1]}", True, expect in text and "\n" not in text
        )
    except Exception as exc:
        return Outcome("", f"crashed: {type(exc).__name__}", True, False)
    return Outcome("", "accepted", True, False)


def pickle_checkpoint(work: Path) -> Outcome:
    import pickle

    lib = work / "lib"
    cli(lib, "import", HAM, "--quiet", "--no-checks")  # labelled: the dataset's metadata
    evil = work / "weights.pt"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("LOADED",))

    evil.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    tiny = ["--arch", "vit_test", "--img-size", "32", "--epochs", "1", "--min-class-images", "2"]
    proc = cli(lib, "train", "finetune", *tiny, "--from", evil)
    ran = "LOADED" in proc.stdout + proc.stderr
    said = "refused" in proc.stderr and not ran
    line = next((x for x in proc.stderr.splitlines() if x.startswith("dermdesk:")), "")
    return Outcome("", f"code ran: {ran}; {line[10:100]}", verified(lib), said and clear(proc))


def tampered(work: Path, sql: list[str], expect: str, rehash: bool = False) -> Outcome:
    lib = make_library(work, 10)
    cli(lib, "ls")
    db = sqlite3.connect(lib / "library.sqlite")
    ids = [r[0] for r in db.execute("SELECT id FROM image ORDER BY id")]
    for statement in sql:
        db.execute(statement.replace("{id}", ids[0]))
    if rehash:
        sys.path.insert(0, str(ROOT))
        from dermdesk.library.audit import GENESIS, entry_hash

        prev = GENESIS
        rows = db.execute(
            "SELECT id, at, actor, action, entity, entity_id, before, after FROM audit ORDER BY id"
        ).fetchall()
        for entry_id, *fields in rows:
            h = entry_hash(prev, *fields)
            db.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", (prev, h, entry_id))
            prev = h
    db.commit()
    db.close()
    found = cli(lib, "verify", "--quick")
    said = expect in found.stdout and "verify FAILED" in found.stdout
    return Outcome("", f"verify found it: {said}", True, said and clear(found))


def owner_only(work: Path) -> Outcome:
    lib = make_library(work, 3)
    modes = (lib.stat().st_mode & 0o777, (lib / "library.sqlite").stat().st_mode & 0o777)
    return Outcome(
        "", f"folder {modes[0]:04o}, database {modes[1]:04o}", True, modes == (0o700, 0o600)
    )


def thumbnail_write(work: Path) -> Outcome:
    lib = make_library(work, 5)
    before = originals(lib)
    for thumb in (lib / "thumbs").rglob("*.jpg"):
        thumb.write_bytes(b"overwritten")
    ok = intact(before, lib)
    return Outcome("", "writing every thumbnail left every original intact", ok, True)


def outside_path(work: Path) -> Outcome:
    lib = make_library(work, 3)
    folder = work / "clinic"
    folder.mkdir()
    (folder / "labels.csv").write_text("file,diagnosis\n/etc/passwd,MEL\n../../x.jpg,NEV\n")
    proc = cli(lib, "import", "--csv", folder / "labels.csv")
    said = proc.stdout.count("is outside the dataset folder") == 2
    return Outcome("", "both rows refused in plain words", verified(lib), said and clear(proc))


# -- the matrix --------------------------------------------------------------------------------

FAULTS: dict[str, Callable[[Path], Outcome]] = {
    "kill -9 mid-import (threads)": lambda w: kill_import(w, checks=False),
    "kill -9 mid-import (process pool)": lambda w: kill_import(w, checks=True),
    "Ctrl-C mid-import": ctrl_c_import,
    "three importers at once": concurrent_imports,
    "committed rows lost": lost_rows,
    "an older database put back": older_database,
    "verify --repair with unlisted originals": repair_keeps_originals,
    "kill -9 mid-backup": killed_backup,
    "full disk during import": full_disk_import,
    "full disk during backup": full_disk_backup,
    "read-only mount": read_only_mount,
    "read-only copy with an unmerged WAL": unmerged_wal,
    "damaged database header": damaged_header,
    "damaged database page": damaged_page,
    "a FIFO named .jpg": lambda w: hostile_file(w, fifo, "not a regular file"),
    "a link to /dev/zero": lambda w: hostile_file(w, dev_zero, "not a regular file"),
    "a 249.6 MP PNG": lambda w: hostile_file(w, huge_png, "decoded whole"),
    "a truncated JPEG": lambda w: hostile_file(w, truncated_jpeg, "truncated"),
    "text named .jpg": lambda w: hostile_file(w, text_as_jpeg, "not an image"),
    "CSV: unterminated quote": lambda w: bad_csv(w, 'img/p0.jpg,"MEL,P1\n', "not closed"),
    "CSV: NUL byte": lambda w: bad_csv(w, "img/p0.jpg,M\x00EL\n", "NUL byte"),
    "CSV: a 120 KB cell": lambda w: bad_csv(w, f"img/p0.jpg,{'x' * 120_000}\n", "characters"),
    "ONNX: class list not JSON": lambda w: crafted_model(w, {"classes": "[MEL"}, "not valid JSON"),
    "ONNX: classes as a string": lambda w: crafted_model(
        w, {"classes": '"MEL,NEV"'}, "class codes"
    ),
    "ONNX: crop 0": lambda w: crafted_model(
        w,
        {"preprocess": '{"size": 16, "crop_fraction": 0, "mean": [0,0,0], "std": [1,1,1]}'},
        "out of range",
    ),
    "ONNX: size 40000": lambda w: crafted_model(
        w,
        {"preprocess": '{"size": 40000, "crop_fraction": 1, "mean": [0,0,0], "std": [1,1,1]}'},
        "out of range",
    ),
    "a pickle checkpoint": pickle_checkpoint,
    "last audit rows deleted": lambda w: tampered(
        w,
        ["DELETE FROM audit WHERE id > (SELECT max(id) - 3 FROM audit)"],
        "last entries were deleted",
    ),
    "an audit entry edited, chain recomputed": lambda w: tampered(
        w,
        ["UPDATE audit SET actor = 'x' WHERE id = (SELECT max(id) FROM audit)"],
        "hash chain recomputed",
        rehash=True,
    ),
    "a diagnosis changed without an audit entry": lambda w: tampered(
        w,
        [
            "UPDATE image SET diagnosis = 'MEL' WHERE id = '{id}'",
            "UPDATE label SET diagnosis = 'MEL' WHERE image_id = '{id}' AND is_current",
        ],
        "does not say they have",
    ),
    "a new library's permissions": owner_only,
    "writing into thumbnails": thumbnail_write,
    "CSV paths outside the dataset": outside_path,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the faults whose name contains this")
    parser.add_argument("--keep", type=Path, help="keep each fault's folder here")
    args = parser.parse_args()
    if not HAM.is_dir():
        raise SystemExit(f"{HAM} not found: set DERMDESK_SHARED_DATA")
    results: list[Outcome] = []
    for name, fault in FAULTS.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        work = Path(tempfile.mkdtemp(prefix="dermdesk-fault-", dir=args.keep))
        start = time.monotonic()
        try:
            result = fault(work)
        except Skip as why:
            result = Outcome("", f"skipped: {why}", True, True, skipped=True)
        except Exception as exc:  # the matrix itself must finish
            result = Outcome("", f"harness error: {type(exc).__name__}: {exc}", False, False)
        result.fault = name
        results.append(result)
        print(f"  {name}: {result.outcome} ({time.monotonic() - start:.1f} s)", flush=True)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| fault | outcome | nothing lost | one clear line |")
    print("|---|---|---|---|")
    for r in results:
        lost = "skipped" if r.skipped else ("yes" if r.nothing_lost else "**NO**")
        line = "skipped" if r.skipped else ("yes" if r.one_line else "**NO**")
        print(f"| {r.fault} | {r.outcome} | {lost} | {line} |")
    tried = [r for r in results if not r.skipped]
    safe = sum(r.nothing_lost for r in tried)
    clear_lines = sum(r.one_line for r in tried)
    both = sum(r.nothing_lost and r.one_line for r in tried)
    print(
        f"\n{len(tried)} faults tried ({len(results) - len(tried)} skipped): {safe} with nothing "
        f"lost, {clear_lines} with one clear line, {both} with both"
    )
    return 0 if both == len(tried) else 1


if __name__ == "__main__":
    raise SystemExit(main())
