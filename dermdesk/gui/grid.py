"""Layout arithmetic for the thumbnail grid, optionally split into groups with headings.

Positions are computed, not stored per item, so laying out 100,000 tiles
costs the same as laying out 100: a row's place follows from its group's
start and the number of columns. Group offsets are extended incrementally
as rows are loaded. Pure Python (no Qt) so it is tested without a display.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

Rect = tuple[int, int, int, int]  # x, y, width, height


@dataclass
class GridLayout:
    """Where each row's tile and each group's heading go in a grid of fixed-size tiles."""

    tile_w: int = 160
    tile_h: int = 190
    spacing: int = 8
    header_h: int = 28
    width: int = 800
    rows: int = 0
    group_starts: tuple[int, ...] = ()  # first row of each group; () for no grouping

    def __post_init__(self) -> None:
        self._tops: list[int] = []  # y of each laid-out group's heading (or first line)
        self._laid: int = 0  # groups laid out so far
        self._key: tuple[int, tuple[int, ...]] | None = None

    # -- configuration ---------------------------------------------------------------------

    def update(
        self,
        *,
        rows: int | None = None,
        width: int | None = None,
        group_starts: tuple[int, ...] | None = None,
        tile: tuple[int, int] | None = None,
    ) -> None:
        previous_rows = self.rows
        if width is not None:
            self.width = width
        if rows is not None:
            self.rows = rows
        if group_starts is not None:
            self.group_starts = tuple(group_starts)
        if tile is not None:
            self.tile_w, self.tile_h = tile
        key = (self.columns, self.group_starts)
        if key != self._key or self.rows < previous_rows:  # lay out from scratch
            self._key = key
            self._tops = []
            self._laid = 0
        else:  # only more rows: the last laid-out group may have grown
            self._laid = max(0, self._laid - 1)
            del self._tops[self._laid :]

    @property
    def columns(self) -> int:
        return max(1, (self.width - self.spacing) // (self.tile_w + self.spacing))

    @property
    def left(self) -> int:
        """x of the first column: the grid is centred, leftover width split on both sides."""
        used = self.columns * (self.tile_w + self.spacing) + self.spacing
        return self.spacing + max(0, self.width - used) // 2

    @property
    def grouped(self) -> bool:
        return bool(self.group_starts)

    def _starts(self) -> tuple[int, ...]:
        return self.group_starts or (0,)

    def _visible_groups(self) -> int:
        """Groups with at least one loaded row."""
        return bisect.bisect_left(self._starts(), self.rows) if self.rows else 0

    def _group_rows(self, g: int) -> int:
        starts = self._starts()
        end = starts[g + 1] if g + 1 < len(starts) else self.rows
        return max(0, min(end, self.rows) - starts[g])

    def _lines(self, n: int) -> int:
        return -(-n // self.columns)

    def _group_height(self, g: int) -> int:
        head = self.header_h if self.grouped else 0
        return head + self._lines(self._group_rows(g)) * (self.tile_h + self.spacing)

    def _ensure(self) -> None:
        n = self._visible_groups()
        if self._laid >= n and len(self._tops) == n:
            return
        y = self._tops[-1] + self._group_height(self._laid - 1) if self._tops else self.spacing
        for g in range(self._laid, n):
            self._tops.append(y)
            y += self._group_height(g)
        self._laid = n

    # -- queries ---------------------------------------------------------------------------

    def total_height(self) -> int:
        self._ensure()
        if not self._tops:
            return 0
        last = len(self._tops) - 1
        return self._tops[last] + self._group_height(last) + self.spacing

    def group_of(self, row: int) -> int:
        return bisect.bisect_right(self._starts(), row) - 1

    def item_rect(self, row: int) -> Rect:
        self._ensure()
        g = self.group_of(row)
        i = row - self._starts()[g]
        line, col = divmod(i, self.columns)
        head = self.header_h if self.grouped else 0
        x = self.left + col * (self.tile_w + self.spacing)
        y = self._tops[g] + head + line * (self.tile_h + self.spacing)
        return x, y, self.tile_w, self.tile_h

    def header_rect(self, g: int) -> Rect:
        self._ensure()
        return 0, self._tops[g], self.width, self.header_h

    def groups_between(self, y0: int, y1: int) -> range:
        """Indexes of the laid-out groups overlapping the band y0..y1."""
        self._ensure()
        if not self._tops:
            return range(0)
        first = max(0, bisect.bisect_right(self._tops, y0) - 1)
        last = max(first, bisect.bisect_right(self._tops, y1) - 1)
        return range(first, min(last, len(self._tops) - 1) + 1)

    def rows_in(self, rect: Rect) -> list[int]:
        """Rows whose tiles intersect ``rect`` (content coordinates), in order."""
        x0, y0, w, h = rect
        x1, y1 = x0 + w, y0 + h
        cols = self.columns
        step_x, step_y = self.tile_w + self.spacing, self.tile_h + self.spacing
        c0 = max(0, (x0 - self.left) // step_x)
        c1 = min(cols - 1, (x1 - self.left) // step_x)
        if x1 <= self.left or c0 > c1:
            return []
        head = self.header_h if self.grouped else 0
        out: list[int] = []
        for g in self.groups_between(y0, y1):
            n = self._group_rows(g)
            top = self._tops[g] + head
            l0 = max(0, (y0 - top) // step_y)
            l1 = min(self._lines(n) - 1, (y1 - top) // step_y)
            start = self._starts()[g]
            for line in range(l0, l1 + 1):
                for col in range(c0, c1 + 1):
                    i = line * cols + col
                    if i < n and self._hits(start + i, rect):
                        out.append(start + i)
        return out

    def _hits(self, row: int, rect: Rect) -> bool:
        x, y, w, h = self.item_rect(row)
        rx, ry, rw, rh = rect
        return x < rx + rw and rx < x + w and y < ry + rh and ry < y + h

    def row_at(self, x: int, y: int) -> int | None:
        hits = self.rows_in((x, y, 1, 1))
        return hits[0] if hits else None

    def neighbour(self, row: int, lines: int) -> int:
        """The row ``lines`` lines above (negative) or below, in the same column if it can."""
        if self.rows == 0:
            return 0
        x, y, _, h = self.item_rect(row)
        cx = x + self.tile_w // 2
        step = self.tile_h + self.spacing
        target_y = y + h // 2 + lines * step
        # Crossing a heading shifts lines by its height: search a little around the target.
        for dy in range(0, self.header_h + step, max(1, step // 4)):
            for probe in (
                (target_y + dy, target_y - dy) if lines > 0 else (target_y - dy, target_y + dy)
            ):
                hit = self.row_at(cx, probe)
                if hit is not None and hit != row:
                    return hit
        # Past the last tile in that column: the last (or first) row.
        return self.rows - 1 if lines > 0 else 0
