"""Where the library lives.

Order of precedence: an explicit ``--library DIR``, then ``$DERMDESK_HOME``,
then the platform's per-user data folder (``~/.local/share/dermdesk/library``
on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "dermdesk"


def default_library_dir() -> Path:
    """The library folder used when none is named."""
    env = os.environ.get("DERMDESK_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)) / "library"


def resolve_library_dir(explicit: str | os.PathLike[str] | None) -> Path:
    """The library folder for an optional user choice."""
    if explicit:
        return Path(explicit).expanduser()
    return default_library_dir()
