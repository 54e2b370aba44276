"""Training augmentation on whole batches of tensors: on the GPU when there is one.

The cache hands training uint8 images of different sizes; :func:`collate` pads a
batch into one uint8 tensor and draws every image's random parameters on the CPU
from a generator seeded by (seed, epoch, index), so a resumed job repeats them
exactly. :func:`augment_batch` then applies them in a handful of batched tensor
operations wherever the batch lives:

- geometry in one ``grid_sample``: random resized crop (area and aspect), shift,
  rotation (any angle), flips, inside each image's own valid region;
- light: brightness, contrast, saturation, per-channel gains (white balance), gamma;
- devices: Gaussian blur (per-image sigma, one grouped convolution), sensor noise,
  low resolution, and JPEG-like blocking (8 x 8 DCT, quantised with the standard
  luminance table scaled to a random quality).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dermdesk.inference.preprocess import MEAN, STD


@dataclass(frozen=True)
class TensorAugment:
    """Strengths of each augmentation (the defaults follow the gap study's recipe)."""

    scale: tuple[float, float] = (0.35, 1.0)  # crop area, relative to the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    shift: float = 0.1  # of the crop size
    rotation: float = 180.0  # degrees, either way: lesions have no canonical orientation
    flip: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    white_balance: float = 0.10
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_p: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 8.0)  # in 0-255 units
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    lowres_p: float = 0.15


LIGHT = TensorAugment(
    scale=(0.7, 1.0),
    shift=0.05,
    rotation=15.0,
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
PRESETS: dict[str, TensorAugment | None] = {"full": TensorAugment(), "light": LIGHT, "none": None}
# Per image: crop (cx, cy, w, h as fractions), angle, flips, photometric, effects.
N_PARAMS = 17


def draw_params(rng: np.random.Generator, cfg: TensorAugment | None, h: int, w: int) -> np.ndarray:
    """One image's random parameters (a float32 vector), from its own generator."""
    p = np.zeros(N_PARAMS, dtype=np.float32)
    if cfg is None:  # a centre square, nothing else
        side = min(h, w)
        p[:4] = (0.5, 0.5, side / w, side / h)
        p[7:10] = 1.0
        p[10:13] = 1.0
        p[13] = 1.0
        return p
    area = rng.uniform(*cfg.scale)
    ratio = math.exp(rng.uniform(math.log(cfg.ratio[0]), math.log(cfg.ratio[1])))
    side = min(h, w)
    cw = min(1.0, math.sqrt(area * ratio) * side / w)
    ch = min(1.0, math.sqrt(area / ratio) * side / h)
    cx = rng.uniform(cw / 2, 1 - cw / 2) + rng.uniform(-cfg.shift, cfg.shift) * cw
    cy = rng.uniform(ch / 2, 1 - ch / 2) + rng.uniform(-cfg.shift, cfg.shift) * ch
    p[:4] = (cx, cy, cw, ch)
    p[4] = math.radians(rng.uniform(-cfg.rotation, cfg.rotation))
    p[5] = float(cfg.flip and rng.random() < 0.5)
    p[6] = float(cfg.flip and rng.random() < 0.5)
    p[7] = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    p[8] = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    p[9] = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    p[10:13] = rng.uniform(1 - cfg.white_balance, 1 + cfg.white_balance, size=3)
    p[13] = rng.uniform(*cfg.gamma)
    p[14] = rng.uniform(*cfg.blur_sigma) if rng.random() < cfg.blur_p else 0.0
    p[15] = rng.uniform(*cfg.noise_sigma) if rng.random() < cfg.noise_p else 0.0
    jpeg = rng.random() < cfg.jpeg_p
    lowres = rng.random() < cfg.lowres_p
    quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    # one slot: >0 JPEG quality, <0 low-resolution factor, 0 neither
    p[16] = quality if jpeg else (-rng.uniform(0.35, 0.8) if lowres else 0.0)
    return p


def collate(items: list[tuple[np.ndarray, int, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    """(pixels uint8 HWC, label, params) items -> padded uint8 (B, 3, H, W), sizes (B, 2),
    labels (B,), params (B, N_PARAMS)."""
    hmax = max(x.shape[0] for x, _, _ in items)
    wmax = max(x.shape[1] for x, _, _ in items)
    batch = torch.zeros((len(items), 3, hmax, wmax), dtype=torch.uint8)
    sizes = torch.zeros((len(items), 2), dtype=torch.float32)
    for k, (x, _, _) in enumerate(items):
        # np.array copies: the cache hands out read-only views of its memory map
        batch[k, :, : x.shape[0], : x.shape[1]] = torch.from_numpy(np.array(x)).permute(2, 0, 1)
        sizes[k] = torch.tensor([x.shape[0], x.shape[1]])
    labels = torch.tensor([y for _, y, _ in items], dtype=torch.int64)
    params = torch.from_numpy(np.stack([p for _, _, p in items]))
    return batch, sizes, labels, params


def augment_batch(
    batch: torch.Tensor, sizes: torch.Tensor, params: torch.Tensor, out: int
) -> torch.Tensor:
    """uint8 (B, 3, H, W) padded images -> float (B, 3, out, out), augmented, normalised."""
    return normalise(augment_pixels(batch, sizes, params, out))


def augment_pixels(
    batch: torch.Tensor, sizes: torch.Tensor, params: torch.Tensor, out: int
) -> torch.Tensor:
    """:func:`augment_batch` before normalisation: float (B, 3, out, out) in [0, 1] (the
    adaptation's gap transforms work on these)."""
    x = batch.float() / 255.0
    x = _geometry(x, sizes.to(x.device), params.to(x.device), out)
    p = params.to(x.device)
    x = _light(x, p)
    x = _blur(x, p[:, 14])
    x = _resolution_and_jpeg(x, p[:, 16], out)
    noise = p[:, 15].view(-1, 1, 1, 1) / 255.0
    return (x + torch.randn_like(x) * noise).clamp(0, 1) if bool((noise > 0).any()) else x


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> the networks' normalised inputs."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _geometry(x: torch.Tensor, sizes: torch.Tensor, p: torch.Tensor, out: int) -> torch.Tensor:
    """Crop, shift, rotate and flip in one resampling. Coordinates are in the padded
    tensor's [-1, 1] frame; each image's box lies inside its own h x w region."""
    _, _, hmax, wmax = x.shape
    h, w = sizes[:, 0], sizes[:, 1]
    cx, cy, cw, ch, angle = p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4]
    # centre and half-extent of the crop, in the padded frame
    centre_x = (cx * w) / wmax * 2 - 1
    centre_y = (cy * h) / hmax * 2 - 1
    half_x = cw * w / wmax
    half_y = ch * h / hmax
    flip_x = 1 - 2 * p[:, 5]
    flip_y = 1 - 2 * p[:, 6]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Output (u, v) in [-1, 1] -> input pixels: centre + R(angle) @ diag(half) @ flips @ (u, v),
    # rotating in pixels (isotropic), then into the padded tensor's normalised frame.
    theta = torch.zeros((len(x), 2, 3), device=x.device)
    theta[:, 0, 0] = cos * half_x * flip_x
    theta[:, 0, 1] = -sin * half_y * flip_y * (hmax / wmax)
    theta[:, 1, 0] = sin * half_x * flip_x * (wmax / hmax)
    theta[:, 1, 1] = cos * half_y * flip_y
    theta[:, 0, 2] = centre_x
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta, [len(x), 3, out, out], align_corners=False)
    # Reflect at each image's own border (between its first and last pixel centres), so
    # no sample ever blends in the zero padding beyond it.
    gx = _reflect(grid[..., 0], 1 / wmax - 1, ((2 * w - 1) / wmax - 1).view(-1, 1, 1))
    gy = _reflect(grid[..., 1], 1 / hmax - 1, ((2 * h - 1) / hmax - 1).view(-1, 1, 1))
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _reflect(v: torch.Tensor, lo: float, hi: torch.Tensor) -> torch.Tensor:
    span = hi - lo
    t = torch.remainder(v - lo, 2 * span)
    return lo + torch.where(t > span, 2 * span - t, t)


def _light(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    b = p[:, 7].view(-1, 1, 1, 1)
    c = p[:, 8].view(-1, 1, 1, 1)
    s = p[:, 9].view(-1, 1, 1, 1)
    gains = p[:, 10:13].view(-1, 3, 1, 1)
    gamma = p[:, 13].view(-1, 1, 1, 1)
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    gray = x.mean(dim=1, keepdim=True)
    x = gray + (x - gray) * s
    x = (x * gains).clamp(0, 1)
    return x**gamma


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A Gaussian blur of each image's own sigma (0: none), one grouped convolution."""
    if not bool((sigma > 0).any()):
        return x
    radius = 4
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * s**2))
    k = torch.where(sigma.view(-1, 1) > 0, k, (t.view(1, -1) == 0).to(x.dtype))
    k = k / k.sum(dim=1, keepdim=True)
    b, c, h, w = x.shape
    kernel = k.repeat_interleave(c, dim=0)  # (B*3, taps)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, -1), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return y.view(b, c, h, w)


def _resolution_and_jpeg(x: torch.Tensor, slot: torch.Tensor, out: int) -> torch.Tensor:
    lowres = slot < 0
    if bool(lowres.any()):
        for k in torch.nonzero(lowres).flatten().tolist():
            small = max(8, int(out * float(-slot[k])))
            y = F.interpolate(
                x[k : k + 1], size=(small, small), mode="bilinear", align_corners=False
            )
            x[k : k + 1] = F.interpolate(y, size=(out, out), mode="bilinear", align_corners=False)
    jpeg = slot > 0
    if bool(jpeg.any()) and out % 8 == 0:
        idx = torch.nonzero(jpeg).flatten()
        x[idx] = jpeg_like(x[idx], slot[idx])
    return x


# The standard JPEG luminance quantisation table (ITU-T T.81, Annex K).
_LUMA_Q = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)


def _dct_matrix(device: torch.device) -> torch.Tensor:
    n = torch.arange(8, dtype=torch.float32, device=device)
    m = torch.cos(math.pi * (2 * n.view(1, -1) + 1) * n.view(-1, 1) / 16)
    m[0] *= 1 / math.sqrt(2)
    return m * math.sqrt(2 / 8)


def jpeg_like(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's block artefacts without encoding: 8 x 8 DCT of every channel, quantised
    with the luminance table scaled to each image's quality (libjpeg's scaling), back."""
    b, c, h, w = x.shape
    d = _dct_matrix(x.device)
    q = quality.clamp(1, 100).view(-1, 1, 1, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q) / 100
    table = (_LUMA_Q.to(x.device).view(1, 1, 1, 8, 8) * scale).clamp(min=1) / 255.0
    blocks = x.reshape(b, c, h // 8, 8, w // 8, 8).permute(0, 1, 2, 4, 3, 5)
    coef = d @ blocks.reshape(b, c, -1, 8, 8) @ d.T
    coef = torch.round(coef / table) * table
    back = d.T @ coef @ d
    back = back.reshape(b, c, h // 8, w // 8, 8, 8).permute(0, 1, 2, 4, 3, 5)
    return back.reshape(b, c, h, w).clamp(0, 1)


def describe(cfg: TensorAugment | None) -> dict[str, Any]:
    """The augmentation as plain data (stored with a run)."""
    if cfg is None:
        return {"augment": "none"}
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
