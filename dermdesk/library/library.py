"""The library: one folder holding a SQLite database and a content-addressed store.

:class:`Library` is the single writer API: every change goes through one of
its methods, runs inside one ``BEGIN IMMEDIATE`` transaction and appends to
the audit chain in the same transaction. Reads are plain queries returning
dicts. A ``Library`` object belongs to the thread that opened it (SQLite
connections are not shared across threads); open one per thread or process.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dermdesk import taxonomy
from dermdesk.library.audit import AuditWriter, write_head
from dermdesk.library.db import DB_NAME, LibraryError, connect, id_chunks, immediate
from dermdesk.library.query import ORDERS, ImageFilter
from dermdesk.library.records import DEVICE_FIELDS, ImageRecord, LabelIn, SkinToneIn
from dermdesk.library.store import Store
from dermdesk.library.writes import TONE_METHODS, Txn

EDITABLE_IMAGE_FIELDS = (*DEVICE_FIELDS, "modality", "clinic", "operator")


def now() -> str:
    """Current time as ISO-8601 UTC with milliseconds (sortable as text)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def default_actor() -> str:
    env = os.environ.get("DERMDESK_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Library:
    """An open library folder. Use :meth:`open`; close it (or use ``with``) when done."""

    def __init__(self, root: Path, conn: sqlite3.Connection, actor: str, readonly: bool) -> None:
        self.root = root
        self._conn = conn
        self._db: Any = None
        self.store = Store(root)
        self.actor = actor
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        readonly: bool = False,
        actor: str | None = None,
        busy_timeout_s: float | None = None,
    ) -> Library:
        """Open the library in folder ``root``, creating an empty one if allowed.

        ``busy_timeout_s`` (default ``$DERMDESK_BUSY_TIMEOUT_S`` or 30 s) is how long a
        writer waits for another process's transaction before giving up with an error.
        """
        if busy_timeout_s is None:
            busy_timeout_s = float(os.environ.get("DERMDESK_BUSY_TIMEOUT_S", "30"))
        folder = Path(root).expanduser().resolve()
        db_path = folder / DB_NAME
        new = not db_path.exists()
        if new:
            if not create or readonly:
                raise LibraryError(f"{folder}: no library here (no {DB_NAME})")
            _make_folder(folder)
        if not readonly and not os.access(folder, os.W_OK):
            raise LibraryError(f"{folder}: library folder is read-only; cannot write to it")
        conn = connect(db_path, busy_timeout_s=busy_timeout_s, readonly=readonly)
        if new:
            # Patient data: the database (and the -wal/-shm files SQLite makes with its
            # mode) readable by its owner alone.
            with contextlib.suppress(OSError):
                db_path.chmod(0o600)
        lib = cls(folder, conn, actor or default_actor(), readonly)
        if not readonly:
            try:
                lib.store.ensure_dirs()
            except OSError as exc:
                conn.close()
                raise LibraryError(f"{folder}: cannot create library folders ({exc})") from exc
        return lib

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        return self._conn

    @property
    def db(self) -> Any:
        """The connection as a ``sqlite_utils.Database`` (schema introspection, ad-hoc
        queries); imported on first use, since it is off every command's start-up path."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self._conn)
        return self._db

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read as dicts (column name -> value)."""
        cursor = self._conn.execute(sql, params)
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def _write(self) -> Any:
        if self.readonly:
            raise LibraryError(f"{self.root}: library was opened read-only")
        return immediate(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[Txn]:
        """One write transaction (``BEGIN IMMEDIATE``) with its audit entries; every write
        path of the library (:class:`~dermdesk.library.writes.Txn`) runs inside one."""
        head = None
        with self._write() as conn:
            txn = Txn(self, conn, AuditWriter(conn, self.actor, now()))
            yield txn
            if txn.audit.flush():
                head = conn.execute(
                    "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1"
                ).fetchone()
        if head is not None:  # committed: the chain head goes outside the database too
            write_head(self.root, int(head[0]), str(head[1]))

    def require_images(self, image_ids: Iterable[str]) -> list[str]:
        """The ids, de-duplicated in order; LibraryError naming the first that is unknown."""
        ids = list(dict.fromkeys(image_ids))
        if not ids:
            return []
        found: set[str] = set()
        for chunk in id_chunks(ids):
            found.update(
                r[0]
                for r in self.conn.execute(
                    f"SELECT id FROM image WHERE id IN ({', '.join('?' * len(chunk))})", chunk
                )
            )
        missing = [i for i in ids if i not in found]
        if missing:
            raise LibraryError(f"no such image: {missing[0]}")
        return ids

    # -- adding images ---------------------------------------------------------------------

    def add_images(self, records: Sequence[ImageRecord]) -> list[tuple[str, str]]:
        """Add images in one transaction. Returns (status, image id) per record,
        status ``added`` or ``exists`` (the same bytes are already in the library)."""
        results: list[tuple[str, str]] = []
        with self.transaction() as txn:
            for rec in records:
                sha = rec.stored.sha256
                if txn.conn.execute("SELECT 1 FROM image WHERE id = ?", (sha,)).fetchone():
                    results.append(("exists", sha))
                    continue
                txn.add_image(rec)
                results.append(("added", sha))
        return results

    # -- edits -----------------------------------------------------------------------------

    def set_label(
        self,
        image_ids: Iterable[str],
        diagnosis: str,
        *,
        certainty: str = "single_expert",
        free_text: str | None = None,
        annotator: str | None = None,
    ) -> None:
        """Give images a new current diagnosis; earlier labels stay in the history."""
        if diagnosis not in taxonomy.diagnoses():
            raise LibraryError(f"unknown diagnosis code {diagnosis!r}")
        if certainty not in taxonomy.certainty_codes():
            raise LibraryError(f"unknown certainty {certainty!r}")
        ids = self.require_images(image_ids)
        label = LabelIn(diagnosis, certainty, annotator or self.actor, free_text)
        with self.transaction() as txn:
            for image_id in ids:
                txn.set_label(image_id, label)

    def clear_label(self, image_ids: Iterable[str]) -> None:
        """Make images unlabelled (the history keeps every earlier label)."""
        ids = self.require_images(image_ids)
        with self.transaction() as txn:
            for image_id in ids:
                txn.clear_label(image_id)

    def restore_labels(self, label_ids: Mapping[str, int | None]) -> None:
        """Per image, make an earlier label row current again exactly as it was (its
        annotator and time kept), or none: how undo puts a label back."""
        self.require_images(label_ids)
        with self.transaction() as txn:
            for image_id, label_id in label_ids.items():
                txn.restore_label(image_id, label_id)

    def set_skin_tone(self, image_ids: Iterable[str], tone: SkinToneIn) -> None:
        """Record a rating (``manual``) or an estimate; each is kept apart (see writes.py)."""
        if tone.method not in TONE_METHODS:
            raise LibraryError(f"unknown skin-tone method {tone.method!r}")
        ids = self.require_images(image_ids)
        with self.transaction() as txn:
            for image_id in ids:
                txn.record_tone(image_id, tone)

    def clear_skin_tone(self, image_ids: Iterable[str], method: str = "manual") -> None:
        """Withdraw the current rating (or estimate) of images; the history keeps it."""
        ids = self.require_images(image_ids)
        with self.transaction() as txn:
            for image_id in ids:
                txn.withdraw_tone(image_id, method, "skin_tone.clear")

    def restore_skin_tones(
        self, tone_ids: Mapping[str, int | None], method: str = "manual"
    ) -> None:
        """Per image, make an earlier skin-tone row current again exactly as it was (its
        rater and time kept), or none: how undo puts a rating back."""
        self.require_images(tone_ids)
        with self.transaction() as txn:
            for image_id, tone_id in tone_ids.items():
                txn.restore_tone(image_id, method, tone_id)

    def update_image(self, image_id: str, **changes: Any) -> None:
        """Edit device metadata, modality, clinic or operator of one image."""
        bad = set(changes) - set(EDITABLE_IMAGE_FIELDS)
        if bad:
            raise LibraryError(f"fields not editable: {', '.join(sorted(bad))}")
        if "modality" in changes and changes["modality"] not in taxonomy.MODALITIES:
            raise LibraryError(f"unknown modality {changes['modality']!r}")
        if "modality" in changes:  # a person said it: no longer a detector's guess
            changes["modality_method"] = "recorded"
        (image_id,) = self.require_images([image_id])
        with self.transaction() as txn:
            txn.update_image(image_id, changes)

    # -- reads -----------------------------------------------------------------------------

    def known_ids(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT id FROM image")}

    def count(self, flt: ImageFilter | None = None) -> int:
        where, params = (flt or ImageFilter()).where()
        return int(
            self.conn.execute(f"SELECT count(*) FROM image WHERE {where}", params).fetchone()[0]
        )

    def images(
        self,
        flt: ImageFilter | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        order: str = "imported",
    ) -> list[dict[str, Any]]:
        """Image rows matching a filter, a page at a time."""
        where, params = (flt or ImageFilter()).where()
        sql = f"SELECT * FROM image WHERE {where} ORDER BY {ORDERS[order]}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = [*params, limit, offset]
        return list(self.query(sql, params))

    def image(self, id_or_prefix: str) -> dict[str, Any]:
        """One image by id or unique id prefix (at least 6 characters)."""
        key = id_or_prefix.strip().lower()
        if len(key) < 6:
            raise LibraryError("give at least 6 characters of the image id")
        if len(key) == 64:  # a full id: the primary key
            rows = list(self.query("SELECT * FROM image WHERE id = ?", [key]))
        else:  # a prefix: a range on the primary key (LIKE would scan the table)
            rows = list(
                self.query(
                    "SELECT * FROM image WHERE id >= ? AND id < ? ORDER BY id LIMIT 2",
                    [key, key + "~"],
                )
            )
        if not rows:
            raise LibraryError(f"no image with id {id_or_prefix}")
        if len(rows) > 1:
            raise LibraryError(f"image id prefix {id_or_prefix} is ambiguous")
        return rows[0]

    def current_label(self, image_id: str) -> dict[str, Any] | None:
        rows = list(self.query("SELECT * FROM label WHERE image_id = ? AND is_current", [image_id]))
        return rows[0] if rows else None

    def current_labels(self, image_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Image id -> its current label row, for many images (in chunks under SQLite's
        bound-parameter limit); images without a label are absent."""
        out: dict[str, dict[str, Any]] = {}
        for chunk in id_chunks(image_ids):
            marks = ", ".join("?" * len(chunk))
            for row in self.query(
                f"SELECT * FROM label WHERE is_current AND image_id IN ({marks})", chunk
            ):
                out[row["image_id"]] = row
        return out

    def label_history(self, image_id: str) -> list[dict[str, Any]]:
        return list(self.query("SELECT * FROM label WHERE image_id = ? ORDER BY id", [image_id]))

    def skin_tones(self, image_id: str) -> list[dict[str, Any]]:
        return list(
            self.query("SELECT * FROM skin_tone WHERE image_id = ? ORDER BY id", [image_id])
        )

    def patient(self, patient_id: str) -> dict[str, Any] | None:
        rows = list(self.query("SELECT * FROM patient WHERE id = ?", [patient_id]))
        return rows[0] if rows else None

    def lesion(self, lesion_id: str) -> dict[str, Any] | None:
        rows = list(self.query("SELECT * FROM lesion WHERE id = ?", [lesion_id]))
        return rows[0] if rows else None

    def masks(self, image_id: str) -> list[dict[str, Any]]:
        return list(self.query("SELECT * FROM mask WHERE image_id = ?", [image_id]))

    def quality(self, image_id: str) -> list[dict[str, Any]]:
        """Quality findings of one image (one row per check)."""
        return list(
            self.query("SELECT * FROM quality WHERE image_id = ? ORDER BY check_name", [image_id])
        )

    def predictions(self, image_id: str) -> list[dict[str, Any]]:
        """Stored predictions of one image, newest model first, probabilities decoded."""
        rows = list(
            self.query(
                "SELECT p.*, m.name AS model_name, m.status AS model_status FROM prediction p "
                "JOIN model m ON m.id = p.model_id WHERE p.image_id = ? ORDER BY p.created_at DESC",
                [image_id],
            )
        )
        for row in rows:
            row["probabilities"] = json.loads(row["probabilities"])
        return rows

    def predictions_of(self, image_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored predictions of several images (model id, status, top, probabilities)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for chunk in id_chunks(image_ids):
            rows = self.conn.execute(
                "SELECT p.image_id, p.model_id, m.status, p.top, p.probabilities, p.created_at "
                "FROM prediction p JOIN model m ON m.id = p.model_id "
                f"WHERE p.image_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY p.created_at DESC",
                chunk,
            )
            for image_id, model_id, status, top, probs, at in rows:
                out.setdefault(image_id, []).append(
                    {
                        "model_id": model_id,
                        "model_status": status,
                        "top": top,
                        "probabilities": json.loads(probs),
                        "created_at": at,
                    }
                )
        return out

    def models(self) -> list[dict[str, Any]]:
        return list(self.query("SELECT * FROM model ORDER BY created_at DESC"))

    def jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        return list(self.query("SELECT * FROM job ORDER BY id DESC LIMIT ?", [limit]))

    def audit_entries(self, entity_id: str | None = None) -> list[dict[str, Any]]:
        if entity_id is None:
            return list(self.query("SELECT * FROM audit ORDER BY id"))
        return list(self.query("SELECT * FROM audit WHERE entity_id = ? ORDER BY id", [entity_id]))

    def counts(
        self, columns: Sequence[str], flt: ImageFilter | None = None
    ) -> list[dict[str, Any]]:
        """Image counts grouped by image columns (e.g. diagnosis, fitzpatrick, modality)."""
        allowed = {
            "diagnosis",
            "fitzpatrick",
            "monk",
            "fitzpatrick_est",
            "monk_est",
            "modality",
            "modality_method",
            "dataset",
            "source",
            "device_make",
            "device_model",
            "device",  # the one device name (query.device_name)
            "meta_domain",
        }
        if not columns or set(columns) - allowed:
            raise LibraryError(f"can group by {', '.join(sorted(allowed))}")
        where, params = (flt or ImageFilter()).where()
        exprs = cols = ", ".join(columns)
        return list(
            self.query(
                f"SELECT {exprs}, count(*) AS n FROM image WHERE {where} "
                f"GROUP BY {cols} ORDER BY {cols}",
                params,
            )
        )

    def original_path(self, image: dict[str, Any]) -> Path:
        return self.store.path(image["file"])

    def thumbnail_path(self, image_id: str) -> Path:
        return self.store.path(self.store.thumb_rel(image_id))


def _make_folder(folder: Path) -> None:
    """A new library folder, owner-only (0700): it holds patient photos and data."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask, and the folder may exist
    except OSError as exc:
        raise LibraryError(f"{folder}: cannot create the library folder ({exc.strerror})") from exc
