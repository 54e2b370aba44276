"""Filters over the image table, shared by the CLI, the GUI and training jobs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

ORDERS = {
    "imported": "image.imported_at DESC, image.id",
    "captured": "image.captured_at DESC, image.id",
    "diagnosis": "image.diagnosis, image.id",
    "patient": "image.patient_id, image.lesion_id, image.id",
    "lesion": "image.lesion_id, image.id",
    "id": "image.id",
}


_WORST = (
    "(SELECT max(CASE verdict WHEN 'fail' THEN 2 WHEN 'warn' THEN 1 ELSE 0 END) "
    "FROM quality q WHERE q.image_id = image.id)"
)
_QUALITY = {
    "pass": f"{_WORST} = 0",
    "warn": f"{_WORST} = 1",
    "fail": f"{_WORST} = 2",
    "unchecked": "NOT EXISTS (SELECT 1 FROM quality q WHERE q.image_id = image.id)",
}
_DISAGREES = (
    "EXISTS (SELECT 1 FROM prediction p JOIN model m ON m.id = p.model_id "
    "AND m.status = 'active' WHERE p.image_id = image.id AND image.diagnosis IS NOT NULL "
    "AND p.top != image.diagnosis)"
)


def device_name(make: str | None, model: str | None) -> str | None:
    """The one name of a capture device, used by suggestions, filters, stats and metrics.

    'Canon' + 'Canon EOS 5D' is 'Canon EOS 5D' (not 'Canon Canon EOS 5D'); 'Apple' +
    'iPhone 15' is 'Apple iPhone 15'; no make and no model is None. Each image row keeps
    it in ``image.device`` (:data:`DEVICE_SQL`), so a suggestion always matches
    its own filter. Spaces-only trimming and ASCII-only case folding, as SQLite's trim()
    and lower() do: migration 7 computed the stored names in SQL the same way.
    """
    make = (make or "").strip(" ")
    model = (model or "").strip(" ")
    if not make and not model:
        return None
    if make and _ascii_lower(model[: len(make)]) == _ascii_lower(make):
        return model
    return f"{make} {model}".strip(" ")


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


# Every image row keeps its device name (migration 7, kept by the write path).
DEVICE_SQL = "image.device"

# Which skin-tone values a Fitzpatrick / Monk filter matches: a rating (a person's or a
# dataset's), an estimate (the ITA estimator's), or the rating where there is one, else
# the estimate ("any", the default).
TONE_SOURCES = ("any", "rated", "estimated")


def tone_column(scale: str, tone: str) -> str:
    """SQL for an image's skin-tone value on ``scale`` (fitzpatrick/monk) by source."""
    if tone == "rated":
        return f"image.{scale}"
    if tone == "estimated":
        return f"image.{scale}_est"
    if tone == "any":
        return f"coalesce(image.{scale}, image.{scale}_est)"
    raise ValueError(f"unknown skin-tone source {tone!r}; choose from {', '.join(TONE_SOURCES)}")


# Kept out of datasets: a current exclusion row (migration 11).
_EXCLUDED = "EXISTS (SELECT 1 FROM exclusion e WHERE e.image_id = image.id AND e.is_current)"
# Has a near-copy: its duplicate check warned, or another image's warning names it (the
# check's reason says "... of image <first 12 characters of the id>").
_HAS_DUPLICATE = (
    "(image.id IN (SELECT image_id FROM quality WHERE check_name = 'duplicate' AND "
    "verdict = 'warn') OR substr(image.id, 1, 12) IN (SELECT substr(reason, "
    "instr(reason, ' of image ') + 10, 12) FROM quality WHERE check_name = 'duplicate' "
    "AND verdict = 'warn'))"
)


@dataclass
class ImageFilter:
    """Conditions that combine with AND; empty lists and None mean 'any'."""

    diagnosis: list[str] = field(default_factory=list)
    fitzpatrick: list[int] = field(default_factory=list)
    monk: list[int] = field(default_factory=list)
    modality: list[str] = field(default_factory=list)
    # where the modality came from: recorded, detected, unsure (schema version 12)
    modality_method: list[str] = field(default_factory=list)
    dataset: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    device: str | None = None  # text in the device name (see device_name)
    patient: str | None = None  # pseudonymous id, or the id in its source
    lesion: str | None = None
    labelled: bool | None = None
    synthetic: bool | None = None
    text: str | None = None  # id prefix, file name, dataset id or free-text label
    quality: str | None = None  # worst verdict of the image's checks: pass/warn/fail/unchecked
    # checks the image does not pass (warn or fail), any of them: "failing sharpness"
    failing: list[str] = field(default_factory=list)
    disagreement: bool | None = None  # active model's top class differs from the label
    ids: list[str] = field(default_factory=list)
    excluded: bool | None = None  # kept out of datasets by a curator (curate exclude)
    duplicates: bool | None = None  # the duplicate check found a near-copy of it, or of it
    tone: str = "any"  # which values fitzpatrick / monk match: any, rated, estimated
    # estimated visual meta-domain (schema version 13); "unassigned" matches none yet
    meta_domain: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return all(
            not getattr(self, f.name) and getattr(self, f.name) is not False
            for f in fields(self)
            if f.name != "tone"
        )

    def as_params(self) -> dict[str, Any]:
        """The fields that differ from 'any', as JSON-ready job parameters."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            name: value
            for name, value in values.items()
            if value not in ([], None, "") and not (name == "tone" and value == "any")
        }

    def describe(self) -> str:
        """The filter in words, e.g. ``dataset pad_ufes_20, modality clinical``."""
        parts = []
        for name, value in self.as_params().items():
            if name == "ids":
                parts.append(f"{len(value)} chosen images")
            elif isinstance(value, list):
                parts.append(f"{name} {'/'.join(map(str, value))}")
            elif isinstance(value, bool):
                parts.append(name if value else f"not {name}")
            else:
                parts.append(f"{name} {value}")
        return ", ".join(parts) or "all images"

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition over table ``image`` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def any_of(column: str, values: list[Any]) -> None:
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)

        any_of("image.diagnosis", self.diagnosis)
        any_of(tone_column("fitzpatrick", self.tone), self.fitzpatrick)
        any_of(tone_column("monk", self.tone), self.monk)
        any_of("image.modality", self.modality)
        any_of("image.modality_method", self.modality_method)
        any_of("image.dataset", self.dataset)
        any_of("image.source", self.source)
        any_of("image.id", self.ids)
        if self.meta_domain:
            named = [d for d in self.meta_domain if d != "unassigned"]
            parts = [f"image.meta_domain IN ({', '.join('?' * len(named))})"] if named else []
            if "unassigned" in self.meta_domain:
                parts.append("image.meta_domain IS NULL")
            clauses.append("(" + " OR ".join(parts) + ")")
            params.extend(named)
        if self.device:
            clauses.append(f"{DEVICE_SQL} LIKE ?")
            params.append(f"%{self.device.strip(' ')}%")
        if self.patient:
            clauses.append(
                "image.patient_id IN (SELECT id FROM patient WHERE id = ? OR external_id = ?)"
            )
            params += [self.patient, self.patient]
        if self.lesion:
            clauses.append(
                "image.lesion_id IN (SELECT id FROM lesion WHERE id = ? OR external_id = ?)"
            )
            params += [self.lesion, self.lesion]
        if self.labelled is not None:
            clauses.append(
                "image.diagnosis IS NOT NULL" if self.labelled else "image.diagnosis IS NULL"
            )
        if self.synthetic is not None:
            clauses.append(
                "image.source = 'synthetic'" if self.synthetic else "image.source != 'synthetic'"
            )
        if self.quality:
            clauses.append(_QUALITY[self.quality])
        if self.failing:  # answered from the index on quality(check_name, verdict)
            marks = ", ".join("?" * len(self.failing))
            clauses.append(
                f"image.id IN (SELECT image_id FROM quality WHERE check_name IN ({marks}) "
                "AND verdict IN ('warn', 'fail'))"
            )
            params.extend(self.failing)
        if self.disagreement is not None:
            clauses.append(("" if self.disagreement else "NOT ") + _DISAGREES)
        if self.excluded is not None:
            clauses.append(("" if self.excluded else "NOT ") + _EXCLUDED)
        if self.duplicates is not None:
            clauses.append(("" if self.duplicates else "NOT ") + _HAS_DUPLICATE)
        if self.text:
            # An id prefix is a range on the primary key; names and free text go through
            # the trigram index (schema migration 3), which answers LIKE '%...%' itself.
            prefix = self.text.strip().lower()
            clauses.append(
                "((image.id >= ? AND image.id < ?) OR image.rowid IN"
                " (SELECT rowid FROM image_search WHERE body LIKE ?))"
            )
            params += [prefix, prefix + "~", f"%{self.text}%"]
        return (" AND ".join(clauses) or "1"), params
