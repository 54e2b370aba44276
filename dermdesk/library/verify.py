"""Integrity check of a library: rows <-> files <-> checksums <-> audit chain.

Problems that mean something is damaged or missing are *errors*; leftovers
that an interrupted import legitimately leaves behind (orphan files, temporary
files, a missing thumbnail) are *warnings*, and ``repair=True`` cleans them up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dermdesk.library.audit import verify_chain
from dermdesk.library.library import Library
from dermdesk.library.store import MASKS, ORIGINALS, PART, THUMBS, sha256_file

ProgressFn = Callable[[int, int], None]

# An import writes files before the rows that name them, so a file without a row
# may belong to an import running right now; repair only removes older ones.
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
    _check_database(lib, report)
    _check_images(lib, report, checksums, repair, progress)
    _check_current_values(lib, report)
    _check_orphans(lib, report, repair, orphan_grace_s)
    report.audit_entries, problem = verify_chain(lib.conn)
    if problem:
        report.errors.append(problem)
    return report


def _check_database(lib: Library, report: VerifyReport) -> None:
    result = lib.conn.execute("PRAGMA quick_check").fetchone()[0]
    if result != "ok":
        report.errors.append(f"database damaged: {result}")
    for table, rowid, parent, _ in lib.conn.execute("PRAGMA foreign_key_check"):
        report.errors.append(f"{table} row {rowid} points to a missing {parent}")


def _check_images(
    lib: Library, report: VerifyReport, checksums: bool, repair: bool, progress: ProgressFn | None
) -> None:
    rows = lib.conn.execute("SELECT id, file, bytes FROM image").fetchall()
    report.images = len(rows)
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
        if progress and n % 100 == 0:
            progress(n, len(rows))
    for image_id, rel in lib.conn.execute("SELECT image_id, file FROM mask"):
        if not lib.store.path(rel).is_file():
            report.errors.append(f"image {image_id[:12]}: mask file missing ({rel})")


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


def _check_orphans(lib: Library, report: VerifyReport, repair: bool, grace_s: float) -> None:
    named = {r[0] for r in lib.conn.execute("SELECT file FROM image UNION SELECT file FROM mask")}
    ids = {r[0] for r in lib.conn.execute("SELECT id FROM image")}
    orphans = [
        p
        for sub in (ORIGINALS, MASKS)
        for p in lib.store.iter_files(sub)
        if p.relative_to(lib.root).as_posix() not in named and not p.name.endswith(PART)
    ]
    orphans += [
        p for p in lib.store.iter_files(THUMBS) if p.stem not in ids and not p.name.endswith(PART)
    ]
    temps = lib.store.temp_files()
    if repair:
        cutoff = time.time() - grace_s
        young = [p for p in orphans + temps if p.stat().st_mtime > cutoff]
        orphans = [p for p in orphans if p not in young]
        temps = [p for p in temps if p not in young]
        for path in orphans + temps:
            path.unlink(missing_ok=True)
        if young:
            report.warnings.append(
                f"{len(young)} recent orphan files kept (an import may be running)"
            )
        if orphans or temps:
            report.repaired.append(
                f"removed {len(orphans)} orphan and {len(temps)} temporary files"
            )
        return
    if orphans:
        report.warnings.append(
            f"{len(orphans)} orphan files (left by an interrupted import; removed by --repair)"
        )
    if temps:
        report.warnings.append(f"{len(temps)} temporary files (removed by --repair)")
