"""De-identified dataset export with a manifest, a dataset.json and a data card (issue 16).

    plan = plan_export(lib, ExportOptions("isic", split="v1"))
    result = write_export(lib, plan, Path("out"), progress=..., cancelled=...)

Formats:

- ``isic``: ``images/<id>.jpg`` and ``metadata.csv`` with ISIC Archive field names
  (checked against the field list and its value sets before anything is written);
- ``dicom``: ``images/<id>.dcm`` VL Photographic Images (:mod:`dermdesk.exchange.dicom_export`)
  and the same ``metadata.csv``;
- ``imagefolder``: ``<split>/<class>/<id>.jpg`` (``<class>/<id>.jpg`` without a split), each
  split folder with its ``metadata.csv`` (``file_name`` first), which torchvision's
  ``ImageFolder`` and Hugging Face ``load_dataset("imagefolder", data_dir=...)`` both read.

Every export carries pseudonymous ids only (``DD_0000001``, ``DDP_00001``, ``DDL_00001``,
numbered in the order of the images' content hashes, so the same library exports the same
ids), images without identifying metadata (:mod:`dermdesk.exchange.deidentify`), no original
file names and no free text unless asked, ``MANIFEST.sha256`` (``sha256sum -c``),
``dataset.json`` (the query, split, versions, counts; the only file with a date) and the
data card. It is written into a hidden folder beside the target and renamed into place at
the end: a failure, a full disk or a cancel leaves nothing half-written, and the library
is only read.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dermdesk import __version__, taxonomy
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.db import id_chunks
from dermdesk.library.schema import LATEST_VERSION
from dermdesk.library.split_store import PARTS, assignment, split_info

FORMATS = ("isic", "imagefolder", "dicom")

# ISIC Archive metadata fields this export writes (names as the Archive spells them).
ISIC_FIELDS = (
    "isic_id",
    "patient_id",
    "lesion_id",
    "diagnosis",
    "diagnosis_1",
    "diagnosis_2",
    "diagnosis_3",
    "diagnosis_confirm_type",
    "benign_malignant",
    "melanocytic",
    "anatom_site_general",
    "age_approx",
    "sex",
    "fitzpatrick_skin_type",
    "image_type",
    "dermoscopic_type",
    "image_manipulation",
)
# dermdesk's own columns, after the ISIC ones: where the file is, its split, and what the
# Archive has no field for (rated Monk tone; estimates apart from ratings, never in
# fitzpatrick_skin_type).
EXTENSION_FIELDS = (
    "file_name",
    "split",
    "dataset",
    "modality",
    "device",
    "monk_skin_tone",
    "fitzpatrick_skin_type_estimated",
    "monk_skin_tone_estimated",
    "meta_domain_estimated",  # the visual meta-domain (dermdesk domains assign), an estimate
)
FREE_TEXT_FIELDS = ("diagnosis_free_text", "extra")
DIAGNOSIS_FIELDS = (
    "diagnosis",
    "diagnosis_1",
    "diagnosis_2",
    "diagnosis_3",
    "benign_malignant",
    "melanocytic",
)
ALLOWED_VALUES: dict[str, set[str]] = {
    "diagnosis_1": {"Benign", "Malignant", "Indeterminate", ""},
    "benign_malignant": {"benign", "malignant", "indeterminate", ""},
    "melanocytic": {"True", "False", ""},
    "sex": {"male", "female", ""},
    "fitzpatrick_skin_type": {*taxonomy.ROMAN, ""},
    "image_type": {"dermoscopic", "clinical", ""},
    "image_manipulation": {"synthetic", ""},
    "anatom_site_general": {
        "head/neck",
        "upper extremity",
        "lower extremity",
        "anterior torso",
        "posterior torso",
        "lateral torso",
        "torso",
        "palms/soles",
        "oral/genital",
        "",
    },
    "diagnosis_confirm_type": {
        "histopathology",
        "confocal microscopy with consensus dermoscopy",
        "serial imaging showing no change",
        "single image expert consensus",
        "single expert",
        "",
    },
    "split": {*PARTS, ""},
}
ISIC_DIAGNOSIS = {
    "MEL": "melanoma",
    "NEV": "nevus",
    "BCC": "basal cell carcinoma",
    "SCC": "squamous cell carcinoma",
    "ACK": "actinic keratosis",
    "SEK": "seborrheic keratosis",
    "DF": "dermatofibroma",
    "VASC": "vascular lesion",
    "OTHER": "other",
}
SITE_GENERAL = {
    **dict.fromkeys(("scalp", "face", "ear", "nose", "lip", "neck"), "head/neck"),
    **dict.fromkeys(("chest", "abdomen"), "anterior torso"),
    "back": "posterior torso",
    "trunk": "torso",
    "genital": "oral/genital",
    **dict.fromkeys(("upper_extremity", "arm", "forearm", "hand"), "upper extremity"),
    **dict.fromkeys(("lower_extremity", "thigh", "leg", "foot"), "lower extremity"),
    "acral": "palms/soles",
}
CONFIRM_TYPE = {
    "histopathology": "histopathology",
    "confocal": "confocal microscopy with consensus dermoscopy",
    "follow_up": "serial imaging showing no change",
    "expert_consensus": "single image expert consensus",
    "single_expert": "single expert",
}
# Cells starting with these are formulas to a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


class ExportError(LibraryError):
    """An export that cannot be made; one line for the user. Nothing was written."""


class ExportCancelled(ExportError):
    def __init__(self) -> None:
        super().__init__("export cancelled; nothing was written")


@dataclass
class ExportOptions:
    format: str = "isic"
    split: str | None = None
    flt: ImageFilter = field(default_factory=ImageFilter)
    include_synthetic: bool = False
    include_free_text: bool = False

    def as_params(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "split": self.split,
            "query": self.flt.as_params(),
            "query_text": self.flt.describe() or "all images",
            "include_synthetic": self.include_synthetic,
            "include_free_text": self.include_free_text,
        }


@dataclass
class ExportItem:
    row: dict[str, Any]
    part: str | None
    export_id: str
    patient: str
    lesion: str
    label: dict[str, Any] | None
    file_name: str = ""


@dataclass
class ExportPlan:
    options: ExportOptions
    items: list[ExportItem]
    left_out: dict[str, int]
    warnings: list[str]
    split: dict[str, Any] | None  # the stored split's name, params

    def counts(self) -> dict[str, Any]:
        """What the preview shows: images per part, per diagnosis, left out and why."""
        return {
            "images": len(self.items),
            "parts": _in_part_order(Counter(i.part or "all" for i in self.items)),
            "diagnosis": dict(
                sorted(Counter(i.row.get("diagnosis") or "unlabelled" for i in self.items).items())
            ),
            "synthetic": sum(i.row["source"] == "synthetic" for i in self.items),
            "left_out": dict(self.left_out),
        }


def _in_part_order(counts: Mapping[str, int]) -> dict[str, int]:
    order = [*PARTS, "all"]
    return {k: counts[k] for k in sorted(counts, key=order.index)}


@dataclass
class ExportResult:
    folder: Path
    images: int
    bytes: int
    files: int
    warnings: list[str]


# -- planning --------------------------------------------------------------------------------


def plan_export(lib: Library, options: ExportOptions) -> ExportPlan:
    """Select the images, give them pseudonymous ids and say what is left out and why."""
    if options.format not in FORMATS:
        raise ExportError(
            f"unknown export format {options.format!r}; formats: {', '.join(FORMATS)}"
        )
    rows = lib.images(replace(options.flt, excluded=False), order="id")
    left_out: Counter[str] = Counter()
    excluded = lib.count(options.flt) - len(rows)
    if excluded:
        left_out["excluded by a curator (dermdesk curate include)"] = excluded
    split = None
    parts: Mapping[str, str] = {}
    if options.split:
        info = split_info(lib, options.split)
        split = {"name": info["name"], **info["params"]}
        parts = assignment(lib, options.split)
        kept = [r for r in rows if r["id"] in parts]
        if len(kept) < len(rows):
            left_out[f"not in split {options.split}"] = len(rows) - len(kept)
        rows = kept
    if not options.include_synthetic:
        real = [r for r in rows if r["source"] != "synthetic"]
        if len(real) < len(rows):
            left_out["synthetic (add --include-synthetic to export them, flagged)"] = len(
                rows
            ) - len(real)
        rows = real
    if options.format == "imagefolder":
        labelled = [r for r in rows if r.get("diagnosis")]
        if len(labelled) < len(rows):
            left_out["unlabelled (an image folder needs a class)"] = len(rows) - len(labelled)
        rows = labelled
    if not rows:
        why = (
            "; ".join(f"{n} {reason}" for reason, n in left_out.items())
            or "the filters match nothing"
        )
        raise ExportError(f"nothing to export: {why}")
    labels = lib.current_labels([r["id"] for r in rows])
    items = _pseudonymise(rows, parts, labels)
    return ExportPlan(options, items, dict(left_out), _warnings(items), split)


def _pseudonymise(
    rows: Sequence[dict[str, Any]], parts: Mapping[str, str], labels: Mapping[str, dict[str, Any]]
) -> list[ExportItem]:
    """Ids numbered in content-hash order: the same images always get the same ids, and no
    id says anything about the source's own (patient numbers, file names)."""
    patients: dict[str, str] = {}
    lesions: dict[str, str] = {}
    items = []
    for n, row in enumerate(sorted(rows, key=lambda r: r["id"]), start=1):
        patient = lesion = ""
        if row.get("patient_id"):
            patient = patients.setdefault(row["patient_id"], f"DDP_{len(patients) + 1:05d}")
        if row.get("lesion_id"):
            lesion = lesions.setdefault(row["lesion_id"], f"DDL_{len(lesions) + 1:05d}")
        items.append(
            ExportItem(
                row, parts.get(row["id"]), f"DD_{n:07d}", patient, lesion, labels.get(row["id"])
            )
        )
    return items


def _warnings(items: Sequence[ExportItem]) -> list[str]:
    """Conflicting labels within one lesion; synthetic images included."""
    out = []
    by_lesion: dict[str, set[str]] = {}
    for it in items:
        if it.lesion and it.row.get("diagnosis"):
            by_lesion.setdefault(it.lesion, set()).add(it.row["diagnosis"])
    conflicting = sorted(lesion for lesion, codes in by_lesion.items() if len(codes) > 1)
    if conflicting:
        out.append(
            f"{len(conflicting)} lesions have images with different diagnoses (e.g. "
            f"{', '.join(conflicting[:3])}); each image keeps its own label"
        )
    synthetic = sum(it.row["source"] == "synthetic" for it in items)
    if synthetic:
        out.append(f"{synthetic} synthetic images included, flagged image_manipulation=synthetic")
    return out


# -- metadata rows ---------------------------------------------------------------------------


def _age_bin(extra: Mapping[str, Any]) -> str:
    for key in ("age_approx", "age", "age_approximate"):
        raw = extra.get(key)
        try:
            age = float(str(raw).strip())
        except (TypeError, ValueError):
            continue
        if 0 <= age < 130:
            return str(round(age / 5.0) * 5)
    return ""


def _sex(extra: Mapping[str, Any]) -> str:
    for key in ("sex", "gender"):
        raw = str(extra.get(key) or "").strip().lower()
        if raw in ("m", "male", "man"):
            return "male"
        if raw in ("f", "female", "woman"):
            return "female"
    return ""


def _diagnosis_levels(code: str | None, free_text: str | None) -> dict[str, str]:
    """The ISIC Archive's own diagnosis strings (kept in the taxonomy resource, refined by
    the label's wording); ``benign_malignant`` follows ``diagnosis_1``."""
    if not code:
        return dict.fromkeys(DIAGNOSIS_FIELDS, "")
    dx = taxonomy.diagnoses()[code]
    level1, level2, level3 = taxonomy.isic_diagnosis(code, free_text)
    return {
        "diagnosis": ISIC_DIAGNOSIS.get(code, "other"),
        "diagnosis_1": level1,
        "diagnosis_2": level2,
        "diagnosis_3": level3,
        "benign_malignant": level1.lower(),
        "melanocytic": "" if dx.melanocytic is None else str(bool(dx.melanocytic)),
    }


def metadata_row(item: ExportItem, lesion_site: str | None, free_text: bool) -> dict[str, str]:
    row = item.row
    extra = json.loads(row["extra"]) if row.get("extra") else {}
    label = item.label or {}
    out = {
        "isic_id": item.export_id,
        "patient_id": item.patient,
        "lesion_id": item.lesion,
        **_diagnosis_levels(row.get("diagnosis"), label.get("free_text")),
        "diagnosis_confirm_type": CONFIRM_TYPE.get(label.get("certainty") or "", ""),
        "anatom_site_general": SITE_GENERAL.get(lesion_site or "", ""),
        "age_approx": _age_bin(extra),
        "sex": _sex(extra),
        "fitzpatrick_skin_type": taxonomy.fitzpatrick_roman(row.get("fitzpatrick"))
        if row.get("fitzpatrick")
        else "",
        "image_type": row["modality"] if row["modality"] in ("dermoscopic", "clinical") else "",
        "dermoscopic_type": "",
        "image_manipulation": "synthetic" if row["source"] == "synthetic" else "",
        "file_name": item.file_name,
        "split": item.part or "",
        "dataset": row.get("dataset") or "",
        "modality": row["modality"],
        "device": row.get("device") or "",
        "monk_skin_tone": str(row["monk"]) if row.get("monk") else "",
        "fitzpatrick_skin_type_estimated": taxonomy.fitzpatrick_roman(row["fitzpatrick_est"])
        if row.get("fitzpatrick_est")
        else "",
        "monk_skin_tone_estimated": str(row["monk_est"]) if row.get("monk_est") else "",
        "meta_domain_estimated": row.get("meta_domain") or "",
    }
    if free_text:
        out["diagnosis_free_text"] = label.get("free_text") or ""
        out["extra"] = json.dumps(extra, sort_keys=True, ensure_ascii=False) if extra else ""
    return out


def validate_rows(rows: Sequence[Mapping[str, str]], free_text: bool) -> None:
    """Every column an ISIC field or a documented extension, every value in its set."""
    allowed = {*ISIC_FIELDS, *EXTENSION_FIELDS, *(FREE_TEXT_FIELDS if free_text else ())}
    for n, row in enumerate(rows, start=2):
        unknown = sorted(set(row) - allowed)
        if unknown:
            raise ExportError(
                f"metadata column {unknown[0]!r} is not an ISIC field or a dermdesk extension"
            )
        for name, values in ALLOWED_VALUES.items():
            if name in row and row[name] not in values:
                raise ExportError(
                    f"metadata line {n}: {name} {row[name]!r} is not one of the allowed values"
                )
        age = row.get("age_approx", "")
        if age and (not age.isdigit() or int(age) % 5):
            raise ExportError(f"metadata line {n}: age_approx {age!r} is not a 5-year bin")
        _check_diagnosis_levels(n, row)


def _check_diagnosis_levels(n: int, row: Mapping[str, str]) -> None:
    """diagnosis_2 is one of the Archive's second-level names and sits under diagnosis_1;
    diagnosis_3 never stands without diagnosis_2."""
    level1, level2 = row.get("diagnosis_1", ""), row.get("diagnosis_2", "")
    if level2:
        parent = taxonomy.isic_diagnosis_2().get(level2)
        if parent is None:
            raise ExportError(
                f"metadata line {n}: diagnosis_2 {level2!r} is not an ISIC Archive diagnosis"
            )
        if parent != level1:
            raise ExportError(
                f"metadata line {n}: diagnosis_2 {level2!r} belongs under {parent!r}, "
                f"not diagnosis_1 {level1!r}"
            )
    elif row.get("diagnosis_3"):
        raise ExportError(f"metadata line {n}: diagnosis_3 without diagnosis_2")


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one that would start a formula gets a leading
    apostrophe (the OWASP advice for CSV injection); plain numbers stay numbers."""
    if value.startswith(FORMULA_START):
        try:
            float(value)
            return value
        except ValueError:
            return "'" + value
    return value


def csv_bytes(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({k: safe_cell(str(row.get(k, ""))) for k in columns})
    return out.getvalue().encode("utf-8")


# -- writing ---------------------------------------------------------------------------------

Progress = Callable[[int, int], None]


def _check_target(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; export into a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty; export into a new or empty folder")


def _temp_folder(out: Path) -> Path:
    parent = out.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise ExportError(f"cannot write into {parent}: {exc.strerror or exc}") from exc


def write_export(
    lib: Library,
    plan: ExportPlan,
    out: Path,
    *,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportResult:
    """Write the export into ``out`` (new or empty), all or nothing."""
    _check_target(out)
    tmp = _temp_folder(out)
    try:
        result = _write_all(lib, plan, tmp, progress, cancelled)
        if cancelled is not None and cancelled():
            raise ExportCancelled()
        if out.is_dir():
            out.rmdir()  # empty (checked above); a rename cannot replace a folder
        os.rename(tmp, out)
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise ExportError(
                f"the disk holding {out.absolute().parent} is full; nothing was written"
            ) from exc
        raise ExportError(
            f"cannot write the export to {out}: {exc.strerror or exc}; nothing was written"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.folder = out
    return result


def _write_all(
    lib: Library,
    plan: ExportPlan,
    root: Path,
    progress: Progress | None,
    cancelled: Callable[[], bool] | None,
) -> ExportResult:
    from dermdesk.exchange import datacard
    from dermdesk.exchange.deidentify import deidentified

    opts = plan.options
    manifest: dict[str, str] = {}
    total_bytes = 0
    sites = _lesion_sites(lib, plan.items)
    for n, item in enumerate(plan.items, start=1):
        if cancelled is not None and cancelled():
            raise ExportCancelled()
        row = item.row
        try:
            data = lib.original_path(row).read_bytes()
        except OSError as exc:
            raise ExportError(
                f"cannot read the original of image {row['id'][:12]}: {exc.strerror or exc}"
            ) from exc
        try:
            clean, ext = deidentified(data, row["format"], row.get("orientation"))
        except ValueError as exc:  # ImageRejected: a damaged original
            raise ExportError(f"image {row['id'][:12]} cannot be exported: {exc}") from exc
        if opts.format == "dicom":
            from dermdesk.exchange.dicom_export import dicom_bytes

            item.file_name = f"images/{item.export_id}.dcm"
            site = sites.get(row.get("lesion_id") or "")
            meta = metadata_row(item, site, free_text=False)
            clean = dicom_bytes(clean, ext, row, meta, site)
        else:
            item.file_name = _relative_path(opts.format, item, ext)
        _write_file(root, item.file_name, clean, manifest)
        total_bytes += len(clean)
        if progress is not None:
            progress(n, len(plan.items))
    rows = [
        metadata_row(it, sites.get(it.row.get("lesion_id") or ""), opts.include_free_text)
        for it in plan.items
    ]
    validate_rows(rows, opts.include_free_text)
    columns = [
        *(["file_name"] if opts.format == "imagefolder" else []),
        *ISIC_FIELDS,
        *EXTENSION_FIELDS,
    ]
    if opts.format == "imagefolder":
        columns = list(dict.fromkeys(columns))  # file_name once, first (Hugging Face needs it)
    if opts.include_free_text:
        columns += list(FREE_TEXT_FIELDS)
    _write_metadata(root, opts.format, plan.items, rows, columns, manifest)
    for name, content in datacard.render(lib, plan, rows).items():
        _write_file(root, name, content, manifest)
    _write_file(root, "dataset.json", _dataset_json(lib, plan, total_bytes), manifest)
    lines = "".join(f"{manifest[p]}  {p}\n" for p in sorted(manifest))
    (root / "MANIFEST.sha256").write_bytes(lines.encode("utf-8"))
    return ExportResult(root, len(plan.items), total_bytes, len(manifest) + 1, list(plan.warnings))


def _relative_path(fmt: str, item: ExportItem, ext: str) -> str:
    name = f"{item.export_id}.{ext}"
    if fmt == "isic":
        return f"images/{name}"
    cls = item.row["diagnosis"]
    return f"{item.part}/{cls}/{name}" if item.part else f"{cls}/{name}"


def _write_file(root: Path, relative: str, data: bytes, manifest: dict[str, str]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    manifest[relative] = hashlib.sha256(data).hexdigest()


def _write_metadata(
    root: Path,
    fmt: str,
    items: Sequence[ExportItem],
    rows: Sequence[dict[str, str]],
    columns: Sequence[str],
    manifest: dict[str, str],
) -> None:
    if fmt != "imagefolder" or not any(it.part for it in items):
        _write_file(root, "metadata.csv", csv_bytes(rows, columns), manifest)
        return
    # One metadata.csv per split folder, file names relative to it (how Hugging Face's
    # imagefolder pairs metadata with images inside split folders).
    for part in PARTS:
        chosen = [
            dict(r, file_name=r["file_name"].split("/", 1)[1])
            for it, r in zip(items, rows, strict=True)
            if it.part == part
        ]
        if chosen:
            _write_file(root, f"{part}/metadata.csv", csv_bytes(chosen, columns), manifest)


def _lesion_sites(lib: Library, items: Sequence[ExportItem]) -> dict[str, str]:
    ids = sorted({it.row["lesion_id"] for it in items if it.row.get("lesion_id")})
    out: dict[str, str] = {}
    for chunk in id_chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for lesion_id, site in lib.conn.execute(
            f"SELECT id, body_site FROM lesion WHERE id IN ({marks})", chunk
        ):
            if site:
                out[lesion_id] = site
    return out


def _dataset_json(lib: Library, plan: ExportPlan, total_bytes: int) -> bytes:
    from dermdesk.imaging.quality_config import CHECKER_VERSION
    from dermdesk.library.audit import read_head

    head = read_head(lib.root)
    doc = {
        **plan.options.as_params(),
        "split": plan.split,
        "seed": plan.split.get("seed") if plan.split else None,
        "dermdesk_version": __version__,
        "library_schema_version": LATEST_VERSION,
        "checker_version": CHECKER_VERSION,
        "counts": plan.counts(),
        "bytes": total_bytes,
        "synthetic_included": any(it.row["source"] == "synthetic" for it in plan.items),
        "warnings": plan.warnings,
        "audit_head": {"last_id": head[0], "hash": head[1]} if head else None,
        "ids": "pseudonymous, numbered in content-hash order; no source ids or file names",
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


def cleanup_partials(out: Path) -> None:
    """Remove hidden ``.NAME.*.partial`` folders a killed export left beside ``out``."""
    with contextlib.suppress(OSError):
        for path in out.absolute().parent.glob(f".{out.name}.*.partial"):
            shutil.rmtree(path, ignore_errors=True)
