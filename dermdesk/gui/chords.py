"""Two-key shortcuts (``F`` then 1-6, ``M`` then 1-0, ``C`` then H/E/S) with a visible hint.

Qt's own multi-key sequences give no sign that a second key is awaited and never
time out, so a stray ``F`` could turn the next digit, seconds later, into a skin
type. Here the first key is caught before Qt's shortcut map sees it: a hint says
which keys may follow (for one image as for a batch), the second key triggers the
action of the table in :mod:`dermdesk.gui.actions`, and after
:data:`TIMEOUT_MS` the hint says the chord timed out and the next key is an
ordinary key again. The actions keep their ``F, 5`` shortcuts so menus show them;
they never fire from Qt's map because its first key never reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, QTimer
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

from dermdesk.gui.actions import CHORD_TITLES, ActionSpec

TIMEOUT_MS = 3000  # the second key must follow within this
GONE_MS = 2500  # how long "timed out" / "cancelled" stays on screen
KEY_EVENTS = (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress)
MODIFIER_KEYS = {
    Qt.Key.Key_Shift,
    Qt.Key.Key_Control,
    Qt.Key.Key_Alt,
    Qt.Key.Key_Meta,
    Qt.Key.Key_AltGr,
    Qt.Key.Key_CapsLock,
}


@dataclass(frozen=True)
class Chord:
    """A first key and the actions its second keys trigger."""

    first: str  # "F"
    title: str  # "Fitzpatrick"
    prompt: str  # "1-6, 0 clears"
    then: dict[int, str]  # second key (Qt.Key value) -> action name


def _key(text: str) -> int:
    # PySide6's stubs lack QKeySequence.__getitem__
    return QKeySequence(text)[0].key().value  # type: ignore[index]


def chords_from(specs: Iterable[ActionSpec]) -> dict[int, Chord]:
    """The two-key shortcuts of the action table, by first key."""
    then: dict[str, dict[int, str]] = {}
    for spec in specs:
        for shortcut in spec.shortcuts:
            first, _, second = shortcut.partition(", ")
            if second:
                then.setdefault(first, {})[_key(second)] = spec.name
    return {
        _key(first): Chord(first, *CHORD_TITLES.get(first, (first, "a second key")), keys)
        for first, keys in then.items()
    }


def _types_text(widget: QWidget | None) -> bool:
    """The focus is where a typed F is a letter, not a shortcut."""
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(widget, QLineEdit | QTextEdit | QPlainTextEdit | QAbstractSpinBox)


class KeyHint(QLabel):
    """A small note floating over the bottom of a window ("Fitzpatrick: press 1-6")."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("key_hint")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        # the selection colours: readable on both themes, and unlike anything else floating
        self.setStyleSheet(
            "QLabel#key_hint { background: palette(highlight); color: palette(highlighted-text);"
            " border-radius: 6px; padding: 8px 14px; font-weight: bold; }"
        )
        self.hide()

    def say(self, text: str) -> None:
        self.setText(text)
        self.adjustSize()
        parent = self.parentWidget()
        assert parent is not None
        x = (parent.width() - self.width()) // 2
        self.move(QPoint(max(0, x), parent.height() - self.height() - 48))
        self.show()
        self.raise_()


class ChordKeys(QObject):
    """Catches the first key of a chord on ``window``, shows the hint, runs the second."""

    def __init__(
        self,
        window: QWidget,
        actions: dict[str, QAction],
        chords: dict[int, Chord],
        notify: Callable[[str], None],
        targets: Callable[[], int],
    ) -> None:
        super().__init__(window)
        self.window, self.actions, self.chords = window, actions, chords
        self.notify, self.targets = notify, targets
        self.hint = KeyHint(window)
        self.armed: Chord | None = None
        self.timer = QTimer(self, singleShot=True, interval=TIMEOUT_MS)
        self.timer.timeout.connect(self._timed_out)
        self.fade = QTimer(self, singleShot=True, interval=GONE_MS)
        self.fade.timeout.connect(self.hint.hide)
        app = QApplication.instance()
        assert app is not None
        app.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if event.type() not in KEY_EVENTS or not isinstance(obj, QWidget):
            return False  # the common case first: this filter sees every event of the app
        if obj.window() is not self.window or _types_text(QApplication.focusWidget()):
            return False
        assert isinstance(event, QKeyEvent)
        key = event.key()
        if key in MODIFIER_KEYS:
            return False
        if self.armed is None:
            mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
            chord = self.chords.get(key)
            if chord is None or mods != Qt.KeyboardModifier.NoModifier or not self._usable(chord):
                return False
        if event.type() == QEvent.Type.ShortcutOverride:
            event.accept()  # ours: Qt's shortcut map must not see it; the key press follows
            return True
        if not event.isAutoRepeat():
            self._press(key)
        return True

    def _usable(self, chord: Chord) -> bool:
        return any(self.actions[name].isEnabled() for name in chord.then.values())

    def _press(self, key: int) -> None:
        chord = self.armed
        if chord is None:
            self.arm(self.chords[key])
            return
        self._disarm()
        if key == Qt.Key.Key_Escape.value:
            self._gone(f"{chord.title}: cancelled")
        elif key in chord.then:
            self.hint.hide()
            self.actions[chord.then[key]].trigger()
        else:
            typed = QKeySequence(key).toString()
            self._gone(
                f"{chord.first} then {typed} is not a shortcut: {chord.title} takes {chord.prompt}"
            )

    def arm(self, chord: Chord) -> None:
        """Wait for the second key of ``chord`` and say so."""
        self.armed = chord
        n = self.targets()
        whom = "this image" if n == 1 else f"{n:,} selected images" if n else "no image selected"
        self.fade.stop()
        self.hint.say(f"{chord.title} for {whom}: press {chord.prompt} (Esc cancels)")
        self.timer.start()

    def _disarm(self) -> None:
        self.armed = None
        self.timer.stop()

    def _timed_out(self) -> None:
        chord = self.armed
        self._disarm()
        if chord is not None:
            self._gone(f"{chord.title}: timed out, nothing changed (press {chord.first} again)")

    def _gone(self, text: str) -> None:
        self.hint.say(text)
        self.notify(text)
        self.fade.start()
