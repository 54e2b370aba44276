"""The modality detector's network: a small CNN that tells dermoscopic from clinical.

Trained by ``scripts/fit_priors.py`` on every source of ../shared/data and shipped
as ONNX (``resources/modality_net.onnx``); the app runs it through ONNX Runtime
(:mod:`dermdesk.imaging.modality`), so torch is needed only to train it.

Input: the whole frame squashed to ``INPUT`` x ``INPUT`` (see
:func:`dermdesk.imaging.modality.network_input`), so the field-of-view geometry
(a dark round frame, corners) and the texture scale are both in view. What it
must not learn is the *source*: each source of the shared data holds one
modality only, so a network can score well by recognising a camera's colour or
a dataset's framing. Training therefore balances every (source, modality) cell,
and every image is seen through random changes that keep its modality but
break the source's signature (:func:`augment`): crops that drop the frame,
colour and exposure shifts, blur, JPEG, noise, flips; clinical photos given
a dark dermoscope-like round frame while keeping their clinical label, so a
frame alone never decides; and any photo shrunk onto a non-skin backdrop
(:func:`backdrop`) labelled clinical, because a frame that shows something
beside skin is what no dermatoscope shows. Without that view a network trained
with one clinical source (PAD-UFES-20's close-ups) called hands and torsos on a
blue drape dermoscopic: it had learnt "clinical looks like PAD-UFES-20", and
everything else was the other class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from dermdesk.imaging.modality import NET_INPUT as INPUT
from dermdesk.imaging.modality import TEXTURE_CROP, texture_crops

log = logging.getLogger(__name__)
CACHE_SIDE = 160  # training crops are cut from the frame at this size, then resized to INPUT


@dataclass(frozen=True)
class Recipe:
    epochs: int = 14
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    seed: int = 0
    crop_p: float = 0.6
    frame_p: float = 0.15  # clinical images given a dermoscope-like frame
    view: str = "frame"  # or "texture": TEXTURE_CROP squares of the TEXTURE_SIDE frame
    colour_transfer_p: float = 0.5  # an image given another image's colour statistics
    mixstyle_p: float = 0.5  # feature statistics mixed across the batch (MixStyle)
    backdrop_p: float = 0.3  # images shrunk onto a non-skin backdrop, labelled clinical


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class MixStyle(nn.Module):
    """Mixes each image's per-channel feature mean and std with another image's of the
    batch while training (Zhou et al., ICLR 2021: "Domain generalization with MixStyle"):
    the early features' statistics carry the camera and the source's look, so mixing them
    hides the source but not the content. The identity at inference (and in ONNX)."""

    def __init__(self, p: float, alpha: float = 0.1) -> None:
        super().__init__()
        self.p, self.alpha = p, alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or torch.rand(()) > self.p or x.shape[0] < 2:
            return x
        mu = x.mean(dim=(2, 3), keepdim=True)
        sig = (x.var(dim=(2, 3), keepdim=True) + 1e-6).sqrt()
        mu, sig = mu.detach(), sig.detach()
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((x.shape[0], 1, 1, 1))
        perm = torch.randperm(x.shape[0])
        mixed_mu = lam * mu + (1 - lam) * mu[perm]
        mixed_sig = lam * sig + (1 - lam) * sig[perm]
        return (x - mu) / sig * mixed_sig + mixed_mu


class ModalityNet(nn.Module):
    """Five strided stages (16-32-64-96-128 channels), average and max pooled, one logit
    (the log-odds of dermoscopic). About 0.3 M parameters. MixStyle after the first two
    stages while training."""

    def __init__(self, mixstyle_p: float = 0.0) -> None:
        super().__init__()
        widths = (16, 32, 64, 96, 128)
        layers: list[nn.Module] = []
        cin = 3
        for i, w in enumerate(widths):
            layers += _block(cin, w, 2)
            if i < len(widths) - 1:
                layers += _block(w, w, 1)
            if i < 2:
                layers.append(MixStyle(mixstyle_p))
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * cin, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """uint8-valued float NHWC -> logit (N,)."""
        x = (x.permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.25
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


# -- augmentation ----------------------------------------------------------------------------------


def augment(
    img: np.ndarray,
    clinical: bool,
    rng: np.random.Generator,
    r: Recipe,
    colour: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One training view of an image that keeps its modality: for the frame view an INPUT
    square of a CACHE_SIDE image, for the texture view a TEXTURE_CROP square of a
    TEXTURE_SIDE one (uint8 RGB). ``colour``: another image's per-channel mean and std,
    given to this one (so a source's colour says nothing)."""
    side = img.shape[0]
    size = INPUT
    if r.view == "texture":
        size = TEXTURE_CROP
        c = min(side, int(TEXTURE_CROP * rng.uniform(0.8, 1.25)))
        x0, y0 = (int(rng.integers(0, side - c + 1)) for _ in range(2))
        img = img[y0 : y0 + c, x0 : x0 + c]
    elif rng.random() < r.crop_p:
        scale = rng.uniform(0.5, 0.95)
        cw = int(side * scale * rng.uniform(0.85, 1.15))
        ch = int(side * scale * rng.uniform(0.85, 1.15))
        cw, ch = min(cw, side), min(ch, side)
        x0 = int(rng.integers(0, side - cw + 1))
        y0 = int(rng.integers(0, side - ch + 1))
        img = img[y0 : y0 + ch, x0 : x0 + cw]
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = np.ascontiguousarray(np.rot90(out, int(rng.integers(4))))
    x = out.astype(np.float32)
    if colour is not None:
        mean, std = x.mean(axis=(0, 1)), x.std(axis=(0, 1)) + 1.0
        t = float(rng.uniform(0.5, 1.0))
        x = (x - mean) / std * (t * colour[1] + (1 - t) * std) + (t * colour[0] + (1 - t) * mean)
    if rng.random() < 0.8:
        x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32) * float(rng.uniform(0.7, 1.3))
        gray = x.mean(axis=2, keepdims=True)
        x = gray + (x - gray) * float(rng.uniform(0.6, 1.4))
        x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** float(rng.uniform(0.7, 1.4))
    if rng.random() < 0.3:
        x = np.asarray(cv2.GaussianBlur(x, (0, 0), float(rng.uniform(0.3, 1.5))), np.float32)
    if rng.random() < 0.3:
        x = x + rng.normal(0, rng.uniform(1, 5), x.shape).astype(np.float32)
    if clinical and r.view == "frame" and rng.random() < r.frame_p:
        x = _dark_round_frame(x, rng)
    out = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        quality = int(rng.integers(20, 91))
        ok, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED) if ok else None
        if decoded is not None:
            out = decoded
    return out


def backdrop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An INPUT square view shrunk onto a non-skin backdrop (a drape, a wall, a couch: a
    colour with a gradient and grain), the skin's outline an irregular blob rather than a
    rectangle. What the photo shows beside the skin is what no dermatoscope shows, so the
    view is labelled clinical whatever the image was."""
    return backdrop_and_region(img, rng)[0]


def backdrop_and_region(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:func:`backdrop` and the photo's share of each pixel (INPUT x INPUT, 0-1)."""
    n = INPUT
    scale = float(rng.uniform(0.4, 0.85))
    w = max(8, min(n, round(n * scale * rng.uniform(0.8, 1.25))))
    h = max(8, min(n, round(n * scale * rng.uniform(0.8, 1.25))))
    small = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    x0, y0 = int(rng.integers(0, n - w + 1)), int(rng.integers(0, n - h + 1))
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 160), rng.uniform(60, 245)]]])
    colour = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[:n, :n].astype(np.float32) / n
    angle = rng.uniform(0, 2 * math.pi)
    ramp = 1 + float(rng.uniform(-0.3, 0.3)) * (math.cos(angle) * xx + math.sin(angle) * yy - 0.5)
    out = colour * ramp[:, :, None] + rng.normal(0, rng.uniform(1, 8), (n, n, 3))
    # the skin's region: an ellipse filling the pasted box, its edge moved by smooth noise
    cy, cx = y0 + h / 2, x0 + w / 2
    r = np.hypot((yy * n - cy) / (h / 2), (xx * n - cx) / (w / 2))
    wobble = cv2.resize(rng.normal(0, 0.25, (5, 5)).astype(np.float32), (n, n))
    limit = float(rng.uniform(1.0, 1.4)) + wobble  # above ~1.41 the box's corners show
    mask = np.clip((limit - r) / 0.08, 0, 1)
    box = np.zeros((n, n), np.float32)
    box[y0 : y0 + h, x0 : x0 + w] = 1
    region = mask * box
    pasted = np.zeros((n, n, 3), np.float32)
    pasted[y0 : y0 + h, x0 : x0 + w] = small
    mixed = pasted * region[:, :, None] + out * (1 - region[:, :, None])
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8), region


def _dark_round_frame(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:INPUT, :INPUT]
    c = (INPUT - 1) / 2
    radius = np.hypot(yy - c, xx - c) / (INPUT / 2)
    edge = float(rng.uniform(0.85, 1.1))
    mask = np.clip((edge - radius) / 0.06, 0, 1)[:, :, None].astype(np.float32)
    return x * mask + float(rng.uniform(0, 25)) * (1 - mask)


# -- training --------------------------------------------------------------------------------------


def balanced_weights(groups: np.ndarray) -> np.ndarray:
    """Sampling weights that give every group (source x modality) the same share."""
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w / w.sum()


def train(
    images: np.ndarray,
    dermoscopic: np.ndarray,
    groups: np.ndarray,
    recipe: Recipe = Recipe(),
    progress: Callable[[int, float], None] | None = None,
) -> ModalityNet:
    """Train on CACHE_SIDE images (N, S, S, 3) uint8 with labels (N,) bool, sampling every
    group of ``groups`` equally. Deterministic for a recipe's seed and torch's thread count
    on the CPU (the same weights in every run; another thread count sums differently)."""
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    net = ModalityNet(recipe.mixstyle_p)
    stats = [cv2.meanStdDev(img) for img in images]  # per image: no float copy of them all
    means = np.array([m.ravel() for m, _ in stats], np.float32)
    stds = np.array([d.ravel() for _, d in stats], np.float32)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    weights = balanced_weights(groups)
    steps_per_epoch = max(1, len(images) // recipe.batch)
    total = steps_per_epoch * recipe.epochs
    warmup = max(1, min(50, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / total))
    )
    loss_fn = nn.BCEWithLogitsLoss()
    net.train()
    for epoch in range(recipe.epochs):
        running = 0.0
        for _ in range(steps_per_epoch):
            idx = rng.choice(len(images), recipe.batch, p=weights)
            refs = rng.integers(0, len(images), len(idx))
            batch = np.stack(
                [
                    augment(
                        images[i],
                        not dermoscopic[i],
                        rng,
                        recipe,
                        (means[j], stds[j]) if rng.random() < recipe.colour_transfer_p else None,
                    )
                    for i, j in zip(idx, refs, strict=True)
                ]
            )
            labels = dermoscopic[idx].copy()
            if recipe.backdrop_p > 0:
                for k in np.flatnonzero(rng.random(len(batch)) < recipe.backdrop_p):
                    batch[k] = backdrop(batch[k], rng)
                    labels[k] = False
            x = torch.from_numpy(batch).float()
            y = torch.from_numpy(labels.astype(np.float32))
            loss = loss_fn(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += float(loss.detach())
        if progress is not None:
            progress(epoch + 1, running / steps_per_epoch)
    net.eval()
    return net


@torch.no_grad()
def predict(net: ModalityNet, inputs: np.ndarray, view: str = "frame") -> np.ndarray:
    """P(dermoscopic) of network inputs: (N, INPUT, INPUT, 3) uint8 frames, or for the
    texture view (N, TEXTURE_SIDE, TEXTURE_SIDE, 3) frames whose nine crops' log-odds are
    averaged."""
    net.eval()
    out = []
    for i in range(0, len(inputs), 64):
        chunk = inputs[i : i + 64]
        if view == "texture":
            crops = np.concatenate([texture_crops(f) for f in chunk])
            logit = net(torch.from_numpy(crops).float()).reshape(len(chunk), -1).mean(dim=1)
        else:
            logit = net(torch.from_numpy(chunk).float())
        out.append(torch.sigmoid(logit).numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def export_onnx(net: ModalityNet, path: Path) -> None:
    """Write the network as ONNX (input ``image``: float NHWC 0-255, output ``logit``)."""
    from dermdesk.ml.export import write_onnx

    write_onnx(net, torch.zeros(2, INPUT, INPUT, 3), path, output="logit")
