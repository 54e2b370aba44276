"""The gallery's item model: a library snapshot, paged in with ``fetchMore``.

On a new query the reader thread takes a snapshot (the ordered ids and group
counts, :func:`dermdesk.library.browse.snapshot`) and the first page of tile
facts. ``fetchMore`` asks the reader for the next page and inserts it when it
arrives, so the GUI thread never waits for SQLite. Thumbnails come from a
:class:`~dermdesk.gui.thumbnails.ThumbnailLoader`. The model never runs SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QImage

from dermdesk import taxonomy
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.gui.thumbnails import ThumbnailLoader
from dermdesk.library import ImageFilter, Library
from dermdesk.library.browse import (
    Group,
    Snapshot,
    Tile,
    TileRow,
    group_label,
    snapshot,
    tiles,
)

IdRole = Qt.ItemDataRole.UserRole + 1
TileRole = Qt.ItemDataRole.UserRole + 2
ThumbRole = Qt.ItemDataRole.UserRole + 3

Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Query:
    """What the gallery shows: a filter, a sort key and an optional grouping."""

    filter: ImageFilter = field(default_factory=ImageFilter)
    sort: str = "imported"
    group: str | None = None


class GalleryModel(QAbstractListModel):
    """Rows are images of the current query, loaded a page at a time."""

    loading = Signal(bool)
    counts_changed = Signal(int, int)  # rows loaded, rows in the snapshot
    failed = Signal(str)

    def __init__(
        self, reader: LibraryWorker, thumbs: ThumbnailLoader, page_size: int = 600
    ) -> None:
        super().__init__()
        self.reader = reader
        self.thumbs = thumbs
        self.page_size = page_size
        self.query = Query()
        self._snap = Snapshot([])
        self._tiles: list[TileRow] = []  # tuples, not objects: see browse.TileRow
        self._row_of: dict[str, int] = {}
        self._next = 0  # snapshot position of the next page
        self._generation = 0
        self._fetching = False
        self._wanted_rows = 0  # load at least this many rows (jump to a group or an image)
        # "Lesion cut by border: …" for a tile's tooltip: the window gives one that reads
        # the image's worst findings (a small indexed read, on hover only)
        self.quality_words: Callable[[str], str] | None = None
        thumbs.loaded.connect(self._thumbs_loaded)

    # -- queries ---------------------------------------------------------------------------

    def set_query(self, query: Query) -> None:
        """Show another filter / sort / grouping; the old rows stay until the new ones come."""
        self.query = query
        self._generation += 1
        generation = self._generation
        page = self.page_size
        self._fetching = True
        self.loading.emit(True)

        def work(lib: Library) -> tuple[Snapshot, list[TileRow]]:
            snap = snapshot(lib, query.filter, query.sort, query.group)
            return snap, [t.as_row() for t in tiles(lib, snap.ids[:page])]

        self.reader.run(
            work,
            lambda result: self._snapshot_ready(generation, *result),
            lambda exc: self._failed(generation, exc),
        )

    def reload(self) -> None:
        self.set_query(self.query)

    def _snapshot_ready(self, generation: int, snap: Snapshot, first: list[TileRow]) -> None:
        if generation != self._generation:
            return  # a newer query is on its way
        self.beginResetModel()
        self._snap = snap
        self._tiles = list(first)
        self._row_of = {t[0]: i for i, t in enumerate(self._tiles)}
        self._next = min(len(snap.ids), self.page_size)
        self._wanted_rows = 0
        self.endResetModel()
        self._fetching = False
        self.loading.emit(False)
        self.counts_changed.emit(len(self._tiles), len(snap.ids))

    def _failed(self, generation: int, exc: Exception) -> None:
        if generation == self._generation:
            self._fetching = False
            self.loading.emit(False)
            self.failed.emit(str(exc))

    # -- paging ----------------------------------------------------------------------------

    def canFetchMore(self, parent: Index = QModelIndex()) -> bool:  # noqa: B008
        return not parent.isValid() and not self._fetching and self._next < len(self._snap.ids)

    def fetchMore(self, parent: Index = QModelIndex()) -> None:  # noqa: B008
        if not self.canFetchMore(parent):
            return
        self._fetch(self.page_size)

    def _fetch(self, count: int) -> None:
        ids = self._snap.ids[self._next : self._next + count]
        self._next += len(ids)
        self._fetching = True
        generation = self._generation
        self.reader.run(
            lambda lib: [t.as_row() for t in tiles(lib, ids)],
            lambda page: self._page_ready(generation, page),
            lambda exc: self._failed(generation, exc),
        )

    def _page_ready(self, generation: int, page: list[TileRow]) -> None:
        if generation != self._generation:
            return
        self._fetching = False
        if page:
            first = len(self._tiles)
            self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
            self._tiles.extend(page)
            for i, t in enumerate(page, first):
                self._row_of[t[0]] = i
            self.endInsertRows()
        self.counts_changed.emit(len(self._tiles), len(self._snap.ids))
        if self._wanted_rows > len(self._tiles) and self._next < len(self._snap.ids):
            self._fetch(self._wanted_rows - len(self._tiles))

    def ensure_rows(self, rows: int) -> None:
        """Load pages until at least ``rows`` rows are in (for jumps far down the list)."""
        self._wanted_rows = max(self._wanted_rows, rows)
        if not self._fetching and rows > len(self._tiles) and self._next < len(self._snap.ids):
            self._fetch(rows - len(self._tiles))

    def snapshot_position(self, image_id: str) -> int | None:
        """Where an image is in the whole snapshot, loaded or not."""
        if image_id in self._row_of:
            return self._row_of[image_id]
        try:
            return self._snap.ids.index(image_id)
        except ValueError:
            return None

    @property
    def total(self) -> int:
        return len(self._snap.ids)

    @property
    def is_fetching(self) -> bool:
        return self._fetching

    # -- groups ----------------------------------------------------------------------------

    def groups(self) -> list[Group]:
        return self._snap.groups

    def group_starts(self) -> tuple[int, ...]:
        """First row of each group (empty without grouping)."""
        starts, row = [], 0
        for g in self._snap.groups:
            starts.append(row)
            row += g.count
        return tuple(starts)

    def group_title(self, g: int) -> str:
        group = self._snap.groups[g]
        return f"{group_label(self._snap.group, group.key)}  ·  {group.count}"

    # -- rows ------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._tiles)

    def tile(self, row: int) -> Tile:
        return Tile(*self._tiles[row])

    def thumbnail(self, row: int) -> QImage | None:
        """The row's cached thumbnail, or None after queueing its load (what ThumbRole gives)."""
        return self.thumbs.get(self._tiles[row][0])

    def row_of(self, image_id: str) -> int | None:
        return self._row_of.get(image_id)

    def ids(self, rows: list[int]) -> list[str]:
        return [self._tiles[r][0] for r in rows if 0 <= r < len(self._tiles)]

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._tiles):
            return None
        row = self._tiles[index.row()]
        if role == ThumbRole:  # asked for every tile on every paint: no Tile object needed
            return self.thumbs.get(row[0])
        if role == IdRole:
            return row[0]
        t = Tile(*row)
        if role == Qt.ItemDataRole.DisplayRole:
            return t.diagnosis or "unlabelled"
        if role == TileRole:
            return t
        if role == Qt.ItemDataRole.ToolTipRole:  # asked on hover only: one image's findings
            worst = self.quality_words(t.id) if self.quality_words and t.quality else ""
            return _tooltip(t, worst)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"image {t.id[:8]}, {_tooltip(t)}"
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    # -- updates ---------------------------------------------------------------------------

    def refresh_ids(self, image_ids: list[str]) -> None:
        """Re-read the tiles of edited images (on the reader) and repaint them."""
        loaded = [i for i in image_ids if i in self._row_of]
        if not loaded:
            return
        generation = self._generation
        self.reader.run(lambda lib: tiles(lib, loaded), lambda t: self._replace(generation, t))

    def _replace(self, generation: int, fresh: list[Tile]) -> None:
        if generation != self._generation:
            return
        for t in fresh:
            row = self._row_of.get(t.id)
            if row is not None:
                self._tiles[row] = t.as_row()
                index = self.index(row)
                self.dataChanged.emit(index, index)

    def _thumbs_loaded(self, image_ids: list[str]) -> None:
        rows = [r for r in (self._row_of.get(i) for i in image_ids) if r is not None]
        if rows:
            # One signal for the span: the view repaints only what is on screen.
            self.dataChanged.emit(self.index(min(rows)), self.index(max(rows)), [ThumbRole])


def _tooltip(t: Tile, worst: str = "") -> str:
    names = taxonomy.diagnoses()
    parts = [
        names[t.diagnosis].name if t.diagnosis in names else "Unlabelled",
        taxonomy.modality_words(t.modality, t.modality_method),
    ]
    fitz, fitz_est = t.skin_type()
    if fitz:
        kind = "estimated" if fitz_est else "rated"
        parts.append(f"Fitzpatrick {taxonomy.fitzpatrick_roman(fitz)} ({kind})")
    monk, monk_est = t.monk_tone()
    if monk:
        parts.append(f"Monk {monk} ({'estimated' if monk_est else 'rated'})")
    quality = f"quality: {t.quality or 'not checked'}"
    parts.append(f"{quality} ({worst})" if worst and t.quality != "pass" else quality)
    if t.predicted:
        parts.append(f"model: {t.predicted}")
    if t.synthetic:
        parts.append("synthetic")
    return " · ".join(parts)
