"""Reading metadata tables safely: CSV rows with line numbers, and contained paths."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class DatasetError(ValueError):
    """A metadata file cannot be used at all; nothing was imported from it."""


@dataclass(frozen=True)
class Row:
    """One CSV data row: its values and its line number in the file (header is line 1)."""

    line: int
    values: dict[str, str]

    def get(self, column: str) -> str:
        return (self.values.get(column) or "").strip()


def read_csv(path: Path, required: Iterable[str] = ()) -> list[Row]:
    """All rows of a CSV file; refuses the file if it is unreadable or lacks columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise DatasetError(f"{path.name}: missing required column(s): {', '.join(missing)}")
            rows = []
            for values in reader:
                if None in values:  # more cells than header columns
                    raise DatasetError(
                        f"{path.name} line {reader.line_num}: more values than "
                        "columns in the header"
                    )
                rows.append(Row(reader.line_num, {k: v or "" for k, v in values.items()}))
            return rows
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed CSV ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def csv_columns(path: Path) -> list[str]:
    """The header of a CSV file (empty for an empty file)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed CSV ({exc})") from exc
    except OSError as exc:
        raise DatasetError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def contained_path(root: Path, name: str) -> Path:
    """``root / name``, refusing names that escape ``root`` (``../``, absolute, symlinks)."""
    if not name:
        raise ValueError("empty file name")
    if "\x00" in name:
        raise ValueError("file name contains a NUL byte")
    root_resolved = root.resolve()
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root_resolved):
        raise ValueError(f"path {name!r} escapes the dataset folder")
    return candidate
