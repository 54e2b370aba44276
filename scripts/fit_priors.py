"""Fit what the checker learns from data: the modality model and the colour prior.

Writes resources/modality_model.json (dermoscopic vs clinical network) and
prints the ``CAST_PRIOR`` literal for dermdesk/imaging/quality_config.py (the
usual colour of photos per modality, for the colour-cast check).

Training images (all in ../shared/data): dermoscopic ham10000_224, isic2017 and
ph2; clinical fitzpatrick17k_more and the PAD-UFES-20 images of even-numbered
patients. Held out for scripts/eval_quality.py: ham10000, fitzpatrick17k and
the PAD-UFES-20 images of odd-numbered patients. Every dataset weighs the
same in the loss, whatever its size. Deterministic (fixed seed).

The modality network also learns from degraded copies of every training image
(see :func:`degraded_copies`): re-saved as a heavier JPEG, and shrunk then
re-saved. Without them a clinical phone photo passed through a messaging app
(half size, JPEG quality 60) looked dermoscopic half the time, because
compression wipes out the fine skin texture the network reads. The colour
prior is fitted on the untouched images only.

    PYTHONPATH=. python scripts/fit_priors.py [--workers 2]
    PYTHONPATH=. python scripts/fit_priors.py --cv   # cross-validation only, writes nothing
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _shared import ROOT, SHARED_DATA, manifest, pad_training_fold
from PIL import Image

from dermdesk.imaging.checks import cast_vector
from dermdesk.imaging.modality import MODEL_FILE, features
from dermdesk.imaging.working import WorkImage, decode_for_checks

TRAIN_SETS = ("ham10000_224", "isic2017", "ph2", "fitzpatrick17k_more")
HIDDEN = 16
L2 = 1e-3
STEPS = 3000
SEED = 0
# Degraded copies per training image: JPEG quality drawn from these ranges, and
# the shrunk copy's scale (its longest side is never cut below SHRINK_MIN_SIDE).
HEAVY_JPEG = (15, 90)
SHRINK = (0.3, 0.8)
SHRINK_JPEG = (30, 95)
SHRINK_MIN_SIDE = 160


def training_rows() -> list[dict[str, str]]:
    rows = [r for r in manifest(extra=True) if r["dataset"] in TRAIN_SETS]
    rows += [
        r for r in manifest() if r["dataset"] == "pad_ufes_20" and pad_training_fold(r["file"])
    ]
    return rows


def degraded_copies(path: str) -> list[bytes]:
    """Two JPEG copies of a training image, drawn by a generator seeded from its name:
    one re-saved at a low quality, one shrunk and re-saved (what messaging apps and
    photo exports do to clinic photos)."""
    rng = np.random.default_rng([SEED, zlib.crc32(path.encode())])
    with Image.open(SHARED_DATA / path) as im:
        rgb = im.convert("RGB")
    heavy = _jpeg(rgb, int(rng.integers(*HEAVY_JPEG, endpoint=True)))
    scale = max(float(rng.uniform(*SHRINK)), SHRINK_MIN_SIDE / max(rgb.size))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    shrunk = rgb.resize(size, Image.Resampling.LANCZOS) if scale < 1 else rgb
    return [heavy, _jpeg(shrunk, int(rng.integers(*SHRINK_JPEG, endpoint=True)))]


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def feature_rows(path: str) -> tuple[list[dict[str, float]], list[float]]:
    """Modality features of the image and of its degraded copies; its colour vector."""
    work = WorkImage(decode_for_checks(SHARED_DATA / path))
    feats = [features(work)]
    feats += [features(WorkImage(decode_for_checks(copy))) for copy in degraded_copies(path)]
    return feats, cast_vector(work).tolist()


def extract(
    rows: list[dict[str, str]], workers: int
) -> list[tuple[list[dict[str, float]], list[float]]]:
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(feature_rows, [r["file"] for r in rows], chunksize=16))


def cast_prior(rows: list[dict[str, str]], vectors: list[list[float]]) -> str:
    """The CAST_PRIOR literal: mean and inverse covariance of the colour vector per modality,
    from the public training sets only (PAD-UFES-20 is an evaluation set for this check)."""
    lines = ["CAST_PRIOR: dict[str, tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]] = {"]
    for modality in ("clinical", "dermoscopic"):
        v = np.array(
            [
                x
                for r, x in zip(rows, vectors, strict=True)
                if r["modality"] == modality and r["dataset"] in TRAIN_SETS
            ]
        )
        mean, inv = v.mean(axis=0), np.linalg.inv(np.cov(v.T))
        lines.append(f'    "{modality}": (')
        lines.append(f"        {tuple(round(float(m), 4) for m in mean)},")
        lines.append(f"        {tuple(tuple(round(float(c), 3) for c in row) for row in inv)},")
        lines.append("    ),")
    return "\n".join([*lines, "}"])


def train(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """One-hidden-layer tanh network, logistic loss, Adam, group-balanced weights."""
    rng = np.random.default_rng(SEED)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    weight /= weight.mean()
    p = {
        "w1": rng.normal(0, 1 / np.sqrt(x.shape[1]), (x.shape[1], HIDDEN)),
        "b1": np.zeros(HIDDEN),
        "w2": rng.normal(0, 1 / np.sqrt(HIDDEN), HIDDEN),
        "b2": np.zeros(1),
    }
    m1 = {k: np.zeros_like(v) for k, v in p.items()}
    m2 = {k: np.zeros_like(v) for k, v in p.items()}
    for step in range(1, STEPS + 1):
        hidden = np.tanh(x @ p["w1"] + p["b1"])
        prob = 1 / (1 + np.exp(-(hidden @ p["w2"] + p["b2"][0])))
        g = (prob - y) * weight / len(y)
        d_hidden = np.outer(g, p["w2"]) * (1 - hidden**2)
        grads = {
            "w1": x.T @ d_hidden + L2 * p["w1"],
            "b1": d_hidden.sum(axis=0),
            "w2": hidden.T @ g + L2 * p["w2"],
            "b2": np.array([g.sum()]),
        }
        for k in p:
            m1[k] = 0.9 * m1[k] + 0.1 * grads[k]
            m2[k] = 0.999 * m2[k] + 0.001 * grads[k] ** 2
            p[k] -= 0.01 * (m1[k] / (1 - 0.9**step)) / (np.sqrt(m2[k] / (1 - 0.999**step)) + 1e-8)
    return p


def logits(params: dict[str, np.ndarray], z: np.ndarray) -> np.ndarray:
    """The network's log-odds of dermoscopic for standardised features ``z``."""
    return np.tanh(z @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"][0]


def fit_and_test(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, train_rows: np.ndarray, test_rows: np.ndarray
) -> np.ndarray:
    """Train on ``train_rows`` (standardised by their own statistics); True where the
    prediction on ``test_rows`` is right."""
    mean, std = x[train_rows].mean(axis=0), x[train_rows].std(axis=0) + 1e-9
    params = train((x[train_rows] - mean) / std, y[train_rows], groups[train_rows])
    return (logits(params, (x[test_rows] - mean) / std) > 0) == (y[test_rows] > 0.5)


def cross_validate(x: np.ndarray, y: np.ndarray, groups: np.ndarray, copies: int) -> None:
    """Print accuracy on untouched images (a) of a dataset left out of training, one at a
    time, and (b) of 5 random folds of images (an image and its copies share a fold)."""
    image = np.arange(len(y)) // copies
    untouched = np.arange(len(y)) % copies == 0
    print("leave one dataset out (accuracy on its untouched images):")
    for name in np.unique(groups):
        out = groups == name
        ok = fit_and_test(x, y, groups, ~out, out & untouched)
        print(f"  {name}: {ok.mean():.1%} of {ok.size}")
    fold = np.random.default_rng(SEED).integers(0, 5, image.max() + 1)[image]
    right = np.zeros(len(y), bool)
    for k in range(5):
        right[(fold == k) & untouched] = fit_and_test(
            x, y, groups, fold != k, (fold == k) & untouched
        )
    per_set = {name: right[(groups == name) & untouched].mean() for name in np.unique(groups)}
    print(
        "5-fold by image (untouched images): "
        + ", ".join(f"{name} {acc:.1%}" for name, acc in per_set.items())
        + f"; dataset mean {np.mean(list(per_set.values())):.1%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / MODEL_FILE)
    parser.add_argument("--cv", action="store_true", help="cross-validate only; write nothing")
    args = parser.parse_args()
    rows = training_rows()
    start = time.perf_counter()
    extracted = extract(rows, args.workers)
    # One training row per image and per altered copy, all in the image's dataset group.
    copies = len(extracted[0][0])
    feats = [f for fs, _ in extracted for f in fs]
    names = sorted(feats[0])
    x = np.nan_to_num(np.array([[f[n] for n in names] for f in feats], dtype=np.float64))
    y = np.repeat([r["modality"] == "dermoscopic" for r in rows], copies).astype(np.float64)
    groups = np.repeat([r["dataset"] for r in rows], copies)
    if args.cv:
        cross_validate(x, y, groups, copies)
        return 0
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    params = train((x - mean) / std, y, groups)
    model = {
        "about": "P(dermoscopic) = sigmoid(w2 . tanh(((x - mean) / std) @ w1 + b1) + b2); "
        "written by scripts/fit_priors.py",
        "trained_on": {str(g): int((groups == g).sum()) // copies for g in np.unique(groups)},
        "copies_per_image": copies,
        "features": names,
        "mean": mean.round(6).tolist(),
        "std": std.round(6).tolist(),
        "w1": params["w1"].round(6).tolist(),
        "b1": params["b1"].round(6).tolist(),
        "w2": params["w2"].round(6).tolist(),
        "b2": round(float(params["b2"][0]), 6),
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    acc = np.mean((logits(params, (x - mean) / std) > 0) == (y > 0.5))
    print(
        f"{len(rows)} images x {copies}, {len(names)} features, training accuracy {acc:.3f}, "
        f"{time.perf_counter() - start:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    print(cast_prior(rows, [v for _, v in extracted]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
