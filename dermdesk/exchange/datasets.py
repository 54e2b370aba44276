"""Readers for the public dataset layouts and for plain folders of photos.

A folder is recognised by its metadata file (PAD-UFES-20 ``metadata.csv``,
``HAM10000_metadata.csv``, ``fitzpatrick17k.csv``, ISIC 2017 ground truth,
``ph2.csv``). Each reader turns rows into :class:`ImportItem` s with the
dataset's diagnoses, patients, lesions, body sites, skin types and certainty
mapped into the library's vocabulary. A row that cannot be used is refused
with its line number; a metadata file that cannot be used refuses the folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dermdesk import taxonomy
from dermdesk.exchange.importer import ImportItem
from dermdesk.exchange.tables import DatasetError, Row, contained_path, read_csv
from dermdesk.imaging.decode import IMAGE_SUFFIXES
from dermdesk.library.db import DB_NAME
from dermdesk.library.records import LabelIn, LesionRef, PatientRef, SkinToneIn


@dataclass
class Plan:
    """What an import would do: the items to ingest and rows refused up front."""

    items: list[ImportItem] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)

    def merge(self, other: Plan) -> None:
        self.items += other.items
        self.refused += other.refused
        self.warnings += other.warnings
        self.datasets += other.datasets


RowFn = Callable[[Path, Row, str], ImportItem]


@dataclass(frozen=True)
class Layout:
    name: str
    marker: str  # the metadata file that identifies the layout
    required: tuple[str, ...]
    id_column: str
    build: RowFn

    def plan(self, folder: Path) -> Plan:
        plan = Plan(datasets=[self.name])
        where = f"{folder.name}/"
        refused: list[tuple[str, str]] = []
        rows = read_csv(folder / self.marker, self.required, refused)
        plan.refused += [(where + line, why) for line, why in refused]
        seen: dict[str, int] = {}
        for row in rows:
            where = f"{folder.name}/{self.marker} line {row.line}"
            key = row.get(self.id_column)
            if key in seen:
                plan.refused.append(
                    (where, f"duplicate image id {key!r} (first on line {seen[key]})")
                )
                continue
            seen[key] = row.line
            try:
                plan.items.append(self.build(folder, row, where))
            except ValueError as exc:
                plan.refused.append((where, str(exc)))
        return plan


# -- shared helpers --------------------------------------------------------------------------


def image_file(folder: Path, name: str, default_ext: str = ".jpg") -> Path:
    """Find a dataset image by name under ``images/`` or the folder itself.

    Tries the other usual extensions too (PAD-UFES-20 names PNGs that were
    re-encoded as JPEG here). Refuses names that escape the dataset folder.
    """
    if not name:
        raise ValueError("no image file named")
    stem_name = name if Path(name).suffix else name + default_ext
    for sub in ("images/", ""):
        # contained_path refuses an absolute name or ../ with one plain line.
        path = contained_path(folder, sub + stem_name)
        if path.is_file():
            return path
        for ext in (".jpg", ".png", ".jpeg", ".JPG", ".PNG"):
            alt = path.with_suffix(ext)
            if alt.is_file():
                return alt
    raise ValueError(f"image file not found: images/{stem_name}")


def _label(dataset: str, raw: str, certainty: str) -> LabelIn:
    if not raw:
        raise ValueError("no diagnosis given")
    match = taxonomy.dataset_label(dataset, raw)
    return LabelIn(match.code, certainty, f"dataset:{dataset}", match.free_text)


def _tone(raw: str, rater: str) -> list[SkinToneIn]:
    fitz = taxonomy.parse_fitzpatrick(raw)
    return [] if fitz is None else [SkinToneIn(fitzpatrick=fitz, method="manual", rater=rater)]


def _extra(row: Row, skip: set[str]) -> dict[str, str]:
    return {k: v.strip() for k, v in row.values.items() if k not in skip and v and v.strip()}


def _site(raw: str) -> str | None:
    try:
        return taxonomy.body_site(raw)
    except ValueError:
        return "unknown"


# -- PAD-UFES-20 -----------------------------------------------------------------------------


def _pad_row(folder: Path, row: Row, where: str) -> ImportItem:
    biopsied = row.get("biopsed").lower() == "true"
    img = row.get("img_id")
    return ImportItem(
        path=image_file(folder, img),
        where=where,
        modality="clinical",
        dataset="pad_ufes_20",
        dataset_image_id=Path(img).stem,
        patient=PatientRef("pad_ufes_20", row.get("patient_id")),
        lesion=LesionRef("pad_ufes_20", row.get("lesion_id"), _site(row.get("region"))),
        label=_label(
            "pad_ufes_20",
            row.get("diagnostic"),
            "histopathology" if biopsied else "expert_consensus",
        ),
        skin_tones=_tone(row.get("fitspatrick"), "dataset:pad_ufes_20"),
        extra=_extra(
            row, {"patient_id", "lesion_id", "img_id", "diagnostic", "fitspatrick", "region"}
        ),
    )


# -- HAM10000 --------------------------------------------------------------------------------

_HAM_CERTAINTY = {
    "histo": "histopathology",
    "consensus": "expert_consensus",
    "follow_up": "follow_up",
    "confocal": "confocal",
}


def _artefacts(folder: Path) -> dict[str, list[str]]:
    path = folder / "artefacts.csv"
    if not path.is_file():
        return {}
    out: dict[str, list[str]] = {}
    for row in read_csv(path, ("image_id", "artefact_class")):
        kind = "/".join(x for x in (row.get("artefact_class"), row.get("artefact_subclass")) if x)
        out.setdefault(row.get("image_id"), []).append(kind)
    return out


def _ham_row(folder: Path, row: Row, where: str) -> ImportItem:
    image_id = row.get("image_id")
    dx_type = row.get("dx_type")
    item = ImportItem(
        path=image_file(folder, image_id),
        where=where,
        modality="dermoscopic",
        dataset="ham10000",
        dataset_image_id=image_id,
        lesion=LesionRef("ham10000", row.get("lesion_id"), _site(row.get("localization")))
        if row.get("lesion_id")
        else None,
        label=_label("ham10000", row.get("dx"), _HAM_CERTAINTY.get(dx_type, "unknown")),
        extra=_extra(row, {"lesion_id", "image_id", "dx", "localization"}),
    )
    return item


def _plan_ham(folder: Path) -> Plan:
    plan = HAM10000.plan(folder)
    artefacts = _artefacts(folder)
    for item in plan.items:
        if item.dataset_image_id in artefacts:
            item.extra["artefacts"] = artefacts[item.dataset_image_id]
    return plan


# -- Fitzpatrick17k --------------------------------------------------------------------------


def _fitz_row(folder: Path, row: Row, where: str) -> ImportItem:
    md5 = row.get("md5hash")
    certainty = "expert_consensus" if row.get("qc").startswith("1") else "single_expert"
    # The second rating is kept in the history; the dataset's main rating is current.
    tones = _tone(row.get("fitzpatrick_centaur"), "dataset:fitzpatrick17k:centaur") + _tone(
        row.get("fitzpatrick_scale"), "dataset:fitzpatrick17k"
    )
    return ImportItem(
        path=image_file(folder, md5),
        where=where,
        modality="clinical",
        dataset="fitzpatrick17k",
        dataset_image_id=md5,
        label=_label("fitzpatrick17k", row.get("label"), certainty),
        skin_tones=tones,
        extra=_extra(row, {"md5hash", "label", "fitzpatrick_scale", "fitzpatrick_centaur"}),
    )


# -- ISIC 2017 -------------------------------------------------------------------------------


def _isic_row(folder: Path, row: Row, where: str) -> ImportItem:
    image_id = row.get("image_id")
    try:
        mel, sk = float(row.get("melanoma") or 0), float(row.get("seborrheic_keratosis") or 0)
    except ValueError:
        raise ValueError("melanoma / seborrheic_keratosis must be 0 or 1") from None
    if mel and sk:
        raise ValueError("labelled both melanoma and seborrheic keratosis")
    raw = "melanoma" if mel else "seborrheic_keratosis" if sk else "nevus"
    # All ISIC 2017 melanomas are biopsy-proven; the other classes mix methods.
    return ImportItem(
        path=image_file(folder, image_id),
        where=where,
        modality="dermoscopic",
        dataset="isic2017",
        dataset_image_id=image_id,
        label=_label("isic2017", raw, "histopathology" if mel else "unknown"),
    )


def _plan_isic(folder: Path) -> Plan:
    plan = ISIC2017.plan(folder)
    meta_path = folder / "ISIC-2017_Training_Data_metadata.csv"
    if meta_path.is_file():
        meta = {r.get("image_id"): r for r in read_csv(meta_path, ("image_id",))}
        for item in plan.items:
            row = meta.get(item.dataset_image_id or "")
            if row:
                item.extra.update(_extra(row, {"image_id"}))
    return plan


# -- PH2 -------------------------------------------------------------------------------------


def _ph2_row(folder: Path, row: Row, where: str) -> ImportItem:
    name = row.get("image_name")
    histology = row.get("histological_diagnosis")
    label = _label(
        "ph2", row.get("clinical_diagnosis"), "histopathology" if histology else "expert_consensus"
    )
    if histology:
        label = LabelIn(label.diagnosis, label.certainty, label.annotator, histology)
    mask = contained_path(folder, f"masks/{name}_lesion.png")
    return ImportItem(
        path=image_file(folder, name),
        where=where,
        modality="dermoscopic",
        dataset="ph2",
        dataset_image_id=name,
        lesion=LesionRef("ph2", name),
        label=label,
        mask_path=mask if mask.is_file() else None,
        extra=_extra(row, {"image_name", "clinical_diagnosis", "histological_diagnosis"}),
    )


PAD_UFES_20 = Layout(
    "pad_ufes_20",
    "metadata.csv",
    ("patient_id", "lesion_id", "img_id", "diagnostic"),
    "img_id",
    _pad_row,
)
HAM10000 = Layout(
    "ham10000", "HAM10000_metadata.csv", ("lesion_id", "image_id", "dx"), "image_id", _ham_row
)
FITZPATRICK17K = Layout(
    "fitzpatrick17k",
    "fitzpatrick17k.csv",
    ("md5hash", "fitzpatrick_scale", "label"),
    "md5hash",
    _fitz_row,
)
ISIC2017 = Layout(
    "isic2017",
    "ISIC-2017_Training_Part3_GroundTruth.csv",
    ("image_id", "melanoma", "seborrheic_keratosis"),
    "image_id",
    _isic_row,
)
PH2 = Layout("ph2", "ph2.csv", ("image_name", "clinical_diagnosis"), "image_name", _ph2_row)

_PLANNERS: dict[str, Callable[[Path], Plan]] = {
    "pad_ufes_20": PAD_UFES_20.plan,
    "ham10000": _plan_ham,
    "fitzpatrick17k": FITZPATRICK17K.plan,
    "isic2017": _plan_isic,
    "ph2": PH2.plan,
}
LAYOUTS = (PAD_UFES_20, HAM10000, FITZPATRICK17K, ISIC2017, PH2)


def detect(folder: Path) -> Layout | None:
    """The dataset layout of ``folder``, if its metadata file is there."""
    for layout in LAYOUTS:
        if (folder / layout.marker).is_file():
            # metadata.csv is a common name: only PAD-UFES-20's has these columns.
            if layout is PAD_UFES_20 and not _has_columns(folder / layout.marker, layout.required):
                continue
            return layout
    return None


def _has_columns(path: Path, columns: tuple[str, ...]) -> bool:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return all(c in header for c in columns)


def plan_dataset(folder: Path, layout: Layout) -> Plan:
    return _PLANNERS[layout.name](folder)


def plan_files(paths: list[Path], modality: str | None, *, root: Path | None = None) -> Plan:
    """Plain photos: no labels; modality given by the user, or None to detect it per image."""
    items = [
        ImportItem(path=p, where=str(p.relative_to(root)) if root else str(p), modality=modality)
        for p in paths
    ]
    return Plan(items=items)


def image_files_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (recursive), skipping hidden files and folders and
    any dermdesk library folder inside it (its originals and thumbnails are not photos
    to import again)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if (here / DB_NAME).exists():
            dirnames.clear()
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(here / name)
    return found


def plan_path(path: Path, modality: str | None = None) -> Plan:
    """Plan the import of a file, a dataset folder, or a folder of datasets and photos.

    Plain photos get ``modality``, or the one detected from their pixels when it is
    None; dataset folders always keep their own modality."""
    if path.is_file():
        return plan_files([path], modality)
    if not path.is_dir():
        raise DatasetError(f"{path}: no such file or folder")
    layout = detect(path)
    if layout:
        return plan_dataset(path, layout)
    plan = Plan()
    dataset_dirs = [d for d in sorted(path.iterdir()) if d.is_dir() and detect(d)]
    for sub in dataset_dirs:
        layout = detect(sub)
        assert layout is not None
        try:
            plan.merge(plan_dataset(sub, layout))
        except DatasetError as exc:
            plan.refused.append((sub.name, str(exc)))
    loose = [
        p for p in image_files_under(path) if not any(p.is_relative_to(d) for d in dataset_dirs)
    ]
    plan.merge(plan_files(loose, modality, root=path))
    return plan
