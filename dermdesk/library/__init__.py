"""The local store: SQLite plus content-addressed files."""

from dermdesk.library.db import LibraryBusyError, LibraryError
from dermdesk.library.library import Library
from dermdesk.library.query import ImageFilter

__all__ = ["ImageFilter", "Library", "LibraryBusyError", "LibraryError"]
