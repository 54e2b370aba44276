"""Store one captured camera frame in the library (no Qt; runs on the writer thread)."""

from __future__ import annotations

import numpy as np

from dermdesk.exchange.ingest import AlreadyStored, ingest_bytes
from dermdesk.imaging.camera import encode_jpeg
from dermdesk.library.db import LibraryError
from dermdesk.library.edits import DEMO_REFUSED, CaptureInfo, add_capture
from dermdesk.library.library import Library, now


def store_capture(lib: Library, rgb: np.ndarray, info: CaptureInfo) -> str:
    """Encode the frame as JPEG, store it, and add its row; returns the image id.

    A demo frame (the test pattern) is refused before anything is written."""
    if info.demo:
        raise LibraryError(DEMO_REFUSED)
    data = encode_jpeg(rgb)
    with lib.store.writing("capture"):
        # The full quality checks run on the stored frame, as for an imported photo.
        stored = ingest_bytes(data, lib.store, lib.known_ids(), checks=True, modality=info.modality)
        if isinstance(stored, AlreadyStored):
            raise LibraryError("this exact frame is already in the library")
        info.device.setdefault("captured_at", now()[:19])
        return add_capture(lib, stored, info)
