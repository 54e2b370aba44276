"""The PySide6 desktop app: the only package that imports Qt.

Importing it applies :func:`dermdesk.gui.compat.guard_pyside_refcounts`
before any Qt call is made.
"""

from dermdesk.gui.compat import guard_pyside_refcounts

guard_pyside_refcounts()
