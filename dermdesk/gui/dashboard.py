"""The dashboard: what the library holds and where the gaps are.

Counts of diagnosis × Fitzpatrick and × Monk, devices, modalities, quality
verdicts, labelled fraction, and plain sentences for the gaps ("no melanoma
on Fitzpatrick V-VI"). Counting runs on the reader thread.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.gui.charts import BarChart, HeatTable
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.gui.theme import UNCHECKED_COLOUR, VERDICT_COLOURS
from dermdesk.imaging.check_names import CHECK_TITLES
from dermdesk.library import ImageFilter, Library, quality_store
from dermdesk.library.browse import (
    FITZPATRICK_BANDS,
    MONK_BANDS,
    DashboardStats,
    Gap,
    coverage_gaps,
    dashboard_stats,
)

MAX_DEVICES = 12


class StatTile(QFrame):
    """A big number with a caption."""

    def __init__(self, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.value = QLabel("—")
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        self.value.setFont(font)
        self.caption = QLabel(caption)
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)

    def set(self, value: str, caption: str | None = None) -> None:
        self.value.setText(value)
        if caption is not None:
            self.caption.setText(caption)


class DashboardPanel(QScrollArea):
    """Counts and gaps of the library, refreshed on demand. A click on a matrix cell or a
    device / modality bar asks for the gallery filtered to those images."""

    # A filter-bar state (FilterBar.set_state keys) the main window applies to the gallery.
    filter_requested = Signal(dict)
    # (Re)compute every image's visual meta-domain (the ``domains`` job).
    assign_domains_requested = Signal()

    def __init__(self, reader: LibraryWorker, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.reader = reader
        self.setWidgetResizable(True)
        self.stats: DashboardStats | None = None
        self.gaps: list[Gap] = []
        self._stale = True
        body = QWidget()
        grid = QGridLayout(body)
        grid.addLayout(self._tiles(), 0, 0, 1, 2)
        self.gap_list = QListWidget()
        self.gap_list.setMinimumHeight(150)
        grid.addWidget(
            self._box(
                "Gaps: diagnoses with fewer than 10 images on a skin-tone band", self.gap_list
            ),
            1,
            0,
            1,
            2,
        )
        self.dx_fitz = HeatTable()
        self.dx_monk = HeatTable()
        grid.addWidget(self._box("Diagnosis × Fitzpatrick (rated)", self.dx_fitz), 2, 0)
        grid.addWidget(self._box("Diagnosis × Monk (rated)", self.dx_monk), 2, 1)
        self._axes: dict[str, tuple[list[str | None], list[int | None]]] = {}
        self.dx_fitz.cellClicked.connect(lambda r, c: self._cell_clicked("fitzpatrick", r, c))
        self.dx_monk.cellClicked.connect(lambda r, c: self._cell_clicked("monk", r, c))
        self.devices = BarChart()
        self.modality = BarChart()
        self.quality = BarChart()
        self.datasets = BarChart()
        grid.addWidget(self._box("Devices", self.devices), 3, 0)
        grid.addWidget(self._box("Modality", self.modality), 3, 1)
        grid.addWidget(self._quality_box(), 4, 0)
        grid.addWidget(self._box("Datasets", self.datasets), 4, 1)
        grid.addWidget(self._domain_box(), 5, 0, 1, 2)
        grid.setRowStretch(6, 1)
        self.setWidget(body)
        self.devices.clicked.connect(lambda label: self.filter_requested.emit({"device": label}))
        self._modality_filters: dict[str, dict[str, object]] = {}
        self.modality.clicked.connect(
            lambda label: self.filter_requested.emit(self._modality_filters.get(label, {}))
        )
        self.datasets.clicked.connect(lambda label: self.filter_requested.emit({"dataset": label}))
        self.quality.clicked.connect(
            lambda verdict: self.filter_requested.emit({"quality": verdict})
        )
        self.failures.clicked.connect(
            lambda title: self.filter_requested.emit({"failing": [self._check_of.get(title)]})
        )
        self.gap_list.itemClicked.connect(self._gap_clicked)

    def _quality_box(self) -> QGroupBox:
        """The worst verdict per image, and below it how many images each check flags
        (warn or fail): what the gallery's dots are about, worst offender first."""
        self.failures = BarChart()
        self.failures.setToolTip(
            "Images each quality check does not pass (warn or fail); red: some fail. "
            "Click a bar to see those images in the gallery (Failing: that check)."
        )
        self._check_of: dict[str, str] = {}
        box = QGroupBox("Quality verdicts (worst check per image)")
        layout = QVBoxLayout(box)
        layout.addWidget(self.quality)
        layout.addWidget(QLabel("Images not passing each check"))
        layout.addWidget(self.failures)
        layout.addStretch(1)
        return box

    def _show_failures(self, counts: dict[str, dict[str, int]], total: int) -> None:
        rows = []
        self._check_of = {}
        for name, by in counts.items():
            flagged = by.get("warn", 0) + by.get("fail", 0)
            if flagged:
                title = CHECK_TITLES.get(name, name)
                self._check_of[title] = name
                colour = VERDICT_COLOURS["fail" if by.get("fail", 0) else "warn"]
                rows.append((title, flagged, colour))
        self.failures.set_rows(sorted(rows, key=lambda r: -r[1]), total)

    def _domain_box(self) -> QGroupBox:
        self.dx_domain = HeatTable()
        self.dx_domain.setToolTip(
            "Rows: visual meta-domain (estimated: the modality refined by how the photo was "
            "taken, clustered from the quality checker's measurements); columns: diagnosis. "
            "Click a cell to see its images in the gallery."
        )
        self.dx_domain.cellClicked.connect(self._domain_clicked)
        self._domain_axes: tuple[list[str | None], list[str | None]] = ([], [])
        self.assign_domains = QPushButton("Assign meta-domains")
        self.assign_domains.setToolTip(
            "Cluster every checked image into visual meta-domains, as a background job "
            "(the same as `dermdesk domains assign`)"
        )
        self.assign_domains.clicked.connect(self.assign_domains_requested)
        self.domain_note = QLabel()
        self.domain_note.setWordWrap(True)
        box = QGroupBox("Meta-domain (estimated) × diagnosis")
        layout = QVBoxLayout(box)
        top = QHBoxLayout()
        top.addWidget(self.domain_note, 1)
        top.addWidget(self.assign_domains)
        layout.addLayout(top)
        layout.addWidget(self.dx_domain)
        return box

    def _domain_clicked(self, row: int, column: int) -> None:
        domains, codes = self._domain_axes
        if row >= len(domains) or column >= len(codes):
            return
        state: dict[str, object] = {"meta_domain": [domains[row] or "unassigned"]}
        if codes[column] is None:
            state["labelled"] = False
        else:
            state["diagnosis"] = [codes[column]]
        self.filter_requested.emit(state)

    def _show_domains(self, stats: DashboardStats) -> None:
        domains = sorted({d for d, _ in stats.dx_domain}, key=lambda d: (d is None, d or ""))
        present = {c for _, c in stats.dx_domain}
        codes: list[str | None] = [c for c in taxonomy.diagnoses() if c in present]
        if None in present:
            codes.append(None)
        self._domain_axes = (list(domains), codes)
        assigned = sum(n for (d, _), n in stats.dx_domain.items() if d is not None)
        self.domain_note.setText(
            f"{assigned:,} of {stats.total:,} images have an estimated meta-domain"
            if assigned
            else "No meta-domains yet: assign them to see the library by acquisition look."
        )
        self.dx_domain.set_matrix(
            [d or "unassigned" for d in domains],
            [c or "unlabelled" for c in codes],
            [[stats.dx_domain.get((d, c), 0) for c in codes] for d in domains],
            gap_rows=0,
            gap_columns=0,
        )
        for i, d in enumerate(domains):
            header = self.dx_domain.verticalHeaderItem(i)
            if header is not None and d in stats.domain_looks:
                header.setToolTip(f"{d}: {stats.domain_looks[d]}")

    def _cell_clicked(self, scale: str, row: int, column: int) -> None:
        """Diagnosis x rated skin type: the cell's images (a '?' column: the diagnosis only,
        since 'not rated' is not a filter; the unlabelled row: unlabelled images)."""
        codes, values = self._axes.get(scale, ([], []))
        if row >= len(codes) or column >= len(values):
            return
        code, value = codes[row], values[column]
        state: dict[str, object] = {"tone": "rated"}
        if code is None:
            state["labelled"] = False
        else:
            state["diagnosis"] = [code]
        if value is not None:
            state[scale] = [value]
        self.filter_requested.emit(state)

    def _tiles(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.total = StatTile("real images")
        self.labelled = StatTile("labelled")
        self.toned = StatTile("with a rated skin type")
        self.checked = StatTile("quality-checked")
        self.synthetic = StatTile("synthetic images (kept apart)")
        for tile in (self.total, self.labelled, self.toned, self.checked, self.synthetic):
            row.addWidget(tile)
        return row

    @staticmethod
    def _box(title: str, widget: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        layout = QVBoxLayout(box)
        layout.addWidget(widget)
        layout.addStretch(1)  # short charts sit at the top of their box
        return box

    # -- data ------------------------------------------------------------------------------

    def mark_stale(self) -> None:
        """The library changed; recount when next shown."""
        self._stale = True
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        if self._stale:
            self.refresh()

    def refresh(self) -> None:
        self._stale = False

        def work(lib: Library) -> tuple[DashboardStats, list[Gap], dict[str, dict[str, int]]]:
            stats = dashboard_stats(lib)
            real = ImageFilter(synthetic=False)  # the dashboard counts real images
            failures = quality_store.flatten(quality_store.verdict_counts(lib, real))
            return stats, coverage_gaps(stats), failures

        self.reader.run(work, lambda result: self.show_stats(*result))

    def show_stats(
        self,
        stats: DashboardStats,
        gaps: list[Gap],
        failures: dict[str, dict[str, int]] | None = None,
    ) -> None:
        self.stats, self.gaps = stats, gaps
        total = stats.total or 1
        self.total.set(f"{stats.total:,}")
        self.labelled.set(f"{stats.labelled_fraction:.0%}", f"labelled ({stats.labelled:,})")
        rated, estimated = stats.fitzpatrick_rated, stats.fitzpatrick_estimated_only
        self.toned.set(
            f"{rated / total:.0%}",
            f"Fitzpatrick rated ({rated:,}); estimated only: {estimated:,} "
            f"({estimated / total:.0%}), not counted as rated",
        )
        checked = stats.total - stats.quality.get("unchecked", 0)
        self.checked.set(f"{checked / total:.0%}", f"quality-checked ({checked:,})")
        self.synthetic.set(f"{stats.synthetic:,}")
        self._show_gaps(gaps)
        self._show_matrices(stats)
        self.devices.set_rows(
            [(name, n, None) for name, n in stats.devices[:MAX_DEVICES]], stats.total
        )
        self._show_modality(stats)
        self._show_domains(stats)
        self.quality.set_rows(
            [
                (v, stats.quality.get(v, 0), VERDICT_COLOURS.get(v, UNCHECKED_COLOUR))
                for v in ("pass", "warn", "fail", "unchecked")
            ],
            stats.total,
        )
        self.datasets.set_rows(
            [(d, n, None) for d, n in sorted(stats.datasets.items(), key=lambda kv: -kv[1])],
            stats.total,
        )
        if failures is not None:
            self._show_failures(failures, stats.total)

    def _show_modality(self, stats: DashboardStats) -> None:
        """Recorded modalities, then the detector's sure answers and its unsure guesses as
        bars of their own (a click filters the gallery to exactly those images)."""
        rows: list[tuple[str, float, str | None]] = []
        self._modality_filters = {}
        for method, table in (
            ("recorded", stats.modality),
            ("detected", stats.modality_detected),
            ("unsure", stats.modality_unsure),
        ):
            for m, n in sorted(table.items()):
                label = taxonomy.modality_words(m, method)
                rows.append((label, n, UNCHECKED_COLOUR if method == "unsure" else None))
                self._modality_filters[label] = {"modality": [m], "modality_method": [method]}
        self.modality.set_rows(rows, stats.total)

    def _show_gaps(self, gaps: list[Gap]) -> None:
        self.gap_list.clear()
        if not gaps:
            self.gap_list.addItem(
                "No gaps: every diagnosis has at least 10 images on every skin-tone band."
            )
        for gap in gaps[:200]:
            item = QListWidgetItem(("⚠ " if gap.count == 0 else "· ") + gap.text())
            item.setData(Qt.ItemDataRole.UserRole, gap)
            item.setToolTip("Click: the gallery filtered to this diagnosis on this skin-tone band")
            self.gap_list.addItem(item)

    def _gap_clicked(self, item: QListWidgetItem) -> None:
        """A gap line: the images there are (rated on that band), to see what is missing."""
        gap = item.data(Qt.ItemDataRole.UserRole)
        if not isinstance(gap, Gap):
            return
        scale = gap.scale.lower()
        bands = dict(FITZPATRICK_BANDS if scale == "fitzpatrick" else MONK_BANDS)
        self.filter_requested.emit(
            {"diagnosis": [gap.diagnosis], scale: list(bands[gap.band]), "tone": "rated"}
        )

    def _show_matrices(self, stats: DashboardStats) -> None:
        codes = [c for c in taxonomy.diagnoses() if stats.by_diagnosis.get(c)] + [None]
        names = [c or "unlabelled" for c in codes]
        fitz_cols: list[int | None] = [1, 2, 3, 4, 5, 6, None]
        monk_cols: list[int | None] = [*range(1, 11), None]
        # Empty cells are gaps only for a diagnosis on a rated skin type, and only when the
        # library uses that scale at all (no Monk ratings anywhere is one fact, not 90 gaps).
        self._axes = {"fitzpatrick": (codes, fitz_cols), "monk": (codes, monk_cols)}
        fitz_rated = any(k[1] is not None for k in stats.dx_fitzpatrick)
        monk_rated = any(k[1] is not None for k in stats.dx_monk)
        self.dx_fitz.set_matrix(
            names,
            [taxonomy.fitzpatrick_roman(v) if v else "?" for v in fitz_cols],
            [[stats.dx_fitzpatrick.get((c, v), 0) for v in fitz_cols] for c in codes],
            gap_rows=len(codes) - 1 if fitz_rated else 0,
            gap_columns=len(fitz_cols) - 1,
        )
        self.dx_monk.set_matrix(
            names,
            [str(v) if v else "?" for v in monk_cols],
            [[stats.dx_monk.get((c, v), 0) for v in monk_cols] for c in codes],
            gap_rows=len(codes) - 1 if monk_rated else 0,
            gap_columns=len(monk_cols) - 1,
        )
        for table in (self.dx_fitz, self.dx_monk):
            table.setToolTip(
                "Rows: diagnosis; columns: rated skin type (a person's or a dataset's rating; "
                "automatic estimates are not counted here); '?' = not rated. "
                "Pink cells are empty. Click a cell to see its images in the gallery."
            )
            table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
