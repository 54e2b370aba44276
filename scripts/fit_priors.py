"""Fit what the checker learns from data: the modality detector and the colour prior.

Modality (dermoscopic or clinical), by default the networks of
dermdesk/ml/modality_net.py (torch to train; the app runs the ONNX files):

    PYTHONPATH=. python scripts/fit_priors.py --cv     # leave-one-source-out, writes nothing
    PYTHONPATH=. python scripts/fit_priors.py          # the shipped networks -> resources/

``--cv`` trains, for each of the five sources of ../shared/data, a network on the
other four and scores every image of the one left out; the predictions are kept in
.bench/ and the table printed per network and for their combinations. A fold's
"unsure" threshold is calibrated on the other folds' predictions only. The
shipped networks learn from the training images below, and their threshold
(``sure_confidence`` in resources/modality_nets.json) is the lowest confidence
at which every source's out-of-source predictions were right SURE_ACCURACY of the
time (0.995 when none is).

``--hand`` fits the earlier hand-feature network instead (resources/modality_model.json,
used when modality_nets.json is absent) and prints the ``CAST_PRIOR`` literal for
dermdesk/imaging/quality_config.py (the usual colour of photos per modality):

    PYTHONPATH=. python scripts/fit_priors.py --hand [--cv] [--views heavy_jpeg,shrunk]

Training images (all in ../shared/data): dermoscopic ham10000_224, isic2017 and
ph2; clinical fitzpatrick17k_more and the PAD-UFES-20 images of even-numbered
patients. Held out for scripts/eval_quality.py: ham10000, fitzpatrick17k and
the PAD-UFES-20 images of odd-numbered patients. Every source (and modality)
weighs the same, whatever its size. Deterministic on the CPU for a thread count (fixed
seeds; another torch thread count gives other weights). Two sessions' runs of one recipe
have differed by up to 2.5 points on a leave-one-source-out fold: treat that as noise.
"""

from __future__ import annotations

import argparse
import inspect
import io
import itertools
import json
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _shared import ROOT, SHARED_DATA, manifest, pad_training_fold
from PIL import Image, ImageFilter

from dermdesk.imaging.checks import cast_vector
from dermdesk.imaging.modality import (
    MODEL_FILE,
    NETS_FILE,
    features,
    network_input,
    texture_frame,
)
from dermdesk.imaging.working import WorkImage, decode_for_checks

TRAIN_SETS = ("ham10000_224", "isic2017", "ph2", "fitzpatrick17k_more")
# The five sources of ../shared/data: a leave-one-source-out fold holds out every image of
# one (both folders of a dataset that comes in two).
SOURCES = {
    "ham10000": ("ham10000", "ham10000_224"),
    "isic2017": ("isic2017",),
    "ph2": ("ph2",),
    "fitzpatrick17k": ("fitzpatrick17k", "fitzpatrick17k_more"),
    "pad_ufes_20": ("pad_ufes_20", "pad_ufes_20_more"),
}
SOURCE_OF = {folder: source for source, folders in SOURCES.items() for folder in folders}
HIDDEN = 16
L2 = 1e-3
STEPS = 3000
SEED = 0
# The detector says "unsure" below the confidence at which, left out of training, every
# source was recognised at least this often (see calibrate).
SURE_ACCURACY = 0.97
# Degraded copies per training image: JPEG quality drawn from these ranges, and
# the shrunk copy's scale (its longest side is never cut below SHRINK_MIN_SIDE).
HEAVY_JPEG = (15, 90)
SHRINK = (0.3, 0.8)
SHRINK_JPEG = (30, 95)
SHRINK_MIN_SIDE = 160
CACHE = ROOT / ".bench" / "modality_features.npz"
IMAGE_CACHE = ROOT / ".bench" / "modality_images.npz"
TEXTURE_CACHE = ROOT / ".bench" / "modality_texture.npz"


def training_rows() -> list[dict[str, str]]:
    """The images the shipped model learns from (eval_quality.py's held-out ones excluded)."""
    return [r for r in all_rows() if _trains_shipped_model(r)]


def _trains_shipped_model(row: dict[str, str]) -> bool:
    if row["dataset"].startswith("pad_ufes_20"):
        return pad_training_fold(row["file"])
    return row["dataset"] in TRAIN_SETS


def all_rows() -> list[dict[str, str]]:
    """Every image of ../shared/data with its source (for leave-one-source-out)."""
    rows = manifest() + manifest(extra=True)
    return [{**r, "source": SOURCE_OF[r["dataset"]]} for r in rows if r["dataset"] in SOURCE_OF]


# -- views -----------------------------------------------------------------------------------------
# Each training image is seen as stored and as altered copies, each drawn by a generator seeded
# from (view, file name) so a refit is deterministic. A copy keeps its image's label: the point is
# to teach the network which differences do not change the modality.


def _rng(view: str, path: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(view.encode()), zlib.crc32(path.encode())])


def _open(path: str) -> Image.Image:
    with Image.open(SHARED_DATA / path) as im:
        return im.convert("RGB")


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def view_heavy_jpeg(path: str, modality: str) -> bytes:
    """Re-saved at a low JPEG quality (what messaging apps do)."""
    rng = _rng("heavy_jpeg", path)
    return _jpeg(_open(path), int(rng.integers(*HEAVY_JPEG, endpoint=True)))


def view_shrunk(path: str, modality: str) -> bytes:
    """Shrunk and re-saved (photo exports)."""
    rng = _rng("shrunk", path)
    rgb = _open(path)
    scale = max(float(rng.uniform(*SHRINK)), SHRINK_MIN_SIDE / max(rgb.size))
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    shrunk = rgb.resize(size, Image.Resampling.LANCZOS) if scale < 1 else rgb
    return _jpeg(shrunk, int(rng.integers(*SHRINK_JPEG, endpoint=True)))


def view_colour(path: str, modality: str) -> bytes:
    """Other light and camera: per-channel gains, tone curve and saturation changed (the
    sources differ most in colour, which says nothing about the modality)."""
    rng = _rng("colour", path)
    x = np.asarray(_open(path), dtype=np.float32) / 255.0
    x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32) * float(rng.uniform(0.75, 1.25))
    gray = x.mean(axis=2, keepdims=True)
    x = gray + (x - gray) * float(rng.uniform(0.6, 1.4))
    x = np.clip(x, 0, 1) ** float(rng.uniform(0.7, 1.4))
    return _jpeg(Image.fromarray((x * 255 + 0.5).astype(np.uint8)), 92)


def view_zoom(path: str, modality: str) -> bytes:
    """The central 45-75 % of the frame at the full size: a dermoscopic image without its
    field-of-view edge, a clinical photo as a close-up."""
    rng = _rng("zoom", path)
    img = _open(path)
    side = float(rng.uniform(0.45, 0.75))
    w, h = img.size
    cw, ch = round(w * side), round(h * side)
    box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
    return _jpeg(img.crop(box).resize((w, h), Image.Resampling.BICUBIC), 92)


def view_defocus(path: str, modality: str) -> bytes:
    """Out of focus and compressed (a hand-held photo; a dermatoscope not pressed flat)."""
    rng = _rng("defocus", path)
    img = _open(path)
    radius = float(rng.uniform(0.8, 2.5)) * max(img.size) / 512
    blurred = img.filter(ImageFilter.GaussianBlur(radius))
    return _jpeg(blurred, int(rng.integers(60, 90, endpoint=True)))


def view_scope_frame(path: str, modality: str) -> bytes | None:
    """A clinical photo made to look dermoscopic: a dark circular field of view around a
    magnified centre. It stays labelled clinical, so a dark round frame alone never makes an
    image dermoscopic (dermoscopic images do not get this view)."""
    if modality != "clinical":
        return None
    rng = _rng("scope_frame", path)
    img = _open(path)
    w, h = img.size
    side = round(min(w, h) * float(rng.uniform(0.5, 0.9)))
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    out = np.asarray(img.crop(box).resize((512, 512), Image.Resampling.BICUBIC), np.float32)
    yy, xx = np.mgrid[:512, :512]
    r = np.hypot(yy - 255.5, xx - 255.5) / 256.0
    edge = float(rng.uniform(0.85, 1.05))
    mask = np.clip((edge - r) / 0.06, 0, 1)[:, :, None]
    return _jpeg(Image.fromarray((out * mask + 8 * (1 - mask)).astype(np.uint8)), 90)


VIEWS: dict[str, Callable[[str, str], bytes | None]] = {
    "heavy_jpeg": view_heavy_jpeg,
    "shrunk": view_shrunk,
    "colour": view_colour,
    "zoom": view_zoom,
    "defocus": view_defocus,
    "scope_frame": view_scope_frame,
}


def view_features(job: tuple[str, str, str]) -> list[float]:
    """The modality features of one view of one image (``as_stored`` or a VIEWS name);
    NaN where the view does not apply to the image's modality."""
    path, modality, view = job
    if view == "as_stored":
        data: bytes | None = (SHARED_DATA / path).read_bytes()
    else:
        data = VIEWS[view](path, modality)
    if data is None:
        return [float("nan")] * len(FEATURE_NAMES)
    f = features(WorkImage(decode_for_checks(data)))
    return [f[n] for n in FEATURE_NAMES]


def _feature_names() -> list[str]:
    work = WorkImage(decode_for_checks(SHARED_DATA / manifest()[0]["file"]))
    return sorted(features(work))


FEATURE_NAMES = _feature_names()


def _cache_key(view: str) -> str:
    """Changes when the feature code or the view's code changes (its features are then
    computed again)."""
    parts = [Path(inspect.getfile(features)).read_bytes(), view.encode()]
    if view in VIEWS:
        parts += [inspect.getsource(fn).encode() for fn in (_open, _jpeg, _rng, VIEWS[view])]
    return f"{zlib.crc32(b''.join(parts)):08x}|{view}"


def feature_table(
    rows: list[dict[str, str]], views: list[str], workers: int
) -> dict[str, np.ndarray]:
    """(len(rows), len(FEATURE_NAMES)) features per view, from the cache where it has them."""
    cached: dict[str, np.ndarray] = {}
    current = {_cache_key(v) for v in ("as_stored", *VIEWS)}
    if CACHE.is_file():
        with np.load(CACHE, allow_pickle=False) as z:
            cached = {k: z[k] for k in z.files if k.removesuffix("|files") in current}
    out = {}
    for view in views:
        name = _cache_key(view)
        files_before = cached.get(f"{name}|files", np.array([])).tolist()
        have = dict(zip(files_before, cached.get(name, []), strict=True))
        todo = [r for r in rows if r["file"] not in have]
        if todo:
            start = time.perf_counter()
            jobs = [(r["file"], r["modality"], view) for r in todo]
            with ProcessPoolExecutor(workers) as pool:
                for r, v in zip(todo, pool.map(view_features, jobs, chunksize=16), strict=True):
                    have[r["file"]] = np.asarray(v)
            took = time.perf_counter() - start
            print(f"features: {view}, {len(todo)} images, {took:.0f} s", file=sys.stderr)
            files = sorted(have)
            cached[name] = np.array([have[f] for f in files])
            cached[f"{name}|files"] = np.array(files)
            CACHE.parent.mkdir(exist_ok=True)
            np.savez(CACHE, **cached)
        out[view] = np.array([have[r["file"]] for r in rows], dtype=np.float64)
    return out


# -- the network's images --------------------------------------------------------------------------


def network_images(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(training frame at CACHE_SIDE, the exact network input) of one image, decoded as the
    app decodes it."""
    from dermdesk.ml.modality_net import CACHE_SIDE

    rgb = decode_for_checks(SHARED_DATA / path).rgb
    big = cv2.resize(rgb, (CACHE_SIDE, CACHE_SIDE), interpolation=cv2.INTER_AREA)
    return big, network_input(rgb)


def texture_image(path: str) -> np.ndarray:
    """The texture network's frame of one image, decoded as the app decodes it."""
    return texture_frame(decode_for_checks(SHARED_DATA / path).rgb)


def texture_table(rows: list[dict[str, str]], workers: int) -> np.ndarray:
    """:func:`texture_image` of every row, from TEXTURE_CACHE where it has them."""
    have: dict[str, np.ndarray] = {}
    if TEXTURE_CACHE.is_file():
        with np.load(TEXTURE_CACHE, allow_pickle=False) as z:
            have = dict(zip(z["files"].tolist(), z["frames"], strict=True))
    todo = [r["file"] for r in rows if r["file"] not in have]
    if todo:
        with ProcessPoolExecutor(workers) as pool:
            have.update(zip(todo, pool.map(texture_image, todo, chunksize=32), strict=True))
        files = sorted(have)
        IMAGE_CACHE.parent.mkdir(exist_ok=True)
        np.savez(TEXTURE_CACHE, files=np.array(files), frames=np.stack([have[f] for f in files]))
    return np.stack([have[r["file"]] for r in rows])


def image_table(rows: list[dict[str, str]], workers: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`network_images` of every row, from IMAGE_CACHE where it has them."""
    have: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if IMAGE_CACHE.is_file():
        with np.load(IMAGE_CACHE, allow_pickle=False) as z:
            have = dict(
                zip(z["files"].tolist(), zip(z["big"], z["small"], strict=True), strict=True)
            )
    todo = [r["file"] for r in rows if r["file"] not in have]
    if todo:
        start = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            for f, v in zip(todo, pool.map(network_images, todo, chunksize=32), strict=True):
                have[f] = v
        print(f"images: {len(todo)} decoded, {time.perf_counter() - start:.0f} s", file=sys.stderr)
        files = sorted(have)
        IMAGE_CACHE.parent.mkdir(exist_ok=True)
        np.savez(
            IMAGE_CACHE,
            files=np.array(files),
            big=np.stack([have[f][0] for f in files]),
            small=np.stack([have[f][1] for f in files]),
        )
    return (
        np.stack([have[r["file"]][0] for r in rows]),
        np.stack([have[r["file"]][1] for r in rows]),
    )


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
    x32 = x.astype(np.float32)
    m1 = {k: np.zeros_like(v) for k, v in p.items()}
    m2 = {k: np.zeros_like(v) for k, v in p.items()}
    for step in range(1, STEPS + 1):
        hidden = np.tanh(x32 @ p["w1"].astype(np.float32) + p["b1"].astype(np.float32))
        prob = 1 / (1 + np.exp(-(hidden @ p["w2"] + p["b2"][0])))
        g = (prob - y) * weight / len(y)
        d_hidden = np.outer(g, p["w2"]).astype(np.float32) * (1 - hidden**2)
        grads = {
            "w1": x32.T @ d_hidden + L2 * p["w1"],
            "b1": d_hidden.sum(axis=0).astype(np.float64),
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


@dataclass
class Data:
    """Training rows: one per image and applicable view, each in its image's source."""

    x: np.ndarray
    y: np.ndarray  # 1.0 = dermoscopic
    source: np.ndarray
    untouched: np.ndarray  # the image as stored (what a fold is scored on)

    def where(self, keep: np.ndarray) -> Data:
        return Data(self.x[keep], self.y[keep], self.source[keep], self.untouched[keep])


def assemble(rows: list[dict[str, str]], table: dict[str, np.ndarray]) -> Data:
    xs, ys, sources, untouched = [], [], [], []
    y = np.array([r["modality"] == "dermoscopic" for r in rows], dtype=np.float64)
    src = np.array([r["source"] for r in rows])
    for view, x in table.items():
        applies = ~np.isnan(x).all(axis=1)
        xs.append(np.nan_to_num(x[applies]))
        ys.append(y[applies])
        sources.append(src[applies])
        untouched.append(np.full(int(applies.sum()), view == "as_stored"))
    return Data(
        np.concatenate(xs), np.concatenate(ys), np.concatenate(sources), np.concatenate(untouched)
    )


def fit(data: Data) -> dict[str, np.ndarray]:
    """The network with its standardisation (``mean``, ``std``) fitted on ``data``."""
    mean, std = data.x.mean(axis=0), data.x.std(axis=0) + 1e-9
    params = train((data.x - mean) / std, data.y, data.source)
    return {**params, "mean": mean, "std": std}


def p_dermoscopic(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = logits(model, (x - model["mean"]) / model["std"])
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def out_of_source(data: Data) -> np.ndarray:
    """P(dermoscopic) of every untouched image by a network that never saw its source."""
    p = np.full(len(data.y), np.nan)
    for name in np.unique(data.source):
        out = data.source == name
        p[out & data.untouched] = p_dermoscopic(fit(data.where(~out)), data.x[out & data.untouched])
    return p


def calibrate(p: np.ndarray, y: np.ndarray, source: np.ndarray) -> float:
    """The lowest confidence at which every source's decided images are right at least
    SURE_ACCURACY of the time, from out-of-source predictions (never the images scored)."""
    conf = np.maximum(p, 1 - p)
    right = (p >= 0.5) == (y > 0.5)
    for c in np.arange(0.5, 1.0, 0.005):
        decided = conf >= c
        if all(
            right[decided & (source == s)].mean() >= SURE_ACCURACY
            for s in np.unique(source)
            if (decided & (source == s)).any()
        ):
            return round(float(c), 3)
    return 0.995


def leave_one_source_out(data: Data) -> None:
    """Print, per source left out: accuracy of every guess, the share the detector calls
    unsure (its threshold calibrated by an inner leave-one-source-out over the other
    sources only) and the accuracy of the rest."""
    table = []
    saved_p = np.full(int(data.untouched.sum()), np.nan)  # in the rows' order
    for name in np.unique(data.source):
        out = data.source == name
        train_part = data.where(~out)
        inner = out_of_source(train_part)
        scored = ~np.isnan(inner)
        threshold = calibrate(inner[scored], train_part.y[scored], train_part.source[scored])
        p = p_dermoscopic(fit(train_part), data.x[out & data.untouched])
        y = data.y[out & data.untouched] > 0.5
        saved_p[(data.source[data.untouched] == name)] = p
        right = (p >= 0.5) == y
        sure = np.maximum(p, 1 - p) >= threshold
        table.append(
            [
                name,
                int(y.size),
                f"{right.mean():.1%}",
                f"{threshold:.3f}",
                f"{1 - sure.mean():.1%}",
                f"{right[sure].mean():.1%}" if sure.any() else "-",
            ]
        )
        print(" | ".join(str(c) for c in table[-1]), file=sys.stderr)
    # kept beside the networks' so --cv --reuse --nets hand,frame can combine them
    np.savez(
        _loso_file("hand"),
        p=saved_p,
        y=data.y[data.untouched] > 0.5,
        source=data.source[data.untouched],
    )
    header = ["source left out", "images", "accuracy (all)", "sure at", "unsure", "accuracy (sure)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in table:
        print("| " + " | ".join(str(c) for c in row) + " |")


# -- the network -----------------------------------------------------------------------------------


def _train_net(big: np.ndarray, rows: list[dict[str, str]], label: str, view: str = "frame") -> Any:
    from dermdesk.ml import modality_net

    y = np.array([r["modality"] == "dermoscopic" for r in rows])
    groups = np.array([f"{r['source']}|{r['modality']}" for r in rows])
    start = time.perf_counter()

    def progress(epoch: int, loss: float) -> None:
        took = time.perf_counter() - start
        print(f"  {label}: epoch {epoch}, loss {loss:.3f}, {took:.0f} s", file=sys.stderr)

    return modality_net.train(big, y, groups, modality_net.Recipe(view=view), progress)


def net_leave_one_source_out(rows: list[dict[str, str]], workers: int, view: str) -> None:
    """The network's leave-one-source-out table: per source, a network trained on the other
    four scores every image of it; the fold's "unsure" threshold is calibrated on the other
    folds' out-of-source predictions only (never on the source it is applied to)."""
    from dermdesk.ml import modality_net

    if view == "texture":
        big = small = texture_table(rows, workers)
    else:
        big, small = image_table(rows, workers)
    source = np.array([r["source"] for r in rows])
    y = np.array([r["modality"] == "dermoscopic" for r in rows])
    p = np.full(len(rows), np.nan)
    for name in np.unique(source):
        out = source == name
        keep = [r for r, o in zip(rows, out, strict=True) if not o]
        net = _train_net(big[~out], keep, f"without {name}", view)
        p[out] = modality_net.predict(net, small[out], view)
        print(f"{name}: accuracy {((p[out] >= 0.5) == y[out]).mean():.1%}", file=sys.stderr)
        np.savez(_loso_file(view), p=p, y=y, source=source)
    print(f"\nthe {view} network alone:")
    print_loso_table(p, y, source)


def _loso_file(view: str) -> Path:
    return ROOT / ".bench" / f"modality_{view}_loso.npz"


def ensemble_loso(views: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The saved out-of-source P(dermoscopic) of the networks ``views``, combined as the app
    combines them (mean log-odds), with labels and sources."""
    logits, y, source = [], None, None
    for view in views:
        with np.load(_loso_file(view), allow_pickle=False) as z:
            p = np.clip(z["p"], 1e-9, 1 - 1e-9)
            logits.append(np.log(p / (1 - p)))
            y, source = z["y"], z["source"]
    assert y is not None and source is not None
    return 1 / (1 + np.exp(-np.mean(logits, axis=0))), y, source


def print_ensemble_table(views: list[str]) -> None:
    for k in range(1, len(views) + 1):
        for combo in itertools.combinations(views, k):
            print(f"\n{' + '.join(combo)}:")
            print_loso_table(*ensemble_loso(list(combo)))


def fit_networks(views: list[str], workers: int, reuse: bool = False) -> None:
    """Train the shipped networks on training_rows(), export them to resources/ as ONNX, and
    write NETS_FILE with the confidence calibrated on their leave-one-source-out predictions
    (``--cv`` must have run with the same networks)."""
    from dermdesk.ml import modality_net

    missing = [v for v in views if not _loso_file(v).is_file()]
    if missing:
        raise SystemExit(f"run --cv first (no out-of-source predictions for {missing})")
    p, y, source = ensemble_loso(views)
    threshold = calibrate(p, y.astype(float), source)
    rows = training_rows()
    files = {}
    for view in views:
        if view == "hand":  # the hand-feature network as it is (refit it with --hand)
            files[view] = MODEL_FILE
            continue
        if reuse and (ROOT / "resources" / f"modality_{view}.onnx").is_file():
            files[view] = f"modality_{view}.onnx"  # already trained by this recipe
            continue
        if view == "texture":
            big = small = texture_table(rows, workers)
        else:
            big, small = image_table(rows, workers)
        net = _train_net(big, rows, f"shipped {view}", view)
        file = f"modality_{view}.onnx"
        modality_net.export_onnx(net, ROOT / "resources" / file)
        files[view] = file
        acc = (
            (modality_net.predict(net, small, view) >= 0.5)
            == [r["modality"] == "dermoscopic" for r in rows]
        ).mean()
        print(f"{view}: training accuracy {acc:.3f} -> resources/{file}", file=sys.stderr)
    about = {
        "about": "modality networks written by scripts/fit_priors.py: P(dermoscopic) = "
        "sigmoid(mean of the networks' log-odds); 'unsure' below sure_confidence",
        "files": files,
        "sure_confidence": threshold,
        "sure_accuracy": SURE_ACCURACY,
        "trained_on": {s: sum(r["source"] == s for r in rows) for s in sorted(SOURCES)},
        "recipe": {k: v for k, v in vars(modality_net.Recipe()).items() if k != "view"},
    }
    (ROOT / "resources" / NETS_FILE).write_text(json.dumps(about, indent=1) + "\n", "utf-8")
    print(f"sure at confidence {threshold}", file=sys.stderr)


def print_loso_table(p: np.ndarray, y: np.ndarray, source: np.ndarray) -> None:
    """Accuracy, calibrated "unsure" share and accuracy of the sure ones, per source."""
    header = ["source left out", "images", "accuracy (all)", "sure at", "unsure", "accuracy (sure)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in np.unique(source):
        out = source == name
        threshold = calibrate(p[~out], y[~out].astype(float), source[~out])
        right = (p[out] >= 0.5) == y[out]
        sure = np.maximum(p[out], 1 - p[out]) >= threshold
        cells = [
            name,
            int(out.sum()),
            f"{right.mean():.1%}",
            f"{threshold:.3f}",
            f"{1 - sure.mean():.1%}",
            f"{right[sure].mean():.1%}" if sure.any() else "-",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "resources" / MODEL_FILE)
    parser.add_argument("--cv", action="store_true", help="cross-validate only; write nothing")
    parser.add_argument("--views", default=",".join(VIEWS), help="altered copies to learn from")
    parser.add_argument("--hand", action="store_true", help="the hand-feature network (before)")
    parser.add_argument(
        "--nets",
        default="hand,frame",
        help="the detectors combined: hand, frame, texture (comma-separated; --cv --reuse "
        "hand,... needs a --hand --cv run first)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse saved predictions (--cv) or networks",
    )
    args = parser.parse_args()
    views = ["as_stored", *[v for v in args.views.split(",") if v]]
    nets = [v for v in args.nets.split(",") if v]
    start = time.perf_counter()
    if not args.hand:
        if args.cv:
            for view in nets:
                if view == "hand":
                    if not _loso_file(view).is_file():
                        raise SystemExit("run --hand --cv first")
                    continue
                if not (args.reuse and _loso_file(view).is_file()):
                    net_leave_one_source_out(all_rows(), args.workers, view)
            print_ensemble_table(nets)
        else:
            fit_networks(nets, args.workers, args.reuse)
        print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        return 0
    if args.cv:
        rows = all_rows()
        leave_one_source_out(assemble(rows, feature_table(rows, views, args.workers)))
        print(f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
        return 0
    rows = training_rows()
    data = assemble(rows, feature_table(rows, views, args.workers))
    inner = out_of_source(data)
    scored = ~np.isnan(inner)
    threshold = calibrate(inner[scored], data.y[scored], data.source[scored])
    model_params = fit(data)
    model = {
        "about": "P(dermoscopic) = sigmoid(w2 . tanh(((x - mean) / std) @ w1 + b1) + b2); "
        "written by scripts/fit_priors.py",
        "trained_on": {
            s: int(((data.source == s) & data.untouched).sum()) for s in np.unique(data.source)
        },
        "views": views,
        "sure_confidence": threshold,
        "sure_accuracy": SURE_ACCURACY,
        "features": FEATURE_NAMES,
        **{
            k: np.asarray(model_params[k]).round(6).tolist()
            for k in ("mean", "std", "w1", "b1", "w2")
        },
        "b2": round(float(model_params["b2"][0]), 6),
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    acc = np.mean((p_dermoscopic(model_params, data.x) >= 0.5) == (data.y > 0.5))
    print(
        f"{len(rows)} images, views {', '.join(views)}, {len(FEATURE_NAMES)} features, "
        f"training accuracy {acc:.3f}, sure at confidence {threshold}, "
        f"{time.perf_counter() - start:.0f} s -> {args.out}",
        file=sys.stderr,
    )
    with ProcessPoolExecutor(args.workers) as pool:
        vectors = list(pool.map(colour_vector, [r["file"] for r in rows], chunksize=16))
    print(cast_prior(rows, vectors))
    return 0


def colour_vector(path: str) -> list[float]:
    return cast_vector(WorkImage(decode_for_checks(SHARED_DATA / path))).tolist()


if __name__ == "__main__":
    raise SystemExit(main())
