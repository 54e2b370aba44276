"""Plain records passed into the library's writer API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEVICE_FIELDS = (
    "device_make",
    "device_model",
    "device_lens",
    "device_software",
    "focal_length",
    "exposure_time",
    "f_number",
    "iso",
    "captured_at",
)


@dataclass(frozen=True)
class PatientRef:
    """A patient named by its id in some source (a dataset, or 'local')."""

    source: str
    external_id: str


@dataclass(frozen=True)
class LesionRef:
    source: str
    external_id: str
    body_site: str | None = None


@dataclass(frozen=True)
class LabelIn:
    diagnosis: str
    certainty: str = "unknown"
    annotator: str = "unknown"
    free_text: str | None = None


@dataclass(frozen=True)
class SkinToneIn:
    fitzpatrick: int | None = None
    monk: int | None = None
    method: str = "manual"  # 'manual' or 'estimated'
    rater: str = "unknown"
    ita: float | None = None
    confidence: float | None = None
    note: str | None = None


@dataclass
class StoredFile:
    """What ingesting one file produced: its stored original and decoded facts."""

    sha256: str
    file: str  # relative path of the original in the store
    format: str
    width: int
    height: int
    bytes: int
    mode: str
    orientation: int | None = None
    device: dict[str, Any] = field(default_factory=dict)
    # What the quality checker found while the file was decoded anyway
    # (a dermdesk.imaging.quality.Assessment); stored with the image row.
    quality: Any = None
    # True when this ingest wrote the original (it was not in the store before): if
    # its row cannot be written, the import takes back exactly the files it added.
    new_file: bool = False


@dataclass
class ImageRecord:
    """Everything needed to add one image row (and its patient, lesion, label, tones)."""

    stored: StoredFile
    modality: str = "clinical"
    modality_method: str = "recorded"  # or 'detected' / 'unsure' (see schema version 12)
    source: str = "import"
    dataset: str | None = None
    dataset_image_id: str | None = None
    original_name: str | None = None
    patient: PatientRef | None = None
    lesion: LesionRef | None = None
    label: LabelIn | None = None
    skin_tones: list[SkinToneIn] = field(default_factory=list)
    mask_file: str | None = None  # relative store path of a lesion mask, if any
    clinic: str | None = None
    operator: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
