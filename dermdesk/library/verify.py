"""Integrity check of a library: rows <-> files <-> checksums <-> audit chain.

Problems that mean something is damaged or missing are *errors*, and so is an
original no row names (rows were lost, or an import was killed): originals are
never deleted, ``repair=True`` moves them to ``quarantine/`` and ``dermdesk
recover`` imports them again. Derived or incomplete leftovers (thumbnails of no
image, temporary files, a missing thumbnail) are *warnings*; ``repair=True``
removes or rebuilds them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dermdesk.errors import one_line
from dermdesk.library.audit import check_head, replay, verify_chain
from dermdesk.library.db import DB_NAME, damaged_message
from dermdesk.library.library import EDITABLE_IMAGE_FIELDS, Library
from dermdesk.library.query import device_name
from dermdesk.library.store import MASKS, ORIGINALS, PART, QUARANTINE, THUMBS, sha256_file

ProgressFn = Callable[[int, int], None]

# Temporary files younger than this may belong to a writer busy right now.
ORPHAN_GRACE_S = 600.0


@dataclass
class VerifyReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    images: int = 0
    audit_entries: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def verify(
    lib: Library,
    *,
    checksums: bool = True,
    repair: bool = False,
    progress: ProgressFn | None = None,
    orphan_grace_s: float = ORPHAN_GRACE_S,
) -> VerifyReport:
    """Check everything; with ``repair``, remove orphans/temp files and rebuild thumbnails."""
    report = VerifyReport()
    _check_permissions(lib, report)
    if not _check_database(lib, report):
        return report  # damaged pages: the other checks would only fail on them
    _check_images(lib, report, checksums, repair, progress)
    _check_current_values(lib, report)
    known_breaks, known_cut = _rebuild_records(lib)
    _check_against_audit(lib, report, known_cut)
    _check_models(lib, report)
    _check_orphans(lib, report, repair, orphan_grace_s)
    _check_cache(lib, report, repair)
    report.audit_entries, problem = verify_chain(lib.conn, known_breaks)
    if problem:
        report.errors.append(problem)
    if known_breaks:
        report.warnings.append(
            f"the audit log has {len(known_breaks)} gap(s) left by a damaged database "
            "(recorded by `recover --database`)"
        )
    problem = check_head(lib.conn, lib.root)
    if problem:
        report.errors.append(problem)
    return report


def _check_models(lib: Library, report: VerifyReport) -> None:
    """Every registered model's ONNX files exist and hash to what was registered."""
    from dermdesk.library.model_store import model_file_hashes

    for model in lib.query("SELECT id, file, sha256, metrics FROM model WHERE file IS NOT NULL"):
        folder = (lib.root / model["file"]).parent
        for name, expected in model_file_hashes(model).items():
            path = folder / name
            if not path.is_file():
                report.errors.append(f"model {model['id']}: its file {name} is missing")
            elif sha256_file(path) != expected:
                report.errors.append(
                    f"model {model['id']}: {name} changed since it was registered "
                    "(its SHA-256 differs)"
                )


def _check_cache(lib: Library, report: VerifyReport, repair: bool) -> None:
    """Training-cache entries of images no longer in the library (the cache is derived:
    dropping entries, or the whole cache, loses nothing)."""
    from dermdesk.ml.image_cache import TrainCache, cache_sizes  # numpy only

    sizes = cache_sizes(lib.root)
    if not sizes:
        return
    ids = {r[0] for r in lib.conn.execute("SELECT id FROM image")}
    for size in sizes:
        cache = TrainCache(lib.root, size)
        stale = cache.stale(ids)
        if not stale:
            continue
        if repair:
            report.repaired.append(f"dropped {cache.drop(stale)} cache entries at {size} px")
        else:
            report.warnings.append(
                f"{len(stale)} training-cache entries at {size} px are of images no longer "
                "in the library (dropped by --repair)"
            )


def _check_permissions(lib: Library, report: VerifyReport) -> None:
    """Patient data readable by other users of the computer is worth a warning."""
    if os.name != "posix":
        return
    for path, what in ((lib.root, "library folder"), (lib.root / "library.sqlite", "database")):
        with contextlib.suppress(OSError):
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                report.warnings.append(
                    f"the {what} is open to other users of this computer (mode {mode:04o}): "
                    f"chmod {'700' if path.is_dir() else '600'} {path}"
                )


def _check_database(lib: Library, report: VerifyReport) -> bool:
    """SQLite's own check of every page; False when the database is damaged."""
    try:
        result = lib.conn.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            first = one_line(str(result).replace("*** in database main ***", ""))
            report.errors.append(damaged_message(lib.root / DB_NAME, first))
            return False
        for table, rowid, parent, _ in lib.conn.execute("PRAGMA foreign_key_check"):
            report.errors.append(f"{table} row {rowid} points to a missing {parent}")
    except sqlite3.DatabaseError as exc:
        report.errors.append(damaged_message(lib.root / DB_NAME, str(exc)))
        return False
    return True


def _check_images(
    lib: Library, report: VerifyReport, checksums: bool, repair: bool, progress: ProgressFn | None
) -> None:
    rows = lib.conn.execute("SELECT id, file, bytes FROM image").fetchall()
    report.images = len(rows)
    shared: list[str] = []  # thumbnails that are the original's own file (a hard link)
    for n, (image_id, rel, size) in enumerate(rows, 1):
        path = lib.store.path(rel)
        if not path.is_file():
            report.errors.append(f"image {image_id[:12]}: original file missing ({rel})")
        elif path.stat().st_size != size:
            report.errors.append(
                f"image {image_id[:12]}: original has {path.stat().st_size} bytes, expected {size}"
            )
        elif checksums and sha256_file(path) != image_id:
            report.errors.append(f"image {image_id[:12]}: original's checksum does not match")
        elif not lib.thumbnail_path(image_id).is_file():
            _missing_thumbnail(lib, report, image_id, repair)
        elif os.path.samefile(lib.thumbnail_path(image_id), path):
            shared.append(image_id)
        if progress and n % 100 == 0:
            progress(n, len(rows))
    _shared_thumbnails(lib, report, shared, repair)
    for image_id, rel in lib.conn.execute("SELECT image_id, file FROM mask"):
        if not lib.store.path(rel).is_file():
            report.errors.append(f"image {image_id[:12]}: mask file missing ({rel})")


def _shared_thumbnails(lib: Library, report: VerifyReport, ids: list[str], repair: bool) -> None:
    """Libraries made before 2026-12 hard-linked a small JPEG's thumbnail to its original:
    writing the thumbnail wrote the original, and it carried the original's metadata."""
    if not ids:
        return
    if not repair:
        report.warnings.append(
            f"{len(ids)} thumbnails are their original's own file (a hard link, with its "
            "metadata): --repair gives each a metadata-free file of its own"
        )
        return
    from dermdesk.exchange.ingest import own_thumbnail  # lazy: pixel code

    for image_id in ids:
        original = lib.original_path(lib.image(image_id)).read_bytes()
        lib.store.put(lib.store.thumb_rel(image_id), own_thumbnail(original), overwrite=True)
    report.repaired.append(f"gave {len(ids)} thumbnails a file of their own (no metadata)")


def _missing_thumbnail(lib: Library, report: VerifyReport, image_id: str, repair: bool) -> None:
    if not repair:
        report.warnings.append(f"image {image_id[:12]}: thumbnail missing (rebuilt by --repair)")
        return
    from dermdesk.exchange.ingest import ingest_file  # lazy: verify is mostly file checks

    image = lib.image(image_id)
    ingest_file(lib.original_path(image), lib.store)
    report.repaired.append(f"rebuilt thumbnail of {image_id[:12]}")


def _check_current_values(lib: Library, report: VerifyReport) -> None:
    """image.diagnosis and the rated / estimated skin-tone columns must equal what the
    history says (a rating and an estimate each in their own columns)."""
    bad_labels = lib.conn.execute(
        "SELECT image.id FROM image LEFT JOIN label ON label.image_id = image.id "
        "AND label.is_current WHERE image.diagnosis IS NOT label.diagnosis"
    ).fetchall()
    for (image_id,) in bad_labels:
        report.errors.append(f"image {image_id[:12]}: diagnosis disagrees with label history")
    bad_tones = lib.conn.execute(
        """
        SELECT image.id FROM image
        LEFT JOIN skin_tone m ON m.image_id = image.id AND m.is_current AND m.method = 'manual'
        LEFT JOIN skin_tone e ON e.image_id = image.id AND e.is_current AND e.method = 'estimated'
        WHERE image.fitzpatrick IS NOT m.fitzpatrick OR image.monk IS NOT m.monk
           OR image.fitzpatrick_est IS NOT e.fitzpatrick OR image.monk_est IS NOT e.monk
        """
    ).fetchall()
    for (image_id,) in bad_tones:
        report.errors.append(f"image {image_id[:12]}: skin tone disagrees with its history")
    for image_id, make, model, device in lib.conn.execute(
        "SELECT id, device_make, device_model, device FROM image"
    ):
        if device != device_name(make, model):
            report.errors.append(
                f"image {image_id[:12]}: device name disagrees with its make/model"
            )


# Image columns whose every change is audited (image.add, label.*, skin_tone.*, image.link,
# image.update), so the row must say what the log says.
AUDITED_COLUMNS = (
    "diagnosis",
    "fitzpatrick",
    "monk",
    "fitzpatrick_est",
    "monk_est",
    "modality",
    "modality_method",  # logged since schema version 12 (`c in state` skips older entries)
    "patient_id",
    "lesion_id",
)
MAX_LISTED = 20  # name at most this many images per kind of disagreement


def audit_disagreements(lib: Library) -> list[tuple[str, list[str]]]:
    """(image id, columns) where a row holds values the audit log does not lead to; an
    image with no image.add entry is listed with ``["image.add"]``."""
    expected = replay(lib.conn)
    labels = {
        r[0]: r[1:]
        for r in lib.conn.execute(
            "SELECT image_id, diagnosis, certainty, annotator FROM label WHERE is_current"
        )
    }
    out: list[tuple[str, list[str]]] = []
    for row in lib.query("SELECT * FROM image"):
        state = expected.get(row["id"])
        if state is None:
            out.append((row["id"], ["image.add"]))
            continue
        columns = [*AUDITED_COLUMNS, *(k for k in state if k in EDITABLE_IMAGE_FIELDS)]
        bad = [c for c in dict.fromkeys(columns) if c in state and row[c] != state[c]]
        label = state.get("label")
        if labels.get(row["id"]) != (
            (label["diagnosis"], label["certainty"], label["annotator"]) if label else None
        ):
            bad.append("label")
        if bad:
            out.append((row["id"], bad))
    return out


def _rebuild_records(lib: Library) -> tuple[set[int], set[str]]:
    """Chain breaks and cut image histories that a `recover --database` recorded."""
    breaks: set[int] = set()
    cut: set[str] = set()
    for (after,) in lib.conn.execute(
        "SELECT after FROM audit WHERE action LIKE 'library.rebuild%'"
    ):
        data = json.loads(after or "{}")
        breaks.update(int(i) for i in data.get("chain_breaks", []))
        cut.update(str(i) for i in data.get("images", []))
    return breaks, cut


def _check_against_audit(lib: Library, report: VerifyReport, known_cut: set[str]) -> None:
    """Every current value must be what the audit log says it is: an edit made behind the
    library's back (rows changed, no audit entry) shows here even with an intact chain."""
    wrong: list[str] = []
    unlogged = 0
    cut = 0
    for image_id, bad in audit_disagreements(lib):
        if image_id in known_cut:
            cut += 1
        elif bad == ["image.add"]:
            unlogged += 1
        else:
            wrong.append(f"{image_id[:12]} ({', '.join(bad)})")
    if wrong:
        shown = "; ".join(wrong[:MAX_LISTED]) + (" …" if len(wrong) > MAX_LISTED else "")
        report.errors.append(
            f"{len(wrong)} images hold values the audit log does not say they have "
            f"(changed without an audit entry?): {shown}"
        )
    if unlogged:
        report.errors.append(f"{unlogged} images have no image.add entry in the audit log")
    if cut:
        report.warnings.append(
            f"{cut} images' audit histories were cut by a damaged database (recorded by "
            "`recover --database`): their current values cannot be checked against the log"
        )
    ids = {r[0] for r in lib.conn.execute("SELECT id FROM image")}
    missing = [i for i in replay(lib.conn) if i not in ids]
    if missing:
        report.errors.append(
            f"the audit log names {len(missing)} images the database does not have "
            "(rows lost? `dermdesk recover` re-imports their originals)"
        )


def _check_orphans(lib: Library, report: VerifyReport, repair: bool, grace_s: float) -> None:
    """Originals and masks no row names are errors (never deleted: --repair moves them to
    quarantine/ for `dermdesk recover`), unless an import still running may add their rows;
    orphan thumbnails and old temporary files are leftovers that --repair removes."""
    named = {r[0] for r in lib.conn.execute("SELECT file FROM image UNION SELECT file FROM mask")}
    ids = {r[0] for r in lib.conn.execute("SELECT id FROM image")}
    unlisted = [
        p
        for sub in (ORIGINALS, MASKS)
        for p in lib.store.iter_files(sub)
        if p.relative_to(lib.root).as_posix() not in named and not p.name.endswith(PART)
    ]
    writers = lib.store.running_writers()
    since = min(float(w.get("since", 0)) for w in writers) if writers else None
    # A file written after the oldest running import began may still get its row from it.
    pending = [p for p in unlisted if since is not None and p.stat().st_mtime >= since - 2]
    lost = [p for p in unlisted if p not in pending]
    if pending:
        report.warnings.append(
            f"{len(pending)} new originals without rows yet (an import is running)"
        )
    if lost and repair:
        for path in lost:
            lib.store.quarantine(path)
        report.repaired.append(
            f"moved {len(lost)} originals/masks no row names to quarantine/ "
            "(nothing deleted; `dermdesk recover` imports them again)"
        )
    elif lost:
        report.errors.append(
            f"{len(lost)} originals/masks have no row in the database (rows lost, or an "
            "import was killed): `dermdesk recover` imports them again; "
            "`verify --repair` moves them to quarantine/"
        )
    quarantined = sum(1 for _ in lib.store.iter_files(QUARANTINE))
    if quarantined:
        report.warnings.append(
            f"{quarantined} files in quarantine/ (originals no row names): "
            "`dermdesk recover` imports them again"
        )
    _leftovers(lib, report, repair, grace_s, ids)


def _leftovers(
    lib: Library, report: VerifyReport, repair: bool, grace_s: float, ids: set[str]
) -> None:
    """Thumbnails of no image and half-written temporary files: derived or incomplete,
    so --repair deletes them (once older than the grace period)."""
    thumbs = [
        p for p in lib.store.iter_files(THUMBS) if p.stem not in ids and not p.name.endswith(PART)
    ]
    temps = lib.store.temp_files()
    if not repair:
        if thumbs:
            report.warnings.append(f"{len(thumbs)} thumbnails of no image (removed by --repair)")
        if temps:
            report.warnings.append(f"{len(temps)} temporary files (removed by --repair)")
        return
    cutoff = time.time() - grace_s
    young = [p for p in thumbs + temps if p.stat().st_mtime > cutoff]
    old_thumbs = [p for p in thumbs if p not in young]
    old_temps = [p for p in temps if p not in young]
    for path in old_thumbs + old_temps:
        path.unlink(missing_ok=True)
    if young:
        report.warnings.append(f"{len(young)} recent temporary files kept (a writer may be busy)")
    if old_thumbs or old_temps:
        report.repaired.append(
            f"removed {len(old_thumbs)} thumbnails of no image and {len(old_temps)} temporary files"
        )
