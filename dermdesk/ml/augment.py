"""Training augmentations that mimic how clinic photos differ (numpy + Pillow).

Beyond crops and flips, the aim is the variation between devices and rooms:
exposure and contrast, colour temperature of the light (per-channel gains),
camera tone curves (gamma), focus blur, sensor noise, low resolution and
heavy JPEG compression. Each image's randomness comes from a generator seeded
by (seed, epoch, index), so a resumed job sees the same augmentations.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class AugmentConfig:
    scale: tuple[float, float] = (0.35, 1.0)  # crop area relative to the base view
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True  # lesions have no canonical orientation: flips and 90° turns are safe
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    white_balance: float = 0.10  # per-channel gain spread: warm/cool light, camera AWB
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_p: float = 0.2
    noise_p: float = 0.2
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    lowres_p: float = 0.15


LIGHT = AugmentConfig(
    scale=(0.7, 1.0),
    brightness=0.1,
    contrast=0.1,
    saturation=0.1,
    white_balance=0.04,
    gamma=(0.95, 1.05),
    blur_p=0.0,
    noise_p=0.0,
    jpeg_p=0.0,
    lowres_p=0.0,
)
PRESETS = {"full": AugmentConfig(), "light": LIGHT, "none": None}


def random_resized_crop(
    rgb: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig
) -> np.ndarray:
    h, w = rgb.shape[:2]
    for _ in range(10):
        area = rng.uniform(*cfg.scale) * h * w
        ratio = np.exp(rng.uniform(np.log(cfg.ratio[0]), np.log(cfg.ratio[1])))
        cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to the central square
        cw = ch = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(rgb[top : top + ch, left : left + cw])
    return np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR))


def photometric(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    x *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    x *= rng.uniform(1 - cfg.white_balance, 1 + cfg.white_balance, size=3).astype(np.float32)
    x = np.clip(x, 0.0, 1.0) ** rng.uniform(*cfg.gamma)
    return (x * 255.0 + 0.5).astype(np.uint8)


def device_effects(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    size = rgb.shape[0]
    img = Image.fromarray(rgb)
    if rng.random() < cfg.lowres_p:
        small = max(8, int(size * rng.uniform(0.35, 0.8)))
        img = img.resize((small, small), Image.Resampling.BILINEAR).resize(
            (size, size), Image.Resampling.BILINEAR
        )
    if rng.random() < cfg.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.5))))
    out = np.asarray(img)
    if rng.random() < cfg.noise_p:
        noise = rng.normal(0.0, rng.uniform(2.0, 8.0), out.shape)
        out = np.clip(out + noise, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_p:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(*cfg.jpeg_quality)))
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def augment(
    base: np.ndarray, size: int, rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> np.ndarray:
    """A training view (size x size uint8) of an image's base view."""
    cfg = cfg or AugmentConfig()
    out = random_resized_crop(base, size, rng, cfg)
    if cfg.flip:
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out[::-1]
        out = np.rot90(out, int(rng.integers(0, 4)))
    out = photometric(np.ascontiguousarray(out), rng, cfg)
    return device_effects(out, rng, cfg)
