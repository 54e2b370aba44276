"""Writer functions the annotation panel, capture and model/job panels need.

They complement :class:`~dermdesk.library.library.Library`'s writer API and
use the same write path (:class:`~dermdesk.library.writes.Txn`): each call is
one ``BEGIN IMMEDIATE`` transaction that appends its audit entries in the same
transaction. No Qt here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dermdesk import taxonomy
from dermdesk.library.db import LibraryError
from dermdesk.library.library import Library
from dermdesk.library.records import (
    DEVICE_FIELDS,
    ImageRecord,
    LabelIn,
    LesionRef,
    PatientRef,
    SkinToneIn,
    StoredFile,
)
from dermdesk.library.writes import Txn

LOCAL = "local"  # namespace of patient / lesion ids typed in at this workstation
DEMO_REFUSED = "a test-pattern frame is not a patient image: nothing was saved"


# -- patients and lesions --------------------------------------------------------------------


def _patient_row(conn: sqlite3.Connection, text: str) -> tuple[str, str, str] | None:
    """(id, source, external id) of the patient named by pseudonymous id or local id."""
    row = conn.execute(
        "SELECT id, source, external_id FROM patient WHERE id = ? "
        "UNION ALL SELECT id, source, external_id FROM patient WHERE source = ? "
        "AND external_id = ? LIMIT 1",
        (text, LOCAL, text),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def _lesion_row(conn: sqlite3.Connection, text: str) -> tuple[str, str, str, str | None] | None:
    row = conn.execute(
        "SELECT id, source, external_id, patient_id FROM lesion WHERE id = ? "
        "UNION ALL SELECT id, source, external_id, patient_id FROM lesion WHERE source = ? "
        "AND external_id = ? LIMIT 1",
        (text, LOCAL, text),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def patient_ref(lib: Library, text: str) -> PatientRef:
    """The reference for a patient typed as a pseudonymous id (P-...) or a local id."""
    found = _patient_row(lib.conn, text.strip())
    return PatientRef(found[1], found[2]) if found else PatientRef(LOCAL, text.strip())


def lesion_ref(lib: Library, text: str, body_site: str | None) -> LesionRef:
    found = _lesion_row(lib.conn, text.strip())
    if found:
        return LesionRef(found[1], found[2], body_site)
    return LesionRef(LOCAL, text.strip(), body_site)


def link_images(
    lib: Library,
    image_ids: Iterable[str],
    *,
    patient: str | None,
    lesion: str | None,
    body_site: str | None = None,
) -> None:
    """Attach images to a patient and lesion (found by id, or created as local ids).

    ``None`` detaches. A new lesion belongs to the given patient; an existing
    lesion of another patient is refused, since that would mix two people.
    """
    if body_site is not None and body_site not in taxonomy.body_sites():
        raise LibraryError(f"unknown body site {body_site!r}")
    ids = lib.require_images(image_ids)
    with lib.transaction() as txn:
        patient_id = _ensure_patient(txn, patient) if patient else None
        lesion_id = _ensure_lesion(txn, lesion, patient_id, body_site) if lesion else None
        if lesion_id and patient_id is None:
            patient_id = txn.conn.execute(
                "SELECT patient_id FROM lesion WHERE id = ?", (lesion_id,)
            ).fetchone()[0]
        for image_id in ids:
            txn.link(image_id, patient_id, lesion_id)


def _ensure_patient(txn: Txn, text: str) -> str:
    found = _patient_row(txn.conn, text.strip())
    return found[0] if found else txn.patient(PatientRef(LOCAL, text.strip()))


def _ensure_lesion(txn: Txn, text: str, patient_id: str | None, body_site: str | None) -> str:
    found = _lesion_row(txn.conn, text.strip())
    if found:
        lesion_id, owner = found[0], found[3]
        if patient_id and owner and owner != patient_id:
            raise LibraryError(f"lesion {text} belongs to another patient ({owner})")
        if body_site is not None:
            txn.set_body_site(lesion_id, body_site)
        return lesion_id
    return txn.lesion(LesionRef(LOCAL, text.strip(), body_site), patient_id)


def set_body_site(lib: Library, lesion_id: str, body_site: str | None) -> None:
    """Change where on the body a lesion is."""
    if body_site is not None and body_site not in taxonomy.body_sites():
        raise LibraryError(f"unknown body site {body_site!r}")
    with lib.transaction() as txn:
        txn.set_body_site(lesion_id, body_site)


# -- models and jobs -------------------------------------------------------------------------


def request_job_cancel(lib: Library, job_id: int) -> bool:
    """Ask a queued or running job to stop; the runner sees the status and stops.

    Returns False when the job had already finished.
    """
    with lib.transaction() as txn:
        row = txn.conn.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise LibraryError(f"no such job: {job_id}")
        if row[0] not in ("queued", "running"):
            return False
        new = "cancelled" if row[0] == "queued" else "cancelling"
        txn.conn.execute("UPDATE job SET status = ? WHERE id = ?", (new, job_id))
        txn.record("job.cancel", "job", str(job_id), {"status": row[0]}, {"status": new})
    return True


# -- capture ---------------------------------------------------------------------------------


@dataclass
class CaptureInfo:
    """What the capture dialog knows about a frame besides its pixels."""

    modality: str = "clinical"
    # 'recorded' when staff chose it, else the detector's 'detected' / 'unsure' (schema 12)
    modality_method: str = "recorded"
    patient: str | None = None
    lesion: str | None = None
    body_site: str | None = None
    device: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)  # live findings at capture time
    override_reason: str | None = None  # why a failing frame was kept anyway
    operator: str | None = None
    clinic: str | None = None
    demo: bool = False  # frames from the test pattern: never stored as a patient image
    # Set by staff before saving: a rating (method manual, rated by the operator) and a
    # provisional diagnosis (a label by the operator, certainty "single expert").
    fitzpatrick: int | None = None
    monk: int | None = None
    diagnosis: str | None = None
    diagnosis_text: str | None = None  # OTHER's condition, a subtype's wording


PROVISIONAL_CERTAINTY = "single_expert"  # one person's impression at the camera


def add_capture(lib: Library, stored: StoredFile, info: CaptureInfo) -> str:
    """Add a captured frame (already stored) with its device, patient, lesion and checks.

    A frame whose live checks failed is only accepted with an override reason,
    which goes into the image's ``extra`` and into its own audit entry.
    """
    if info.demo:
        raise LibraryError(DEMO_REFUSED)
    failed = [c["name"] for c in info.checks if c.get("verdict") == "fail"]
    if failed and not (info.override_reason or "").strip():
        raise LibraryError(f"capture failed {', '.join(failed)}: give a reason to keep it anyway")
    if info.body_site is not None and info.body_site not in taxonomy.body_sites():
        raise LibraryError(f"unknown body site {info.body_site!r}")
    _check_capture_annotation(info)
    stored.device = {
        k: v for k, v in {**stored.device, **info.device}.items() if k in DEVICE_FIELDS
    }
    operator = info.operator or lib.actor
    extra: dict[str, Any] = {"capture_checks": info.checks}
    if info.override_reason:
        extra["capture_override"] = info.override_reason.strip()
    record = ImageRecord(
        stored=stored,
        modality=info.modality,
        modality_method=info.modality_method,
        source="capture",
        original_name=None,
        patient=patient_ref(lib, info.patient) if info.patient else None,
        lesion=lesion_ref(lib, info.lesion, info.body_site) if info.lesion else None,
        clinic=info.clinic,
        operator=operator,
        extra=extra,
        label=LabelIn(info.diagnosis, PROVISIONAL_CERTAINTY, operator, info.diagnosis_text)
        if info.diagnosis
        else None,
        skin_tones=[SkinToneIn(info.fitzpatrick, info.monk, "manual", operator)]
        if info.fitzpatrick is not None or info.monk is not None
        else [],
    )
    with lib.transaction() as txn:
        if txn.conn.execute("SELECT 1 FROM image WHERE id = ?", (stored.sha256,)).fetchone():
            raise LibraryError("this exact frame is already in the library")
        txn.add_image(record)
        if info.override_reason:
            txn.record(
                "capture.override",
                "image",
                stored.sha256,
                {"failed": failed},
                {"reason": info.override_reason.strip()},
            )
    return stored.sha256


def _check_capture_annotation(info: CaptureInfo) -> None:
    if info.diagnosis is not None and info.diagnosis not in taxonomy.diagnoses():
        raise LibraryError(f"unknown diagnosis code {info.diagnosis!r}")
    if info.fitzpatrick is not None and not 1 <= info.fitzpatrick <= 6:
        raise LibraryError(f"not a Fitzpatrick type: {info.fitzpatrick!r} (expected 1-6)")
    if info.monk is not None and not 1 <= info.monk <= 10:
        raise LibraryError(f"not a Monk skin tone: {info.monk!r} (expected 1-10)")


def capture_extra(lib: Library, image_id: str) -> dict[str, Any]:
    """The capture-time facts (live checks, override reason) kept with an image."""
    row = lib.conn.execute("SELECT extra FROM image WHERE id = ?", (image_id,)).fetchone()
    if row is None or not row[0]:
        return {}
    data = json.loads(row[0])
    return data if isinstance(data, dict) else {}
