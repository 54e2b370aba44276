"""The experiments view: recorded studies (``dermdesk experiment``) and their tables.

Left, the experiments with how many of their runs are done; right, the chosen one's
balanced accuracy per scheme on held-out dermoscopic and clinical images, and per
domain, as interval charts (mean and 95 % t-interval over seeds), above the same
Markdown tables ``dermdesk experiment show`` prints. Reading only: experiments are
planned and run from the command line (``dermdesk experiment run gap``), as jobs the
Jobs panel shows.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QGroupBox,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from dermdesk.gui.charts import IntervalChart
from dermdesk.library import Library
from dermdesk.library import experiment_store as es
from dermdesk.library.browse import Figure
from dermdesk.ml.experiment_report import (
    Estimate,
    GapTables,
    ImbalanceTables,
    gap_tables,
    imbalance_markdown,
    imbalance_tables,
    markdown,
    profile_note,
)

COLUMNS = ("#", "Name", "Study", "Profile", "Runs done", "Created")
EMPTY = (
    "No experiments recorded yet. Run one from the command line, e.g. "
    "<code>dermdesk experiment run gap --profile cpu</code>; its runs appear in the Jobs "
    "panel and its tables here."
)


def _figure(label: str, est: Estimate, n: int) -> Figure:
    missing = "no run done yet" if est.n == 0 else f"no figure ({est.n} seed(s) done)"
    return Figure(label, est.mean, est.low, est.high, n, missing)


DOMAIN_CHART = "Per domain (modality/source): balanced accuracy"
MINORITY_CHART = "Minority classes on held-out clinical images: sensitivity"


def scheme_figures(tables: GapTables | ImbalanceTables, eval_set: str) -> list[Figure]:
    """One bar per scheme for one evaluation set (n = seeds behind the mean)."""
    rows = tables.rows if isinstance(tables, ImbalanceTables) else tables.schemes
    return [_figure(row["scheme"], row[eval_set], row["seeds"]) for row in rows]


def minority_figures(tables: ImbalanceTables) -> list[Figure]:
    """One bar per scheme and minority class: its sensitivity on clinical-test."""
    return [
        _figure(f"{row['scheme']} · {code}", est, row["seeds"])
        for row in tables.rows
        for code, est in row["clinical_test_minority"].items()
    ]


def domain_figures(tables: GapTables) -> list[Figure]:
    """One bar per scheme and domain (n = held-out images of that domain)."""
    return [
        _figure(f"{row['scheme']} · {row['domain']}", row["balanced_accuracy"], row["n"])
        for row in tables.domains
    ]


class ExperimentsPanel(QWidget):
    """Experiments on the left; the chosen one's charts and tables on the right."""

    def __init__(self, lib: Library, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lib = lib
        self.rows: list[dict[str, Any]] = []
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._show_selected)
        self.title = QLabel(EMPTY)
        self.title.setWordWrap(True)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.charts = {
            "dermoscopic_val": IntervalChart(),
            "clinical_test": IntervalChart(),
            "domain": IntervalChart(),
        }
        self.boxes: dict[str, QGroupBox] = {}
        self.tables = QTextBrowser()
        self.tables.setMinimumHeight(420)
        self._build()

    def _build(self) -> None:
        body = QWidget()
        v = QVBoxLayout(body)
        v.addWidget(self.title)
        for key, title in (
            ("dermoscopic_val", "Held-out dermoscopic images: balanced accuracy per scheme"),
            ("clinical_test", "Held-out clinical images: balanced accuracy per scheme"),
            ("domain", DOMAIN_CHART),
        ):
            box = QGroupBox(title)  # short: a long title would widen the pane past the window
            self.boxes[key] = box
            QVBoxLayout(box).addWidget(self.charts[key])
            v.addWidget(box)
        v.addWidget(self.tables)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        # the charts and the wrapped text follow the pane's width; no sideways scrolling
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(scroll)
        split.setSizes([340, 940])
        QVBoxLayout(self).addWidget(split)

    def refresh(self) -> None:
        """Re-read the experiments (after a job finished or when the tab is shown)."""
        selected = self.selected_id()
        self.rows = es.experiments(self.lib)
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows):
            values = (
                str(row["id"]),
                row["name"],
                row["study"],
                row["profile"],
                f"{row['done'] or 0} of {row['runs']}",
                (row["created_at"] or "")[:16],
            )
            for j, text in enumerate(values):
                self.table.setItem(i, j, QTableWidgetItem(text))
        ids = [r["id"] for r in self.rows]
        if selected in ids:
            self.table.selectRow(ids.index(selected))
        elif self.rows:
            self.table.selectRow(0)
        else:
            self.title.setText(EMPTY)

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return int(self.rows[rows[0].row()]["id"]) if rows and self.rows else None

    def _show_selected(self) -> None:
        exp_id = self.selected_id()
        if exp_id is None:
            return
        exp = es.experiment(self.lib, exp_id)
        runs = es.runs(self.lib, exp_id, with_split=True)  # train sizes of the curve
        imbalance = exp.get("study") == "imbalance"
        tables: GapTables | ImbalanceTables = (
            imbalance_tables(runs) if imbalance else gap_tables(runs)
        )
        self.title.setText(
            f"<h3>Experiment {exp['id']}: {exp['name']}</h3>"
            f"{tables.runs_done} of {tables.runs_total} runs done, {tables.seeds} seed(s). "
            f"{profile_note(exp, runs)}<br>Bars: the mean over seeds; whiskers: its 95 % "
            "interval (one seed: the bootstrap interval over images)."
        )
        self.charts["dermoscopic_val"].set_rows(scheme_figures(tables, "dermoscopic_val"))
        self.charts["clinical_test"].set_rows(scheme_figures(tables, "clinical_test"))
        title = f"Experiment {exp['id']}: {exp['name']}"
        chart = MINORITY_CHART if isinstance(tables, ImbalanceTables) else DOMAIN_CHART
        self.boxes["domain"].setTitle(chart)
        if isinstance(tables, ImbalanceTables):
            self.charts["domain"].set_rows(minority_figures(tables))
            self.tables.setMarkdown(imbalance_markdown(title, tables))
        else:
            self.charts["domain"].set_rows(domain_figures(tables))
            self.tables.setMarkdown(markdown(title, tables))
