"""The library's write path: one :class:`Txn` per ``BEGIN IMMEDIATE`` transaction.

Every change to the library is one of the methods here, called inside
``Library.transaction()``; :class:`~dermdesk.library.library.Library`, the
edit functions (``edits.py``), the quality store and the job/model stores all
use them, so each rule is written once:

- a *history* value (label, skin tone) retires the current row of its kind,
  inserts or re-activates one, updates the image's denormalised column and
  appends an audit entry, all in the caller's transaction;
- ``image.fitzpatrick`` / ``image.monk`` hold the current *rated* value (a
  person's or a dataset's), ``image.fitzpatrick_est`` / ``image.monk_est`` the
  current *estimate*; nothing ever mixes the two (see docs/design.md).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dermdesk.library.audit import AuditWriter
from dermdesk.library.db import LibraryError, translate_error
from dermdesk.library.query import device_name
from dermdesk.library.records import (
    DEVICE_FIELDS,
    ImageRecord,
    LabelIn,
    LesionRef,
    PatientRef,
    SkinToneIn,
)

if TYPE_CHECKING:
    from dermdesk.library.library import Library

TONE_METHODS = ("manual", "estimated")
# The image columns that hold each method's current (Fitzpatrick, Monk).
TONE_COLUMNS = {"manual": ("fitzpatrick", "monk"), "estimated": ("fitzpatrick_est", "monk_est")}
LABEL_FIELDS = ("diagnosis", "certainty", "free_text", "annotator")


def new_id(prefix: str) -> str:
    """A fresh pseudonymous id (``P-…`` patient, ``L-…`` lesion)."""
    return f"{prefix}-{secrets.token_hex(5)}"


# The image columns an image.add audit entry records (with its patient and lesion).
IMAGE_ADD_LOGGED = ("file", "modality", "modality_method", "source", "dataset", "dataset_image_id")


class Txn:
    """One open write transaction: the library, its connection, audit writer and time."""

    def __init__(self, lib: Library, conn: sqlite3.Connection, audit: AuditWriter) -> None:
        self.lib = lib
        self.conn = conn
        self.audit = audit

    @property
    def at(self) -> str:
        return self.audit.at

    @property
    def actor(self) -> str:
        return self.audit.actor

    def record(
        self, action: str, entity: str, entity_id: str | None, before: Any, after: Any
    ) -> None:
        """Append one audit entry (written with the transaction)."""
        self.audit.record(action, entity, entity_id, before, after)

    def insert(self, table: str, row: dict[str, Any]) -> int:
        """INSERT one row; returns its rowid. Constraint failures become LibraryError."""
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        try:
            cur = self.conn.execute(
                f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values())
            )
        except sqlite3.IntegrityError as exc:
            raise LibraryError(f"cannot add {table} row: {exc}") from exc
        except sqlite3.OperationalError as exc:
            raise translate_error(exc, None) from exc
        return int(cur.lastrowid or 0)

    # -- patients and lesions -----------------------------------------------------------------

    def patient(self, ref: PatientRef) -> str:
        """The id of the patient ``ref`` names, adding the patient if new."""
        found = self.conn.execute(
            "SELECT id FROM patient WHERE source = ? AND external_id = ?",
            (ref.source, ref.external_id),
        ).fetchone()
        if found:
            return str(found[0])
        pid = new_id("P")
        self.insert(
            "patient",
            {
                "id": pid,
                "source": ref.source,
                "external_id": ref.external_id,
                "created_at": self.at,
            },
        )
        self.record("patient.add", "patient", pid, None, {"source": ref.source})
        return pid

    def lesion(self, ref: LesionRef, patient_id: str | None) -> str:
        """The id of the lesion ``ref`` names, adding it (for ``patient_id``) if new."""
        found = self.conn.execute(
            "SELECT id FROM lesion WHERE source = ? AND external_id = ?",
            (ref.source, ref.external_id),
        ).fetchone()
        if found:
            return str(found[0])
        lid = new_id("L")
        self.insert(
            "lesion",
            {
                "id": lid,
                "patient_id": patient_id,
                "source": ref.source,
                "external_id": ref.external_id,
                "body_site": ref.body_site,
                "created_at": self.at,
            },
        )
        self.record(
            "lesion.add",
            "lesion",
            lid,
            None,
            {"patient_id": patient_id, "body_site": ref.body_site},
        )
        return lid

    def set_body_site(self, lesion_id: str, body_site: str | None) -> None:
        before = self.conn.execute(
            "SELECT body_site FROM lesion WHERE id = ?", (lesion_id,)
        ).fetchone()
        if before is None:
            raise LibraryError(f"no such lesion: {lesion_id}")
        if before[0] == body_site:
            return
        self.conn.execute("UPDATE lesion SET body_site = ? WHERE id = ?", (body_site, lesion_id))
        self.record(
            "lesion.update", "lesion", lesion_id, {"body_site": before[0]}, {"body_site": body_site}
        )

    def link(self, image_id: str, patient_id: str | None, lesion_id: str | None) -> None:
        before = self.conn.execute(
            "SELECT patient_id, lesion_id FROM image WHERE id = ?", (image_id,)
        ).fetchone()
        self.conn.execute(
            "UPDATE image SET patient_id = ?, lesion_id = ? WHERE id = ?",
            (patient_id, lesion_id, image_id),
        )
        self.record(
            "image.link",
            "image",
            image_id,
            {"patient_id": before[0], "lesion_id": before[1]},
            {"patient_id": patient_id, "lesion_id": lesion_id},
        )

    # -- images -------------------------------------------------------------------------------

    def add_image(self, rec: ImageRecord) -> None:
        """Insert a new image with its patient, lesion, label, skin tones, mask and findings.

        A new image has no earlier label or tone, so its current values go straight
        into its row and the history rows are plain inserts (no read-and-retire).
        """
        row = self._image_row(rec)
        self.insert("image", row)
        self.record(
            "image.add",
            "image",
            row["id"],
            None,
            {k: row[k] for k in IMAGE_ADD_LOGGED}
            | {"patient_id": row["patient_id"], "lesion_id": row["lesion_id"]},
        )
        if rec.label:
            self._insert_label(row["id"], rec.label, None, new_image=True)
        self._insert_fresh_tones(row["id"], rec.skin_tones)
        if rec.mask_file:
            self.insert(
                "mask",
                {
                    "image_id": row["id"],
                    "kind": "lesion",
                    "file": rec.mask_file,
                    "source": rec.dataset or "import",
                    "created_at": self.at,
                },
            )
        if rec.stored.quality is not None:
            from dermdesk.library.quality_store import insert_assessment  # lazy: pixel stack

            insert_assessment(self, row["id"], rec.stored.quality)

    def _image_row(self, rec: ImageRecord) -> dict[str, Any]:
        patient_id = self.patient(rec.patient) if rec.patient else None
        lesion_id = self.lesion(rec.lesion, patient_id) if rec.lesion else None
        if lesion_id and not patient_id:
            owner = self.conn.execute("SELECT patient_id FROM lesion WHERE id = ?", (lesion_id,))
            patient_id = owner.fetchone()[0]
        s = rec.stored
        row: dict[str, Any] = {
            "id": s.sha256,
            "file": s.file,
            "format": s.format,
            "width": s.width,
            "height": s.height,
            "bytes": s.bytes,
            "mode": s.mode,
            "orientation": s.orientation,
            "modality": rec.modality,
            "modality_method": rec.modality_method,
            "source": rec.source,
            "dataset": rec.dataset,
            "dataset_image_id": rec.dataset_image_id,
            "original_name": rec.original_name,
            "patient_id": patient_id,
            "lesion_id": lesion_id,
            "clinic": rec.clinic,
            "operator": rec.operator,
            "imported_at": self.at,
            "extra": json.dumps(rec.extra, sort_keys=True) if rec.extra else None,
            "diagnosis": rec.label.diagnosis if rec.label else None,
        }
        row.update({k: v for k, v in s.device.items() if k in DEVICE_FIELDS})
        row["device"] = device_name(row.get("device_make"), row.get("device_model"))
        for method, value in last_tone_per_method(rec.skin_tones).items():
            row.update(zip(TONE_COLUMNS[method], value, strict=True))
        return row

    def update_image(self, image_id: str, changes: dict[str, Any]) -> None:
        """Change plain image columns (device, modality, clinic, operator), audited."""
        cols = ", ".join(changes)
        found = self.conn.execute(f"SELECT {cols} FROM image WHERE id = ?", (image_id,)).fetchone()
        if found is None:
            raise LibraryError(f"no such image: {image_id}")
        before = dict(zip(changes, found, strict=True))
        sets = ", ".join(f"{c} = ?" for c in changes)
        self.conn.execute(f"UPDATE image SET {sets} WHERE id = ?", (*changes.values(), image_id))
        if {"device_make", "device_model"} & set(changes):  # the derived name follows
            make, model = self.conn.execute(
                "SELECT device_make, device_model FROM image WHERE id = ?", (image_id,)
            ).fetchone()
            self.conn.execute(
                "UPDATE image SET device = ? WHERE id = ?", (device_name(make, model), image_id)
            )
        self.record("image.update", "image", image_id, before, changes)

    # -- labels -------------------------------------------------------------------------------

    def set_label(self, image_id: str, label: LabelIn) -> None:
        """Make ``label`` the image's current label; the old one stays in the history."""
        before = self.current_label(image_id)
        self.conn.execute(
            "UPDATE label SET is_current = 0 WHERE image_id = ? AND is_current", (image_id,)
        )
        self._insert_label(image_id, label, before)

    def _insert_label(
        self,
        image_id: str,
        label: LabelIn,
        before: dict[str, Any] | None,
        *,
        new_image: bool = False,
    ) -> None:
        after = {f: getattr(label, f) for f in LABEL_FIELDS}
        self.insert(
            "label", {"image_id": image_id, "created_at": self.at, "is_current": 1, **after}
        )
        if not new_image:  # a new image's row already holds its diagnosis
            self.conn.execute(
                "UPDATE image SET diagnosis = ? WHERE id = ?", (label.diagnosis, image_id)
            )
        self.record("label.set", "image", image_id, _label_state(before), after)

    def clear_label(self, image_id: str) -> None:
        """Make the image unlabelled (the history keeps every earlier label)."""
        before = self.current_label(image_id)
        self.conn.execute(
            "UPDATE label SET is_current = 0 WHERE image_id = ? AND is_current", (image_id,)
        )
        self.conn.execute("UPDATE image SET diagnosis = NULL WHERE id = ?", (image_id,))
        self.record("label.clear", "image", image_id, _label_state(before), None)

    def restore_label(self, image_id: str, label_id: int | None) -> None:
        """Make an earlier label row current again, exactly as it was (annotator, time),
        or none (``None``): what undo needs. Audited as ``label.restore``."""
        before = self.current_label(image_id)
        if (before or {}).get("id") == label_id:
            return
        row = None
        if label_id is not None:
            row = self.conn.execute(
                "SELECT diagnosis FROM label WHERE id = ? AND image_id = ?", (label_id, image_id)
            ).fetchone()
            if row is None:
                raise LibraryError(f"image {image_id[:12]} has no label {label_id}")
        self.conn.execute(
            "UPDATE label SET is_current = 0 WHERE image_id = ? AND is_current", (image_id,)
        )
        if label_id is not None:
            self.conn.execute("UPDATE label SET is_current = 1 WHERE id = ?", (label_id,))
        self.conn.execute(
            "UPDATE image SET diagnosis = ? WHERE id = ?", (row[0] if row else None, image_id)
        )
        after = self.current_label(image_id)
        self.record("label.restore", "image", image_id, before, after)

    def current_label(self, image_id: str) -> dict[str, Any] | None:
        """The current label row (id, fields, created_at) or None."""
        row = self.conn.execute(
            "SELECT id, diagnosis, certainty, free_text, annotator, created_at FROM label "
            "WHERE image_id = ? AND is_current",
            (image_id,),
        ).fetchone()
        keys = ("id", *LABEL_FIELDS, "created_at")
        return None if row is None else dict(zip(keys, row, strict=True))

    # -- skin tone ----------------------------------------------------------------------------

    def record_tone(self, image_id: str, tone: SkinToneIn) -> None:
        """A new rating or estimate becomes current for its method (history keeps the old)."""
        if tone.method not in TONE_METHODS:
            raise LibraryError(f"unknown skin-tone method {tone.method!r}")
        before = self._tone_value(image_id, tone.method)
        self._retire_tone(image_id, tone.method)
        self.insert("skin_tone", tone_row(image_id, tone, self.at, True))
        self._set_tone_columns(image_id, tone.method, (tone.fitzpatrick, tone.monk))
        self.record(*tone_audit(image_id, tone, before))

    def withdraw_tone(self, image_id: str, method: str, action: str) -> bool:
        """The current value of ``method`` stops being current; False if there was none.

        ``action`` names why: ``skin_tone.clear`` (a person withdrew a rating) or
        ``skin_tone.withdraw`` (the estimator now refuses the image)."""
        current = self.current_tone(image_id, method)
        if current is None:
            return False
        self._retire_tone(image_id, method)
        self._set_tone_columns(image_id, method, (None, None))
        keep = ("fitzpatrick", "monk", "ita", "rater")
        before = {k: current[k] for k in keep}
        self.record(action, "image", image_id, before, {"method": method, "value": None})
        return True

    def restore_tone(self, image_id: str, method: str, tone_id: int | None) -> None:
        """Make an earlier skin-tone row of ``method`` current again exactly as it was
        (rater, time, ITA), or none: what undo needs. Audited as ``skin_tone.restore``."""
        before = self.current_tone(image_id, method)
        if (before or {}).get("id") == tone_id:
            return
        value: tuple[int | None, int | None] = (None, None)
        if tone_id is not None:
            row = self.conn.execute(
                "SELECT fitzpatrick, monk FROM skin_tone WHERE id = ? AND image_id = ? "
                "AND method = ?",
                (tone_id, image_id, method),
            ).fetchone()
            if row is None:
                raise LibraryError(f"image {image_id[:12]} has no {method} skin tone {tone_id}")
            value = (row[0], row[1])
        self._retire_tone(image_id, method)
        if tone_id is not None:
            self.conn.execute("UPDATE skin_tone SET is_current = 1 WHERE id = ?", (tone_id,))
        self._set_tone_columns(image_id, method, value)
        after = {"method": method, "row": self.current_tone(image_id, method)}
        self.record("skin_tone.restore", "image", image_id, before, after)

    def current_tone(self, image_id: str, method: str) -> dict[str, Any] | None:
        rows = self.conn.execute(
            "SELECT id, fitzpatrick, monk, ita, confidence, rater, created_at FROM skin_tone "
            "WHERE image_id = ? AND method = ? AND is_current ORDER BY id DESC LIMIT 1",
            (image_id, method),
        ).fetchone()
        keys = ("id", "fitzpatrick", "monk", "ita", "confidence", "rater", "created_at")
        return None if rows is None else dict(zip(keys, rows, strict=True))

    def _tone_value(self, image_id: str, method: str) -> tuple[int | None, int | None]:
        fitz_col, monk_col = TONE_COLUMNS[method]
        row = self.conn.execute(
            f"SELECT {fitz_col}, {monk_col} FROM image WHERE id = ?", (image_id,)
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _retire_tone(self, image_id: str, method: str) -> None:
        self.conn.execute(
            "UPDATE skin_tone SET is_current = 0 WHERE image_id = ? AND method = ? AND is_current",
            (image_id, method),
        )

    def _set_tone_columns(
        self, image_id: str, method: str, value: tuple[int | None, int | None]
    ) -> None:
        fitz_col, monk_col = TONE_COLUMNS[method]
        self.conn.execute(
            f"UPDATE image SET {fitz_col} = ?, {monk_col} = ? WHERE id = ?", (*value, image_id)
        )

    def _insert_fresh_tones(self, image_id: str, tones: Sequence[SkinToneIn]) -> None:
        """A new image's tone records in order: a later record of a method retires the
        earlier one (its row is inserted as not current)."""
        last = {tone.method: i for i, tone in enumerate(tones)}
        before: dict[str, tuple[int | None, int | None]] = {}
        for i, tone in enumerate(tones):
            self.insert("skin_tone", tone_row(image_id, tone, self.at, last[tone.method] == i))
            self.record(*tone_audit(image_id, tone, before.get(tone.method, (None, None))))
            before[tone.method] = (tone.fitzpatrick, tone.monk)


def last_tone_per_method(
    tones: Sequence[SkinToneIn],
) -> dict[str, tuple[int | None, int | None]]:
    """The (Fitzpatrick, Monk) that stays current per method: the last record of each."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for tone in tones:
        if tone.method not in TONE_METHODS:
            raise LibraryError(f"unknown skin-tone method {tone.method!r}")
        out[tone.method] = (tone.fitzpatrick, tone.monk)
    return out


def tone_row(image_id: str, tone: SkinToneIn, at: str, current: bool) -> dict[str, Any]:
    return {
        "image_id": image_id,
        "method": tone.method,
        "fitzpatrick": tone.fitzpatrick,
        "monk": tone.monk,
        "ita": tone.ita,
        "confidence": tone.confidence,
        "rater": tone.rater,
        "note": tone.note,
        "created_at": at,
        "is_current": int(current),
    }


def tone_audit(
    image_id: str, tone: SkinToneIn, before: Sequence[int | None]
) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
    """The audit entry of a skin-tone record: its method's current value before it."""
    return (
        f"skin_tone.{tone.method}",
        "image",
        image_id,
        {"fitzpatrick": before[0], "monk": before[1]},
        {"fitzpatrick": tone.fitzpatrick, "monk": tone.monk, "ita": tone.ita, "rater": tone.rater},
    )


def _label_state(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A label as the audit log records it (its fields, without row id and time)."""
    return None if row is None else {f: row[f] for f in LABEL_FIELDS}
