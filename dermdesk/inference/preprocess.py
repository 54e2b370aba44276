"""Image preprocessing shared by training and inference (numpy + Pillow, no torch).

Training (``dermdesk.ml.data``) and the ONNX predictor both call these
functions, and every exported model carries its :class:`PreprocessSpec` in its
metadata, so the pixels a model sees at inference are produced exactly as in
its validation during training: decode upright RGB, resize the shorter side to
``size / crop_fraction``, centre-crop ``size``, scale to [0, 1], normalise per
channel, channels first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dermdesk.imaging.decode import decode_rgb

DEFAULT_SIZE = 224
CROP_FRACTION = 0.875  # resize to size / 0.875 (256 for 224), then centre-crop
# ImageNet statistics: the conventional choice, and what timm ViTs expect.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model's input pixels are made; stored with every model."""

    size: int = DEFAULT_SIZE
    crop_fraction: float = CROP_FRACTION
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD

    @property
    def resize_to(self) -> int:
        """Shorter side before the centre crop."""
        return round(self.size / self.crop_fraction)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        raw = json.loads(text)
        return cls(
            size=int(raw["size"]),
            crop_fraction=float(raw["crop_fraction"]),
            mean=tuple(float(v) for v in raw["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in raw["std"]),  # type: ignore[arg-type]
        )


def resize_shorter(rgb: np.ndarray, target: int) -> np.ndarray:
    """Resize so the shorter side is ``target`` px, keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    scale = target / min(h, w)
    new_w, new_h = max(target, round(w * scale)), max(target, round(h * scale))
    if (new_w, new_h) == (w, h):
        return rgb
    # Pillow's bilinear filter widens its support when shrinking, so this antialiases.
    img = Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR)
    return np.asarray(img)


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h < size or w < size:
        rgb = resize_shorter(rgb, size)
        h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return rgb[top : top + size, left : left + size]


def base_view(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The stored-resolution view training augments from: shorter side ``spec.resize_to``."""
    return resize_shorter(rgb, spec.resize_to)


def eval_view(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The uint8 pixels a model sees at validation and inference (H = W = size)."""
    return center_crop(base_view(rgb, spec), spec.size)


def normalize(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 (H, W, 3) or (N, H, W, 3) -> float32 channels-first, normalised."""
    x = pixels.astype(np.float32) * np.float32(1 / 255)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def load_rgb(path: Path, spec: PreprocessSpec) -> np.ndarray:
    """Decode an original upright, with JPEG DCT scaling down to about the needed size."""
    return decode_rgb(path, reduce_to=spec.resize_to)


def prepare(rgb: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Decoded RGB -> the model input (3, size, size) float32."""
    return normalize(eval_view(rgb, spec), spec)
