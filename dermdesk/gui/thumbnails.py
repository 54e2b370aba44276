"""Thumbnails for the gallery, loaded off the GUI thread from the library's thumbs/ files.

Worker threads decode the stored 256-pixel JPEG into a ``QImage`` scaled to the
tile (QImage, unlike QPixmap, may be built on any thread — Qt's mandelbrot
example). Requests are served newest first and old ones are dropped, so while
the user flings through 100,000 images only what is on screen gets decoded.
Finished images are handed to the GUI thread in batches through one queued
signal; the cache (LRU) is touched only on the GUI thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage

from dermdesk.gui.tasks import run_below_gui
from dermdesk.library.store import Store

MAX_PENDING = 256  # newest requests kept; older ones are for tiles long scrolled past


class ThumbnailLoader(QObject):
    """Loads and caches thumbnails by image id; emits ``loaded`` with the ids now ready."""

    loaded = Signal(list)
    _ready = Signal()

    def __init__(
        self,
        root: Path,
        size: int,
        *,
        device_pixel_ratio: float = 1.0,
        cache_items: int = 3000,
        workers: int = 2,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = Store(root)
        self.size = size
        self.dpr = device_pixel_ratio
        self.cache_items = cache_items
        self._cache: OrderedDict[str, QImage] = OrderedDict()
        self._wanted: deque[tuple[int, str]] = deque()
        self._queued: set[str] = set()
        self._done: deque[tuple[int, str, QImage]] = deque()
        self._generation = 0
        self._cond = threading.Condition()
        self._stop = False
        self._ready.connect(self._drain)
        self._threads = [
            threading.Thread(target=self._work, name=f"thumbs-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # -- GUI thread ------------------------------------------------------------------------

    def get(self, image_id: str) -> QImage | None:
        """The cached thumbnail, or None after queueing its load."""
        image = self._cache.get(image_id)
        if image is not None:
            self._cache.move_to_end(image_id)
            return image
        self._request(image_id)
        return None

    def _request(self, image_id: str) -> None:
        with self._cond:
            if image_id in self._queued:
                return
            self._queued.add(image_id)
            self._wanted.append((self._generation, image_id))
            while len(self._wanted) > MAX_PENDING:
                _, dropped = self._wanted.popleft()
                self._queued.discard(dropped)
            self._cond.notify()

    def set_size(self, size: int, device_pixel_ratio: float | None = None) -> None:
        """Change the tile size; cached images are dropped and reloaded on demand."""
        with self._cond:
            self.size = size
            self.dpr = device_pixel_ratio or self.dpr
            self._generation += 1
            self._wanted.clear()
            self._queued.clear()
        self._cache.clear()

    def forget(self, image_ids: list[str]) -> None:
        for image_id in image_ids:
            self._cache.pop(image_id, None)

    def _drain(self) -> None:
        ready: list[str] = []
        while True:
            with self._cond:
                if not self._done:
                    break
                generation, image_id, image = self._done.popleft()
                self._queued.discard(image_id)
            if generation != self._generation:
                continue
            self._cache[image_id] = image
            ready.append(image_id)
        while len(self._cache) > self.cache_items:
            self._cache.popitem(last=False)
        if ready:
            self.loaded.emit(ready)

    def shutdown(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=2)

    # -- worker threads --------------------------------------------------------------------

    def _work(self) -> None:
        run_below_gui()
        while True:
            with self._cond:
                while not self._wanted and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                generation, image_id = self._wanted.pop()  # newest first
                size, dpr = self.size, self.dpr
            image = self._load(image_id, size, dpr)
            with self._cond:
                first = not self._done
                self._done.append((generation, image_id, image))
            if first:  # one queued signal per batch; _drain takes everything waiting
                self._ready.emit()

    def _load(self, image_id: str, size: int, dpr: float) -> QImage:
        path = self.store.path(self.store.thumb_rel(image_id))
        image = QImage(str(path))
        if image.isNull():
            return QImage()  # a missing thumbnail is drawn as a placeholder, not retried
        px = round(size * dpr)
        if max(image.width(), image.height()) > px:
            image = image.scaled(
                px,
                px,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        image.setDevicePixelRatio(dpr)
        return image
