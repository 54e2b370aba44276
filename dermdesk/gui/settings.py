"""Application settings, stored with QSettings (per user; tests point it at a temp file).

One typed accessor per setting keeps keys and defaults in one place.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from dermdesk import taxonomy
from dermdesk.library.library import default_actor

THEMES = ("light", "dark")
THUMB_SIZES = (104, 136, 184)
RECENT_DIAGNOSES = 6  # how many the diagnosis search lists first
RECENT_LIBRARIES = 8
DIGITS = tuple(str(i) for i in range(1, 10))


def default_diagnosis_keys() -> dict[str, str]:
    """The number keys as the taxonomy gives them (its ``key`` field)."""
    keys = {d.key: d.code for d in taxonomy.diagnoses().values() if d.key in DIGITS}
    return {digit: keys.get(digit, "") for digit in DIGITS}


class Settings:
    """Typed view of the app's QSettings."""

    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store if store is not None else QSettings()

    def _get(self, key: str, default: Any) -> Any:
        value = self.store.value(key, default)
        return default if value is None else value

    # -- appearance ----------------------------------------------------------------------

    @property
    def theme(self) -> str:
        value = str(self._get("appearance/theme", "light"))
        return value if value in THEMES else "light"

    @theme.setter
    def theme(self, value: str) -> None:
        self.store.setValue("appearance/theme", value)

    @property
    def thumb_size(self) -> int:
        try:
            value = int(self._get("appearance/thumb_size", THUMB_SIZES[1]))
        except (TypeError, ValueError):
            return THUMB_SIZES[1]
        return value if value in THUMB_SIZES else THUMB_SIZES[1]

    @thumb_size.setter
    def thumb_size(self, value: int) -> None:
        self.store.setValue("appearance/thumb_size", int(value))

    # -- annotation ----------------------------------------------------------------------

    @property
    def annotator(self) -> str:
        return str(self._get("annotation/annotator", "") or default_actor())

    @annotator.setter
    def annotator(self, value: str) -> None:
        self.store.setValue("annotation/annotator", value.strip())

    @property
    def certainty(self) -> str:
        return str(self._get("annotation/certainty", "single_expert"))

    @certainty.setter
    def certainty(self, value: str) -> None:
        self.store.setValue("annotation/certainty", value)

    @property
    def auto_advance(self) -> bool:
        """Go to the next image after a diagnosis key labels one (Label Studio's flow)."""
        return str(self._get("annotation/auto_advance", "false")).lower() == "true"

    @auto_advance.setter
    def auto_advance(self, value: bool) -> None:
        self.store.setValue("annotation/auto_advance", "true" if value else "false")

    @property
    def recent_diagnoses(self) -> list[str]:
        """Diagnoses last given (``MEL``, ``OTHER:keloid``), most recent first."""
        try:
            value = json.loads(str(self._get("annotation/recent_diagnoses", "[]")))
        except ValueError:
            return []
        return [str(v) for v in value][:RECENT_DIAGNOSES] if isinstance(value, list) else []

    def add_recent_diagnosis(self, key: str) -> None:
        keys = [key, *(k for k in self.recent_diagnoses if k != key)][:RECENT_DIAGNOSES]
        self.store.setValue("annotation/recent_diagnoses", json.dumps(keys))

    def diagnosis_keys(self) -> dict[str, str]:
        """Which diagnosis each number key 1-9 gives (``{"1": "MEL", "9": "OTHER:keloid"}``):
        the taxonomy's keys unless changed in the settings dialog; an entry the vocabulary
        no longer knows falls back to the taxonomy's."""
        keys = default_diagnosis_keys()
        try:
            saved = json.loads(str(self._get("annotation/diagnosis_keys", "{}")))
        except ValueError:
            saved = {}
        if isinstance(saved, dict):
            for digit, key in saved.items():
                if digit in keys and (not key or taxonomy.label_choice(str(key)) is not None):
                    keys[digit] = str(key)
        return keys

    def set_diagnosis_keys(self, keys: dict[str, str]) -> None:
        self.store.setValue("annotation/diagnosis_keys", json.dumps(keys, sort_keys=True))

    # -- library browsing ----------------------------------------------------------------

    @property
    def filters(self) -> dict[str, Any]:
        """The filter bar's last state (a JSON object)."""
        try:
            value = json.loads(str(self._get("library/filters", "{}")))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @filters.setter
    def filters(self, value: dict[str, Any]) -> None:
        self.store.setValue("library/filters", json.dumps(value, sort_keys=True))

    def filters_for(self, library: Path) -> dict[str, Any]:
        """The filter bar's last state in this library (a filter that suits one library can
        hide everything in another); for a library never seen, no filter, with the last
        sort and grouping used anywhere."""
        key = _library_key("library/filters_by_library", library)
        try:
            value = json.loads(str(self._get(key, "null")))
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        return {k: v for k, v in self.filters.items() if k in ("sort", "group")}

    def set_filters_for(self, library: Path, value: dict[str, Any]) -> None:
        self.store.setValue(
            _library_key("library/filters_by_library", library), json.dumps(value, sort_keys=True)
        )
        self.filters = value

    @property
    def recent_libraries(self) -> list[str]:
        """Library folders opened here, most recent first (Library ▸ Recent)."""
        try:
            value = json.loads(str(self._get("library/recent", "[]")))
        except ValueError:
            return []
        return [str(v) for v in value][:RECENT_LIBRARIES] if isinstance(value, list) else []

    def add_recent_library(self, folder: Path) -> None:
        path = str(folder.expanduser().resolve())
        folders = [path, *(f for f in self.recent_libraries if f != path)][:RECENT_LIBRARIES]
        self.store.setValue("library/recent", json.dumps(folders))

    def clear_recent_libraries(self) -> None:
        self.store.setValue("library/recent", "[]")

    @property
    def import_modality(self) -> str:
        return str(self._get("import/modality", "clinical"))

    @import_modality.setter
    def import_modality(self, value: str) -> None:
        self.store.setValue("import/modality", value)

    def csv_mapping(self, dataset: str) -> dict[str, Any]:
        """The CSV column and value mapping last used for a dataset name."""
        try:
            value = json.loads(str(self._get(f"import/csv_mapping/{dataset}", "{}")))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def set_csv_mapping(self, dataset: str, value: dict[str, Any]) -> None:
        self.store.setValue(f"import/csv_mapping/{dataset}", json.dumps(value, sort_keys=True))

    @property
    def last_folder(self) -> str:
        return str(self._get("import/last_folder", ""))

    @last_folder.setter
    def last_folder(self, value: str) -> None:
        self.store.setValue("import/last_folder", value)

    @property
    def camera(self) -> int:
        try:
            return int(self._get("capture/camera", 0))
        except (TypeError, ValueError):
            return 0

    @camera.setter
    def camera(self, value: int) -> None:
        self.store.setValue("capture/camera", int(value))

    # -- window --------------------------------------------------------------------------

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.store.value("window/geometry")
        state = self.store.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)

    def sync(self) -> None:
        self.store.sync()


def _library_key(group: str, library: Path) -> str:
    """A settings key per library folder (a hash: paths hold characters keys cannot)."""
    digest = hashlib.sha1(str(library.expanduser().resolve()).encode()).hexdigest()[:16]
    return f"{group}/{digest}"
