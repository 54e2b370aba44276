"""Grid layout arithmetic (no display needed)."""

from __future__ import annotations

from dermdesk.gui.grid import GridLayout


def grid(**kw: object) -> GridLayout:
    g = GridLayout(tile_w=100, tile_h=120, spacing=10, header_h=20, width=340)
    g.update(**kw)  # type: ignore[arg-type]
    return g


def test_tiles_flow_left_to_right_in_columns() -> None:
    g = grid(rows=7)
    assert g.columns == 3
    assert g.item_rect(0) == (10, 10, 100, 120)
    assert g.item_rect(3) == (10, 140, 100, 120)
    assert g.total_height() == 10 + 3 * 130 + 10
    assert g.rows_in((0, 0, 340, 125)) == [0, 1, 2]
    assert g.row_at(15, 15) == 0 and g.row_at(5, 5) is None


def test_groups_start_on_a_new_line_under_a_heading() -> None:
    g = grid(rows=7, group_starts=(0, 2, 5))
    assert g.header_rect(1)[1] == 10 + 20 + 130
    assert g.item_rect(2)[1] == g.header_rect(1)[1] + 20
    assert g.rows_in((0, 0, 340, 10_000)) == list(range(7))
    assert g.neighbour(0, 1) == 2 and g.neighbour(5, -1) == 2


def test_growing_and_shrinking_rows_lays_out_again() -> None:
    g = grid(rows=4, group_starts=(0, 2, 5))
    small = g.total_height()
    g.update(rows=7)
    assert g.total_height() > small
    g.update(rows=4)
    assert g.total_height() == small


def test_layout_of_100k_rows_is_arithmetic() -> None:
    g = grid(rows=100_000, width=1000)
    assert g.item_rect(99_999)[1] > 0
    y = g.item_rect(50_000)[1]
    assert 50_000 in g.rows_in((0, y, 1000, 10))
