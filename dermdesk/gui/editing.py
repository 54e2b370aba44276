"""Edits of labels, skin tone, device, patient/lesion links — undoable, audited, off-thread.

Every edit is a :class:`LibraryEdit` on one ``QUndoStack``. Its redo and undo
run on the writer thread through the library's writer API, so each lands in
the audit log. The state an undo restores is captured on the writer thread
just before the first redo writes, in submission order: quick successive
edits cannot capture a stale "before".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from dermdesk import taxonomy
from dermdesk.gui.tasks import LibraryWorker
from dermdesk.library import Library, LibraryError
from dermdesk.library.edits import link_images, set_body_site
from dermdesk.library.records import SkinToneIn

State = dict[str, Any]
Capture = Callable[[Library, list[str]], State]
Apply = Callable[[Library, list[str]], None]
Restore = Callable[[Library, list[str], State], None]


class LibraryEdit(QUndoCommand):
    """One undoable edit of some images, written through the writer thread."""

    def __init__(
        self,
        editor: Editor,
        text: str,
        ids: list[str],
        capture: Capture,
        apply: Apply,
        restore: Restore,
    ) -> None:
        super().__init__(text)
        self.editor = editor
        self.ids = list(ids)
        self._capture, self._apply, self._restore = capture, apply, restore
        self._state: State | None = None
        self._applied = False

    def redo(self) -> None:
        self.editor.submit(self._redo_on_writer, self.ids)

    def undo(self) -> None:
        self.editor.submit(self._undo_on_writer, self.ids)

    # These two run on the writer thread, one after the other, never concurrently.
    def _redo_on_writer(self, lib: Library) -> None:
        if self._state is None:
            self._state = self._capture(lib, self.ids)
        self._apply(lib, self.ids)
        self._applied = True

    def _undo_on_writer(self, lib: Library) -> None:
        if self._applied and self._state is not None:
            self._restore(lib, self.ids, self._state)
            self._applied = False


class Editor(QObject):
    """Turns annotation requests into undoable library edits."""

    edited = Signal(list)  # ids whose rows changed (after the write committed)
    failed = Signal(str)

    def __init__(self, writer: LibraryWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.writer = writer
        self.stack = QUndoStack(self)

    def submit(self, work: Callable[[Library], None], ids: list[str]) -> None:
        self.writer.run(work, lambda _: self.edited.emit(ids), self._failed)

    def _failed(self, exc: Exception) -> None:
        self.failed.emit(str(exc) if isinstance(exc, LibraryError) else f"edit failed: {exc}")

    def _push(
        self, text: str, ids: list[str], capture: Capture, apply: Apply, restore: Restore
    ) -> None:
        if ids:
            self.stack.push(LibraryEdit(self, text, ids, capture, apply, restore))

    # -- labels ----------------------------------------------------------------------------

    def set_label(
        self, ids: list[str], code: str, certainty: str, free_text: str | None = None
    ) -> None:
        name = free_text or taxonomy.diagnoses()[code].name
        self._push(
            f"Label {_n(ids)} {name}",
            ids,
            _label_ids,
            lambda lib, i: lib.set_label(i, code, certainty=certainty, free_text=free_text),
            _restore_labels,
        )

    def clear_label(self, ids: list[str]) -> None:
        self._push(
            f"Clear label of {_n(ids)}",
            ids,
            _label_ids,
            lambda lib, i: lib.clear_label(i),
            _restore_labels,
        )

    def set_certainty(self, ids: list[str], certainty: str) -> None:
        def apply(lib: Library, image_ids: list[str]) -> None:
            labels = {i: lib.current_label(i) for i in image_ids}
            kept = {i: (r["diagnosis"], r["free_text"]) for i, r in labels.items() if r}
            for (dx, free_text), group in _groups(kept).items():
                lib.set_label(group, dx, certainty=certainty, free_text=free_text)

        name = taxonomy.certainty_names()[certainty]
        self._push(f"Certainty {name} for {_n(ids)}", ids, _label_ids, apply, _restore_labels)

    # -- skin tone -------------------------------------------------------------------------

    def set_fitzpatrick(self, ids: list[str], value: int) -> None:
        self._set_tone(ids, f"Fitzpatrick {taxonomy.fitzpatrick_roman(value)}", fitzpatrick=value)

    def set_monk(self, ids: list[str], value: int) -> None:
        self._set_tone(ids, f"Monk {value}", monk=value)

    def _set_tone(self, ids: list[str], what: str, **value: int) -> None:
        def apply(lib: Library, image_ids: list[str]) -> None:
            # Keep the other scale of the current manual rating: one row holds both.
            for old, group in _groups(_manual_tones(lib, image_ids)).items():
                fitz, monk = old if old is not None else (None, None)
                fitz = value.get("fitzpatrick", fitz)
                monk = value.get("monk", monk)
                tone = SkinToneIn(fitzpatrick=fitz, monk=monk, method="manual", rater=lib.actor)
                lib.set_skin_tone(group, tone)

        self._push(f"{what} for {_n(ids)}", ids, _manual_tone_ids, apply, _restore_tones)

    def clear_tone(self, ids: list[str]) -> None:
        self._push(
            f"Clear skin-type rating of {_n(ids)}",
            ids,
            _manual_tone_ids,
            lambda lib, i: lib.clear_skin_tone(i, "manual"),
            _restore_tones,
        )

    # -- device, patient, lesion -----------------------------------------------------------

    def set_device(self, ids: list[str], changes: dict[str, Any]) -> None:
        fields = list(changes)

        def capture(lib: Library, image_ids: list[str]) -> State:
            return {i: {f: lib.image(i)[f] for f in fields} for i in image_ids}

        def apply(lib: Library, image_ids: list[str]) -> None:
            for i in image_ids:
                lib.update_image(i, **changes)

        def restore(lib: Library, image_ids: list[str], state: State) -> None:
            for i in image_ids:
                lib.update_image(i, **state[i])

        self._push(f"Edit {', '.join(fields)} of {_n(ids)}", ids, capture, apply, restore)

    def link(
        self, ids: list[str], patient: str | None, lesion: str | None, site: str | None
    ) -> None:
        def capture(lib: Library, image_ids: list[str]) -> State:
            return {i: (lib.image(i)["patient_id"], lib.image(i)["lesion_id"]) for i in image_ids}

        def restore(lib: Library, image_ids: list[str], state: State) -> None:
            for (pid, lid), group in _groups(state).items():
                link_images(lib, group, patient=pid, lesion=lid)

        self._push(
            f"Link {_n(ids)} to patient {patient or '—'}, lesion {lesion or '—'}",
            ids,
            capture,
            lambda lib, i: link_images(lib, i, patient=patient, lesion=lesion, body_site=site),
            restore,
        )

    def set_body_site(self, ids: list[str], site: str | None) -> None:
        def capture(lib: Library, image_ids: list[str]) -> State:
            lesions = {lib.image(i)["lesion_id"] for i in image_ids} - {None}
            return {lid: (lib.lesion(lid) or {}).get("body_site") for lid in lesions}

        def apply(lib: Library, image_ids: list[str]) -> None:
            for lid in capture(lib, image_ids):
                set_body_site(lib, lid, site)

        def restore(lib: Library, image_ids: list[str], state: State) -> None:
            for lid, old in state.items():
                set_body_site(lib, lid, old)

        name = taxonomy.body_sites().get(site or "", "none")
        self._push(f"Body site {name} for {_n(ids)}", ids, capture, apply, restore)


def _n(ids: list[str]) -> str:
    return "1 image" if len(ids) == 1 else f"{len(ids)} images"


def _groups(state: State) -> dict[Any, list[str]]:
    """Image ids grouped by equal state, so a batch restore is a few writer calls."""
    groups: dict[Any, list[str]] = defaultdict(list)
    for image_id, value in state.items():
        groups[value].append(image_id)
    return groups


def _label_ids(lib: Library, ids: list[str]) -> State:
    """Per image, the row id of its current label (None when unlabelled)."""
    out: State = {}
    for i in ids:
        label = lib.current_label(i)
        out[i] = None if label is None else label["id"]
    return out


def _restore_labels(lib: Library, ids: list[str], state: State) -> None:
    # The old row itself becomes current again: its annotator, certainty and time are the
    # dataset's or the person's who labelled it, never the one who pressed undo.
    lib.restore_labels({i: state[i] for i in ids})


def _manual_tones(lib: Library, ids: list[str]) -> State:
    """Per image, the current rating's (Fitzpatrick, Monk), or None."""
    out: State = {}
    for i in ids:
        rows = [t for t in lib.skin_tones(i) if t["method"] == "manual" and t["is_current"]]
        out[i] = (rows[-1]["fitzpatrick"], rows[-1]["monk"]) if rows else None
    return out


def _manual_tone_ids(lib: Library, ids: list[str]) -> State:
    """Per image, the row id of its current skin-tone rating (None without one)."""
    out: State = {}
    for i in ids:
        rows = [t for t in lib.skin_tones(i) if t["method"] == "manual" and t["is_current"]]
        out[i] = rows[-1]["id"] if rows else None
    return out


def _restore_tones(lib: Library, ids: list[str], state: State) -> None:
    lib.restore_skin_tones({i: state[i] for i in ids}, "manual")
