"""Generic CSV import: any table of image paths plus metadata, with a column mapping.

The mapping names, for each library field, the CSV column that holds it
(``{"file": "path", "diagnosis": "dx"}``); unmapped fields default to a column
of the same name if there is one. Paths are relative to ``root`` (the CSV's
folder by default) and may not escape it; a name whose case differs from the file's
(``IMG_1.JPG`` for ``img_1.jpg``) is found with a warning.

Several image columns per row (``file=clinic:clinical``, ``file=derm:dermoscopic``):
each image gets its own modality and the row's patient, lesion and label; a file named
in two columns is imported once, with a warning. Value maps (:func:`parse_value_maps`)
translate a column's own words before the vocabulary sees them
(``diagnosis: "mm in situ" -> MEL``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from dermdesk import taxonomy
from dermdesk.exchange.datasets import Plan
from dermdesk.exchange.importer import ImportItem
from dermdesk.exchange.tables import (
    DatasetError,
    contained_path,
    csv_columns,
    read_csv,
    read_text_lines,
    sniff_delimiter,
)
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


ImageColumns = list[tuple[str, str | None]]  # (column, modality or None: the default)
VALUE_FIELDS = ("diagnosis", "body_site", "modality", "certainty", "fitzpatrick", "monk")


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``["file=path", "diagnosis=dx"]`` -> ``{"file": "path", "diagnosis": "dx"}``
    (the first image column, when several are given: see :func:`parse_image_columns`)."""
    mapping: dict[str, str] = {}
    for fld, column in _pairs(pairs):
        if fld == "file":
            column = column.partition(":")[0].strip()
            mapping.setdefault(fld, column)
        else:
            mapping[fld] = column
    return mapping


def parse_image_columns(pairs: list[str]) -> ImageColumns:
    """The ``file=COLUMN[:MODALITY]`` entries of a mapping, in order."""
    out: ImageColumns = []
    for fld, column in _pairs(pairs):
        if fld != "file":
            continue
        name, _, modality = (part.strip() for part in column.partition(":"))
        if modality and modality not in taxonomy.MODALITIES:
            raise DatasetError(
                f"bad mapping file={column}: unknown modality {modality!r} "
                f"(use {', '.join(taxonomy.MODALITIES)})"
            )
        if any(name == c for c, _ in out):
            raise DatasetError(f"bad mapping: column {name!r} is given twice as file")
        out.append((name, modality or None))
    return out


def _pairs(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        fld, sep, column = pair.partition("=")
        fld, column = fld.strip(), column.strip()
        if not sep or not fld or not column:
            raise DatasetError(f"bad mapping {pair!r}: use FIELD=COLUMN")
        if fld not in FIELDS:
            raise DatasetError(f"unknown field {fld!r} in mapping; fields: {', '.join(FIELDS)}")
        out.append((fld, column))
    return out


def value_key(text: str) -> str:
    """How a value is matched in a value map: case, spaces and punctuation ignored."""
    return taxonomy.words(text)


def parse_value_maps(specs: list[str], base: Path | None = None) -> dict[str, dict[str, str]]:
    """``--map-values`` arguments -> ``{field: {value key: library value}}``.

    A spec is ``FIELD=FILE`` (a two-column CSV: the column's value, what it becomes) or
    inline ``FIELD:VALUE=TARGET``. Every target is checked against the vocabulary now:
    a map that would store an unknown code is refused with its file and line."""
    maps: dict[str, dict[str, str]] = {}
    for spec in specs:
        head, sep, rest = spec.partition("=")
        if not sep or not head.strip() or not rest.strip():
            raise DatasetError(
                f"bad value map {spec!r}: use FIELD=FILE.csv or 'FIELD:VALUE=TARGET'"
            )
        fld, colon, value = head.partition(":")
        fld = fld.strip()
        if fld not in VALUE_FIELDS:
            raise DatasetError(
                f"bad value map {spec!r}: field {fld!r} takes no value map "
                f"(fields: {', '.join(VALUE_FIELDS)})"
            )
        target = maps.setdefault(fld, {})
        if colon:
            target[value_key(value)] = check_target(fld, rest.strip(), f"value map {spec!r}")
            continue
        path = Path(rest.strip()).expanduser()
        if base is not None and not path.is_absolute() and not path.is_file():
            path = base / path
        target.update(_read_value_file(fld, path))
    return maps


def _read_value_file(fld: str, path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DatasetError(f"value map for {fld}: {path}: no such file")
    out: dict[str, str] = {}
    lines = read_text_lines(path)
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = next(csv.reader([line], delimiter=sniff_delimiter(lines)))
        if len(cells) != 2 or not cells[0].strip():
            raise DatasetError(
                f"{path.name} line {number}: a value map has two columns "
                f"(the CSV's value, what it becomes); got {len(cells)}"
            )
        source, target = cells[0].strip(), cells[1].strip()
        if number == 1 and value_key(target) in ("to", "target", "becomes", "code"):
            continue  # a header row
        out[value_key(source)] = check_target(fld, target, f"{path.name} line {number}")
    return out


def check_target(fld: str, target: str, where: str) -> str:
    """A value map's target, refused unless the library knows it."""
    problem = None
    if fld == "diagnosis" and not taxonomy.normalize_label(target).known:
        problem = f"{target!r} is no diagnosis code ({', '.join(taxonomy.diagnoses())})"
    elif fld == "body_site":
        try:
            taxonomy.body_site(target)
        except ValueError:
            problem = f"{target!r} is no body site"
    elif fld == "modality" and target not in taxonomy.MODALITIES:
        problem = f"{target!r} is no modality ({', '.join(taxonomy.MODALITIES)})"
    elif fld == "certainty" and target not in taxonomy.certainty_codes():
        problem = f"{target!r} is no certainty ({', '.join(taxonomy.certainty_codes())})"
    elif fld == "fitzpatrick" and taxonomy.parse_fitzpatrick(target) is None:
        problem = f"{target!r} is no Fitzpatrick type (I-VI)"
    elif fld == "monk" and taxonomy.parse_monk(target) is None:
        problem = f"{target!r} is no Monk tone (1-10)"
    if problem:
        raise DatasetError(f"{where}: maps {fld} to {problem}")
    return target


def distinct_values(
    csv_path: Path, mapping: dict[str, str], fields: tuple[str, ...] = VALUE_FIELDS
) -> dict[str, dict[str, int]]:
    """Each mapped value field's distinct values and their counts (for a preview)."""
    columns = {f: mapping.get(f, f) for f in fields}
    header = set(csv_columns(csv_path))
    present = {f: c for f, c in columns.items() if c in header}
    out: dict[str, dict[str, int]] = {f: {} for f in present}
    for row in read_csv(csv_path, [], []):
        for f, c in present.items():
            cell = row.get(c)
            if cell:
                out[f][cell] = out[f].get(cell, 0) + 1
    return out


def preview_value(fld: str, raw: str, value_maps: dict[str, dict[str, str]] | None) -> str:
    """What a raw cell of a value field will be stored as (the import preview's column)."""
    mapped = _mapped(fld, raw, value_maps)
    if fld == "diagnosis":
        match = taxonomy.normalize_label(mapped)
        return match.code + (f" ({match.free_text})" if match.free_text else "")
    if fld == "body_site":
        try:
            return taxonomy.body_site(mapped) or ""
        except ValueError:
            return "kept as text (not in the vocabulary)"
    return mapped


def _mapped(fld: str, raw: str, value_maps: dict[str, dict[str, str]] | None) -> str:
    if not raw or not value_maps or fld not in value_maps:
        return raw
    return value_maps[fld].get(value_key(raw), raw)


def plan_csv(
    csv_path: Path,
    mapping: dict[str, str] | None = None,
    *,
    root: Path | None = None,
    modality: str = "clinical",
    dataset: str | None = None,
    source_name: str | None = None,
    image_columns: ImageColumns | None = None,
    value_maps: dict[str, dict[str, str]] | None = None,
    same_named: bool = True,
) -> Plan:
    """Plan an import from a CSV; the whole file is refused if mapped columns are missing.

    ``image_columns`` (several images per row, each with its modality) replaces the
    mapping's ``file``; ``value_maps`` translate cells before the vocabulary does;
    ``same_named`` maps unmapped fields to columns of their own name (the GUI, where the
    user saw every choice, turns it off)."""
    mapping = dict(mapping or {})
    root = root or csv_path.parent
    header = csv_columns(csv_path)
    columns = set(header)
    for fld in FIELDS:
        if same_named and fld not in mapping and fld in columns:
            mapping[fld] = fld
    images: ImageColumns = list(image_columns or [])
    if not images and "file" in mapping:
        images = [(mapping["file"], None)]
    if not images:
        raise DatasetError(f"{csv_path.name}: no file column; map one with file=COLUMN")
    mapping.pop("file", None)
    _check_header(csv_path, header, [*mapping.values(), *(c for c, _ in images)])
    plan = Plan(datasets=[dataset or csv_path.stem])
    required = [*mapping.values(), *(c for c, _ in images)]
    rows = read_csv(csv_path, required, plan.refused)
    namespace = source_name or dataset or csv_path.stem
    mapped = set(required)
    seen: dict[str, str] = {}  # image -> where it was first named
    for row in rows:
        where = f"{csv_path.name} line {row.line}"
        value = {f: _mapped(f, row.get(c), value_maps) for f, c in mapping.items()}
        named = [(c, m, row.get(c).strip()) for c, m in images if row.get(c).strip()]
        if not named:
            plan.refused.append((where, "no image file named in " + _names(images)))
            continue
        extras = {
            column: cell.strip()
            for column, cell in row.values.items()
            if column and column not in mapped and (cell or "").strip()
        }
        for column, mod, name in _once_per_row(named, where, plan):
            here = f"{where} ({column})" if len(images) > 1 else where
            key = (value.get("image_id") if len(images) == 1 else None) or name
            if key in seen:
                plan.refused.append((here, f"duplicate image {key!r} (first on {seen[key]})"))
                continue
            seen[key] = f"line {row.line}" + (f", column {column!r}" if len(images) > 1 else "")
            try:
                item, warning = _item(
                    root,
                    {**value, "file": name, "modality": value.get("modality") or mod or ""},
                    here,
                    modality,
                    dataset,
                    namespace,
                    single=len(images) == 1,
                )
            except ValueError as exc:
                plan.refused.append((here, str(exc)))
                continue
            # Columns that are no library field are kept with the image under their names.
            for column_name, cell in extras.items():
                item.extra.setdefault(column_name, cell)
            plan.items.append(item)
            if warning:
                plan.warnings.append(f"{here}: {warning}")
    return plan


def _names(images: ImageColumns) -> str:
    return ", ".join(repr(c) for c, _ in images)


def _check_header(csv_path: Path, header: list[str], used: list[str]) -> None:
    """A mapped column that appears twice in the header is ambiguous: refuse the file."""
    for column in set(used):
        where = [i + 1 for i, name in enumerate(header) if name == column]
        if len(where) > 1:
            raise DatasetError(
                f"{csv_path.name}: column {column!r} appears {len(where)} times in the header "
                f"(columns {', '.join(map(str, where))}); rename all but one"
            )


def _once_per_row(
    named: list[tuple[str, str | None, str]], where: str, plan: Plan
) -> list[tuple[str, str | None, str]]:
    """One entry per file of a row: a file named in two columns is imported once, with a
    warning naming both columns (never a silent choice of modality)."""
    out: list[tuple[str, str | None, str]] = []
    for column, mod, name in named:
        first = next((o for o in out if o[2] == name), None)
        if first is None:
            out.append((column, mod, name))
            continue
        plan.warnings.append(
            f"{where}: {name!r} is named in columns {first[0]!r} and {column!r}; imported "
            f"once, as {first[1] or 'the default modality'} (from {first[0]!r})"
        )
    return out


def _item(
    root: Path,
    value: dict[str, str],
    where: str,
    modality: str,
    dataset: str | None,
    namespace: str,
    *,
    single: bool = True,
) -> tuple[ImportItem, str | None]:
    path, case_note = _find_file(root, value["file"])
    mod = value.get("modality") or modality
    if mod not in taxonomy.MODALITIES:
        raise ValueError(f"unknown modality {mod!r} (use {', '.join(taxonomy.MODALITIES)})")
    label, warning = _label(value)
    if case_note:
        warning = f"{warning}; {case_note}" if warning else case_note
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
        dataset_image_id=(value.get("image_id") or None) if single else None,
        patient=patient,
        lesion=lesion,
        label=label,
        skin_tones=[tone] if tone.fitzpatrick or tone.monk else [],
        extra=extra,
    )
    item.device = _device(value)
    return item, warning


def _find_file(root: Path, name: str) -> tuple[Path, str | None]:
    """The file a row names; one whose name differs only in case is found, with a note."""
    path = contained_path(root, name)
    if path.is_file():
        return path, None
    folder = path.parent
    if folder.is_dir():
        matches = [p for p in folder.iterdir() if p.name.casefold() == path.name.casefold()]
        if len(matches) == 1 and matches[0].is_file():
            return matches[0], f"{name!r} found as {matches[0].name!r} (another case)"
        if len(matches) > 1:
            raise ValueError(
                f"image file not found: {name} (several files differ from it only in case)"
            )
    raise ValueError(f"image file not found: {name}")


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
