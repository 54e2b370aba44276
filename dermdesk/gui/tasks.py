"""Background execution: work runs off the GUI thread, results come back as signals.

Anki's pattern: a :class:`LibraryWorker` is a single-worker executor that owns
its own :class:`~dermdesk.library.Library` connection (SQLite connections are
bound to their thread). Work is a function ``fn(lib)``; its result or error
is delivered to a callback *on the GUI thread* through a queued signal.

Functions submitted here must never touch a widget or any Qt GUI object
other than building a ``QImage``; callbacks run on the GUI thread and may.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from dermdesk.library import Library

log = logging.getLogger(__name__)

Callback = Callable[[Any], None]
ErrorCallback = Callable[[Exception], None]

BELOW_GUI_NICE = 10  # how much less CPU priority the GUI's worker threads have


def run_below_gui() -> None:
    """Give the calling thread a lower CPU priority than the GUI thread (Linux only).

    On a machine with few cores the thumbnail decoders and the reader kept both cores
    busy while the user scrolled, and the GUI thread then waited for a CPU: its longest
    stalls were almost all time spent runnable but not running (scripts/bench_gui.py
    reads it from /proc/thread-self/schedstat). With a higher nice value the kernel runs
    the GUI thread first and the workers take the time left over. Linux's
    ``setpriority`` acts on one thread; elsewhere this does nothing. Never called on a
    thread that starts processes (imports, jobs): they would inherit the priority.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + BELOW_GUI_NICE))
    except OSError:  # not allowed in this sandbox / container: run as before
        log.debug("could not lower the priority of %s", threading.current_thread().name)


class ThreadTask(QObject):
    """One long piece of work on its own daemon thread (an import, an export), with a
    cancel flag and progress throttled to what the GUI can show. Subclasses define their
    signals and ``_run``."""

    PROGRESS_INTERVAL_S = 0.1

    def __init__(self, name: str) -> None:
        super().__init__()
        self.cancel_event = threading.Event()
        self._last = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def running(self) -> bool:
        return self._thread.is_alive()

    def progress_due(self, done: int, total: int) -> bool:
        """True at most every PROGRESS_INTERVAL_S, and for the last step."""
        now = time.monotonic()
        if now - self._last >= self.PROGRESS_INTERVAL_S or done == total:
            self._last = now
            return True
        return False


class Background(QObject):
    """A thread pool whose results are delivered on the GUI thread."""

    failed = Signal(str)  # an error nobody handled, as one line for the user
    idle = Signal()  # the queue just became empty
    _deliver = Signal(object)

    def __init__(self, name: str, workers: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=run_below_gui
        )
        self._lock = threading.Lock()
        self.pending = 0
        self._closed = False
        # Emitted from pool threads; Qt queues it to this object's (the GUI) thread.
        self._deliver.connect(self._on_deliver)

    def submit(
        self,
        fn: Callable[..., Any],
        on_done: Callback | None = None,
        on_error: ErrorCallback | None = None,
        *args: Any,
    ) -> Future[Any] | None:
        """Run ``fn(*args)`` on the pool; then ``on_done(result)`` or ``on_error(exc)``
        on the GUI thread."""
        if self._closed:
            return None
        with self._lock:
            self.pending += 1
        return self._pool.submit(self._run, fn, args, on_done, on_error)

    def _run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], on_done: Any, on_error: Any
    ) -> None:
        try:
            result = fn(*args)
        except Exception as exc:  # delivered to the GUI, never lost in a thread
            log.debug("%s task failed", self.name, exc_info=True)
            self._deliver.emit((on_error, None, exc))
        else:
            self._deliver.emit((on_done, result, None))

    def _on_deliver(self, payload: tuple[Any, Any, Exception | None]) -> None:
        callback, result, error = payload
        with self._lock:
            self.pending -= 1
            now_idle = self.pending == 0
        try:
            if error is None:
                if callback is not None:
                    callback(result)
            elif callback is not None:
                callback(error)
            else:
                self.failed.emit(str(error))
        finally:
            if now_idle:
                self.idle.emit()

    def shutdown(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class LibraryWorker(Background):
    """One thread with its own Library connection; ``fn(lib)`` jobs run in submission order.

    The app has two: the *writer* (every edit goes through it, so edits land
    in order, each in its own transaction with its audit entry) and the
    *reader* (gallery pages, dashboard counts), so a long read never delays
    an edit and vice versa.
    """

    def __init__(
        self,
        root: Path,
        actor: str,
        name: str,
        parent: QObject | None = None,
        *,
        readonly: bool = False,
    ) -> None:
        super().__init__(name, 1, parent)
        self.root = root
        self.actor = actor
        self.readonly = readonly
        self._lib: Library | None = None

    def library(self) -> Library:
        """The worker's own connection; call only from inside a submitted function."""
        if self._lib is None:
            self._lib = Library.open(
                self.root, create=False, actor=self.actor, readonly=self.readonly
            )
        return self._lib

    def run(
        self,
        fn: Callable[[Library], Any],
        on_done: Callback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Future[Any] | None:
        """Run ``fn(lib)`` with this worker's connection."""
        return self.submit(lambda: fn(self.library()), on_done, on_error)

    def set_actor(self, actor: str) -> None:
        """Name edits from now on after ``actor`` (the annotator in the settings)."""

        def apply() -> None:
            self.actor = actor
            self.library().actor = actor

        self.submit(apply)

    def shutdown(self, wait: bool = True) -> None:
        def close() -> None:
            if self._lib is not None:
                self._lib.close()
                self._lib = None

        if not self._closed:
            self._pool.submit(close)
        super().shutdown(wait)
