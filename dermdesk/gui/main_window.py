"""The main window: builds the panels, docks and actions and wires them together.

Business logic lives elsewhere: queries in :mod:`dermdesk.library.browse`,
edits in :mod:`dermdesk.gui.editing`, each view in its own module. This file
only connects signals to slots and keeps the selection in step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, QUrl
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QProgressDialog,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dermdesk import __version__, taxonomy
from dermdesk.gui import actions as actions_table
from dermdesk.gui.about import AboutDialog
from dermdesk.gui.annotation_panel import AnnotationPanel
from dermdesk.gui.capture_dialog import CaptureDialog, LiveChecker, SourceFactory
from dermdesk.gui.chords import ChordKeys, chords_from
from dermdesk.gui.dashboard import DashboardPanel
from dermdesk.gui.diagnosis_search import DiagnosisSearch
from dermdesk.gui.duplicates_dialog import DuplicatesDialog
from dermdesk.gui.editing import Editor
from dermdesk.gui.experiments_panel import ExperimentsPanel
from dermdesk.gui.export_dialog import ExportDialog
from dermdesk.gui.filter_bar import FilterBar
from dermdesk.gui.gallery_model import GalleryModel, Query
from dermdesk.gui.gallery_view import GalleryView
from dermdesk.gui.image_info import check_title
from dermdesk.gui.import_dialog import ImportDialog, dropped_paths
from dermdesk.gui.jobs_dock import (
    JobsBackend,
    JobsDock,
    JobView,
    LibraryJobsBackend,
    RunnerThreadBackend,
)
from dermdesk.gui.label_review_panel import LabelReviewDialog
from dermdesk.gui.library_actions import BackupTask, is_library, open_library_folder
from dermdesk.gui.models_panel import ModelsPanel
from dermdesk.gui.promotion_dialog import PromotionDialog
from dermdesk.gui.settings import Settings
from dermdesk.gui.settings_dialog import SettingsDialog
from dermdesk.gui.shortcuts_sheet import ShortcutsSheet
from dermdesk.gui.tasks import Background, LibraryWorker
from dermdesk.gui.theme import apply_theme
from dermdesk.gui.thumbnails import ThumbnailLoader
from dermdesk.gui.train_dialog import TrainDialog, filter_params
from dermdesk.gui.viewer import ViewerPanel
from dermdesk.imaging.quality import live_check
from dermdesk.library import ImageFilter, Library, LibraryError, job_store
from dermdesk.library.backup import BackupResult, check_target
from dermdesk.library.browse import Tile, distinct_devices, model_rows, patient_words
from dermdesk.library.domain_store import domain_names
from dermdesk.library.quality_store import stale_ids, worst_findings

# What a read-only library turns off: actions that write to it.
WRITING_ACTIONS = {
    "import",
    "capture",
    "recheck",
    "train",
    "predict",
    "evaluate",
    "undo",
    "redo",
    "clear_label",
    "pick_diagnosis",
    "tone_clear",
}
OPEN_WINDOWS: set[MainWindow] = set()  # windows opened by switching library, kept alive
WRITING_PREFIXES = ("label_", "key_", "certainty_", "fitzpatrick_", "monk_")


class MainWindow(QMainWindow):
    """The workstation window on one library."""

    next_window: MainWindow | None = None  # the window a library switch opened

    def __init__(
        self,
        lib: Library,
        settings: Settings | None = None,
        *,
        jobs_backend: JobsBackend | None = None,
        live_checker: LiveChecker = live_check,
        capture_sources: Sequence[tuple[str, SourceFactory]] | None = None,
    ) -> None:
        super().__init__()
        self.lib = lib
        self.settings = settings or Settings()
        self.settings.add_recent_library(lib.root)
        self.owns_library = False  # a window opened by switching closes its library
        self.live_checker = live_checker
        self.capture_sources = capture_sources
        title = f"dermdesk {__version__} — {lib.root}"
        self.setWindowTitle(title + (" — read-only (editing is off)" if lib.readonly else ""))
        self.setAcceptDrops(True)
        self._make_workers()
        self._make_views(jobs_backend)
        self._layout()
        self.actions_ = actions_table.build_actions(self)
        # F / M / C then a second key: caught here so a hint shows which keys may follow
        self.chords = ChordKeys(
            self,
            self.actions_,
            chords_from(actions_table.ACTIONS),
            self.notify,
            lambda: len(self.target_ids()),
        )
        self._menus()
        self._wire()
        self._restore()
        if lib.readonly:
            self._make_readonly()
        else:
            self._recheck_stale()

    # -- construction ----------------------------------------------------------------------

    def _make_workers(self) -> None:
        annotator = self.settings.annotator
        ro = self.lib.readonly
        self.writer = LibraryWorker(self.lib.root, annotator, "writer", self, readonly=ro)
        self.reader = LibraryWorker(self.lib.root, annotator, "reader", self, readonly=ro)
        # ONNX work the GUI waits for (the promotion check) runs here, never on the writer,
        # so edits are not held up while models predict.
        self.analysis = LibraryWorker(self.lib.root, annotator, "analysis", self, readonly=ro)
        self.decoder = Background("decode", 2, self)
        self.thumbs = ThumbnailLoader(
            self.lib.root, self.settings.thumb_size, device_pixel_ratio=self.devicePixelRatioF()
        )
        self.editor = Editor(self.writer, self)

    def _make_views(self, jobs_backend: JobsBackend | None) -> None:
        self.gallery_model = GalleryModel(self.reader, self.thumbs)
        self.gallery_model.quality_words = self._quality_words
        self.gallery = GalleryView(self.settings.thumb_size)
        self.gallery.setModel(self.gallery_model)
        self.filters = FilterBar()
        self.viewer = ViewerPanel(self.lib, self.decoder)
        self.annotation = AnnotationPanel()
        self.dashboard = DashboardPanel(self.reader)
        self.dashboard.filter_requested.connect(self.show_filtered)
        self.dashboard.assign_domains_requested.connect(lambda: self._submit("domains", {}))
        self.models = ModelsPanel(self.lib, self._activate_model)
        self.models.evaluate_requested.connect(lambda _: self.evaluate_model())
        self.experiments = ExperimentsPanel(self.lib)
        if jobs_backend is None:
            jobs_backend = (
                LibraryJobsBackend(self.lib, self.writer)  # a read-only library: view jobs only
                if self.lib.readonly
                else RunnerThreadBackend(self.lib.root, self.settings.annotator)
            )
        self.jobs_backend = jobs_backend
        self.jobs = JobsDock(self.jobs_backend)
        self.status = QLabel()
        # review progress for the current filter: labelled of all, counted on the reader
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v of %m labelled")
        self.progress.hide()
        self._progress_pending = self._progress_again = False
        self._closing = False
        self.label_review_dialog: LabelReviewDialog | None = None
        self._sizes_before_compare: tuple[list[int], list[int]] | None = None
        self.backup_task: BackupTask | None = None
        self._selection_timer = QTimer(self, singleShot=True, interval=40)
        self._selection_timer.timeout.connect(self._selection_changed)

    def _layout(self) -> None:
        split = self.split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.gallery)
        split.addWidget(self.viewer)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 4)
        split.setSizes([520, 420])
        library = QWidget()
        v = QVBoxLayout(library)
        v.setContentsMargins(0, 0, 0, 0)
        v.setSpacing(0)
        v.addWidget(self.filters)
        v.addWidget(split, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(library, "Library")
        self.tabs.addTab(self.dashboard, "Dashboard")
        self.tabs.addTab(self.models, "Models")
        self.tabs.addTab(self.experiments, "Experiments")
        self.setCentralWidget(self.tabs)
        self.annotation_dock = QDockWidget("Annotation", self)
        self.annotation_dock.setObjectName("annotation_dock")
        self.annotation_dock.setWidget(self.annotation)
        self.annotation_dock.setMinimumWidth(330)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.annotation_dock)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.jobs)
        self.jobs.hide()
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.status)
        self.resize(1280, 800)

    def _menus(self) -> None:
        a = self.actions_
        bar = self.menuBar()
        menus: dict[str, list[str | None]] = {
            "&Library": [
                "open_library",
                "recent",
                None,
                "import",
                "capture",
                "export",
                "duplicates",
                "refresh",
                "recheck",
                "backup",
                None,
                "settings",
                None,
                "quit",
            ],
            "&Edit": ["undo", "redo", None, "select_all", "search", "clear_filters"],
            "&View": [
                "show_library",
                "show_dashboard",
                "show_models",
                "show_experiments",
                None,
                "toggle_annotation",
                "toggle_jobs",
                None,
                "dark_theme",
            ],
            "&Image": [
                "next",
                "previous",
                None,
                "zoom_fit",
                "zoom_actual",
                "zoom_in",
                "zoom_out",
                "compare",
            ],
            "&Annotate": ["pick_diagnosis", "clear_label"],
            "&Models": ["show_models", None, "train", "predict", "evaluate", "label_review"],
            "&Help": ["shortcuts", "about"],
        }
        self.menus: dict[str, QMenu] = {}
        for title, names in menus.items():
            menu = self.menus[title] = bar.addMenu(title)
            for name in names:
                if name is None:
                    menu.addSeparator()
                elif name == "recent":
                    self.recent_menu = menu.addMenu("Open &recent")
                    self.recent_menu.aboutToShow.connect(self.fill_recent_menu)
                else:
                    menu.addAction(a[name])
        numbers = self.menus["&Annotate"].addMenu("Number keys")
        sub = self.menus["&Annotate"].addMenu("Diagnosis and certainty")
        tones = self.menus["&Annotate"].addMenu("Skin type")
        for spec in actions_table.ACTIONS:
            if spec.name.startswith("key_"):
                numbers.addAction(a[spec.name])
            elif spec.name.startswith(("label_", "certainty_")):
                sub.addAction(a[spec.name])
            elif spec.section == "Skin type":
                tones.addAction(a[spec.name])
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        for name in ("import", "capture", "undo", "redo", "compare", "shortcuts"):
            toolbar.addAction(a[name])
        a["dark_theme"].setChecked(self.settings.theme == "dark")
        a["toggle_annotation"].setChecked(True)

    def _wire(self) -> None:
        a = self.actions_
        ids = self.target_ids
        handlers: dict[str, Callable[[], object]] = {
            "open_library": self.open_library,
            "backup": self.backup_library,
            "import": self.open_import,
            "capture": self.open_capture,
            "export": self.open_export,
            "duplicates": self.open_duplicates,
            "refresh": self.refresh_all,
            "recheck": self.recheck_quality,
            "settings": self.open_settings,
            "quit": self.close,
            "next": lambda: self.step(1),
            "previous": lambda: self.step(-1),
            "select_all": self.gallery.selectAll,
            "search": lambda: self.filters.text.setFocus(Qt.FocusReason.ShortcutFocusReason),
            "clear_filters": self.filters.clear,
            "show_library": lambda: self.tabs.setCurrentIndex(0),
            "show_dashboard": lambda: self.tabs.setCurrentIndex(1),
            "show_models": lambda: self.tabs.setCurrentIndex(2),
            "train": self.open_train,
            "predict": self.predict_with_active,
            "evaluate": self.evaluate_model,
            "label_review": self.review_label_issues,
            "show_experiments": lambda: self.tabs.setCurrentWidget(self.experiments),
            "zoom_fit": self.viewer.fit,
            "zoom_actual": self.viewer.actual_size,
            "zoom_in": self.viewer.zoom_in,
            "zoom_out": self.viewer.zoom_out,
            "undo": self.editor.stack.undo,
            "redo": self.editor.stack.redo,
            "clear_label": lambda: self.editor.clear_label(ids()),
            "next_unlabelled": lambda: self.next_where("unlabelled", lambda t: not t.labelled),
            "next_failing": lambda: self.next_where(
                "failing a quality check", lambda t: t.quality == "fail"
            ),
            "next_disagreeing": lambda: self.next_where(
                "where the model disagrees",
                lambda t: t.predicted is not None and t.labelled and t.predicted != t.diagnosis,
            ),
            "pick_diagnosis": self.open_diagnosis_search,
            "tone_clear": lambda: self.editor.clear_tone(ids()),
            "shortcuts": lambda: ShortcutsSheet(parent=self).exec(),
            "about": lambda: AboutDialog(self.lib, self).exec(),
        }
        for code in taxonomy.diagnoses():
            handlers[f"label_{code}"] = partial(self._label, code)
        for digit in range(1, 10):
            handlers[f"key_{digit}"] = partial(self._number_key, str(digit))
        for spec in actions_table.ACTIONS:
            if spec.name.startswith("certainty_"):
                certainty = spec.name.removeprefix("certainty_")
                handlers[spec.name] = partial(self._certainty, certainty)
        for i in range(1, 7):
            handlers[f"fitzpatrick_{i}"] = partial(self._fitzpatrick, i)
        for i in range(1, 11):
            handlers[f"monk_{i}"] = partial(self._monk, i)
        actions_table.connect(a, handlers)
        a["toggle_jobs"].toggled.connect(self.jobs.setVisible)
        self.jobs.visibilityChanged.connect(a["toggle_jobs"].setChecked)
        a["toggle_annotation"].toggled.connect(self.annotation_dock.setVisible)
        self.annotation_dock.visibilityChanged.connect(a["toggle_annotation"].setChecked)
        a["dark_theme"].toggled.connect(self.set_dark)
        a["auto_advance"].setChecked(self.settings.auto_advance)
        a["auto_advance"].toggled.connect(lambda on: setattr(self.settings, "auto_advance", on))
        a["compare"].toggled.connect(self.set_compare)
        if not self.lib.readonly:
            self.editor.stack.canUndoChanged.connect(a["undo"].setEnabled)
            self.editor.stack.canRedoChanged.connect(a["redo"].setEnabled)
        a["undo"].setEnabled(False)
        a["redo"].setEnabled(False)
        self.viewer.buttons["compare"].setDefaultAction(a["compare"])
        self._wire_library()
        self._wire_annotation()
        self._wire_jobs()

    def _label(self, code: str, free_text: str | None = None) -> None:
        """Label the selection: number keys, menus, the panel and the search all end here."""
        ids = self.target_ids()
        if not ids:
            self.notify("No image selected: nothing labelled")
            return
        self.editor.set_label(ids, code, self.settings.certainty, free_text)
        self.settings.add_recent_diagnosis(code if free_text is None else f"{code}:{free_text}")
        if self.settings.auto_advance and len(ids) == 1:
            self.step(1)

    def _number_key(self, digit: str) -> None:
        choice = taxonomy.label_choice(self.settings.diagnosis_keys()[digit])
        if choice is None:
            self.notify(f"Key {digit} gives no diagnosis: choose one in Settings")
            return
        self._label(choice.code, choice.free_text)

    def show_number_keys(self) -> None:
        """The number keys' current diagnoses in their actions and the annotation panel."""
        keys = self.settings.diagnosis_keys()
        for digit, key in keys.items():
            choice = taxonomy.label_choice(key)
            what = choice.title if choice else "nothing (choose one in Settings)"
            self.actions_[f"key_{digit}"].setText(f"Key {digit}: {what}")
        self.annotation.set_number_keys(keys)

    def open_diagnosis_search(self) -> DiagnosisSearch | None:
        """Type to find any diagnosis (``/`` or Ctrl+K); it labels through :meth:`_label`."""
        if self.lib.readonly:
            self.notify("the library is read-only (on read-only media): editing is off")
            return None
        search = DiagnosisSearch(
            self.settings.recent_diagnoses, self.settings.diagnosis_keys(), self
        )
        search.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        search.chosen.connect(self._label)
        search.refused.connect(self.notify)
        search.popup(self.tabs)
        self.diagnosis_search = search
        return search

    def next_where(self, what: str, wanted: Callable[[Tile], bool]) -> bool:
        """Go to the next loaded image after the current one that ``wanted`` accepts; when
        none is loaded yet, load more and say so (the key again continues)."""
        model = self.gallery_model
        current = self.gallery.currentIndex()
        start = current.row() + 1 if current.isValid() else 0
        for row in range(start, model.rowCount()):
            if wanted(model.tile(row)):
                self.step(row - (start - 1))
                return True
        if model.canFetchMore():
            model.fetchMore()
            self.notify(f"no image {what} among those loaded: loading more, press again")
        else:
            self.notify(f"no more images {what} after this one")
        return False

    def _certainty(self, certainty: str) -> None:
        self.editor.set_certainty(self.target_ids(), certainty)

    def _fitzpatrick(self, value: int) -> None:
        self.editor.set_fitzpatrick(self.target_ids(), value)

    def _monk(self, value: int) -> None:
        self.editor.set_monk(self.target_ids(), value)

    def _wire_library(self) -> None:
        self.filters.changed.connect(self._query_changed)
        self.gallery_model.counts_changed.connect(lambda *_: self._update_status())
        self.gallery_model.modelReset.connect(self._after_reset)
        self.gallery_model.failed.connect(self.notify)
        self.gallery.selectionModel().selectionChanged.connect(
            lambda *_: self._selection_timer.start()
        )
        self.gallery.selectionModel().currentChanged.connect(
            lambda *_: self._selection_timer.start()
        )
        self.writer.failed.connect(self.notify)
        self.reader.failed.connect(self.notify)
        self.tabs.currentChanged.connect(self._tab_changed)

    def _wire_annotation(self) -> None:
        p, e, ids = self.annotation, self.editor, self.target_ids
        p.label_chosen.connect(self._label)
        p.search_requested.connect(self.open_diagnosis_search)
        self.show_number_keys()
        p.certainty_chosen.connect(self._certainty)
        p.fitzpatrick_chosen.connect(self._fitzpatrick)
        p.monk_chosen.connect(self._monk)
        p.tone_cleared.connect(lambda: e.clear_tone(ids()))
        p.link_requested.connect(lambda pat, les, site: e.link(ids(), pat, les, site))
        p.site_chosen.connect(lambda site: e.set_body_site(ids(), site))
        p.device_edited.connect(lambda changes: e.set_device(ids(), changes))
        e.edited.connect(self._edited)
        e.failed.connect(self.notify)

    def _wire_jobs(self) -> None:
        self.jobs.open_model.connect(self.show_model)
        self.jobs.job_finished.connect(self._job_finished)
        self.jobs.refused.connect(lambda message: self.notify(f"Job refused: {message}"))
        self.jobs.show_images.connect(self._show_ids)
        self.jobs.open_path.connect(lambda path: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))

    def _restore(self) -> None:
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.filters.set_state(self.settings.filters_for(self.lib.root))  # emits: loads
        self.refresh_choices()  # queued after the first page: that is painted first

    def refresh_choices(self) -> None:
        """Completion for the filter bar (devices, meta-domains) and the annotation panel
        (patients), read on the reader: the 5,000 most recent patients took ~40 ms on the
        GUI thread of a 100,000-image library, at start-up and after every import."""

        def read(lib: Library) -> tuple[list[str], list[str], list[str]]:
            return distinct_devices(lib), domain_names(lib), patient_words(lib)

        self.reader.run(read, self._show_choices)

    def _show_choices(self, choices: tuple[list[str], list[str], list[str]]) -> None:
        if self._closing:
            return
        devices, domains, patients = choices
        self.filters.set_device_choices(devices)
        self.filters.set_domain_choices(domains)
        self.annotation.set_patient_choices(patients)

    # -- the gallery and the selection -----------------------------------------------------

    def _query_changed(self, query: Query) -> None:
        self.settings.set_filters_for(self.lib.root, self.filters.state())
        self.gallery_model.set_query(query)

    def _after_reset(self) -> None:
        if self.gallery_model.rowCount() and not self.gallery.currentIndex().isValid():
            self.gallery.setCurrentIndex(self.gallery_model.index(0))
        self._selection_changed()
        self.refresh_progress()

    def refresh_progress(self) -> None:
        """Count the labelled images of the current filter on the reader (one count at a
        time: edits in a burst ask again only once the last count is back)."""
        if self._closing:
            return
        if self._progress_pending:
            self._progress_again = True  # the filter or the labels changed meanwhile
            return
        self._progress_pending, self._progress_again = True, False
        flt = self.filters.image_filter()

        def count(lib: Library) -> tuple[int, int]:
            total = lib.count(flt)
            if flt.labelled is not None:  # the filter decides it already
                return (total if flt.labelled else 0), total
            return lib.count(replace(flt, labelled=True)), total

        self.reader.run(count, self._show_progress)

    def _show_progress(self, counts: tuple[int, int]) -> None:
        self._progress_pending = False
        if self._closing:
            return
        if self._progress_again:
            self.refresh_progress()
            return
        labelled, total = counts
        self.progress.setMaximum(max(total, 1))
        self.progress.setValue(labelled if total else 0)
        self.progress.setFormat(f"{labelled:,} of {total:,} labelled")
        self.progress.setVisible(total > 0)

    def selected_ids(self) -> list[str]:
        rows = sorted(i.row() for i in self.gallery.selectionModel().selectedIndexes())
        return self.gallery_model.ids(rows)

    def target_ids(self) -> list[str]:
        """Images an annotation applies to: the selection, else the current image."""
        ids = self.selected_ids()
        current = self.gallery.currentIndex()
        if not ids and current.isValid():
            ids = self.gallery_model.ids([current.row()])
        return ids

    def current_id(self) -> str | None:
        current = self.gallery.currentIndex()
        ids = self.gallery_model.ids([current.row()]) if current.isValid() else []
        return ids[0] if ids else None

    def _selection_changed(self) -> None:
        if self._closing:
            return  # results still arriving from the workers after the window closed
        ids = self.target_ids()
        current = self.current_id()
        second = next((i for i in ids if i != current), None) if len(ids) == 2 else None
        if current != self.viewer.image_id or second:
            self.viewer.show_image(current, second)
        self.annotation.show_selection(self.lib, ids)
        self._update_status()

    def step(self, delta: int) -> None:
        """Move to the next / previous image (loading more rows at the end)."""
        model = self.gallery_model
        if model.rowCount() == 0:
            return
        row = self.gallery.currentIndex().row() if self.gallery.currentIndex().isValid() else -1
        target = max(0, min(model.rowCount() - 1, row + delta))
        if target >= model.rowCount() - 5 and model.canFetchMore():
            model.fetchMore()
        index = model.index(target)
        self.gallery.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect
        )
        self.gallery.scrollTo(index)

    def _edited(self, ids: list[str]) -> None:
        if self._closing:
            return
        self.gallery_model.refresh_ids(ids)
        self.refresh_progress()
        if self.viewer.image_id in ids:
            self.viewer.refresh_info()
        if set(ids) & set(self.target_ids()):
            self.annotation.show_selection(self.lib, self.target_ids())
        self.dashboard.mark_stale()
        self._update_status()

    def _show_ids(self, ids: list[str]) -> None:
        self.tabs.setCurrentIndex(0)
        self.gallery_model.set_query(Query(ImageFilter(ids=ids)))

    def _quality_words(self, image_id: str) -> str:
        """What the quality dot is about: the checks with the worst verdict, by title."""
        worst = worst_findings(self.lib, image_id)
        names = [check_title(f["check_name"]) for f in worst]
        if not names:
            return ""
        first = f"{names[0]}: {worst[0]['reason']}"
        return first + (f"; also {', '.join(names[1:])}" if len(names) > 1 else "")

    def _update_status(self) -> None:
        model = self.gallery_model
        selected = len(self.selected_ids())
        pending = self.writer.pending
        parts = [f"{model.rowCount():,} of {model.total:,} shown"]
        flt = self.filters.image_filter()
        if not flt.is_empty():  # say so: a remembered filter can hide most of a library
            parts.append(f"filtered: {flt.describe()}")
        style = "" if flt.is_empty() else "font-weight: bold;"
        if self.filters.clear_button.styleSheet() != style:  # restyle only on a change
            self.filters.clear_button.setStyleSheet(style)
        if selected > 1:
            parts.append(f"{selected:,} selected")
        if pending:
            parts.append(f"saving {pending} edit{'s' * (pending != 1)}…")
        self.status.setText(" · ".join(parts))

    def notify(self, message: str) -> None:
        """One place for errors and notices: the status bar (and a tooltip for long ones)."""
        self.statusBar().showMessage(message, 8000)
        self.statusBar().setToolTip(message)

    # -- views -----------------------------------------------------------------------------

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.models:
            self.models.refresh()
        elif self.tabs.widget(index) is self.experiments:
            self.experiments.refresh()

    def set_compare(self, on: bool) -> None:
        """Side by side; the two panes take the room (the gallery narrows to one column of
        thumbnails, the info tabs to a strip) and get it back afterwards."""
        if on and self._sizes_before_compare is None:
            self._sizes_before_compare = (self.split.sizes(), self.viewer.splitter.sizes())
            total, tall = sum(self.split.sizes()), sum(self.viewer.splitter.sizes())
            column = self.settings.thumb_size + 60
            self.split.setSizes([column, max(total - column, 1)])
            self.viewer.splitter.setSizes([tall - 120, 120])
        elif not on and self._sizes_before_compare is not None:
            split, viewer = self._sizes_before_compare
            self.split.setSizes(split)
            self.viewer.splitter.setSizes(viewer)
            self._sizes_before_compare = None
        self.viewer.set_compare(on)
        self._selection_changed()

    def set_dark(self, on: bool) -> None:
        self.settings.theme = "dark" if on else "light"
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, self.settings.theme)

    def show_model(self, model_id: str) -> None:
        self.tabs.setCurrentWidget(self.models)
        self.models.refresh()
        self.models.select(model_id)

    def _activate_model(self, model_id: str) -> None:
        """Apply the promotion rule (on the writer thread), show its numbers, then promote."""
        from dermdesk.ml.promotion import check_promotion, promote  # onnxruntime: load late

        def promoted(_: object) -> None:
            self.models.refresh()
            self.gallery_model.reload()  # the disagreement badges follow the active model
            self.dashboard.mark_stale()
            self.statusBar().showMessage(f"{model_id} is now the active model", 8000)

        def checked(check: Any) -> None:
            self.statusBar().clearMessage()
            dialog = PromotionDialog(check, self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            # The predictions the check needed are stored by now: promoting re-reads them.
            dialog.accepted.connect(
                lambda: self.writer.run(
                    lambda lib: promote(lib, model_id, force=dialog.force),
                    promoted,
                    self._show_error,
                )
            )
            dialog.show()
            self.promotion_dialog = dialog

        self.statusBar().showMessage(f"Comparing {model_id} with the active model…")
        self.analysis.run(lambda lib: check_promotion(lib, model_id), checked, self._show_error)

    def _show_error(self, exc: Exception) -> None:
        self.statusBar().clearMessage()
        QMessageBox.warning(self, "dermdesk", str(exc))

    def refresh_all(self) -> None:
        if self._closing:
            return
        self.gallery_model.reload()
        self.dashboard.mark_stale()
        self.refresh_choices()

    # -- libraries: open, recent, backup --------------------------------------------------

    def open_library(self) -> None:
        """Choose another library folder (CLI: ``dermdesk --library DIR``)."""
        folder = QFileDialog.getExistingDirectory(
            self, "Open library folder", str(self.lib.root.parent)
        )
        if folder:
            self.switch_library(Path(folder))

    def fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        others = [Path(f) for f in self.settings.recent_libraries if Path(f) != self.lib.root]
        for folder in others:
            there = is_library(folder)
            action = menu.addAction(str(folder) + ("" if there else "  (not found)"))
            action.setEnabled(there)
            action.triggered.connect(lambda _=False, f=folder: self.switch_library(f))
        if not others:
            menu.addAction("No other library opened yet").setEnabled(False)
        menu.addSeparator()
        menu.addAction("Clear the list", self.settings.clear_recent_libraries)

    def switch_library(self, folder: Path) -> MainWindow | None:
        """Open ``folder`` in a new window and close this one (which may refuse: edits still
        saving, a job running); a folder with no library is made one only when asked."""
        folder = folder.expanduser().resolve()
        if folder == self.lib.root:
            self.notify(f"{folder} is the library already open")
            return None
        if not is_library(folder) and not self._confirm_new_library(folder):
            return None
        try:
            lib = open_library_folder(folder)
        except LibraryError as exc:
            self.notify(f"Cannot open {folder}: {exc}")
            return None
        window = MainWindow(
            lib, self.settings, live_checker=self.live_checker, capture_sources=self.capture_sources
        )
        window.owns_library = True
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        # a window without a parent lives as long as a Python reference to it does
        OPEN_WINDOWS.add(window)
        window.destroyed.connect(lambda: OPEN_WINDOWS.discard(window))
        window.show()
        if not self.close():
            window.close()
            return None
        self.next_window = window
        return window

    def _confirm_new_library(self, folder: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "No library there",
            f"{folder} holds no dermdesk library. Make a new, empty library there?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def backup_library(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Back up into an empty folder (make a new one here)", str(Path.home())
        )
        if folder:
            self.start_backup(Path(folder))

    def start_backup(self, dest: Path) -> BackupTask | None:
        """Copy the library into ``dest`` on a thread of its own, with progress
        (CLI: ``dermdesk backup DEST``); a bad target is refused before anything starts."""
        try:
            dest = check_target(self.lib.root, dest)
        except LibraryError as exc:
            self.notify(f"Cannot back up: {exc}")
            return None
        task = BackupTask(self.lib.root, dest)
        dialog = QProgressDialog(f"Backing up the library to\n{dest}", "Cancel", 0, 0, self)
        dialog.setWindowTitle("Backup")
        dialog.setMinimumDuration(0)
        dialog.setMinimumWidth(460)
        dialog.canceled.connect(task.cancel)
        task.progress.connect(lambda done, total: _show_progress(dialog, dest, done, total))
        task.finished.connect(lambda result: self._backed_up(dialog, result))
        task.failed.connect(lambda message: self._backup_failed(dialog, message))
        self.backup_task, self.backup_dialog = task, dialog
        dialog.show()
        task.start()
        return task

    def _backed_up(self, dialog: QProgressDialog, result: BackupResult) -> None:
        dialog.reset()
        self.notify(
            f"Backed up {result.images:,} images ({result.files:,} files, "
            f"{result.bytes / 1e6:.1f} MB) to {result.folder}"
        )

    def _backup_failed(self, dialog: QProgressDialog, message: str) -> None:
        dialog.reset()
        self.notify(f"Backup failed: {message}")

    # -- dialogs ---------------------------------------------------------------------------

    def open_import(self, paths: list[Path] | None = None, *, start: bool = False) -> ImportDialog:
        dialog = ImportDialog(
            self.lib.root,
            self.settings.annotator,
            self.settings.import_modality,
            self,
            settings=self.settings,
        )
        dialog.imported.connect(lambda report: self.refresh_all())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if paths:
            dialog.add_paths(paths)
        dialog.show()
        if start:
            dialog.start()
        self.import_dialog = dialog
        return dialog

    def open_export(self) -> ExportDialog:
        """Export the filtered images (CLI: ``dermdesk export``)."""
        dialog = ExportDialog(self.lib, self.gallery_model.query.filter, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.export_dialog = dialog
        return dialog

    def show_filtered(self, state: dict[str, object]) -> None:
        """The gallery filtered to a dashboard cell or bar (keeps sort and grouping)."""
        keep = {k: v for k, v in self.filters.state().items() if k in ("sort", "group")}
        self.filters.set_state({**keep, **state})
        self.tabs.setCurrentIndex(0)

    def open_duplicates(self) -> DuplicatesDialog:
        """Review near-duplicate pairs (CLI: ``dermdesk curate duplicates / decide / undo``)."""
        dialog = DuplicatesDialog(self.lib, self.reader, self.writer, self.decoder, self)
        dialog.decided.connect(self.refresh_all)
        dialog.embed_requested.connect(
            lambda model_id: self._submit("embed_duplicates", {"backbone": model_id})
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.duplicates_dialog = dialog
        return dialog

    def open_capture(self) -> CaptureDialog:
        dialog = CaptureDialog(
            self.writer,
            sources=self.capture_sources,
            checker=self.live_checker,
            operator=self.settings.annotator,
            parent=self,
        )
        dialog.captured.connect(lambda image_id: self.refresh_all())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.capture_dialog = dialog
        return dialog

    def open_train(self) -> TrainDialog:
        dialog = TrainDialog(model_rows(self.lib), self.gallery_model.query.filter, self)
        dialog.accepted.connect(lambda: self._submit(dialog.job_kind(), dialog.job_params))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.train_dialog = dialog
        return dialog

    def predict_with_active(self) -> None:
        if not any(m["status"] == "active" for m in self.lib.models()):
            QMessageBox.information(
                self,
                "No active model",
                "There is no active model yet: fine-tune one (Models ▸ Fine-tune a model) "
                "and make it active in the Models tab.",
            )
            return
        flt = filter_params(self.gallery_model.query.filter)
        self._submit("predict", {"model": "active", "filter": flt})

    def review_label_issues(self) -> LabelReviewDialog:
        """The label review queue: the active model's label issues (confident learning) and
        annotator disagreements, relabelled or confirmed through the undoable label path.
        One dialog, kept (decodes and reads may still be on their way to it); shown again
        with a fresh queue. CLI: ``dermdesk curate label-review``."""
        dialog = self.label_review_dialog
        if dialog is None:
            dialog = LabelReviewDialog(
                self.lib, self.reader, self.editor, self.decoder, self._certainty_now, self
            )
            dialog.message.connect(self.notify)
            dialog.show_ids.connect(self._show_ids)
            self.label_review_dialog = dialog
        else:
            dialog.reload()
        dialog.show()
        dialog.raise_()
        return dialog

    def _certainty_now(self) -> str:
        return self.settings.certainty

    def evaluate_model(self) -> None:
        """Score the model chosen in the Models tab (else the active one) on the labelled
        images matching the filters (an ``evaluate`` job; CLI: ``models evaluate``, with
        ``--include-seen`` when the Models tab's switch asks for the model's own images)."""
        model_id = self.models.selected_id()
        if model_id is None and not any(m["status"] == "active" for m in self.lib.models()):
            QMessageBox.information(
                self,
                "No model",
                "Choose a model in the Models tab (or make one active) to evaluate it on the "
                "images matching the filters.",
            )
            return
        query = self.gallery_model.query.filter
        params = {
            "model": model_id or "active",
            "filter": filter_params(query),
            "include_seen": self.models.include_seen.isChecked(),
        }
        self._submit("evaluate", {**params, "name": query.describe()})

    def recheck_quality(self) -> None:
        """Re-run the quality checker over the images matching the filters (a ``check`` job)."""
        self._submit("check", {"filter": filter_params(self.gallery_model.query.filter)})

    def _recheck_stale(self) -> None:
        """Images never checked, or checked by another checker version (after an upgrade),
        are re-checked by a background ``check`` job, unless one is already waiting."""

        def count(lib: Library) -> int:
            waiting = job_store.jobs_with_status(lib, "queued", "running")
            return 0 if any(j["kind"] == "check" for j in waiting) else len(stale_ids(lib))

        def found(n: int) -> None:
            if not n or self._closing:
                return
            try:
                self.jobs_backend.submit("check", {"stale": True})
            except NotImplementedError:
                return  # a read-only view of the jobs: `dermdesk check` does it instead
            self.notify(
                f"Checking the quality of {n:,} image{'s' * (n != 1)} not yet checked by "
                f"this version of the checker; progress in the Jobs panel (F6)"
            )

        self.reader.run(count, found)

    def _submit(self, kind: str, params: dict[str, object]) -> None:
        self.jobs_backend.submit(kind, params)
        self.jobs.show()
        self.statusBar().showMessage(f"{kind} job queued; progress in the Jobs panel", 5000)

    def _job_finished(self, job: JobView) -> None:
        """A job produced a model, predictions or findings: show what changed."""
        self.models.refresh()
        if job.kind == "experiment.run":
            self.experiments.refresh()
        if job.kind == "embed_duplicates" and getattr(self, "duplicates_dialog", None):
            with contextlib.suppress(RuntimeError):  # the dialog was closed and deleted
                self.duplicates_dialog.reload()
        if job.kind == "domains":
            self.dashboard.mark_stale()
            self.filters.set_domain_choices(domain_names(self.lib))
        if job.kind in ("predict", "check"):
            self.gallery_model.reload()  # probabilities, disagreement and quality badges
        if job.kind == "check":
            self.viewer.refresh_info()
            self.dashboard.mark_stale()
        self.statusBar().showMessage(f"job #{job.id} ({job.kind}) {job.status}", 8000)

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            app = QApplication.instance()
            if isinstance(app, QApplication):
                apply_theme(app, self.settings.theme)
            self.actions_["dark_theme"].setChecked(self.settings.theme == "dark")
            self.writer.set_actor(self.settings.annotator)
            self.analysis.set_actor(self.settings.annotator)
            self.gallery.set_thumb_size(self.settings.thumb_size)
            self.thumbs.set_size(self.settings.thumb_size, self.devicePixelRatioF())
            self.show_number_keys()

    def _make_readonly(self) -> None:
        """Browsing only: every action that would write is off, and says why."""
        why = "the library is read-only (on read-only media): editing is off"
        for name, action in self.actions_.items():
            if name in WRITING_ACTIONS or name.startswith(WRITING_PREFIXES):
                action.setEnabled(False)
                action.setToolTip(why)
        self.annotation.readonly = True
        self.annotation.setEnabled(False)
        self.annotation.setToolTip(why)
        self.models.readonly = True
        self.models.activate_button.setEnabled(False)
        self.models.activate_button.setToolTip(why)
        self.status.setText("read-only")

    # -- drag and drop, closing ------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.lib.readonly:
            return
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_import(paths, start=True)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._closing:  # closed already (a library switch, then the window's close())
            super().closeEvent(event)
            return
        if self.writer.pending and not self._confirm_close():
            event.ignore()
            return
        # A quality re-check is not worth a question: it stops, keeps what it stored, and
        # the images still stale are queued again the next time the library opens.
        running = [j for j in self.jobs.model.jobs if j.status == "running" and j.kind != "check"]
        if running and not self._confirm_stop_jobs(running[0]):
            event.ignore()
            return
        self._closing = True
        for dialog in self.findChildren(QDialog):
            if dialog.isVisible():
                dialog.close()  # a camera, an import or an export stops with its dialog
        self._selection_timer.stop()
        self.settings.set_filters_for(self.lib.root, self.filters.state())
        self.settings.save_window_state(self.saveGeometry(), self.saveState())
        self.settings.sync()
        self.jobs.timer.stop()
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self.chords)  # a closed window's keys are nobody's
        self.jobs_backend.close()  # a running job is cancelled with a checkpoint (resumable)
        self.thumbs.shutdown()
        self.decoder.shutdown(wait=False)
        self.analysis.shutdown(wait=True)
        self.reader.shutdown(wait=True)
        self.writer.shutdown(wait=True)  # edits still queued are written before we go
        if self.backup_task is not None:
            self.backup_task.cancel()  # a partial backup is removed, never left as one
            self.backup_task.wait(10)
        if self.owns_library:
            self.lib.close()
        super().closeEvent(event)

    def _confirm_stop_jobs(self, job: JobView) -> bool:
        answer = QMessageBox.question(
            self,
            "A job is running",
            f"Job #{job.id} ({job.kind}) is running. Quitting stops it with a checkpoint; "
            "resume it from the Jobs panel later. Quit now?",
        )
        return answer == QMessageBox.StandardButton.Yes

    def _confirm_close(self) -> bool:
        answer = QMessageBox.question(
            self,
            "Edits still saving",
            f"{self.writer.pending} edits are still being saved. Wait for them and quit?",
        )
        return answer == QMessageBox.StandardButton.Yes


def _show_progress(dialog: QProgressDialog, dest: Path, done: int, total: int) -> None:
    dialog.setLabelText(f"Backing up the library to\n{dest}\n{done:,} of {total:,} files copied")
    dialog.setMaximum(max(total, 1))
    dialog.setValue(done)
