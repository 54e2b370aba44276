"""Small synthetic fixtures for edge cases (real images come from ../shared/data)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def skin_like(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A synthetic skin-toned image with a darker blob, for edge-case fixtures."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.array([200, 150, 125], dtype=np.float64)
    img = np.ones((height, width, 3)) * base + rng.normal(0, 6, (height, width, 3))
    blob = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2) < (min(width, height) / 5) ** 2
    img[blob] = [90, 55, 40]
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "JPEG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, fmt, **kwargs)
    return out.getvalue()


def manifest_count(shared_data: Path) -> int:
    """How many images ../shared/data holds: the rows of both manifests (it grows)."""
    total = 0
    for name in ("manifest.csv", "manifest_extra.csv"):
        path = shared_data / name
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as fh:
                total += sum(1 for _ in csv.DictReader(fh))
    return total


def in_private_mounts(script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the sh ``script`` in a private mount namespace (``unshare -rm``: mounts made
    there, a tmpfs or a read-only bind mount, are seen by nothing else). Exit status 77
    from the script, or no unshare, skips the calling test."""
    import pytest

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for private mounts")
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()[:200]}")
    return proc


def read_only_view(source: Path, mount: Path) -> str:
    """sh lines that bind-mount ``source`` read-only at ``mount`` (exit 77 if they cannot)."""
    return f"mount --bind {source} {mount} && mount -o remount,bind,ro {mount} || exit 77\n"


def copy_pad_subset(shared_data: Path, dest: Path, n: int) -> Path:
    """The first ``n`` PAD-UFES-20 photos present, with their metadata rows, as a dataset
    folder ``dest`` (images/ + metadata.csv) an import recognises."""
    import shutil

    source = shared_data / "pad_ufes_20"
    (dest / "images").mkdir(parents=True, exist_ok=True)
    lines = (source / "metadata.csv").read_text().splitlines()
    column = lines[0].split(",").index("img_id")
    kept = [lines[0]]
    for line in lines[1:]:
        name = line.split(",")[column]
        if (source / "images" / name).is_file() and len(kept) <= n:
            shutil.copy(source / "images" / name, dest / "images" / name)
            kept.append(line)
    (dest / "metadata.csv").write_text("\n".join(kept) + "\n")
    return dest
