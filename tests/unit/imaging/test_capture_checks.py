"""Live capture checks on real images, and the frame sources."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dermdesk.imaging.camera import GeneratedSource, VideoFileSource, encode_jpeg, frame_from_image
from dermdesk.imaging.findings import CheckResult, worst
from dermdesk.imaging.quality import live_check


def worst_verdict(findings: list[CheckResult]) -> str:
    return worst([f.verdict for f in findings])


@pytest.fixture
def frames(shared_data: Path) -> list[np.ndarray]:
    # Full-resolution phone photos only: most PAD-UFES-20 images were shrunk to 300 px upstream,
    # and enlarging those to a camera frame would make them soft before any check runs.
    files = sorted((shared_data / "pad_ufes_20" / "images").glob("*.jpg"))
    large = [f for f in files if _width(f) >= 640][:12]
    return [frame_from_image(f) for f in large]


def _width(path: Path) -> int:
    with Image.open(path) as img:
        return int(img.width)


def glare_spots(frame: np.ndarray, n: int = 60, size: int = 16) -> np.ndarray:
    """Specular highlights: small white spots over the middle of the frame (~5% of it)."""
    out = frame.copy()
    h, w = out.shape[:2]
    rng = np.random.default_rng(0)
    for _ in range(n):
        y, x = rng.integers(h // 4, 3 * h // 4), rng.integers(w // 4, 3 * w // 4)
        out[y : y + size, x : x + size] = 255
    return out


def verdicts(rgb: np.ndarray) -> dict[str, str]:
    return {f.check: f.verdict for f in live_check(rgb)}


def test_real_photos_pass_and_degraded_ones_fail_with_what_to_fix(frames: list[np.ndarray]) -> None:
    fails = [worst_verdict(live_check(f)) == "fail" for f in frames]
    assert sum(fails) <= 1  # real phone photos are (nearly) never refused
    for frame in frames[:4]:
        blurred = cv2.GaussianBlur(frame, (0, 0), 6)
        findings = {f.check: f for f in live_check(blurred)}
        assert findings["sharpness"].verdict == "fail" and "steady" in findings["sharpness"].reason
        dark = (frame * 0.12).astype(np.uint8)
        assert verdicts(dark)["exposure"] == "fail"
        assert verdicts(glare_spots(frame))["glare"] in ("warn", "fail")
        burnt = frame.copy()
        burnt[:, : frame.shape[1] // 3] = 255  # a blown-out third: exposure, not glare
        assert verdicts(burnt)["exposure"] in ("warn", "fail")


def test_odd_frames_get_a_verdict_not_an_exception() -> None:
    for frame in (np.zeros((1, 1, 3), np.uint8), np.full((480, 640, 3), 255, np.uint8)):
        assert worst_verdict(live_check(frame)) == "fail"


def test_video_file_and_generated_sources(tmp_path: Path, frames: list[np.ndarray]) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (640, 480))
    for f in frames[:3]:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    video = VideoFileSource(path)
    got = [video.read() for _ in range(5)]  # loops after three frames
    video.close()
    assert all(g is not None and g.shape == (480, 640, 3) for g in got)
    generated = GeneratedSource(frames[:2])
    assert (
        generated.read() is frames[0]
        and generated.read() is frames[1]
        and generated.read() is frames[0]
    )
    assert encode_jpeg(frames[0])[:2] == b"\xff\xd8"
    with pytest.raises(OSError, match="cannot open"):
        VideoFileSource(tmp_path / "missing.mp4")
