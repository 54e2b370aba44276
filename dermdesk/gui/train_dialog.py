"""The fine-tuning dialog: choose a starting point and a few options, start a job.

The options are validated with :class:`dermdesk.ml.config.FinetuneConfig`
(plain dataclasses, no torch), the same code the CLI uses, so the dialog can
only queue a job the worker will accept. The job itself runs in the job
runner's spawned worker; this dialog only builds its parameters.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dermdesk.library import ImageFilter
from dermdesk.ml.config import ARCH_NAMES, FinetuneConfig

ARCH_TEXT = {
    "vit_tiny": "ViT-Tiny (5.7M parameters; fast on a CPU)",
    "vit_small": "ViT-Small (22M parameters)",
    "vit_base": "ViT-Base (86M parameters; needs a GPU)",
    "resnet10t": "ResNet-10-T CNN (4.9M parameters; fastest to train on a CPU)",
}
FILE_CHOICE = "__file__"


def filter_params(flt: ImageFilter) -> dict[str, Any]:
    """The set fields of a filter, as a job's ``filter`` parameter."""
    return flt.as_params()


class TrainDialog(QDialog):
    """Fine-tune a classifier on the library's labelled images, as a background job."""

    def __init__(
        self,
        models: list[dict[str, Any]],
        current_filter: ImageFilter,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Fine-tune a model")
        self.current_filter = current_filter
        self.start = QComboBox()
        self.start.addItem("From scratch", "scratch")
        active = [m for m in models if m.get("status") == "active"]
        if active:
            self.start.addItem(f"The active model ({active[0]['name']})", "active")
        for m in models:
            self.start.addItem(f"{m['name']} ({m['id']}, {m['status']})", m["id"])
        self.start.addItem("A weights file…", FILE_CHOICE)
        self.start.currentIndexChanged.connect(self._start_changed)
        self.weights_file: str | None = None
        self.arch = QComboBox()
        for name in ARCH_NAMES:
            if name in ARCH_TEXT:
                self.arch.addItem(ARCH_TEXT[name], name)
        self.img_size = _spin(64, 512, 224, 16, " px")
        self.epochs = _spin(1, 500, 30, 1, "")
        self.batch = _spin(2, 512, 32, 2, "")
        self.compute = QComboBox()
        for value, text in (
            ("auto", "GPU when present, else all CPU cores"),
            ("cpu", "CPU"),
            ("cuda", "GPU (CUDA)"),
        ):
            self.compute.addItem(text, value)
        self.name = QLineEdit()
        self.name.setPlaceholderText("optional: a name for the new model")
        self.only_filtered = QCheckBox("Only the images matching the current filters")
        self.only_filtered.setEnabled(bool(filter_params(current_filter)))
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b3261e;")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Start training")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        self._layout()

    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("Start from", self.start)
        form.addRow("Architecture", self.arch)
        form.addRow("Image size", self.img_size)
        form.addRow("Maximum epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Compute", self.compute)
        form.addRow("Name", self.name)
        form.addRow("", self.only_filtered)
        note = QLabel(
            "Trains on the labelled images with a patient-grouped split and early stopping "
            "on balanced accuracy; the result is registered with its metrics per skin type, "
            "device and domain. Synthetic images are never used for validation."
        )
        note.setWordWrap(True)
        v = QVBoxLayout(self)
        v.addWidget(note)
        v.addLayout(form)
        v.addWidget(self.error)
        v.addWidget(self.buttons)

    def _start_changed(self) -> None:
        if self.start.currentData() == FILE_CHOICE:
            path, _ = QFileDialog.getOpenFileName(
                self, "Weights file", "", "Weights (*.pt *.pth *.bin *.ckpt *.safetensors)"
            )
            if path:
                self.weights_file = path
                self.start.setItemText(self.start.currentIndex(), f"File: {path}")
            else:
                self.start.setCurrentIndex(0)
        # a registered model or a file brings its own architecture
        self.arch.setEnabled(self.start.currentData() == "scratch")

    def params(self) -> dict[str, Any]:
        """The job's parameters; raises ValueError with a one-line reason."""
        init = self.start.currentData()
        if init == FILE_CHOICE:
            if not self.weights_file:
                raise ValueError("choose a weights file")
            init = self.weights_file
        raw: dict[str, Any] = {
            "init": init,
            "arch": self.arch.currentData(),
            "img_size": self.img_size.value(),
            "epochs": self.epochs.value(),
            "batch_size": self.batch.value(),
            "device": self.compute.currentData(),
        }
        if self.name.text().strip():
            raw["name"] = self.name.text().strip()
        if self.only_filtered.isChecked():
            raw["filter"] = filter_params(self.current_filter)
        return FinetuneConfig.from_params(raw).to_params()

    def _accept(self) -> None:
        try:
            self.job_params = self.params()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


def _spin(lo: int, hi: int, value: int, step: int, suffix: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin
