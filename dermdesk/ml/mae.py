"""Masked-autoencoder pretraining of a timm ViT: the model, its masking and its loss.

The recipe follows He et al., *Masked Autoencoders Are Scalable Vision Learners*
(facebookresearch/mae), written here around timm's VisionTransformer so the encoder's
state dict is exactly a timm classifier's minus its head (fine-tuning loads it by name):

- the image is cut into patches; a random ``mask_ratio`` of them (exactly
  ``N - round(N * (1 - mask_ratio))`` per image) is dropped before the encoder, which
  sees only the visible patches plus its class token;
- a light decoder (its own width and depth, fixed 2-D sine-cosine positions) gets the
  encoded visible patches and a shared mask token in every dropped place and predicts
  each patch's pixels;
- the loss is the mean squared error on the *masked* patches only, against pixels
  normalised per patch (mean 0, variance 1: the paper's ``norm_pix_loss``).

The mask noise comes from outside (one uniform number per patch, drawn from the
sample's seeded generator), so a resumed job masks exactly as it would have.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from dermdesk.inference.preprocess import MEAN, STD


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings, (grid*grid, dim); dim divisible by 4."""
    if dim % 4:
        raise ValueError(f"decoder width {dim} must be divisible by 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64),
        torch.arange(grid, dtype=torch.float64),
        indexing="ij",
    )
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


def keep_count(n_patches: int, mask_ratio: float) -> int:
    """Visible patches per image (at least one)."""
    return max(1, round(n_patches * (1.0 - mask_ratio)))


class MaskedAutoencoder(nn.Module):
    """A timm ViT encoder (``self.encoder``) with an MAE decoder on top."""

    def __init__(
        self,
        encoder: nn.Module,
        *,
        decoder_dim: int = 256,
        decoder_depth: int = 4,
        decoder_heads: int = 8,
        mask_ratio: float = 0.75,
        norm_pix: bool = True,
    ) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask ratio must be between 0 and 1, not {mask_ratio}")
        pe: Any = getattr(encoder, "patch_embed", None)
        if pe is None or getattr(encoder, "num_prefix_tokens", 1) != 1:
            raise ValueError("MAE needs a ViT with one class token (no register tokens)")
        self.encoder = encoder
        self.patch = int(pe.patch_size[0])
        self.grid = int(pe.grid_size[0])
        self.n_patches = self.grid * self.grid
        self.mask_ratio = mask_ratio
        self.norm_pix = norm_pix
        width = int(encoder.embed_dim)  # type: ignore[arg-type]
        self.decoder_embed = nn.Linear(width, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = torch.cat([torch.zeros(1, decoder_dim), sincos_2d(decoder_dim, self.grid)])
        self.register_buffer("decoder_pos", pos[None], persistent=False)
        self.decoder_blocks = nn.Sequential(
            *[
                Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                for _ in range(decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in [self.decoder_embed, self.decoder_pred]:
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    # -- pieces ---------------------------------------------------------------------------------

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, N, patch*patch*3), row-major patches, channels last."""
        b, c, _, _ = images.shape
        p, g = self.patch, self.grid
        x = images.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, g * g, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        b = patches.shape[0]
        p, g = self.patch, self.grid
        x = patches.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 3, g * p, g * p)

    def masking(self, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kept patch indices (B, K), binary mask (B, N; 1 = dropped), restore order)."""
        keep = keep_count(self.n_patches, self.mask_ratio)
        order = torch.argsort(noise, dim=1)  # the lowest noise stays visible
        restore = torch.argsort(order, dim=1)
        mask = torch.ones_like(noise)
        mask[:, :keep] = 0
        return order[:, :keep], torch.gather(mask, 1, restore), restore

    def encode(self, images: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """The encoder on the visible patches only: (B, 1 + K, width)."""
        enc: Any = self.encoder
        x = enc.patch_embed(images) + enc.pos_embed[:, 1:]
        x = torch.gather(x, 1, kept[..., None].expand(-1, -1, x.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = enc.norm_pre(torch.cat([cls, x], dim=1))
        return enc.norm(enc.blocks(x))

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch, (B, N, patch*patch*3)."""
        x = self.decoder_embed(latent)
        b, n = x.shape[0], self.n_patches
        fill = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], fill], dim=1)
        patches = torch.gather(patches, 1, restore[..., None].expand(-1, -1, x.shape[-1]))
        pos: torch.Tensor = self.decoder_pos  # type: ignore[assignment]
        x = torch.cat([x[:, :1], patches], dim=1) + pos
        x = self.decoder_norm(self.decoder_blocks(x))
        out: torch.Tensor = self.decoder_pred(x)[:, 1:]
        return out

    def target(self, images: torch.Tensor) -> torch.Tensor:
        t = self.patchify(images)
        if self.norm_pix:
            mean = t.mean(dim=-1, keepdim=True)
            var = t.var(dim=-1, keepdim=True)
            t = (t - mean) / (var + 1e-6) ** 0.5
        return t

    def forward(
        self, images: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss on the masked patches, predicted patches, mask)."""
        kept, mask, restore = self.masking(noise)
        pred = self.decode(self.encode(images, kept), restore).float()
        err = ((pred - self.target(images).float()) ** 2).mean(dim=-1)
        loss = (err * mask).sum() / mask.sum()
        return loss, pred, mask

    def reconstruct(
        self, images: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input, reconstruction with the visible patches pasted back), both in the
        input's (normalised) space, for previews."""
        _, pred, mask = self.forward(images, noise)
        patches = self.patchify(images)
        if self.norm_pix:  # undo the per-patch normalisation with the true patch statistics
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6) ** 0.5
            pred = pred * std + mean
        m = mask[..., None]
        masked = self.unpatchify(patches * (1 - m))
        recon = self.unpatchify(patches * (1 - m) + pred * m)
        return masked, recon


def preview_grid(
    originals: torch.Tensor, masked: torch.Tensor, recon: torch.Tensor, columns: int = 8
) -> np.ndarray:
    """An RGB uint8 grid: per image a column of original / masked / reconstruction."""
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)

    def to_u8(x: torch.Tensor) -> np.ndarray:
        rgb = (x.detach().float().cpu() * std + mean).clamp(0, 1) * 255
        u8: np.ndarray = rgb.round().byte().permute(0, 2, 3, 1).numpy()
        return u8

    rows = [to_u8(t) for t in (originals, masked, recon)]
    n, size = min(columns, len(originals)), originals.shape[-1]
    gap = 2
    out = np.full((3 * size + 2 * gap, n * size + (n - 1) * gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        for c in range(n):
            y, x = r * (size + gap), c * (size + gap)
            out[y : y + size, x : x + size] = images[c]
    return out
