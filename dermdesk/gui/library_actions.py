"""Library ▸ Open, Recent and Backup: opening another library folder, and a backup that
runs on its own thread with progress (CLI twins: ``dermdesk --library DIR``,
``dermdesk backup DEST``).

The backup is :func:`dermdesk.library.backup.backup` on a read-only connection of its
own, so the gallery's reads and the writer's edits go on meanwhile; a cancel removes
the partial copy and leaves nothing under the backup's name.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Signal

from dermdesk.gui.tasks import ThreadTask
from dermdesk.library import Library, LibraryError
from dermdesk.library.backup import BackupResult, backup
from dermdesk.library.db import DB_NAME


def is_library(folder: Path) -> bool:
    return (folder / DB_NAME).is_file()


def open_library_folder(folder: Path, *, create: bool = True) -> Library:
    """Open ``folder`` as the app does: read-only on read-only media (a DVD, a
    write-protected share), so browsing works and editing is off."""
    folder = Path(folder).expanduser()
    readonly = folder.is_dir() and not os.access(folder, os.W_OK)
    return Library.open(folder, create=create and not readonly, readonly=readonly)


class BackupTask(ThreadTask):
    """``backup(library, dest)`` on a thread; progress is (files copied, files)."""

    progress = Signal(int, int)
    finished = Signal(object)  # BackupResult
    failed = Signal(str)

    def __init__(self, root: Path, dest: Path) -> None:
        super().__init__("backup")
        self.root, self.dest = root, dest

    def _step(self, done: int, total: int) -> None:
        if self.cancel_event.is_set():
            raise LibraryError(f"{self.dest}: backup cancelled; nothing was kept")
        if self.progress_due(done, total):
            self.progress.emit(done, total)

    def _run(self) -> None:
        try:
            with Library.open(self.root, create=False, readonly=True) as lib:
                result: BackupResult = backup(lib, self.dest, self._step)
        except (LibraryError, OSError) as exc:
            self.failed.emit(str(exc))
        else:
            self.finished.emit(result)
