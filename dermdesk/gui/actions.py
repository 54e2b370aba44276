"""Every action of the app and its shortcuts, in one table.

The main window builds its menus and shortcuts from :data:`ACTIONS`; the
shortcuts sheet lists the same table, so the two cannot disagree. Diagnosis,
skin-type and certainty actions are generated from the taxonomy; the number keys
1-9 are nine actions whose diagnosis is a setting (the taxonomy's ``key`` field by
default). Two-key shortcuts such as ``F, 3``
are typed one key after the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget

from dermdesk import taxonomy


@dataclass(frozen=True)
class ActionSpec:
    """One user action: a name for wiring, its text, shortcuts and sheet section."""

    name: str
    text: str
    shortcuts: tuple[str, ...] = ()
    section: str = "General"
    tip: str = ""
    checkable: bool = False
    short: str = ""  # text on tool buttons, when shorter than ``text``


def _diagnosis_actions() -> list[ActionSpec]:
    return [
        ActionSpec(f"label_{d.code}", f"Label as {d.name}", (), "Annotate")
        for d in taxonomy.diagnoses().values()
    ]


def _number_key_actions() -> list[ActionSpec]:
    """Keys 1-9: the diagnosis each gives is a setting (the taxonomy's ``key`` by default);
    the main window puts the current one in the action's text."""
    defaults = {d.key: d.name for d in taxonomy.diagnoses().values() if d.key}
    return [
        ActionSpec(
            f"key_{digit}",
            f"Label with key {digit} (default: {defaults.get(str(digit), 'none')})",
            (str(digit),),
            "Annotate",
            "Which diagnosis each number key gives is chosen in Settings",
        )
        for digit in range(1, 10)
    ]


def _certainty_actions() -> list[ActionSpec]:
    keys = {"histopathology": "C, H", "expert_consensus": "C, E", "single_expert": "C, S"}
    names = taxonomy.certainty_names()
    return [
        ActionSpec(f"certainty_{code}", f"Certainty: {names[code]}", (key,), "Annotate")
        for code, key in keys.items()
    ]


def _tone_actions() -> list[ActionSpec]:
    specs = [
        ActionSpec(
            f"fitzpatrick_{i}",
            f"Fitzpatrick {taxonomy.ROMAN[i - 1]}",
            (f"F, {i}",),
            "Skin type",
        )
        for i in range(1, 7)
    ]
    specs.append(ActionSpec("tone_clear", "Clear skin-type rating", ("F, 0",), "Skin type"))
    specs += [
        ActionSpec(f"monk_{i}", f"Monk {i}", (f"M, {i % 10}",), "Skin type") for i in range(1, 11)
    ]
    return specs


# What the hint says while the second key of a two-key shortcut is awaited (gui/chords.py).
CHORD_TITLES = {
    "F": ("Fitzpatrick", "1-6, 0 clears"),
    "M": ("Monk", "1-9 or 0 for 10"),
    "C": ("Certainty", "H, E or S"),
}

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "open_library",
        "&Open library…",
        ("Ctrl+O",),
        "Library",
        "Open another library folder (or make a new one); this window closes",
    ),
    ActionSpec(
        "backup",
        "&Back up library…",
        (),
        "Library",
        "A consistent copy of the library (database, originals, thumbnails, models) in an "
        "empty folder, made while you work (CLI: dermdesk backup)",
    ),
    ActionSpec("import", "&Import files or folders…", ("Ctrl+I",), "Library", short="Import"),
    ActionSpec("capture", "&Capture from camera…", ("Ctrl+Shift+C",), "Library", short="Capture"),
    ActionSpec(
        "export",
        "&Export dataset…",
        ("Ctrl+E",),
        "Library",
        "Export the images matching the filters as a de-identified dataset with a data card",
        short="Export",
    ),
    ActionSpec(
        "duplicates",
        "Review &duplicates…",
        ("Ctrl+Shift+D",),
        "Library",
        "Near-duplicate pairs side by side: same lesion, merge, exclude or not duplicates",
    ),
    ActionSpec("refresh", "&Refresh", ("F5",), "Library"),
    ActionSpec(
        "recheck",
        "Re-check &quality",
        (),
        "Library",
        "Run the quality checker again over the images matching the filters (a background job)",
    ),
    ActionSpec("settings", "&Settings…", ("Ctrl+,",), "Application"),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "Application"),
    ActionSpec("next", "Next image", ("J", "Ctrl+Right"), "Navigate"),
    ActionSpec("previous", "Previous image", ("K", "Ctrl+Left"), "Navigate"),
    ActionSpec("select_all", "Select all loaded images", ("Ctrl+A",), "Navigate"),
    ActionSpec("search", "Search the library", ("Ctrl+F",), "Navigate"),
    ActionSpec("clear_filters", "Clear all filters", ("Ctrl+Shift+F",), "Navigate"),
    ActionSpec("show_library", "Library", ("F2",), "View"),
    ActionSpec("show_dashboard", "Dashboard", ("F3",), "View"),
    ActionSpec("show_models", "Models", ("F4",), "View"),
    ActionSpec("show_experiments", "Experiments", ("F8",), "View"),
    ActionSpec("toggle_jobs", "Jobs", ("F6",), "View", checkable=True),
    ActionSpec("toggle_annotation", "Annotation panel", ("F7",), "View", checkable=True),
    ActionSpec("dark_theme", "Dark theme", ("Ctrl+Shift+T",), "View", checkable=True),
    ActionSpec("zoom_fit", "Fit image", ("Ctrl+0",), "Viewer"),
    ActionSpec("zoom_actual", "Actual pixels (1:1)", ("Ctrl+1",), "Viewer"),
    ActionSpec("zoom_in", "Zoom in", ("Ctrl+=", "Ctrl++"), "Viewer"),
    ActionSpec("zoom_out", "Zoom out", ("Ctrl+-",), "Viewer"),
    ActionSpec(
        "compare",
        "Compare side by side",
        ("Ctrl+D",),
        "Viewer",
        "Show the selected pair, or this image beside the same lesion's others",
        checkable=True,
        short="Compare",
    ),
    ActionSpec(
        "train",
        "&Fine-tune a model…",
        ("Ctrl+Shift+M",),
        "Models",
        "Train a classifier on the labelled images as a background job",
        short="Train",
    ),
    ActionSpec(
        "predict",
        "&Predict with the active model",
        ("Ctrl+Shift+P",),
        "Models",
        "Run the active model over the images matching the filters (a background job)",
    ),
    ActionSpec(
        "evaluate",
        "&Evaluate a model on the filtered images",
        ("Ctrl+Shift+E",),
        "Models",
        "Score the model chosen in the Models tab (else the active one) on the labelled "
        "images matching the filters; the report per skin type, device and domain is kept "
        "with the model (a background job)",
    ),
    ActionSpec(
        "label_review",
        "Review &label issues",
        (),
        "Models",
        "A review queue: the images whose label the active model's held-out predictions "
        "most doubt, ranked by confident learning (cleanlab), then those whose annotators "
        "disagree; confirm or relabel each (undoable)",
    ),
    ActionSpec("undo", "&Undo", ("Ctrl+Z",), "Annotate"),
    ActionSpec("redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Annotate"),
    *_number_key_actions(),
    *_diagnosis_actions(),
    ActionSpec("clear_label", "Clear label (unlabelled)", ("Backspace",), "Annotate"),
    ActionSpec(
        "auto_advance",
        "Auto-advance after a label",
        (),
        "Annotate",
        "After a diagnosis key labels one image, go to the next",
        checkable=True,
    ),
    ActionSpec("next_unlabelled", "Next unlabelled image", ("N",), "Annotate"),
    ActionSpec("next_failing", "Next image failing a quality check", ("Shift+N",), "Annotate"),
    ActionSpec(
        "next_disagreeing", "Next image where the model disagrees", ("Shift+D",), "Annotate"
    ),
    ActionSpec(
        "pick_diagnosis",
        "Search all &diagnoses…",
        ("/", "Ctrl+K"),
        "Annotate",
        "Type to find any diagnosis, synonym or other condition; recent ones first",
    ),
    *_certainty_actions(),
    *_tone_actions(),
    ActionSpec("shortcuts", "&Keyboard shortcuts", ("F1", "?"), "Help", short="Shortcuts"),
    ActionSpec("about", "&About dermdesk", (), "Help"),
)

SECTIONS = tuple(dict.fromkeys(spec.section for spec in ACTIONS))


def spec(name: str) -> ActionSpec:
    for s in ACTIONS:
        if s.name == name:
            return s
    raise KeyError(name)


def shortcut_text(s: ActionSpec) -> str:
    """How the shortcuts read on screen, in the platform's notation."""
    return "  or  ".join(
        QKeySequence(k).toString(QKeySequence.SequenceFormat.NativeText) for k in s.shortcuts
    )


def build_actions(parent: QWidget, specs: Iterable[ActionSpec] = ACTIONS) -> dict[str, QAction]:
    """QActions for ``specs``, added to ``parent`` so their shortcuts work window-wide."""
    actions: dict[str, QAction] = {}
    for s in specs:
        action = QAction(s.text, parent)
        action.setObjectName(s.name)
        action.setShortcuts([QKeySequence(k) for k in s.shortcuts])
        action.setCheckable(s.checkable)
        if s.tip:
            action.setToolTip(s.tip)
        if s.short:
            action.setIconText(s.short)
        parent.addAction(action)
        actions[s.name] = action
    return actions


def connect(actions: dict[str, QAction], handlers: dict[str, Callable[[], object]]) -> None:
    """Wire handlers by action name (a missing action is a programming error)."""
    for name, handler in handlers.items():
        actions[name].triggered.connect(lambda _checked=False, h=handler: h())
