"""The capture dialog: live preview with quality indicators, then store the frame.

Frames are read and checked on a grabber thread (any
:class:`~dermdesk.imaging.camera.FrameSource`, so tests use a fake camera);
the newest one is handed to the GUI thread ("latest wins", at most one frame
signal in flight). A failing frame can only be captured with an override
reason, which is stored with the image and in the audit log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QCloseEvent, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QCompleter,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.exchange.capture import store_capture
from dermdesk.gui.link_fields import LinkFields
from dermdesk.gui.swatches import SwatchPicker, fitzpatrick_swatches, monk_swatches
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.gui.theme import VERDICT_COLOURS
from dermdesk.imaging.camera import (
    FrameSource,
    GeneratedSource,
    OpenCVCamera,
    VideoFileSource,
    list_cameras,
)
from dermdesk.imaging.findings import CheckResult, worst
from dermdesk.imaging.modality import ModalityGuess, detect_modality_rgb
from dermdesk.imaging.quality import CHECK_TITLES, live_check
from dermdesk.library.edits import CaptureInfo

SourceFactory = Callable[[], FrameSource]


@dataclass
class Frame:
    rgb: np.ndarray
    image: QImage
    findings: list[CheckResult]
    modality: ModalityGuess | None = None  # the latest detection (about once a second)


# What the camera shows, detected on the camera thread about once a second (a
# dermatoscope feed must not default to "clinical"); tests pass their own.
ModalityDetector = Callable[[np.ndarray], ModalityGuess]
DETECT_EVERY_S = 1.0


# Any per-frame checker with the shape of dermdesk.imaging.quality.live_check
# (tests pass their own to force a verdict).
LiveChecker = Callable[[np.ndarray], Sequence[CheckResult]]


def finding_dict(f: CheckResult) -> dict[str, Any]:
    """A live finding as a plain dict, as kept with the captured image."""
    return {"name": f.check, "score": f.score, "verdict": f.verdict, "reason": f.reason}


def to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class FrameGrabber(QObject):
    """Reads and checks frames on its own thread; the GUI pulls the newest."""

    ready = Signal()
    error = Signal(str)

    def __init__(
        self,
        source: FrameSource,
        checker: LiveChecker,
        fps: float = 15.0,
        detector: ModalityDetector | None = detect_modality_rgb,
    ) -> None:
        super().__init__()
        self.source = source
        self.checker = checker
        self.detector = detector
        self._guess: ModalityGuess | None = None
        self._detected_at = float("-inf")
        self.interval = 1.0 / fps
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._signalled = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="camera", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3)
        self.source.close()

    def take(self) -> Frame | None:
        with self._lock:
            self._signalled = False
            return self._latest

    def _loop(self) -> None:
        misses = 0
        while not self._stop.is_set():
            start = time.monotonic()
            rgb = self.source.read()
            if rgb is None:
                misses += 1
                if misses == 30:
                    self.error.emit(f"{self.source.name}: no frames (camera busy or unplugged?)")
                self._stop.wait(0.1)
                continue
            misses = 0
            if self.detector is not None and start - self._detected_at >= DETECT_EVERY_S:
                self._detected_at = start
                try:
                    self._guess = self.detector(rgb)
                except Exception:  # a detector failure must not stop the preview
                    self._guess = None
            frame = Frame(rgb, to_qimage(rgb), list(self.checker(rgb)), self._guess)
            with self._lock:
                self._latest = frame
                notify = not self._signalled
                self._signalled = True
            if notify:
                self.ready.emit()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))


def default_sources() -> list[tuple[str, SourceFactory]]:
    """Cameras OpenCV finds, plus a test pattern for trying the dialog without one."""
    sources: list[tuple[str, SourceFactory]] = [
        (f"{cam.name} (camera {cam.index})", lambda i=cam.index: OpenCVCamera(i))  # type: ignore[misc]
        for cam in list_cameras()
    ]
    sources.append(("Test pattern (no camera)", _test_pattern))
    return sources


def _test_pattern() -> FrameSource:
    rng = np.random.default_rng(0)

    def frame(n: int) -> np.ndarray:
        yy, xx = np.mgrid[0:480, 0:640]
        img = np.empty((480, 640, 3), np.float32)
        img[...] = (196, 150, 126)
        img += rng.normal(0, 8, img.shape)
        blob = (xx - 320 - 20 * np.sin(n / 10)) ** 2 + (yy - 240) ** 2 < 60**2
        img[blob] = (95, 60, 45)
        return np.clip(img, 0, 255).astype(np.uint8)

    return GeneratedSource(frame, name="Test pattern", demo=True)


class CaptureDialog(QDialog):
    """Live capture into the library."""

    captured = Signal(str)

    def __init__(
        self,
        writer: LibraryWorker,
        *,
        sources: Sequence[tuple[str, SourceFactory]] | None = None,
        checker: LiveChecker = live_check,
        operator: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Capture")
        self.writer = writer
        self.checker = checker
        self.operator = operator
        self.grabber: FrameGrabber | None = None
        self.frame: Frame | None = None
        self._saving = False
        self._saved_diagnosis: tuple[str | None, str | None] = (None, None)
        self._build(list(sources) if sources is not None else default_sources())
        self.resize(1000, 640)

    # -- construction ----------------------------------------------------------------------

    def _build(self, sources: list[tuple[str, SourceFactory]]) -> None:
        self.source_box = QComboBox()
        for name, factory in sources:
            self.source_box.addItem(name, factory)
        self.source_box.activated.connect(lambda _: self.start_source())
        video = QPushButton("Video file…")
        video.clicked.connect(self._open_video)
        self.preview = QLabel("Starting camera…")
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(480, 360)
        self.preview.setStyleSheet("background: #111; color: #ddd;")
        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.source_box, 1)
        top.addWidget(video)
        left = QVBoxLayout()
        left.addLayout(top)
        left.addWidget(self.preview, 1)
        right = QVBoxLayout()
        right.addWidget(self._indicators())
        right.addWidget(self._details())
        right.addWidget(self._annotation())
        right.addWidget(self._capture_box())
        right.addStretch(1)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 3)
        layout.addLayout(right, 2)

    def _indicators(self) -> QGroupBox:
        box = QGroupBox("Live quality")
        self._grid = QGridLayout(box)
        self.indicators: dict[str, tuple[QLabel, QLabel]] = {}
        for name in ("sharpness", "exposure", "glare"):
            self._indicator(name)
        self._grid.setColumnStretch(2, 1)
        return box

    def _indicator(self, name: str) -> tuple[QLabel, QLabel]:
        """The row for one check (rows appear for whatever checks the checker reports)."""
        if name not in self.indicators:
            row = len(self.indicators)
            dot, text = QLabel("●"), QLabel("waiting for frames…")
            text.setWordWrap(True)
            title = QLabel(CHECK_TITLES.get(name, name.replace("_", " ").capitalize()))
            self._grid.addWidget(dot, row, 0, Qt.AlignmentFlag.AlignTop)
            self._grid.addWidget(title, row, 1, Qt.AlignmentFlag.AlignTop)
            self._grid.addWidget(text, row, 2)
            self.indicators[name] = (dot, text)
        return self.indicators[name]

    def _details(self) -> QGroupBox:
        box = QGroupBox("Patient and lesion")
        form = QFormLayout(box)
        fields = LinkFields()
        self.patient, self.lesion, self.site = fields.patient, fields.lesion, fields.site
        self.modality = QComboBox()
        for m in taxonomy.MODALITIES:
            self.modality.addItem(m, m)
        self.modality.setToolTip(
            "Pre-selected from what the camera shows until you choose; saved as detected "
            "(or unsure) unless you choose"
        )
        self.modality_chosen = False  # staff picked it: never overwritten by a detection
        self._setting_modality = False
        self.modality.currentIndexChanged.connect(self._modality_changed)
        self.modality_hint = QLabel("detecting…")
        self.modality_hint.setWordWrap(True)
        fields.add_rows(form)
        form.addRow("Modality", self.modality)
        form.addRow("", self.modality_hint)
        return box

    def _annotation(self) -> QGroupBox:
        """Skin type (a rating by the operator) and a provisional diagnosis, both optional;
        a swatch clicked again is taken back."""
        box = QGroupBox("Skin type and provisional diagnosis")
        form = QFormLayout(box)
        self.tones: dict[str, int | None] = {"fitzpatrick": None, "monk": None}
        self.fitzpatrick = SwatchPicker(fitzpatrick_swatches(), "Fitzpatrick")
        self.monk = SwatchPicker(monk_swatches(), "Monk")
        for scale, picker in (("fitzpatrick", self.fitzpatrick), ("monk", self.monk)):
            picker.chosen.connect(lambda v, s=scale: self.set_tone(s, v))
        self.diagnosis = QComboBox()
        self.diagnosis.setEditable(True)
        self.diagnosis.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.diagnosis.addItem("", None)
        for choice in taxonomy.label_choices():
            self.diagnosis.addItem(choice.title, choice)
        completer = QCompleter(self.diagnosis.model(), self.diagnosis)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        self.diagnosis.setCompleter(completer)
        edit = self.diagnosis.lineEdit()
        assert edit is not None  # editable
        edit.setPlaceholderText("none (label later); type to search")
        self.diagnosis.setAccessibleName("Provisional diagnosis")
        self.diagnosis.setToolTip(
            f"Saved as a label by {self.operator or 'you'} (certainty: single expert); "
            "a reviewer's label replaces it and the history keeps it"
        )
        form.addRow("Fitzpatrick", self.fitzpatrick)
        form.addRow("Monk", self.monk)
        form.addRow("Diagnosis", self.diagnosis)
        return box

    def set_tone(self, scale: str, value: int) -> None:
        """Rate the skin type on ``scale`` (the same value again clears it)."""
        self.tones[scale] = None if self.tones[scale] == value else value
        picker = self.fitzpatrick if scale == "fitzpatrick" else self.monk
        picker.set_values(self.tones[scale], None)

    def provisional(self) -> tuple[str | None, str | None]:
        """The diagnosis chosen or typed (code, free text), (None, None) when empty;
        ValueError for text the vocabulary does not read."""
        text = self.diagnosis.currentText().strip()
        choice = self.diagnosis.currentData()
        if not text:
            return None, None
        if choice is not None and text == choice.title:
            return choice.code, choice.free_text
        match = taxonomy.normalize_label(text)
        if not match.known:
            raise ValueError(
                f"“{text}” is not in the vocabulary: choose a diagnosis from the list, or "
                "leave it empty"
            )
        return match.code, match.free_text

    def _modality_changed(self, _index: int) -> None:
        if not self._setting_modality:
            self.modality_chosen = True
            self.modality_hint.setText("chosen by you")

    def _show_guess(self, guess: ModalityGuess | None) -> None:
        """Pre-select the detected modality (until staff choose one) and say how sure."""
        if guess is None or self.modality_chosen:
            return
        self._setting_modality = True
        try:
            self.modality.setCurrentIndex(max(0, self.modality.findData(guess.modality)))
        finally:
            self._setting_modality = False
        if guess.sure:
            self.modality_hint.setText(f"detected ({guess.confidence:.1%} sure)")
        else:
            self.modality_hint.setText(
                f"unsure: looks {guess.modality} ({guess.confidence:.0%}); please choose"
            )

    def modality_method(self) -> str:
        """How the saved modality was decided: by staff, or the detection on screen."""
        guess = self.frame.modality if self.frame is not None else None
        if self.modality_chosen:
            return "recorded"
        return "detected" if guess is not None and guess.sure else "unsure"

    def _capture_box(self) -> QGroupBox:
        box = QGroupBox("Capture")
        v = QVBoxLayout(box)
        self.override = QCheckBox("Keep a failing frame anyway")
        self.reason = QLineEdit()
        self.reason.setPlaceholderText("reason (required to override a failed check)")
        self.override.toggled.connect(self._update_button)
        self.reason.textChanged.connect(self._update_button)
        self.capture_button = QPushButton("Capture")
        self.capture_button.setDefault(True)
        self.capture_button.clicked.connect(self.capture)
        self.status = QLabel()
        self.status.setWordWrap(True)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.capture_button, 1)
        buttons.addWidget(close)
        v.addWidget(self.override)
        v.addWidget(self.reason)
        v.addLayout(buttons)
        v.addWidget(self.status)
        return box

    # -- the source ------------------------------------------------------------------------

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self.grabber is None:
            self.start_source()

    def start_source(self) -> None:
        self.stop_source()
        factory: SourceFactory | None = self.source_box.currentData()
        if factory is None:
            return
        try:
            source = factory()
        except OSError as exc:
            self.preview.setText(str(exc))
            return
        self.grabber = FrameGrabber(source, self.checker)
        self.grabber.ready.connect(self._new_frame)
        self.grabber.error.connect(self.preview.setText)
        self.grabber.start()

    def stop_source(self) -> None:
        if self.grabber is not None:
            self.grabber.stop()
            self.grabber = None

    def _open_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Video file as camera", "", "Videos (*.mp4 *.avi *.mov *.mkv)"
        )
        if path:
            self.source_box.addItem(f"Video {path}", lambda p=path: VideoFileSource(p))
            self.source_box.setCurrentIndex(self.source_box.count() - 1)
            self.start_source()

    def _new_frame(self) -> None:
        frame = self.grabber.take() if self.grabber else None
        if frame is None:
            return
        self.frame = frame
        pixmap = QPixmap.fromImage(frame.image).scaled(
            self.preview.size(),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.FastTransformation,
        )
        self.preview.setPixmap(pixmap)
        for f in map(finding_dict, frame.findings):
            dot, text = self._indicator(f["name"])
            dot.setStyleSheet(f"color: {VERDICT_COLOURS[f['verdict']]}; font-size: 16px;")
            text.setText(f["reason"])
        self._show_guess(frame.modality)
        self._update_button()

    # -- capturing -------------------------------------------------------------------------

    def verdict(self) -> str:
        return worst([f.verdict for f in self.frame.findings]) if self.frame else "fail"

    def is_demo(self) -> bool:
        """The source makes up its frames (the test pattern): nothing can be saved."""
        return bool(self.grabber is not None and getattr(self.grabber.source, "demo", False))

    def _update_button(self) -> None:
        if self.is_demo():
            self.capture_button.setEnabled(False)
            self.capture_button.setText("Demo only: not saved")
            self.status.setText(
                "The test pattern is for trying the live checks; it is never saved as a "
                "patient image. Choose a camera or a video file to capture."
            )
            return
        if self.status.text().startswith("The test pattern"):
            self.status.clear()
        blocked = self.verdict() == "fail" and not (
            self.override.isChecked() and self.reason.text().strip()
        )
        self.capture_button.setEnabled(self.frame is not None and not blocked and not self._saving)
        if self.frame is not None and blocked and not self._saving:
            failed = ", ".join(
                finding_dict(f)["name"] for f in self.frame.findings if f.verdict == "fail"
            )
            self.capture_button.setText("Capture blocked")
            self.status.setText(
                f"Capture blocked: {failed} failed. Fix it, or tick “Keep a failing frame "
                "anyway” and give a reason."
            )
        else:
            self.capture_button.setText("Capture")
            if self.status.text().startswith("Capture blocked"):
                self.status.clear()

    def capture(self) -> None:
        """Store the frame on screen with its checks, device, patient, lesion and site."""
        frame = self.frame
        if frame is None or not self.capture_button.isEnabled() or self.is_demo():
            return
        try:
            diagnosis, diagnosis_text = self.provisional()
        except ValueError as exc:
            self.status.setText(f"Not saved: {exc}")
            return
        source = self.grabber.source if self.grabber else None
        info = CaptureInfo(
            demo=bool(getattr(source, "demo", False)),
            modality=self.modality.currentData(),
            modality_method=self.modality_method(),
            patient=self.patient.text().strip() or None,
            lesion=self.lesion.text().strip() or None,
            body_site=self.site.currentData(),
            device=source.device() if source else {},
            checks=[finding_dict(f) for f in frame.findings],
            override_reason=self.reason.text().strip() if self.override.isChecked() else None,
            operator=self.operator or None,
            fitzpatrick=self.tones["fitzpatrick"],
            monk=self.tones["monk"],
        )
        info.diagnosis, info.diagnosis_text = diagnosis, diagnosis_text
        self._saving = True
        self._saved_diagnosis = diagnosis, diagnosis_text
        self._update_button()
        self.status.setText("Saving…")
        self.writer.run(
            lambda lib: store_capture(lib, frame.rgb, info), self._saved, self._save_failed
        )

    def _saved(self, image_id: str) -> None:
        self._saving = False
        code, text = self._saved_diagnosis
        noted = [f"Fitzpatrick {taxonomy.fitzpatrick_roman(self.tones['fitzpatrick'])}"]
        noted = noted if self.tones["fitzpatrick"] else []
        if self.tones["monk"]:
            noted.append(f"Monk {self.tones['monk']}")
        if code:
            noted.append(f"provisional {text or code}")
        extra = f" ({', '.join(noted)})" if noted else ""
        self.status.setText(f"Saved image {image_id[:12]}{extra}.")
        self.override.setChecked(False)
        self.reason.clear()
        self._update_button()
        self.captured.emit(image_id)

    def _save_failed(self, exc: Exception) -> None:
        self._saving = False
        self.status.setText(f"Not saved: {exc}")
        self._update_button()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.stop_source()
        super().closeEvent(event)

    def done(self, result: int) -> None:
        self.stop_source()
        super().done(result)
