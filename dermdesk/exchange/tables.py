"""Reading metadata tables safely: CSV rows with line numbers, and contained paths."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
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


MAX_CELL = 10_000  # characters; longer values are refused, the message stays short
MAX_FILE = 512 * 1024 * 1024  # bytes of one metadata file
Refused = list[tuple[str, str]]


def read_csv(path: Path, required: Iterable[str] = (), refused: Refused | None = None) -> list[Row]:
    """All well-formed rows of a CSV file; refuses the file if it is unreadable or lacks
    columns. A malformed row (an unterminated quote, more cells than columns, a NUL
    byte, a value over :data:`MAX_CELL` characters) is refused with its line number:
    appended to ``refused`` as ``("NAME line N", why)`` when given, else the file is."""
    # newline="": split at line ends exactly as the csv module does, keeping them.
    lines = io.StringIO(_read_text(path), newline="").readlines()
    header = _header(lines, path)
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path.name}: missing required column(s): {', '.join(missing)}")
    rows: list[Row] = []
    records = _Records(lines, 1)
    while True:
        line = records.position + 1  # 1-based number of the record's first line
        try:
            cells = records.next(len(header))
        except StopIteration:
            return rows
        except _BadRow as bad:
            where = f"{path.name} line {line}"
            if refused is None:
                raise DatasetError(f"{where}: {bad}") from None
            refused.append((where, str(bad)))
            records = _Records(lines, line)  # skip only that line: the next may be fine
            continue
        if cells is not None:
            rows.append(Row(line, dict(zip(header, cells, strict=True))))


class _BadRow(ValueError):
    pass


class _Records:
    """CSV records from ``lines[start:]``, tracking which line each one starts on."""

    def __init__(self, lines: list[str], start: int) -> None:
        self.lines = lines
        self.position = start
        self._reader = csv.reader(self._feed())

    def _feed(self) -> Iterator[str]:
        while self.position < len(self.lines):
            self.position += 1
            yield self.lines[self.position - 1]

    def next(self, columns: int) -> list[str] | None:
        """The next record's cells padded to ``columns`` (None for a blank line)."""
        first = self.position
        try:
            cells = next(self._reader)
        except csv.Error as exc:
            raise _BadRow(f"malformed CSV ({exc})") from None
        if not cells:
            return None
        spans = self.position - first
        if spans > 1 and (len(cells) != columns or any("," in c and "\n" in c for c in cells)):
            # A quote opened and never closed swallows the following lines into one cell.
            raise _BadRow(f"a quote is opened and not closed (it runs over {spans} lines)")
        if len(cells) > columns:
            raise _BadRow(f"{len(cells)} values but the header has {columns} columns")
        for number, cell in enumerate(cells, 1):
            if "\x00" in cell:
                raise _BadRow(f"column {number} contains a NUL byte")
            if len(cell) > MAX_CELL:
                raise _BadRow(
                    f"column {number} holds {len(cell):,} characters (at most {MAX_CELL:,})"
                )
        return cells + [""] * (columns - len(cells))


def _read_text(path: Path) -> str:
    if path.exists() and not path.is_file():  # a FIFO or device would hang or never end
        raise DatasetError(f"{path.name}: not a regular file")
    try:
        if path.stat().st_size > MAX_FILE:
            raise DatasetError(
                f"{path.name}: larger than {MAX_FILE >> 20} MB; not a metadata table"
            )
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise DatasetError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc


def _header(lines: list[str], path: Path) -> list[str]:
    try:
        header = next(csv.reader(lines[:1]), [])
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed header ({exc})") from exc
    if not header:
        raise DatasetError(f"{path.name}: empty file (no header row)")
    return header


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
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise ValueError(f"path {shown!r} is outside the dataset folder")
    return candidate
