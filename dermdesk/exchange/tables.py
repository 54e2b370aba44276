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
    dialect = _dialect(lines)
    header = _header(lines, path, dialect)
    missing = [c for c in required if c not in header]
    if missing:
        raise DatasetError(f"{path.name}: missing required column(s): {', '.join(missing)}")
    rows: list[Row] = []
    records = _Records(lines, 1, dialect)
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
            records = _Records(lines, line, dialect)  # skip only that line: the next may be fine
            continue
        if cells is not None:
            rows.append(Row(line, dict(zip(header, cells, strict=True))))


class _BadRow(ValueError):
    pass


class _Records:
    """CSV records from ``lines[start:]``, tracking which line each one starts on."""

    def __init__(self, lines: list[str], start: int, delimiter: str = ",") -> None:
        self.lines = lines
        self.position = start
        self.delimiter = delimiter
        self._reader = csv.reader(self._feed(), delimiter=delimiter)

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
        joined = any(self.delimiter in c and "\n" in c for c in cells)
        if spans > 1 and (len(cells) != columns or joined):
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


DELIMITERS = ",;\t|"
# Bytes that no text table holds (C0 controls but tab, CR, LF): a file with them is not text.
_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13))


def _read_text(path: Path) -> str:
    """The file's text: UTF-8 (with or without a BOM), UTF-16 with a BOM, else Latin-1
    when the bytes hold no control characters (spreadsheets on Windows save that)."""
    if path.exists() and not path.is_file():  # a FIFO or device would hang or never end
        raise DatasetError(f"{path.name}: not a regular file")
    try:
        if path.stat().st_size > MAX_FILE:
            raise DatasetError(
                f"{path.name}: larger than {MAX_FILE >> 20} MB; not a metadata table"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{path.name}: not UTF-16 text ({exc.reason})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if any(b in _CONTROL for b in data):
            raise DatasetError(f"{path.name}: not UTF-8 text ({exc.reason})") from exc
        return data.decode("latin-1")


def _dialect(lines: list[str]) -> str:
    """The delimiter of the table, sniffed from its header: comma, semicolon, tab or bar."""
    if not lines:
        return ","
    try:
        return csv.Sniffer().sniff(lines[0], delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _header(lines: list[str], path: Path, delimiter: str = ",") -> list[str]:
    try:
        header = next(csv.reader(lines[:1], delimiter=delimiter), [])
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed header ({exc})") from exc
    if not header:
        raise DatasetError(f"{path.name}: empty file (no header row)")
    return header


def csv_columns(path: Path) -> list[str]:
    """The header of a CSV file (empty for an empty file)."""
    text = _read_text(path)
    lines = io.StringIO(text, newline="").readlines()[:1]
    if not lines:
        return []
    try:
        return next(csv.reader(lines, delimiter=_dialect(lines)), [])
    except csv.Error as exc:
        raise DatasetError(f"{path.name}: malformed CSV ({exc})") from exc


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


def read_text_lines(path: Path) -> list[str]:
    """A small text table's lines, decoded as :func:`read_csv` decodes (UTF-8/16, Latin-1)."""
    return _read_text(path).splitlines()


def sniff_delimiter(lines: list[str]) -> str:
    """The delimiter of a table from its first line (comma, semicolon, tab or bar)."""
    return _dialect(lines)
