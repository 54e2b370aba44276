"""Frame sources for the capture dialog: a real camera, a video file, or generated frames.

All sources share :class:`FrameSource`, so the dialog and its tests run the
same code with a fake camera. Frames are RGB uint8 arrays (H, W, 3). No Qt.
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np


class FrameSource(Protocol):
    """Something that yields frames; ``read`` returns None when no frame is available.

    ``demo`` is True for made-up frames (the test pattern): they exist to try the
    dialog and are never stored as a patient image.
    """

    name: str
    demo: bool

    def read(self) -> np.ndarray | None: ...

    def device(self) -> dict[str, Any]:
        """Device fields (``device_make``, ``device_model``, ...) for captured images."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class CameraInfo:
    index: int
    name: str


def _quiet_opencv() -> None:
    # Probing absent cameras makes OpenCV log warnings; older builds lack the module.
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def list_cameras(max_index: int = 4) -> list[CameraInfo]:
    """Cameras OpenCV can open. On Linux only /dev/video* nodes are probed (fast)."""
    _quiet_opencv()
    if platform.system() == "Linux":
        nodes = sorted(glob.glob("/dev/video*"))
        indexes = [int(n.removeprefix("/dev/video")) for n in nodes if n[10:].isdigit()]
    else:
        indexes = list(range(max_index))
    found = []
    for index in indexes[:max_index]:
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened():
                found.append(CameraInfo(index, _camera_name(index)))
        finally:
            cap.release()
    return found


def _camera_name(index: int) -> str:
    sys_name = Path(f"/sys/class/video4linux/video{index}/name")
    try:
        return sys_name.read_text().strip() or f"Camera {index}"
    except OSError:
        return f"Camera {index}"


class OpenCVCamera:
    """A camera opened through OpenCV."""

    demo = False

    def __init__(self, index: int, width: int = 1280, height: int = 720) -> None:
        _quiet_opencv()
        self.index = index
        self.name = _camera_name(index)
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            raise OSError(f"cannot open camera {index}")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None

    def device(self) -> dict[str, Any]:
        return {"device_model": self.name, "device_software": f"OpenCV {cv2.__version__}"}

    def close(self) -> None:
        self._cap.release()


class VideoFileSource:
    """Frames from a video file, looping at the end (a stand-in camera)."""

    demo = False

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = True) -> None:
        _quiet_opencv()
        self.path = Path(path)
        self.name = f"Video {self.path.name}"
        self.loop = loop
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise OSError(f"{self.path}: cannot open the video")

    def read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok and self.loop:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._cap.read()
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None

    def device(self) -> dict[str, Any]:
        return {"device_model": self.name}

    def close(self) -> None:
        self._cap.release()


class GeneratedSource:
    """Frames from a function of the frame number, or cycling through given frames."""

    def __init__(
        self,
        frames: Sequence[np.ndarray] | Callable[[int], np.ndarray],
        *,
        name: str = "Test pattern",
        device: dict[str, Any] | None = None,
        demo: bool = False,
    ) -> None:
        self.name = name
        self.demo = demo
        self._frames = frames
        self._device = device or {"device_make": "dermdesk", "device_model": name}
        self.count = 0

    def read(self) -> np.ndarray | None:
        n = self.count
        self.count += 1
        if callable(self._frames):
            return self._frames(n)
        return self._frames[n % len(self._frames)] if self._frames else None

    def device(self) -> dict[str, Any]:
        return dict(self._device)

    def close(self) -> None:
        pass


def frame_from_image(
    path: str | os.PathLike[str], size: tuple[int, int] = (640, 480)
) -> np.ndarray:
    """A camera-sized RGB frame made from an image file (for fake cameras and demos)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{path}: cannot read the image")
    return cv2.cvtColor(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB frame, as stored for a capture."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("cannot encode the frame as JPEG")
    return buf.tobytes()
