"""Dermoscopic -> clinical adaptation: gap-mimicking transforms, a contrastive stage 1 and a
guided stage 2 (issue 18). Torch only; the experiment runs use it through
:mod:`dermdesk.ml.experiment_job`.

**Gap transforms** make a photo look as if it came from the other domain, on whole
batches of [0, 1] tensors (after the training augmentation's geometry, before
normalisation), on the GPU when the batch lives there:

- dermoscopic -> clinical-looking: the dark field-of-view edge filled with skin colour
  (vignette removal), a zoom-out onto surrounding skin with a slight perspective shear
  (scale change, background skin), defocus and motion blur, exposure and white-balance
  shifts, a shadow across the frame, JPEG blocking;
- clinical -> dermoscopic-looking: a magnified centre crop, even (polarised-like)
  lighting with the highlights tamed, a dark circular field of view.

Each image's parameters are drawn on the CPU from a generator seeded by (seed, epoch,
index) like every other augmentation, so a resumed run repeats them.

**Stage 1** (:class:`ContrastModel`, :func:`supcon_loss`): a supervised contrastive
objective (Khosla et al. 2020; labels used where present, else only the two views of an
image are positives) between an ordinary view of each training image and a view moved
across the gap, plus cross-entropy on both views' logits.

**Stage 2** (:func:`guided_loss`): tuning on the clinical images that keeps the
dermoscopic knowledge: learning without forgetting (Li & Hoiem 2016: the start model's
temperature-softened outputs on dermoscopic training images, computed once) plus L2-SP
(Li et al. 2018: squared distance of the backbone's weights to the start weights).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from dermdesk.ml.cached_data import CachedTrainViews, train_inputs
from dermdesk.ml.data import Sample, balanced_weights
from dermdesk.ml.tensor_augment import (
    N_PARAMS,
    TensorAugment,
    _blur,
    augment_pixels,
    draw_params,
    jpeg_like,
    normalise,
)

TO_CLINICAL = 1.0
TO_DERMOSCOPIC = -1.0

# Layout of one image's gap parameters.
(
    DIRECTION,
    VIGNETTE_FILL,
    ZOOM_OUT,
    SHEAR,
    DEFOCUS,
    MOTION_LEN,
    MOTION_ANGLE,
    EXPOSURE,
    WB_R,
    WB_G,
    WB_B,
    SHADOW,
    SHADOW_ANGLE,
    JPEG,
    MAGNIFY,
    EVEN_LIGHT,
    FOV_RADIUS,
) = range(17)
N_GAP_PARAMS = 17


@dataclass(frozen=True)
class GapConfig:
    """Probabilities and ranges of each gap transform."""

    p: float = 0.8  # share of second views moved across the gap at all
    vignette_fill_p: float = 0.9
    zoom_out_p: float = 0.5
    zoom_out: tuple[float, float] = (0.55, 0.9)  # the photo's share of the new frame
    shear: float = 0.15
    defocus_p: float = 0.5
    defocus_sigma: tuple[float, float] = (0.6, 2.0)  # pixels at the output size
    motion_p: float = 0.3
    motion_len: tuple[float, float] = (0.03, 0.08)  # of the frame
    exposure: tuple[float, float] = (0.7, 1.35)
    white_balance: float = 0.15
    shadow_p: float = 0.3
    shadow: tuple[float, float] = (0.2, 0.5)
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (25, 80)
    magnify_p: float = 0.7
    magnify: tuple[float, float] = (1.3, 2.2)
    even_light_p: float = 0.7
    fov_p: float = 0.8
    fov_radius: tuple[float, float] = (0.75, 1.05)  # of half the frame's side


GAP = GapConfig()


def draw_gap_params(rng: np.random.Generator, direction: float, cfg: GapConfig = GAP) -> np.ndarray:
    """One image's gap parameters (float32): ``direction`` +1 towards clinical-looking,
    -1 towards dermoscopic-looking; a draw that moves nothing has direction 0."""
    p = np.zeros(N_GAP_PARAMS, dtype=np.float32)
    p[[ZOOM_OUT, EXPOSURE, WB_R, WB_G, WB_B, MAGNIFY]] = 1.0
    if direction == 0 or rng.random() >= cfg.p:
        return p
    p[DIRECTION] = direction
    if direction > 0:
        p[VIGNETTE_FILL] = float(rng.random() < cfg.vignette_fill_p)
        if rng.random() < cfg.zoom_out_p:
            p[ZOOM_OUT] = rng.uniform(*cfg.zoom_out)
            p[SHEAR] = rng.uniform(-cfg.shear, cfg.shear)
        if rng.random() < cfg.defocus_p:
            p[DEFOCUS] = rng.uniform(*cfg.defocus_sigma)
        if rng.random() < cfg.motion_p:
            p[MOTION_LEN] = rng.uniform(*cfg.motion_len)
            p[MOTION_ANGLE] = rng.uniform(0, math.pi)
        p[EXPOSURE] = math.exp(rng.uniform(*np.log(cfg.exposure)))
        p[WB_R : WB_B + 1] = rng.uniform(1 - cfg.white_balance, 1 + cfg.white_balance, 3)
        if rng.random() < cfg.shadow_p:
            p[SHADOW] = rng.uniform(*cfg.shadow)
            p[SHADOW_ANGLE] = rng.uniform(0, 2 * math.pi)
        if rng.random() < cfg.jpeg_p:
            p[JPEG] = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    else:
        if rng.random() < cfg.magnify_p:
            p[MAGNIFY] = rng.uniform(*cfg.magnify)
        if rng.random() < cfg.even_light_p:
            p[EVEN_LIGHT] = rng.uniform(0.6, 1.0)
        if rng.random() < cfg.fov_p:
            p[FOV_RADIUS] = rng.uniform(*cfg.fov_radius)
    return p


# -- the transforms, each on a (B, 3, H, W) float batch in [0, 1] --------------------------------


def _per_image(v: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    return t.expand(len(x)).reshape(-1, 1, 1, 1) if t.ndim == 0 else t.reshape(-1, 1, 1, 1)


def _grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Output pixel centres in [-1, 1]: (u, v) of shape (1, H, W)."""
    _, _, h, w = x.shape
    v = (torch.arange(h, device=x.device, dtype=x.dtype) + 0.5) / h * 2 - 1
    u = (torch.arange(w, device=x.device, dtype=x.dtype) + 0.5) / w * 2 - 1
    return u.view(1, 1, w).expand(1, h, w), v.view(1, h, 1).expand(1, h, w)


def skin_colour(x: torch.Tensor) -> torch.Tensor:
    """Each image's skin colour (B, 3, 1, 1): the median of its central half's pixels that
    are not part of a dark field-of-view edge."""
    _, _, h, w = x.shape
    centre = x[:, :, h // 4 : h - h // 4, w // 4 : w - w // 4].flatten(2)
    return centre.median(dim=2).values.view(-1, 3, 1, 1)


def fill_vignette(x: torch.Tensor, amount: torch.Tensor | float = 1.0) -> torch.Tensor:
    """A dermoscope's dark edge painted skin-coloured: pixels clearly darker than the skin,
    towards the frame's edge only (a dark lesion in the middle is never painted over)."""
    skin = skin_colour(x)
    lum = x.mean(dim=1, keepdim=True)
    level = skin.mean(dim=1, keepdim=True)
    dark = ((0.75 * level - lum) / (0.2 * level + 1e-3)).clamp(0, 1)  # soft mask
    u, v = _grid(x)
    radius = torch.sqrt((u**2 + v**2) / 2).unsqueeze(1)  # 0 at the centre, 1 at a corner
    edge = ((radius - 0.45) / 0.2).clamp(0, 1)
    return x + (skin - x) * dark * edge * _per_image(amount, x)


def zoom_out(
    x: torch.Tensor, share: torch.Tensor | float, shear: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """The photo shrunk to ``share`` of the frame (with a perspective-like shear) on
    surrounding skin of its own colour, shaded a little towards the edges."""
    b = len(x)
    s = torch.as_tensor(share, dtype=x.dtype, device=x.device).expand(b)
    k = torch.as_tensor(shear, dtype=x.dtype, device=x.device).expand(b)
    theta = torch.zeros((b, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1 / s
    theta[:, 0, 1] = k / s
    theta[:, 1, 1] = 1 / s
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    inside = ((grid.abs() <= 1).all(dim=-1)).unsqueeze(1).to(x.dtype)
    photo = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    u, v = _grid(x)
    falloff = 1 - 0.15 * (u**2 + v**2).unsqueeze(1) / 2
    background = skin_colour(x) * falloff
    return photo * inside + background * (1 - inside)


def defocus(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """A Gaussian blur of each image's own sigma in pixels (0: none)."""
    return _blur(x, torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(len(x)))


def motion_blur(
    x: torch.Tensor, length: torch.Tensor | float, angle: torch.Tensor | float, taps: int = 9
) -> torch.Tensor:
    """A straight camera shake: the mean of ``taps`` copies shifted along ``angle`` over
    ``length`` (a share of the frame)."""
    b = len(x)
    n = torch.as_tensor(length, dtype=x.dtype, device=x.device).expand(b)
    a = torch.as_tensor(angle, dtype=x.dtype, device=x.device).expand(b)
    base = F.affine_grid(
        torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(b, 2, 3),
        list(x.shape),
        align_corners=False,
    )
    out = torch.zeros_like(x)
    for t in torch.linspace(-0.5, 0.5, taps, dtype=x.dtype).tolist():
        shift = torch.stack([torch.cos(a), torch.sin(a)], dim=1) * (n * 2 * t).view(-1, 1)
        out += F.grid_sample(
            x, base + shift.view(b, 1, 1, 2), padding_mode="border", align_corners=False
        )
    return out / taps


def white_balance(
    x: torch.Tensor, gains: torch.Tensor, exposure: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Per-channel gains (B, 3) and an exposure factor, in linear light."""
    linear = x.clamp(0, 1) ** 2.2
    linear = linear * gains.view(-1, 3, 1, 1).to(x) * _per_image(exposure, x)
    return linear.clamp(0, 1) ** (1 / 2.2)


def shadow(
    x: torch.Tensor, strength: torch.Tensor | float, angle: torch.Tensor | float
) -> torch.Tensor:
    """A soft shadow darkening one side of the frame by up to ``strength``."""
    u, v = _grid(x)
    a = _per_image(angle, x)
    ramp = (torch.cos(a) * u.unsqueeze(1) + torch.sin(a) * v.unsqueeze(1)).clamp(-1, 1)
    return x * (1 - _per_image(strength, x) * (ramp + 1) / 2)


def magnify(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """The centre enlarged ``factor`` times (what a dermatoscope's lens shows)."""
    b = len(x)
    f = torch.as_tensor(factor, dtype=x.dtype, device=x.device).expand(b)
    theta = torch.zeros((b, 2, 3), dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1 / f
    theta[:, 1, 1] = 1 / f
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def even_lighting(x: torch.Tensor, amount: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Uneven illumination flattened (the luminance divided by its blurred self) and
    highlights tamed, as under a polarised dermatoscope's ring light."""
    lum = x.mean(dim=1, keepdim=True)
    _, _, h, w = x.shape
    # the illumination field: the luminance averaged over a 4 x 4 grid, smoothly upsampled
    small = F.interpolate(lum, size=(4, 4), mode="area")
    field = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    flat = x * (field.mean(dim=(2, 3), keepdim=True) / field.clamp(min=0.05))
    flat = flat.clamp(0, 1)
    knee = 0.85
    flat = torch.where(flat > knee, knee + (flat - knee) * 0.3, flat)
    return x + (flat - x) * _per_image(amount, x)


def circular_fov(x: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """A dermatoscope's round field of view: black outside ``radius`` (a share of half the
    frame's shorter side), with a narrow soft edge."""
    u, v = _grid(x)
    r = torch.sqrt(u**2 + v**2).unsqueeze(1)
    edge = ((_per_image(radius, x) - r) / 0.04).clamp(0, 1)
    return x * edge + 0.02 * (1 - edge)


def apply_gap(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Each image of a [0, 1] batch moved across the gap as its parameters say."""
    p = p.to(x.device, x.dtype)
    out = x.clone()
    to_clin = torch.nonzero(p[:, DIRECTION] > 0).flatten()
    if len(to_clin):
        q, y = p[to_clin], x[to_clin]
        y = fill_vignette(y, q[:, VIGNETTE_FILL])
        y = zoom_out(y, q[:, ZOOM_OUT], q[:, SHEAR])
        y = defocus(y, q[:, DEFOCUS])
        if bool((q[:, MOTION_LEN] > 0).any()):
            moved = motion_blur(y, q[:, MOTION_LEN], q[:, MOTION_ANGLE])
            y = torch.where((q[:, MOTION_LEN] > 0).view(-1, 1, 1, 1), moved, y)
        y = white_balance(y, q[:, WB_R : WB_B + 1], q[:, EXPOSURE])
        y = shadow(y, q[:, SHADOW], q[:, SHADOW_ANGLE])
        jpeg = torch.nonzero(q[:, JPEG] > 0).flatten()
        if len(jpeg) and y.shape[-1] % 8 == 0 and y.shape[-2] % 8 == 0:
            y[jpeg] = jpeg_like(y[jpeg], q[jpeg, JPEG])
        out[to_clin] = y
    to_derm = torch.nonzero(p[:, DIRECTION] < 0).flatten()
    if len(to_derm):
        q, y = p[to_derm], x[to_derm]
        y = magnify(y, q[:, MAGNIFY])
        y = even_lighting(y, q[:, EVEN_LIGHT])
        fov = q[:, FOV_RADIUS]
        y = torch.where((fov > 0).view(-1, 1, 1, 1), circular_fov(y, fov.clamp(min=0.1)), y)
        out[to_derm] = y
    return out.clamp(0, 1)


def direction_of(modality: str) -> float:
    """Which way an image of this modality is moved: across to the other domain."""
    if modality == "dermoscopic":
        return TO_CLINICAL
    if modality == "clinical":
        return TO_DERMOSCOPIC
    return 0.0


def preview_grid(
    images: list[tuple[np.ndarray, float]], size: int = 160, seed: int = 0
) -> Image.Image:
    """One row per image: the photo, then each gap transform of its direction alone, then
    three random draws of the whole chain (what stage 1's second views look like)."""
    rows = []
    rng = np.random.default_rng(seed)
    for rgb, direction in images:
        x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().unsqueeze(0)
        x = F.interpolate(x / 255.0, size=(size, size), mode="area")
        if direction > 0:
            singles = [
                fill_vignette(x),
                zoom_out(x, 0.65, 0.1),
                defocus(x, 2.0),
                motion_blur(x, 0.06, 0.5),
                white_balance(x, torch.tensor([[1.15, 1.0, 0.85]]), 1.25),
                shadow(x, 0.45, 0.7),
                jpeg_like(x, torch.tensor([25.0])),
            ]
        else:
            singles = [magnify(x, 1.8), even_lighting(x), circular_fov(x, 0.9)]
        draws = [
            apply_gap(x, torch.from_numpy(draw_gap_params(rng, direction, GapConfig(p=1.0)))[None])
            for _ in range(3)
        ]
        row = torch.cat([x, *singles, *draws], dim=3)
        rows.append(row)
    width = max(r.shape[3] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[3])) for r in rows]
    grid = torch.cat(rows, dim=2)[0].permute(1, 2, 0).clamp(0, 1).mul(255).byte().numpy()
    return Image.fromarray(grid)


def save_preview(cache: Any, samples: Sequence[Sample], path: Any, seed: int = 0) -> bool:
    """The gap transforms of up to three dermoscopic and three clinical training images
    (:func:`preview_grid`) as a PNG a person can look at; False when there are none."""
    picked: list[tuple[np.ndarray, float]] = []
    for modality in ("dermoscopic", "clinical"):
        of = [s for s in samples if s.modality == modality]
        order = np.random.default_rng((seed, 0x9E7)).permutation(len(of))[:3]
        picked += [(np.array(cache.get(of[i].image_id)), direction_of(modality)) for i in order]
    if not picked:
        return False
    preview_grid(picked, size=128, seed=seed).save(path)
    return True


# -- stage 1 -----------------------------------------------------------------------------------


class ContrastModel(nn.Module):
    """A classifier with a projection head on its pooled features; ``forward`` gives the
    classifier's logits, so evaluation and export see a plain classifier."""

    def __init__(self, classifier: nn.Module, dim: int = 128) -> None:
        super().__init__()
        self.classifier = classifier
        width = int(classifier.num_features)  # type: ignore[arg-type]
        self.projection = nn.Sequential(
            nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim)
        )

    def forward(self, x: torch.Tensor, with_embedding: bool = False) -> Any:
        """Logits, or (logits, normalised embedding) for training (through ``forward``, so
        a DistributedDataParallel wrapper synchronises the projection's gradients too)."""
        if not with_embedding:
            return self.classifier(x)
        c = self.classifier
        pooled = c.forward_head(c.forward_features(x), pre_logits=True)  # type: ignore[operator]
        head = c.get_classifier()  # type: ignore[operator]
        logits = (head[0] if isinstance(head, tuple) else head)(pooled)
        return logits, F.normalize(self.projection(pooled), dim=1)


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss of L2-normalised embeddings ``z`` (2B, d): rows i and
    i + B are two views of one image; rows with the same label >= 0 are positives too."""
    n = len(z)
    b = n // 2
    sim = (z @ z.T) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(eye, float("-inf"))
    idx = torch.arange(n, device=z.device)
    pair = (idx.view(-1, 1) % b) == (idx.view(1, -1) % b)
    same = (labels.view(-1, 1) == labels.view(1, -1)) & (labels.view(-1, 1) >= 0)
    positive = (pair | same) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~positive, 0.0)
    per_row = log_prob.sum(dim=1) / positive.sum(dim=1).clamp(min=1)
    return -per_row.mean()


# -- stage 2 -----------------------------------------------------------------------------------


def backbone_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of every trainable weight except the classifier head (L2-SP's anchor)."""
    from dermdesk.ml.models import classifier_head

    head = set(classifier_head(model))
    return {
        name: p.detach().clone()
        for name, p in model.named_parameters()
        if p.requires_grad and name not in head
    }


def l2_sp(model: nn.Module, anchor: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of squared distances of the backbone's weights to the start weights."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, p in model.named_parameters():
        start = anchor.get(name)
        if start is not None:
            total = total + ((p - start.to(p.device)) ** 2).sum()
    return total


def guided_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    keep: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    *,
    temperature: float,
    lwf_weight: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy on the clinical rows (``keep`` False) plus, on the dermoscopic rows
    (``keep`` True), the KL divergence to the start model's softened outputs (x T^2)."""
    total = torch.zeros((), device=logits.device)
    learn = ~keep
    if bool(learn.any()):
        total = total + F.cross_entropy(
            logits[learn], labels[learn], label_smoothing=label_smoothing
        )
    if bool(keep.any()) and lwf_weight > 0:
        student = F.log_softmax(logits[keep] / temperature, dim=1)
        teacher = F.log_softmax(teacher_log_probs[keep] / temperature, dim=1)
        kl = F.kl_div(student, teacher, log_target=True, reduction="batchmean")
        total = total + lwf_weight * kl * temperature**2
    return total


# -- the two stages' training steps (the experiment runs and the adapt job share them) ----------


def stage1_loss(
    model: nn.Module,
    batch: Any,
    device: torch.device,
    size: int,
    *,
    label_smoothing: float,
    contrast_weight: float,
    contrast_temperature: float,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy on both views of a :class:`GapViews` batch + the weighted supervised
    contrastive term between them (``model`` is a :class:`ContrastModel`, maybe wrapped)."""
    first, second, y = gap_inputs(batch, device, size)
    logits, z = model(torch.cat([first, second]), with_embedding=True)
    labels = torch.cat([y, y])
    ce = F.cross_entropy(
        logits.float(), labels, weight=class_weight, label_smoothing=label_smoothing
    )
    return ce + contrast_weight * supcon_loss(z.float(), labels, contrast_temperature)


def stage2_loss(
    model: nn.Module,
    batch: Any,
    device: torch.device,
    size: int,
    *,
    labels: torch.Tensor,
    targets: torch.Tensor,
    n_learn: int,
    anchor: dict[str, torch.Tensor],
    lwf_weight: float,
    lwf_temperature: float,
    sp_weight: float,
    label_smoothing: float,
) -> torch.Tensor:
    """:func:`guided_loss` on a :class:`MixedViews` batch (indices below ``n_learn`` are
    clinical images to learn, the rest dermoscopic ones to keep) + L2-SP to ``anchor``."""
    x, idx = train_inputs(batch, device, size)
    idx = idx.cpu()
    loss = guided_loss(
        model(x).float(),
        labels[idx].to(device),
        (idx >= n_learn).to(device),
        targets[idx].to(device),
        temperature=lwf_temperature,
        lwf_weight=lwf_weight,
        label_smoothing=label_smoothing,
    )
    if sp_weight > 0:
        loss = loss + sp_weight * l2_sp(getattr(model, "module", model), anchor)
    return loss


# -- what the runs train on ----------------------------------------------------------------------


class GapViews(CachedTrainViews):
    """Stage 1's items: the pixels, the label and three parameter blocks: the first view's
    augmentation, the second view's augmentation, the second view's gap transform (its
    direction from the image's modality)."""

    def __init__(self, *args: Any, gap: GapConfig = GAP, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gap = gap

    def item(self, i: int, epoch: int) -> tuple[np.ndarray, int, np.ndarray]:
        pixels, label, first = super().item(i, epoch)
        rng = np.random.default_rng((self.seed, epoch, i, 0x6A9))
        h, w = pixels.shape[:2]
        second = draw_params(rng, self.augment, h, w)
        gap = draw_gap_params(rng, direction_of(self.samples[i].modality), self.gap)
        return pixels, label, np.concatenate([first, second, gap])


def gap_inputs(
    batch: Any, device: torch.device, out: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A :class:`GapViews` batch -> (first views, second views, labels), normalised."""
    pixels, sizes, labels, params = batch
    pixels = pixels.to(device, non_blocking=True)
    first = augment_pixels(pixels, sizes, params[:, :N_PARAMS], out)
    second = augment_pixels(pixels, sizes, params[:, N_PARAMS : 2 * N_PARAMS], out)
    second = apply_gap(second, params[:, 2 * N_PARAMS :])
    return normalise(first), normalise(second), labels.to(device, non_blocking=True)


class MixedViews(CachedTrainViews):
    """Stage 2's items: ``len(learn)`` clinical draws, class-balanced, then as many
    dermoscopic draws (uniform) to keep; the label slot carries the index into
    ``learn + keep`` (the loss looks up the label or the start model's outputs by it).
    An epoch costs twice a plain fine-tuning epoch and shows it as many clinical draws."""

    def __init__(
        self,
        cache: Any,
        learn: Sequence[Sample],
        keep: Sequence[Sample],
        *,
        n_classes: int,
        seed: int,
        augment: TensorAugment | None,
    ) -> None:
        super().__init__(cache, [*learn, *keep], seed=seed, augment=augment)
        self.n_learn = len(learn)
        self.n_keep = len(keep)
        self.learn_p = balanced_weights(list(learn), n_classes)

    def __len__(self) -> int:
        return 2 * self.n_learn if self.n_keep else self.n_learn

    def item(self, i: int, epoch: int) -> tuple[np.ndarray, int, np.ndarray]:
        rng = np.random.default_rng((self.seed, epoch, i, 0x5F2))
        if i < self.n_learn:
            j = int(rng.choice(self.n_learn, p=self.learn_p))
        else:
            j = self.n_learn + int(rng.integers(self.n_keep))
        pixels = self.cache.get(self.samples[j].image_id)
        params = draw_params(rng, self.augment, pixels.shape[0], pixels.shape[1])
        return pixels, j, params
