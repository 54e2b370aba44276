"""The diagnosis search: a small popup over the whole vocabulary, recent diagnoses first.

Opened with ``/`` or Ctrl+K (and from the annotation panel). Typing filters the
codes, their synonyms and the known other conditions
(:func:`dermdesk.taxonomy.search_labels`); text the list does not hold but the
vocabulary reads (a subtype such as "lentigo maligna") is offered as its code with
the wording kept as free text. Enter emits :attr:`DiagnosisSearch.chosen`; text the
vocabulary does not know emits :attr:`DiagnosisSearch.refused` and writes nothing.
The popup never writes: the main window labels through the same path as the keys.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dermdesk import taxonomy
from dermdesk.taxonomy import LabelChoice

NAVIGATION = (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown)


class DiagnosisSearch(QDialog):
    """Type to find a diagnosis; Enter picks the highlighted one."""

    chosen = Signal(str, object)  # code, free text (or None)
    refused = Signal(str)  # why nothing was chosen

    def __init__(
        self,
        recent: list[str],
        keys: dict[str, str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Popup)
        self.setObjectName("diagnosis_search")
        self.recent = list(recent)
        self.keys = {key: digit for digit, key in (keys or {}).items()}  # choice -> digit
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("Type a diagnosis, code or synonym (Esc closes)")
        self.edit.setAccessibleName("Search diagnoses")
        self.edit.textChanged.connect(self._fill)
        self.edit.returnPressed.connect(self.pick)
        self.edit.installEventFilter(self)
        self.list = QListWidget()
        self.list.itemActivated.connect(lambda _: self.pick())
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setEnabled(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.edit)
        layout.addWidget(self.list, 1)
        layout.addWidget(self.note)
        self.resize(460, 380)
        self._fill("")

    def _fill(self, text: str) -> None:
        self.list.clear()
        matches = taxonomy.search_labels(text, self.recent)
        extra = self._vocabulary_reading(text, matches)
        for choice in ([extra] if extra else []) + matches:
            self._add(choice)
        if self.list.count():
            self.list.setCurrentRow(0)
        recent = sum(1 for c in matches if c.key in self.recent)
        if not text.strip():
            self.note.setText(f"{recent} recent first · {len(matches)} in the vocabulary")
        elif self.list.count():
            self.note.setText(f"{self.list.count()} matching · Enter labels the selection")
        else:
            self.note.setText("Not in the vocabulary: Enter writes nothing")

    def _vocabulary_reading(self, text: str, matches: list[LabelChoice]) -> LabelChoice | None:
        """What the vocabulary makes of text no entry matches ("melanoma in situ")."""
        if not text.strip() or any(m.free_text is None and m.code != "OTHER" for m in matches):
            return None
        match = taxonomy.normalize_label(text)
        name = taxonomy.diagnoses()[match.code].name
        kept = f" (“{match.free_text}” kept as free text)" if match.free_text else ""
        reading = LabelChoice(match.code, match.free_text, f"{match.code} — {name}{kept}", ())
        if not match.known or any(m.key == reading.key for m in matches):
            return None
        return reading

    def _add(self, choice: LabelChoice) -> None:
        marks = []
        if choice.key in self.recent:
            marks.append("recent")
        if choice.key in self.keys:
            marks.append(f"key {self.keys[choice.key]}")
        suffix = f"   [{', '.join(marks)}]" if marks else ""
        item = QListWidgetItem(choice.title + suffix)
        item.setData(Qt.ItemDataRole.UserRole, choice)
        self.list.addItem(item)

    def current_choice(self) -> LabelChoice | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def pick(self) -> None:
        """Emit the highlighted choice (or say why there is none) and close."""
        choice = self.current_choice()
        text = self.edit.text().strip()
        self.close()
        if choice is not None:
            self.chosen.emit(choice.code, choice.free_text)
        elif text:
            self.refused.emit(f"“{text}” is not in the vocabulary: nothing written")

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        # arrows typed in the search field move through the list
        if obj is self.edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() in NAVIGATION:
                self.list.event(event)
                return True
        return False

    def popup(self, over: QWidget) -> None:
        """Show near the top of ``over``, centred, with the search field focused."""
        top = over.mapToGlobal(over.rect().topLeft())
        self.move(top.x() + (over.width() - self.width()) // 2, top.y() + 80)
        self.show()
        self.edit.setFocus(Qt.FocusReason.PopupFocusReason)
