"""The training dialog: fine-tune, MAE-pretrain or distil, with a few options, as a job.

The options are validated with :mod:`dermdesk.ml.config`'s dataclasses (plain, no torch),
the same code the CLI uses (``dermdesk train finetune|pretrain|distill``), so the dialog
can only queue a job the worker will accept. The job itself runs in the job runner's
spawned worker; this dialog only builds its kind and parameters.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from dermdesk.library import ImageFilter
from dermdesk.ml.config import (
    ARCH_NAMES,
    VIT_ARCHS,
    DistillConfig,
    FinetuneConfig,
    PretrainConfig,
)

ARCH_TEXT = {
    "vit_tiny": "ViT-Tiny (5.7M parameters; fast on a CPU)",
    "vit_small": "ViT-Small (22M parameters)",
    "vit_base": "ViT-Base (86M parameters; needs a GPU)",
    "resnet10t": "ResNet-10-T CNN (4.9M parameters; fastest to train on a CPU)",
    "resnet18": "ResNet-18 CNN (11M parameters)",
    "vit_tiny_8": "ViT-Ti/8 at 112 px (the MAE recipe's student)",
    "vit_small_8": "ViT-S/8 at 112 px (the MAE recipe's teacher)",
    "vit_mini_8": "ViT-Mini/8 (0.7M parameters; a CPU-sized student)",
}
KINDS = {
    "finetune": "Fine-tune a classifier on the labelled images",
    "pretrain": "MAE pretraining: a ViT backbone from the images alone (no labels)",
    "distill": "Distil a classifier (the teacher) into a small student",
}
CONFIGS: dict[str, Any] = {
    "finetune": FinetuneConfig,
    "pretrain": PretrainConfig,
    "distill": DistillConfig,
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
        self.setWindowTitle("Train a model")
        self.current_filter = current_filter
        self.models = {m["id"]: m for m in models}
        self.kind = QComboBox()
        for value, text in KINDS.items():
            self.kind.addItem(text, value)
        self.teacher = QComboBox()
        for m in models:
            if m.get("kind", "classifier") == "classifier":
                self.teacher.addItem(f"{m['name']} ({m['id']}, {m['architecture']})", m["id"])
        self.mask_ratio = QDoubleSpinBox()
        self.mask_ratio.setRange(0.5, 0.95)
        self.mask_ratio.setSingleStep(0.05)
        self.mask_ratio.setValue(0.75)
        self.start = QComboBox()
        self.start.addItem("From scratch", "scratch")
        active = [m for m in models if m.get("status") == "active"]
        if active:
            self.start.addItem(f"The active model ({active[0]['name']})", "active")
        for m in models:
            kind = m.get("kind", "classifier")
            self.start.addItem(f"{m['name']} ({m['id']}, {kind}, {m['status']})", m["id"])
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
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed()

    def _layout(self) -> None:
        form = self.form = QFormLayout()
        form.addRow("Job", self.kind)
        form.addRow("Teacher", self.teacher)
        form.addRow("Start from", self.start)
        form.addRow("Architecture", self.arch)
        form.addRow("Image size", self.img_size)
        form.addRow("Maximum epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Masked share", self.mask_ratio)
        form.addRow("Compute", self.compute)
        form.addRow("Name", self.name)
        form.addRow("", self.only_filtered)
        self.note = QLabel()
        self.note.setWordWrap(True)
        v = QVBoxLayout(self)
        v.addWidget(self.note)
        v.addLayout(form)
        v.addWidget(self.error)
        v.addWidget(self.buttons)

    def job_kind(self) -> str:
        return str(self.kind.currentData())

    def _kind_changed(self) -> None:
        kind = self.job_kind()
        self.form.setRowVisible(self.teacher, kind == "distill")
        self.form.setRowVisible(self.start, kind != "pretrain")
        self.form.setRowVisible(self.mask_ratio, kind == "pretrain")
        self.note.setText(NOTES[kind])
        self.epochs.setValue(100 if kind == "pretrain" else 30)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText(
            {"pretrain": "Start pretraining", "distill": "Start distillation"}.get(
                kind, "Start training"
            )
        )
        self._start_changed()

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
        start = self.start.currentData()
        parent = self.models.get(start)
        if parent is not None and self.job_kind() != "pretrain":
            self._select_arch(parent["architecture"])
        self.arch.setEnabled(start == "scratch" or self.job_kind() == "pretrain")

    def _select_arch(self, arch: str) -> None:
        index = self.arch.findData(arch)
        if index < 0:
            self.arch.addItem(arch, arch)
            index = self.arch.count() - 1
        self.arch.setCurrentIndex(index)

    def params(self) -> dict[str, Any]:
        """The job's parameters; raises ValueError with a one-line reason."""
        kind = self.job_kind()
        raw: dict[str, Any] = {
            "arch": self.arch.currentData(),
            "img_size": self.img_size.value(),
            "epochs": self.epochs.value(),
            "batch_size": self.batch.value(),
            "device": self.compute.currentData(),
        }
        if kind == "pretrain":
            if raw["arch"] not in VIT_ARCHS:
                raise ValueError("MAE pretrains a ViT: choose a ViT architecture")
            raw["mask_ratio"] = round(self.mask_ratio.value(), 3)
            raw["micro_batch"] = min(64, raw["batch_size"])
        else:
            init = self.start.currentData()
            if init == FILE_CHOICE:
                if not self.weights_file:
                    raise ValueError("choose a weights file")
                init = self.weights_file
            raw["init"] = init
        if kind == "distill":
            if self.teacher.currentData() is None:
                raise ValueError("no classifier to learn from: train one first")
            raw["teacher"] = self.teacher.currentData()
        if self.name.text().strip():
            raw["name"] = self.name.text().strip()
        if self.only_filtered.isChecked():
            raw["filter"] = filter_params(self.current_filter)
        params: dict[str, Any] = CONFIGS[kind].from_params(raw).to_params()
        return params

    def _accept(self) -> None:
        try:
            self.job_params = self.params()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


NOTES = {
    "finetune": "Trains on the labelled images with a patient-grouped split and early stopping "
    "on balanced accuracy; the result is registered with its metrics per skin type, device "
    "and domain. Synthetic images are never used for validation.",
    "pretrain": "Masked-autoencoder pretraining on every image the filters pick (labels are "
    "not used). The jobs panel shows a reconstruction preview at each evaluation and a "
    "linear-probe score; the encoder is registered as a backbone to fine-tune from.",
    "distill": "The student learns the teacher's classes on the teacher's own split, from "
    "the labels and the teacher's softened outputs; it is exported to ONNX and can be "
    "promoted like any classifier.",
}


def _spin(lo: int, hi: int, value: int, step: int, suffix: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(lo, hi)
    spin.setSingleStep(step)
    spin.setValue(value)
    spin.setSuffix(suffix)
    return spin
