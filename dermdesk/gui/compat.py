"""Workarounds for bugs in the Qt bindings, applied once at import of :mod:`dermdesk.gui`.

PySide6 6.12.0 assumes ``None``, ``True`` and ``False`` are immortal (as they
are from Python 3.12 on): under Python 3.11 every void-returning Qt call drops
one reference to ``None`` (and some calls one to ``True``/``False``) without
having taken it. After a few thousand calls the interpreter aborts with
"Fatal Python error: none_dealloc". pyproject pins PySide6 below 6.12; for
environments that still have 6.12 under Python 3.11 we give the three
singletons a reference count they cannot exhaust, which is exactly Python
3.12's immortality. Measured: 1,000 ``processEvents()`` calls drop 1,000
references to ``None`` on 6.12.0 and none on 6.11.3.
"""

from __future__ import annotations

import ctypes
import sys

_HEADROOM = 1 << 40  # ~10^12 leaked references before the count could reach zero
_applied = False


def needs_refcount_guard(pyside_version: str, python: tuple[int, int]) -> bool:
    return python < (3, 12) and pyside_version.startswith("6.12.")


def guard_pyside_refcounts() -> bool:
    """Apply the workaround where needed; returns True when it was applied (once)."""
    global _applied
    import PySide6

    if _applied or not needs_refcount_guard(PySide6.__version__, sys.version_info[:2]):
        return False
    for singleton in (None, True, False):
        # ob_refcnt is the first field of every CPython object (non-debug builds).
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM
    _applied = True
    return True
