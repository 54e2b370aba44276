"""The patient, lesion and body-site inputs, shared by the annotation panel and capture."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QFormLayout, QLineEdit

from dermdesk import taxonomy


class LinkFields:
    """Three inputs that say whose lesion an image shows: patient, lesion, body site."""

    def __init__(self) -> None:
        self.patient = QLineEdit()
        self.patient.setPlaceholderText("pseudonymous id (P-…) or clinic id")
        self.lesion = QLineEdit()
        self.lesion.setPlaceholderText("lesion id (L-…) or a new name")
        self.site = QComboBox()
        self.site.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.site.setMinimumContentsLength(10)
        self.site.addItem("—", None)
        for code, name in taxonomy.body_sites().items():
            self.site.addItem(name, code)
        self.site.setAccessibleName("Body site")

    def add_rows(self, form: QFormLayout) -> None:
        form.addRow("Patient", self.patient)
        form.addRow("Lesion", self.lesion)
        form.addRow("Body site", self.site)
