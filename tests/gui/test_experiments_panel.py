"""The Experiments tab while a study is still running: schemes without a finished run say
so, and the pane fits its width (no sideways scrolling)."""

from __future__ import annotations

from typing import Any

from pytestqt.qtbot import QtBot

from dermdesk.gui.charts import IntervalChart
from dermdesk.gui.experiments_panel import scheme_figures
from dermdesk.ml.experiment_report import imbalance_tables


def _run(name: str, seed: int, done: bool, bacc: float | None = None) -> dict[str, Any]:
    metrics = None
    if done:
        metrics = {
            s: {"overall": {"n": 40, "balanced_accuracy": {"value": bacc, "ci": [0.2, 0.5]}}}
            for s in ("dermoscopic_val", "clinical_test")
        }
    return {
        "name": name,
        "seed": seed,
        "status": "done" if done else "planned",
        "params": {"kind": "classify", "arch": "vit_mini_8"},
        "metrics": metrics,
        "seconds": 10.0,
    }


def test_a_scheme_without_a_finished_run_says_so(qtbot: QtBot) -> None:
    runs = [
        _run("ScratchViT", 0, True, 0.31),
        _run("ScratchViT", 1, False),
        _run("MAEViT", 0, False),
    ]
    figures = scheme_figures(imbalance_tables(runs), "clinical_test")
    assert [(f.label, f.text()) for f in figures] == [
        ("ScratchViT", "0.310 [0.20, 0.50], n=1"),
        ("MAEViT", "no run done yet"),
    ]
    chart = IntervalChart()
    qtbot.addWidget(chart)
    chart.resize(520, 80)
    chart.set_rows(figures)
    chart.show()
    image = chart.grab().toImage()  # painted without error at a narrow width
    assert image.width() == 520
