"""Show the promotion rule's numbers and let the user promote (or, knowingly, force).

The comparison itself (:func:`dermdesk.ml.promotion.check_promotion`, ONNX
Runtime and numpy, no torch) runs on the library writer's thread; this
dialog only shows its result.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)


class PromotionDialog(QDialog):
    """The rule, the per-group table and the verdict; Promote only when it passed."""

    def __init__(self, check: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.check = check
        self.force = False
        self.setWindowTitle(f"Make {check.candidate_id} the active model?")
        verdict = QLabel(
            ("✔ " if check.passed else "✘ ") + check.reason[:1].upper() + check.reason[1:]
        )
        verdict.setWordWrap(True)
        verdict.setStyleSheet(
            f"font-weight: bold; color: {'#1b7f3b' if check.passed else '#b3261e'};"
        )
        table = QPlainTextEdit("\n".join(check.lines()))
        table.setReadOnly(True)
        table.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        table.setMinimumSize(720, 260)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        if check.passed:
            promote = buttons.addButton("Promote", QDialogButtonBox.ButtonRole.AcceptRole)
        else:
            promote = buttons.addButton(
                "Promote anyway", QDialogButtonBox.ButtonRole.DestructiveRole
            )
            promote.setToolTip("Recorded in the audit log as a forced promotion, with this table")
        promote.clicked.connect(self._promote)
        buttons.rejected.connect(self.reject)
        v = QVBoxLayout(self)
        v.addWidget(verdict)
        v.addWidget(table, 1)
        v.addWidget(buttons)

    def _promote(self) -> None:
        self.force = not self.check.passed
        self.accept()
