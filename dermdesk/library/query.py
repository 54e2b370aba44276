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


@dataclass
class ImageFilter:
    """Conditions that combine with AND; empty lists and None mean 'any'."""

    diagnosis: list[str] = field(default_factory=list)
    fitzpatrick: list[int] = field(default_factory=list)
    monk: list[int] = field(default_factory=list)
    modality: list[str] = field(default_factory=list)
    dataset: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    device: str | None = None  # substring of make or model
    patient: str | None = None  # pseudonymous id, or the id in its source
    lesion: str | None = None
    labelled: bool | None = None
    synthetic: bool | None = None
    text: str | None = None  # id prefix, file name, dataset id or free-text label
    quality: str | None = None  # worst verdict of the image's checks: pass/warn/fail/unchecked
    disagreement: bool | None = None  # active model's top class differs from the label
    ids: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        return all(
            not getattr(self, f.name) and getattr(self, f.name) is not False for f in fields(self)
        )

    def where(self) -> tuple[str, list[Any]]:
        """SQL condition over table ``image`` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []

        def any_of(column: str, values: list[Any]) -> None:
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)

        any_of("image.diagnosis", self.diagnosis)
        any_of("image.fitzpatrick", self.fitzpatrick)
        any_of("image.monk", self.monk)
        any_of("image.modality", self.modality)
        any_of("image.dataset", self.dataset)
        any_of("image.source", self.source)
        any_of("image.id", self.ids)
        if self.device:
            clauses.append("(image.device_make LIKE ? OR image.device_model LIKE ?)")
            params += [f"%{self.device}%"] * 2
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
        if self.disagreement is not None:
            clauses.append(("" if self.disagreement else "NOT ") + _DISAGREES)
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
