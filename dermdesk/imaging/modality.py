"""Dermoscopic or clinical? Detected from the look of the image.

A dermoscope images a ~2 cm field through a lens pressed on the skin: a
circular field of view with dark corners (on many devices), even light, no
background, skin texture at high magnification, no surface shine. A clinical
photo shows the skin surface from a distance: wrinkles and pores, shine,
shading, often background. Two detectors vote (mean log-odds), as
``resources/modality_nets.json`` says: a small numpy network over ~60 cheap
features (vignette geometry, CIELAB statistics, local binary patterns at two
scales, band energies, micro-specular highlights, hair width;
``resources/modality_model.json``) and a small CNN over the whole frame
(``resources/modality_frame.onnx``, run by ONNX Runtime; trained by
``dermdesk.ml.modality_net``). Both are fitted by ``scripts/fit_priors.py``,
which also calibrates the confidence below which a guess is "unsure".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.findings import CheckResult
from dermdesk.imaging.segment import hair_mask
from dermdesk.imaging.working import pct
from dermdesk.resources import resource_path

if TYPE_CHECKING:
    from dermdesk.imaging.working import WorkImage

log = logging.getLogger(__name__)
MODEL_FILE = "modality_model.json"
NET_INPUT = 128  # the network sees the whole frame squashed to this square


TEXTURE_SIDE = 256  # the texture view: the frame at this size, read in TEXTURE_CROP squares
TEXTURE_CROP = 96
TEXTURE_STARTS = (32, 80, 128)  # a 3 x 3 grid of crops over the central 75 % of the frame


def texture_frame(rgb: np.ndarray) -> np.ndarray:
    """The frame squashed to TEXTURE_SIDE square (skin texture at a fixed scale)."""
    return cv2.resize(rgb, (TEXTURE_SIDE, TEXTURE_SIDE), interpolation=cv2.INTER_AREA)


def texture_crops(frame: np.ndarray) -> np.ndarray:
    """The nine TEXTURE_CROP squares of a :func:`texture_frame` the texture network reads."""
    c = TEXTURE_CROP
    return np.stack([frame[y : y + c, x : x + c] for y in TEXTURE_STARTS for x in TEXTURE_STARTS])


def network_input(rgb: np.ndarray) -> np.ndarray:
    """The network's view of an image: the whole frame, squashed to NET_INPUT x NET_INPUT
    (area-averaged, so texture is measured at one scale whatever the file's size)."""
    return cv2.resize(rgb, (NET_INPUT, NET_INPUT), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class ModalityGuess:
    modality: str  # 'dermoscopic' or 'clinical'
    p_dermoscopic: float
    confidence: float  # 0.5 (a coin toss) to 1.0
    sure_at: float = cfg.MODALITY_SURE  # the detector's calibrated confidence

    @property
    def sure(self) -> bool:
        return self.confidence >= self.sure_at


def detect_modality(work: WorkImage) -> ModalityGuess:
    """Guess the modality of an image (see the module docstring)."""
    if work.too_small:
        return ModalityGuess("clinical", 0.5, 0.5)
    nets = _networks()
    if nets is not None:
        p = predict_networks(nets, work)
        sure_at = nets.sure_confidence
    else:
        p = predict(features(work))
        sure_at = float(_model().get("sure_confidence", cfg.MODALITY_SURE))
    modality = "dermoscopic" if p >= 0.5 else "clinical"
    return ModalityGuess(modality, p, max(p, 1.0 - p), sure_at)


def detect_modality_rgb(rgb: np.ndarray) -> ModalityGuess:
    """:func:`detect_modality` of an RGB array (a camera frame)."""
    from dermdesk.imaging.working import Decoded, WorkImage

    return detect_modality(WorkImage(Decoded.from_array(rgb)))


def check_modality(work: WorkImage, guess: ModalityGuess) -> CheckResult:
    """Report the detected modality; warn when it contradicts the recorded one."""
    score = round(guess.p_dermoscopic, 3)
    looks = f"looks {guess.modality} ({guess.confidence:.0%} sure)"
    if not guess.sure:  # below the calibrated confidence: a guess, stored as 'unsure'
        looks = f"looks {guess.modality} ({guess.confidence:.0%}; unsure below {guess.sure_at:.1%})"
    recorded = work.modality
    if recorded in ("clinical", "dermoscopic") and recorded != guess.modality and guess.sure:
        return CheckResult(
            "modality",
            score,
            "warn",
            f"recorded as {recorded} but {looks}: check the modality field",
        )
    return CheckResult("modality", score, "pass", looks)


# -- features --------------------------------------------------------------------------------------


def features(work: WorkImage) -> dict[str, float]:
    """The named features the model reads (same code for training and prediction)."""
    f = _frame_features(work)
    f.update(_centre_features(work))
    return f


def _frame_features(work: WorkImage) -> dict[str, float]:
    gray = work.gray_small
    g = gray.astype(np.float32)
    h, w = g.shape
    lab, fov = work.lab, work.fov
    (top, bottom, left, right), radius = work.frame
    half_diag = float(np.hypot(h, w) / 2)
    p90 = float(pct(g, 90)) + 1.0
    c = max(2, min(h, w) // 10)
    corners = [g[:c, :c], g[:c, -c:], g[-c:, :c], g[-c:, -c:]]
    edge = np.concatenate([g[:c].ravel(), g[-c:].ravel(), g[:, :c].ravel(), g[:, -c:].ravel()])
    centre = g[h // 4 : h - h // 4, w // 4 : w - w // 4]
    l_, a_, b_ = (lab[:, :, i][fov] for i in range(3))
    f: dict[str, float] = {
        "letterbox": 1.0 - (bottom - top) * (right - left) / (h * w),
        "vignette": 0.0 if radius is None else 1.0,
        "vig_r": 1.5 if radius is None else radius / half_diag,
        "corner_dark": float(pct(np.concatenate([x.ravel() for x in corners]), 50)) / p90,
        "corner_min4": min(float(pct(x, 50)) for x in corners) / p90,
        "centre_vs_edge": (float(pct(centre, 50)) + 1) / (float(pct(edge, 50)) + 1),
        "dark_frac": float((g < 0.25 * p90).mean()),
    }
    for name, v in (("L", l_), ("A", a_), ("B", b_)):
        q25, q50, q75 = pct(v, (25, 50, 75))
        f[f"{name}_med"], f[f"{name}_iqr"] = float(q50), float(q75 - q25)
    f["hue"] = float(np.degrees(np.arctan2(f["B_med"], f["A_med"])))
    f["chroma"] = float(np.hypot(f["A_med"], f["B_med"]))
    mx, mn = work.chan_max[fov].astype(np.float32), work.chan_min[fov].astype(np.float32)
    f["S_med"] = float(pct(np.where(mx > 0, (mx - mn) / np.maximum(mx, 1) * 255, 0), 50))
    f["V_med"] = float(pct(mx, 50))
    g1 = cv2.GaussianBlur(g, (0, 0), 1.0)
    f["fine_rel"] = float(np.log(np.abs(g - g1)[fov].mean() / (g[fov].std() + 1) + 1e-3))
    f["lowfreq"] = float(cv2.resize(lab[:, :, 0], (16, 16), interpolation=cv2.INTER_AREA).std())
    spec = (mn >= cfg.GLARE_MIN_LEVEL) & (mx - mn <= cfg.GLARE_MAX_CHROMA)
    f["glare"] = 100.0 * float(spec.mean())
    f["edges"] = float((cv2.Canny(gray, 50, 150) > 0)[fov].mean())
    return f


def _centre_features(work: WorkImage) -> dict[str, float]:
    """Texture and colour of the central square (free of vignette and framing)."""
    h, w = work.gray_small.shape
    side = int(0.7 * min(h, w))
    t, l_ = (h - side) // 2, (w - side) // 2
    gray = work.gray_small[t : t + side, l_ : l_ + side]
    lab = work.lab[t : t + side, l_ : l_ + side]
    fov = work.fov[t : t + side, l_ : l_ + side]
    if not fov.any():
        fov = np.ones_like(fov)
    f: dict[str, float] = {}
    for i, v in enumerate(lbp_histogram(gray)):
        f[f"lbp{i}"] = v
    half = cv2.resize(gray, (max(side // 2, 3), max(side // 2, 3)), interpolation=cv2.INTER_AREA)
    for i, v in enumerate(lbp_histogram(half)):
        f[f"lbp2_{i}"] = v
    g: np.ndarray = gray.astype(np.float32)
    prev, energy = g, []
    for sigma in (1, 2, 4, 8):
        blurred = cv2.GaussianBlur(g, (0, 0), sigma)
        energy.append(float(np.abs(prev - blurred)[fov].mean()) + 1e-3)
        prev = blurred
    logs = np.log(energy)
    for i in range(3):
        f[f"band{i}"] = float(logs[i] - logs[i + 1])
    tophat = cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, np.ones((5, 5), np.uint8))
    mx = work.chan_max[t : t + side, l_ : l_ + side].astype(np.int16)
    mn = work.chan_min[t : t + side, l_ : l_ + side].astype(np.int16)
    sat = np.where(mx > 0, (mx - mn) * 255 // np.maximum(mx, 1), 0)
    f["microspec"] = 100.0 * float(((tophat > 20) & (sat < 60))[fov].mean())
    hairs = hair_mask(gray, fov)
    f["hair"] = float(hairs.mean())
    if hairs.sum() > 30:
        dist = cv2.distanceTransform(hairs.astype(np.uint8), cv2.DIST_L2, 3)
        f["hair_w"] = float(pct(dist[hairs], 90))
    else:
        f["hair_w"] = 0.0
    for i, name in enumerate("LAB"):
        v = lab[:, :, i][fov]
        f[f"{name}_mean"], f[f"{name}_std"] = float(v.mean()), float(v.std())
    return f


def lbp_histogram(gray: np.ndarray) -> np.ndarray:
    """Uniform local binary patterns (8 neighbours, radius 1): 10-bin normalised histogram."""
    g = gray.astype(np.int16)
    if min(g.shape) < 3:
        return np.full(10, 0.1)
    centre = g[1:-1, 1:-1] + cfg.LBP_MARGIN
    h, w = g.shape
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    bits = np.stack(
        [g[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] >= centre for dy, dx in offsets]
    ).astype(np.int8)
    transitions = np.abs(np.diff(np.concatenate([bits, bits[:1]]), axis=0)).sum(axis=0)
    code = np.where(transitions <= 2, bits.sum(axis=0), 9)
    hist = np.bincount(code.ravel(), minlength=10).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


# -- networks --------------------------------------------------------------------------------------

NETS_FILE = "modality_nets.json"  # which networks, and the calibrated confidence


@dataclass(frozen=True)
class Networks:
    """The shipped modality networks (ONNX Runtime sessions) and their calibration."""

    sessions: dict[str, Any]  # view ('frame' / 'texture') -> InferenceSession
    sure_confidence: float
    hand: bool = False  # the hand-feature network votes too


@lru_cache(maxsize=1)
def _networks() -> Networks | None:
    """The networks named in NETS_FILE, or None where it is absent (the hand-feature model
    is then used)."""
    try:
        about_file = resource_path(NETS_FILE)
    except FileNotFoundError:
        return None
    try:
        return _load_networks(about_file)
    except Exception as exc:  # a damaged file must not stop imports: the hand network decides
        log.warning("modality networks not usable (%s); using the hand-feature network", exc)
        return None


def _load_networks(about_file: Path) -> Networks:
    about = json.loads(about_file.read_text(encoding="utf-8"))
    import onnxruntime as ort  # lazy: only images without a recorded modality need it

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # import and checks run one image per worker
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sessions = {
        view: ort.InferenceSession(
            str(resource_path(file)), options, providers=["CPUExecutionProvider"]
        )
        for view, file in about["files"].items()
        if view != "hand"
    }
    return Networks(sessions, float(about["sure_confidence"]), "hand" in about["files"])


def network_view(view: str, rgb: np.ndarray) -> np.ndarray:
    """What the ``view`` network reads of an image: the squashed frame, or the texture crops
    (only the views a shipped network reads are made: detection runs on every import)."""
    if view == "texture":
        return texture_crops(texture_frame(rgb))
    return network_input(rgb)[None]


def predict_networks(nets: Networks, work: WorkImage) -> float:
    """P(dermoscopic): the networks' log-odds averaged (a texture network's over its crops),
    with the hand-feature network's where it votes."""
    logits = []
    for view, session in nets.sessions.items():
        (out,) = session.run(None, {"image": network_view(view, work.rgb).astype(np.float32)})
        logits.append(float(np.mean(out)))
    if nets.hand:
        p = min(max(predict(features(work)), 1e-12), 1 - 1e-12)
        logits.append(float(np.log(p / (1 - p))))
    z = float(np.mean(logits))
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))


# -- model -----------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _model() -> dict[str, Any]:
    with open(resource_path(MODEL_FILE), encoding="utf-8") as fh:
        model: dict[str, Any] = json.load(fh)
    for key in ("mean", "std", "w1", "b1", "w2"):
        model[key] = np.asarray(model[key], dtype=np.float64)
    return model


def predict(feats: dict[str, float]) -> float:
    """P(dermoscopic) from the features, by the stored network."""
    m = _model()
    x = np.array([feats[name] for name in m["features"]], dtype=np.float64)
    z = (np.nan_to_num(x) - m["mean"]) / m["std"]
    hidden = np.tanh(z @ m["w1"] + m["b1"])
    logit = float(hidden @ m["w2"] + m["b2"])
    return float(1.0 / (1.0 + np.exp(-np.clip(logit, -30, 30))))
