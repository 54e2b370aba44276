"""Generic CSV import: any table of image paths plus metadata, with a column mapping.

The mapping names, for each library field, the CSV column that holds it
(``{"file": "path", "diagnosis": "dx"}``); unmapped fields default to a column
of the same name if there is one. Paths are relative to ``root`` (the CSV's
folder by default) and may not escape it.
"""

from __future__ import annotations

from pathlib import Path

from dermdesk import taxonomy
from dermdesk.exchange.datasets import Plan
from dermdesk.exchange.importer import ImportItem
from dermdesk.exchange.tables import DatasetError, Row, contained_path, csv_columns, read_csv
from dermdesk.library.records import DEVICE_FIELDS, LabelIn, LesionRef, PatientRef, SkinToneIn

FIELDS = (
    "file",
    "diagnosis",
    "certainty",
    "annotator",
    "patient",
    "lesion",
    "body_site",
    "fitzpatrick",
    "monk",
    "modality",
    "image_id",
    *DEVICE_FIELDS,
)


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["file=path", "diagnosis=dx"]`` -> ``{"file": "path", "diagnosis": "dx"}``."""
    mapping = {}
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        fld, column = fld.strip(), column.strip()
        if not sep or not fld or not column:
            raise DatasetError(f"bad mapping {pair!r}: use FIELD=COLUMN")
        if fld not in FIELDS:
            raise DatasetError(f"unknown field {fld!r} in mapping; fields: {', '.join(FIELDS)}")
        mapping[fld] = column
    return mapping


def plan_csv(
    csv_path: Path,
    mapping: dict[str, str] | None = None,
    *,
    root: Path | None = None,
    modality: str = "clinical",
    dataset: str | None = None,
    source_name: str | None = None,
) -> Plan:
    """Plan an import from a CSV; the whole file is refused if mapped columns are missing."""
    mapping = dict(mapping or {})
    root = root or csv_path.parent
    columns = set(csv_columns(csv_path))
    for fld in FIELDS:
        if fld not in mapping and fld in columns:
            mapping[fld] = fld
    if "file" not in mapping:
        raise DatasetError(f"{csv_path.name}: no file column; map one with file=COLUMN")
    plan = Plan(datasets=[dataset or csv_path.stem])
    rows = read_csv(csv_path, list(mapping.values()), plan.refused)
    namespace = source_name or dataset or csv_path.stem
    seen: dict[str, int] = {}
    for row in rows:
        where = f"{csv_path.name} line {row.line}"
        value = {f: row.get(c) for f, c in mapping.items()}
        key = value.get("image_id") or value["file"]
        if key in seen:
            plan.refused.append((where, f"duplicate image {key!r} (first on line {seen[key]})"))
            continue
        seen[key] = row.line
        try:
            item, warning = _item(root, row, value, where, modality, dataset, namespace)
        except ValueError as exc:
            plan.refused.append((where, str(exc)))
            continue
        # Columns that are no library field are kept with the image under their own names.
        mapped = set(mapping.values())
        for column, cell in row.values.items():
            if column and column not in mapped and (cell or "").strip():
                item.extra.setdefault(column, cell.strip())
        plan.items.append(item)
        if warning:
            plan.warnings.append(f"{where}: {warning}")
    return plan


def _item(
    root: Path,
    row: Row,
    value: dict[str, str],
    where: str,
    modality: str,
    dataset: str | None,
    namespace: str,
) -> tuple[ImportItem, str | None]:
    path = contained_path(root, value["file"])
    if not path.is_file():
        raise ValueError(f"image file not found: {value['file']}")
    mod = value.get("modality") or modality
    if mod not in taxonomy.MODALITIES:
        raise ValueError(f"unknown modality {mod!r} (use {', '.join(taxonomy.MODALITIES)})")
    label, warning = _label(value)
    tone = SkinToneIn(
        fitzpatrick=taxonomy.parse_fitzpatrick(value.get("fitzpatrick")),
        monk=taxonomy.parse_monk(value.get("monk")),
        method="manual",
        rater=f"csv:{namespace}",
    )
    patient = PatientRef(namespace, value["patient"]) if value.get("patient") else None
    extra: dict[str, object] = {}
    try:
        site = taxonomy.body_site(value.get("body_site"))
    except ValueError:
        # An unknown site never refuses the row: the words are kept with the image.
        site = None
        extra["body_site_text"] = value["body_site"]
        unknown_site = f"body site {value['body_site']!r} is not in the vocabulary; kept as text"
        warning = f"{warning}; {unknown_site}" if warning else unknown_site
    lesion = None
    if value.get("lesion"):
        lesion = LesionRef(namespace, value["lesion"], site)
    item = ImportItem(
        path=path,
        where=where,
        modality=mod,
        dataset=dataset,
        dataset_image_id=value.get("image_id") or None,
        patient=patient,
        lesion=lesion,
        label=label,
        skin_tones=[tone] if tone.fitzpatrick or tone.monk else [],
        extra=extra,
    )
    item.device = _device(value)
    return item, warning


_NUMERIC = {"focal_length": float, "exposure_time": float, "f_number": float, "iso": int}


def _device(value: dict[str, str]) -> dict[str, object]:
    """Device fields given in the CSV (they override the file's EXIF)."""
    device: dict[str, object] = {}
    for fld in DEVICE_FIELDS:
        raw = value.get(fld)
        if not raw:
            continue
        convert = _NUMERIC.get(fld)
        try:
            device[fld] = convert(float(raw)) if convert else raw
        except ValueError:
            raise ValueError(f"{fld} must be a number, got {raw!r}") from None
    return device


def _label(value: dict[str, str]) -> tuple[LabelIn | None, str | None]:
    raw = value.get("diagnosis")
    if not raw:
        return None, None
    match = taxonomy.normalize_label(raw)
    certainty = value.get("certainty") or "unknown"
    if certainty not in taxonomy.certainty_codes():
        raise ValueError(
            f"unknown certainty {certainty!r} (use {', '.join(taxonomy.certainty_codes())})"
        )
    label = LabelIn(match.code, certainty, value.get("annotator") or "csv", match.free_text)
    warning = None
    if not match.known:
        warning = f"diagnosis {raw!r} is not in the vocabulary; stored as OTHER ({raw!r})"
    return label, warning
