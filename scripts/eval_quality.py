"""Validate the quality checker, modality detector, artefact tags, segmentation and skin tone
on the real images in ../shared/data, and print the tables.

1. Degradations: every reference image (manifest.csv) is blurred, smeared,
   under/over-exposed, colour-cast, JPEG-compressed, downscaled and made noisy at
   several strengths; ROC-AUC of the matching check's score (degraded vs untouched),
   the share of degraded copies the check flags, and the false-fail rate of every
   check on the untouched images.
2. Modality: accuracy of the detector per dataset (HAM10000 dermoscopic vs
   PAD-UFES-20 and Fitzpatrick17k clinical; the training sets for reference).
3. Artefacts: precision / recall of the ink, ruler and bubble tags against
   HAM10000's artefacts.csv.
4. Segmentation: Dice against PH2's 200 lesion masks.
5. Skin tone: agreement with the labelled Fitzpatrick types (exact, within one
   type, Cohen's kappa) and the same between Fitzpatrick17k's two human ratings.

    PYTHONPATH=. python scripts/eval_quality.py [--limit N] [--workers 2] [--only 1,3]

Takes a few minutes on two cores; ``--limit`` samples N images per section.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from _shared import SHARED_DATA, manifest, pad_training_fold
from PIL import Image

from dermdesk.imaging import artefacts, checks
from dermdesk.imaging.findings import CheckResult
from dermdesk.imaging.modality import detect_modality
from dermdesk.imaging.quality import assess_decoded
from dermdesk.imaging.skintone import Refusal
from dermdesk.imaging.working import (
    Decoded,
    WorkImage,
    decode_for_checks,
    linear_to_srgb,
    srgb_to_linear,
)

# -- 1. degradations -------------------------------------------------------------------------------

Degrade = Callable[[Decoded, random.Random], Decoded]


def _with_rgb(d: Decoded, rgb: np.ndarray, **changes: Any) -> Decoded:
    return replace(d, rgb=np.clip(rgb, 0, 255).astype(np.uint8), **changes)


def _scale(d: Decoded) -> float:
    """Pixels of the decoded image per pixel of the 512-px working image."""
    return max(1.0, max(d.rgb.shape[:2]) / 512.0)


def gaussian_blur(sigma: float) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        return _with_rgb(d, cv2.GaussianBlur(d.rgb, (0, 0), sigma * _scale(d)))

    return f


def motion_blur(length: float) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        n = max(3, round(length * _scale(d)))
        kernel = np.zeros((n, n), np.float32)
        kernel[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (n, n))
        return _with_rgb(d, cv2.filter2D(d.rgb, -1, kernel / kernel.sum()))

    return f


def exposure(ev: float) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        lin = srgb_to_linear(d.rgb.astype(np.float32) / 255.0) * 2.0**ev
        return _with_rgb(d, linear_to_srgb(lin) * 255.0 + 0.5)

    return f


_CASTS = {
    "blue": (0.8, 0.95, 1.25),
    "yellow": (1.15, 1.05, 0.7),
    "green": (0.85, 1.2, 0.85),
    "red": (1.3, 0.9, 0.85),
}


def colour_cast(strength: float) -> Degrade:
    """Multiply linear R, G, B by a tint; strength 1 = the gains in _CASTS."""

    def f(d: Decoded, rng: random.Random) -> Decoded:
        gains = np.array(_CASTS[rng.choice(sorted(_CASTS))], np.float32)
        gains = 1.0 + strength * (gains - 1.0)
        lin = srgb_to_linear(d.rgb.astype(np.float32) / 255.0) * gains
        return _with_rgb(d, linear_to_srgb(lin) * 255.0 + 0.5)

    return f


def jpeg(quality: int) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        out = io.BytesIO()
        Image.fromarray(d.rgb).save(out, "JPEG", quality=quality)
        again = decode_for_checks(out.getvalue())
        return replace(again, width=d.width, height=d.height)

    return f


def downscale(factor: int) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        h, w = d.rgb.shape[:2]
        small = cv2.resize(
            d.rgb, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA
        )
        return replace(
            d, rgb=small, width=max(1, d.width // factor), height=max(1, d.height // factor)
        )

    return f


def noise(sigma: float) -> Degrade:
    def f(d: Decoded, rng: random.Random) -> Decoded:
        gen = np.random.default_rng(rng.randrange(1 << 30))
        return _with_rgb(d, d.rgb + gen.normal(0, sigma, d.rgb.shape))

    return f


# (name, strength label, degradation, check, score key, higher score = worse)
Target = tuple[str, str, Degrade, str, str, bool]
TARGETS: list[Target] = [
    *[
        ("gaussian blur", f"sigma {s}", gaussian_blur(s), "sharpness", "score", False)
        for s in (1, 2, 4)
    ],
    *[
        ("gaussian blur", f"sigma {s}", gaussian_blur(s), "lesion_sharpness", "score", False)
        for s in (2,)
    ],
    *[("motion blur", f"{n} px", motion_blur(n), "motion_blur", "score", False) for n in (9, 15)],
    *[("motion blur", f"{n} px", motion_blur(n), "sharpness", "score", False) for n in (9, 15)],
    *[
        ("underexposure", f"{ev} EV", exposure(ev), "exposure", "highlights_ev", False)
        for ev in (-1, -2)
    ],
    *[
        ("overexposure", f"+{ev} EV", exposure(ev), "exposure", "overexposure", True)
        for ev in (1, 2)
    ],
    *[("overexposure", f"+{ev} EV", exposure(ev), "clipping", "score", True) for ev in (1, 2)],
    *[
        ("colour cast", f"{int(s * 100)}%", colour_cast(s), "colour_cast", "score", True)
        for s in (1.0, 2.0)
    ],
    *[("JPEG", f"quality {q}", jpeg(q), "compression", "score", False) for q in (10, 20)],
    *[
        ("JPEG (pixels only)", f"quality {q}", jpeg(q), "blockiness", "score", True)
        for q in (10, 20)
    ],
    *[("downscale", f"1/{k}", downscale(k), "resolution", "score", False) for k in (2, 4)],
    *[("noise", f"sigma {s}", noise(s), "noise", "score", True) for s in (5, 10, 20)],
]

SINGLE_CHECKS: dict[str, Callable[[WorkImage], CheckResult]] = {
    "sharpness": checks.check_sharpness,
    "lesion_sharpness": checks.check_lesion_sharpness,
    "motion_blur": checks.check_motion_blur,
    "exposure": checks.check_exposure,
    "clipping": checks.check_clipping,
    "colour_cast": checks.check_colour_cast,
    "compression": checks.check_compression,
    "blockiness": checks.check_blockiness,
    "resolution": checks.check_resolution,
    "noise": checks.check_noise,
}


def _value(result: CheckResult, key: str) -> float:
    if key == "score":
        return float(result.score) if result.score is not None else float("nan")
    return float(result.details[key])


def degrade_one(job: tuple[int, str, str]) -> dict[str, Any]:
    index, file, modality = job
    rng = random.Random(index)
    decoded = decode_for_checks(SHARED_DATA / file)
    base = assess_decoded(decoded, modality, skin_tone=False)
    out: dict[str, Any] = {
        "verdicts": {c.check: c.verdict for c in base.checks},
        "base": {},
        "degraded": {},
    }
    by_name = base.by_name()
    for name, strength, fn, check, key, _ in TARGETS:
        out["base"][(check, key)] = _value(by_name[check], key)
        variant = fn(decoded, random.Random(rng.randrange(1 << 30)))
        result = SINGLE_CHECKS[check](WorkImage(variant, modality))
        out["degraded"][(name, strength, check, key)] = (_value(result, key), result.verdict)
    return out


def roc_auc(negatives: Iterable[float], positives: Iterable[float]) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    neg = np.array([v for v in negatives if not math.isnan(v)])
    pos = np.array([v for v in positives if not math.isnan(v)])
    if not len(neg) or not len(pos):
        return float("nan")
    values = np.concatenate([neg, pos])
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[len(neg) :].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def section_degradations(rows: list[dict[str, str]], pool: ProcessPoolExecutor) -> None:
    jobs = [(i, r["file"], r["modality"]) for i, r in enumerate(rows)]
    results = list(pool.map(degrade_one, jobs, chunksize=4))
    print(f"\n## 1. Degradations ({len(results)} untouched reference images, each degraded)\n")
    print(
        "AUC: degraded copies vs untouched images, by the check's score. flagged: share of "
        "degraded copies the check warns or fails on; failed: share it fails.\n"
    )
    table = []
    for name, strength, _, check, key, worse_high in TARGETS:
        base = [r["base"][(check, key)] for r in results]
        deg = [r["degraded"][(name, strength, check, key)] for r in results]
        sign = 1.0 if worse_high else -1.0
        auc = roc_auc([sign * v for v in base], [sign * v for v, _ in deg])
        flagged = np.mean([v != "pass" for _, v in deg])
        failed = np.mean([v == "fail" for _, v in deg])
        table.append([name, strength, check, f"{auc:.3f}", f"{flagged:.0%}", f"{failed:.0%}"])
    print_table(["degradation", "strength", "check", "AUC", "flagged", "failed"], table)
    _false_fail_table(rows, results)


def _false_fail_table(rows: list[dict[str, str]], results: list[dict[str, Any]]) -> None:
    print(f"\nUntouched images ({len(results)}): share failed / warned per check\n")
    names = list(results[0]["verdicts"])
    table = []
    for name in names:
        verdicts = [r["verdicts"].get(name, "pass") for r in results]
        table.append(
            [
                name,
                f"{np.mean([v == 'fail' for v in verdicts]):.1%}",
                f"{np.mean([v == 'warn' for v in verdicts]):.1%}",
            ]
        )
    any_fail = [any(v == "fail" for v in r["verdicts"].values()) for r in results]
    table.append(["ANY CHECK", f"{np.mean(any_fail):.1%}", ""])
    print_table(["check", "fail", "warn"], table)
    by_set: dict[str, list[bool]] = defaultdict(list)
    for row, failed in zip(rows, any_fail, strict=True):
        by_set[row["dataset"]].append(failed)
    print(
        "\nany check failed, per dataset: "
        + ", ".join(f"{k} {np.mean(v):.1%} of {len(v)}" for k, v in sorted(by_set.items()))
    )


# -- 2. modality -----------------------------------------------------------------------------------


def modality_one(job: tuple[str, str]) -> tuple[str, bool]:
    file, _ = job
    guess = detect_modality(WorkImage(decode_for_checks(SHARED_DATA / file)))
    return guess.modality, guess.sure


def section_modality(rows: list[dict[str, str]], pool: ProcessPoolExecutor) -> None:
    results = list(pool.map(modality_one, [(r["file"], r["modality"]) for r in rows], chunksize=8))
    groups: dict[str, list[bool]] = defaultdict(list)
    sure_of: dict[str, list[bool]] = defaultdict(list)
    held_out: list[bool] = []
    for row, (guess, sure) in zip(rows, results, strict=True):
        ok = guess == row["modality"]
        name = row["dataset"]
        if name == "pad_ufes_20":
            train = pad_training_fold(row["file"])
            name += " (training patients)" if train else " (held-out patients)"
        groups[name].append(ok)
        sure_of[name].append(sure)
        if row.get("_set") == "reference" and "training" not in name:
            held_out.append(ok)
    print("\n## 2. Modality detection\n")
    table = [
        [
            name,
            rows_modality(rows, name),
            len(v),
            f"{np.mean(v):.1%}",
            f"{1 - np.mean(sure_of[name]):.1%}",
            _sure_accuracy(v, sure_of[name]),
            "yes" if _is_held_out(name) else "no (trained on)",
        ]
        for name, v in sorted(groups.items())
    ]
    header = ["dataset", "modality", "images", "accuracy", "unsure", "accuracy (sure)"]
    print_table([*header, "held out"], table)
    if held_out:
        print(
            f"\nheld-out accuracy (HAM10000 vs PAD-UFES-20 held-out patients + Fitzpatrick17k): "
            f"{np.mean(held_out):.1%} of {len(held_out)} (goal >= 97%)"
        )


def _sure_accuracy(right: list[bool], sure: list[bool]) -> str:
    kept = [r for r, s in zip(right, sure, strict=True) if s]
    return f"{np.mean(kept):.1%}" if kept else "-"


# How clinic photos get re-saved on their way into a library: (name, scale, JPEG quality).
RESAVED = (
    ("as stored", 1.0, None),
    ("JPEG quality 75", 1.0, 75),
    ("JPEG quality 50", 1.0, 50),
    ("JPEG quality 30", 1.0, 30),
    ("half size, JPEG quality 60", 0.5, 60),
    ("a third of the size, JPEG quality 85", 0.35, 85),
)


def modality_resaved(file: str) -> list[str]:
    """The detected modality of an image re-saved each way in RESAVED."""
    with Image.open(SHARED_DATA / file) as im:
        rgb = im.convert("RGB")
    guesses = []
    for _, scale, quality in RESAVED:
        if quality is None:
            data = (SHARED_DATA / file).read_bytes()
        else:
            size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
            out = io.BytesIO()
            rgb.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=quality)
            data = out.getvalue()
        guesses.append(detect_modality(WorkImage(decode_for_checks(data))).modality)
    return guesses


def section_modality_resaved(rows: list[dict[str, str]], pool: ProcessPoolExecutor) -> None:
    """Held-out accuracy when the images are re-saved smaller or as heavier JPEGs, as
    messaging apps and photo exports do."""
    held = [
        r
        for r in rows
        if r.get("_set") == "reference"
        and (r["dataset"] != "pad_ufes_20" or not pad_training_fold(r["file"]))
    ]
    if not held:
        return
    results = list(pool.map(modality_resaved, [r["file"] for r in held], chunksize=8))
    sets = sorted({r["dataset"] for r in held})
    table = []
    for i, (name, _, _) in enumerate(RESAVED):
        ok = np.array([g[i] == r["modality"] for g, r in zip(results, held, strict=True)])
        per_set = [ok[[r["dataset"] == s for r in held]].mean() for s in sets]
        table.append([name, *(f"{v:.1%}" for v in per_set), f"{ok.mean():.1%}"])
    print("\nHeld-out images re-saved (accuracy; PAD-UFES-20 held-out patients only):\n")
    print_table(["copy", *sets, "all held out"], table)


def _is_held_out(name: str) -> bool:
    return name in ("ham10000", "fitzpatrick17k", "pad_ufes_20 (held-out patients)")


def rows_modality(rows: list[dict[str, str]], name: str) -> str:
    base = name.split(" ")[0]
    return next((r["modality"] for r in rows if r["dataset"] == base), "?")


# -- 3. artefacts ----------------------------------------------------------------------------------

ARTEFACT_CHECKS = {
    "marking": ("ink", artefacts.check_ink),
    "ruler": ("ruler", artefacts.check_ruler),
    "bubble": ("bubbles", artefacts.check_bubbles),
}


def artefact_one(file: str) -> dict[str, tuple[float, str]]:
    work = WorkImage(decode_for_checks(SHARED_DATA / file), "dermoscopic")
    out = {}
    for label, (_, fn) in ARTEFACT_CHECKS.items():
        r = fn(work)
        out[label] = (float(r.score or 0.0), r.verdict)
    hair = artefacts.check_hair(work)
    out["hair"] = (float(hair.score or 0.0), hair.verdict)
    return out


def section_artefacts(limit: int | None, pool: ProcessPoolExecutor) -> None:
    folder = SHARED_DATA / "ham10000"
    with open(folder / "artefacts.csv", newline="", encoding="utf-8") as fh:
        labels: dict[str, set[str]] = defaultdict(set)
        for row in csv.DictReader(fh):
            labels[row["image_id"]].add(row["artefact_class"])
    files = sorted(p.name for p in (folder / "images").glob("*.jpg"))
    if limit:
        files = random.Random(0).sample(files, min(limit, len(files)))
    results = list(pool.map(artefact_one, [f"ham10000/images/{f}" for f in files], chunksize=4))
    print(
        f"\n## 3. Artefact tags on HAM10000 ({len(files)} images, "
        f"{sum(1 for f in files if labels.get(f[:-4]))} with a labelled artefact)\n"
    )
    table = []
    for label, (name, _) in ARTEFACT_CHECKS.items():
        truth = [label in labels.get(f[:-4], set()) for f in files]
        tagged = [r[label][1] != "pass" for r in results]
        tp = sum(t and p for t, p in zip(truth, tagged, strict=True))
        fp = sum(p and not t for t, p in zip(truth, tagged, strict=True))
        fn = sum(t and not p for t, p in zip(truth, tagged, strict=True))
        # artefacts.csv gives one class per image: an image labelled 'marking' may carry a
        # ruler too. Count the false positives on images with no label at all separately.
        fp_clean = sum(p and not labels.get(f[:-4]) for f, p in zip(files, tagged, strict=True))
        auc = roc_auc(
            [r[label][0] for r, t in zip(results, truth, strict=True) if not t],
            [r[label][0] for r, t in zip(results, truth, strict=True) if t],
        )
        table.append(
            [
                f"{label} -> {name}",
                sum(truth),
                tp,
                fp,
                fp_clean,
                fn,
                f"{tp / max(tp + fp, 1):.0%}",
                f"{tp / max(tp + fn, 1):.0%}",
                f"{auc:.3f}",
            ]
        )
    print_table(
        [
            "artefact -> tag",
            "labelled",
            "TP",
            "FP",
            "FP unlabelled",
            "FN",
            "precision",
            "recall",
            "score AUC",
        ],
        table,
    )
    print(
        "\nFP unlabelled: false positives on images with no artefact label at all (the "
        "others carry a different label, e.g. a ruler on an image labelled 'marking')."
    )
    hair = np.mean([r["hair"][1] != "pass" for r in results])
    print(f"\nhair tag (no labels available): on {hair:.0%} of these images")


# -- 4. segmentation -------------------------------------------------------------------------------


def dice_one(name: str) -> tuple[float, float]:
    folder = SHARED_DATA / "ph2"
    work = WorkImage(decode_for_checks(folder / "images" / f"{name}.jpg"), "dermoscopic")
    pred = work.lesion
    truth = np.asarray(Image.open(folder / "masks" / f"{name}_lesion.png").convert("L")) > 0
    truth = (
        cv2.resize(
            truth.astype(np.uint8), (pred.shape[1], pred.shape[0]), interpolation=cv2.INTER_NEAREST
        )
        > 0
    )
    inter = float((truth & pred).sum())
    total = float(truth.sum() + pred.sum())
    union = float((truth | pred).sum())
    return (2 * inter / total if total else 1.0), (inter / union if union else 1.0)


def section_segmentation(limit: int | None, pool: ProcessPoolExecutor) -> None:
    names = sorted(p.stem for p in (SHARED_DATA / "ph2" / "images").glob("*.jpg"))
    if limit:
        names = random.Random(0).sample(names, min(limit, len(names)))
    scores = np.array(list(pool.map(dice_one, names, chunksize=8)))
    dice, jac = scores[:, 0], scores[:, 1]
    print(f"\n## 4. Lesion segmentation vs PH2 masks ({len(names)} images)\n")
    print_table(
        ["measure", "mean", "median", "10th pct", ">= 0.8", "< 0.5"],
        [
            [
                "Dice",
                f"{dice.mean():.3f}",
                f"{np.median(dice):.3f}",
                f"{np.percentile(dice, 10):.3f}",
                f"{np.mean(dice >= 0.8):.0%}",
                f"{np.mean(dice < 0.5):.0%}",
            ],
            [
                "Jaccard",
                f"{jac.mean():.3f}",
                f"{np.median(jac):.3f}",
                f"{np.percentile(jac, 10):.3f}",
                f"{np.mean(jac >= 0.8):.0%}",
                f"{np.mean(jac < 0.5):.0%}",
            ],
        ],
    )


# -- 5. skin tone ----------------------------------------------------------------------------------


def tone_labels() -> list[tuple[str, str, int, int | None]]:
    """(dataset, file, Fitzpatrick label, second rating or None)."""
    out: list[tuple[str, str, int, int | None]] = []
    with open(SHARED_DATA / "pad_ufes_20" / "metadata.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            value = row["fitspatrick"].strip()
            if value and value.lower() != "nan":
                stem = row["img_id"].rsplit(".", 1)[0]
                out.append(
                    ("pad_ufes_20", f"pad_ufes_20/images/{stem}.jpg", int(float(value)), None)
                )
    for name in ("fitzpatrick17k", "fitzpatrick17k_more"):
        with open(SHARED_DATA / name / "fitzpatrick17k.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                main = int(row["fitzpatrick_scale"] or -1)
                second = int(row["fitzpatrick_centaur"] or -1)
                if main > 0:
                    out.append(
                        (
                            name,
                            f"{name}/images/{row['md5hash']}.jpg",
                            main,
                            second if second > 0 else None,
                        )
                    )
    return out


def tone_one(job: tuple[str, str, int, int | None]) -> tuple[int | None, str | None]:
    _, file, _, _ = job
    decoded = decode_for_checks(SHARED_DATA / file)
    result = assess_decoded(decoded, "clinical")
    tone = result.skin_tone
    if isinstance(tone, Refusal):
        return None, tone.reason
    return tone.fitzpatrick, None


def kappa(a: list[int], b: list[int]) -> float:
    """Cohen's kappa for two ratings on the 1-6 scale."""
    m = np.zeros((6, 6))
    for x, y in zip(a, b, strict=True):
        m[x - 1, y - 1] += 1
    total = m.sum()
    if not total:
        return float("nan")
    po = np.trace(m) / total
    pe = float((m.sum(axis=0) * m.sum(axis=1)).sum()) / total**2
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


def _agreement(a: list[int], b: list[int]) -> list[str]:
    x, y = np.array(a), np.array(b)
    return [f"{np.mean(x == y):.1%}", f"{np.mean(np.abs(x - y) <= 1):.1%}", f"{kappa(a, b):.3f}"]


def section_skin_tone(limit: int | None, pool: ProcessPoolExecutor) -> None:
    jobs = tone_labels()
    if limit:
        jobs = random.Random(0).sample(jobs, min(limit, len(jobs)))
    results = list(pool.map(tone_one, jobs, chunksize=8))
    print("\n## 5. Skin tone: estimate vs labelled Fitzpatrick type\n")
    table = []
    refusals: dict[str, int] = defaultdict(int)
    groups = {
        "pad_ufes_20": ("pad_ufes_20",),
        "fitzpatrick17k": ("fitzpatrick17k",),
        "fitzpatrick17k_more": ("fitzpatrick17k_more",),
        "Fitzpatrick17k, both folders": ("fitzpatrick17k", "fitzpatrick17k_more"),
    }
    for title, names in groups.items():
        pairs = [
            (j[2], r[0])
            for j, r in zip(jobs, results, strict=True)
            if j[0] in names and r[0] is not None
        ]
        total = sum(1 for j in jobs if j[0] in names)
        if not pairs:
            continue
        truth, est = [p[0] for p in pairs], [p[1] for p in pairs]
        table.append([title, total, f"{len(pairs) / total:.0%}", *_agreement(est, truth)])
    for est, reason in results:
        if est is None and reason:
            refusals[reason.split(" (")[0].split(":")[0]] += 1
    for name in ("fitzpatrick17k", "fitzpatrick17k_more"):
        rated = [(j[2], j[3]) for j in jobs if j[0] == name and j[3] is not None]
        if rated:
            a, b = [r[0] for r in rated], [r[1] for r in rated]
            table.append(
                [f"{name}: rater 1 vs rater 2 (ceiling)", len(rated), "100%", *_agreement(a, b)]
            )
    rated = [(j[2], j[3]) for j in jobs if j[0] != "pad_ufes_20" and j[3] is not None]
    if rated:
        table.append(
            [
                "both folders: rater 1 vs rater 2",
                len(rated),
                "100%",
                *_agreement([r[0] for r in rated], [r[1] for r in rated]),
            ]
        )
    print_table(["images", "labelled", "estimated", "exact", "within ±1", "Cohen's kappa"], table)
    print("\npublished ITA baseline: about 46-53% within ±1 type")
    print(
        "refusals: "
        + ", ".join(f"{k} ({v})" for k, v in sorted(refusals.items(), key=lambda kv: -kv[1]))
    )


# -- main ------------------------------------------------------------------------------------------


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for i, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def _sample(rows: list[dict[str, str]], limit: int | None) -> list[dict[str, str]]:
    if not limit or limit >= len(rows):
        return rows
    return random.Random(0).sample(rows, limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="at most N images per section (quick run)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="1,2,3,4,5", help="sections to run, e.g. 1,3")
    args = parser.parse_args()
    sections = {int(s) for s in args.only.split(",") if s.strip()}
    start = time.perf_counter()
    reference = manifest()
    for r in reference:
        r["_set"] = "reference"
    with ProcessPoolExecutor(args.workers) as pool:
        if 1 in sections:
            section_degradations(_sample(reference, args.limit), pool)
        if 2 in sections:
            extra = manifest(extra=True)
            for r in extra:
                r["_set"] = "training"
            section_modality(_sample(reference, args.limit) + _sample(extra, args.limit), pool)
            section_modality_resaved(_sample(reference, args.limit), pool)
        if 3 in sections:
            section_artefacts(args.limit, pool)
        if 4 in sections:
            section_segmentation(args.limit, pool)
        if 5 in sections:
            section_skin_tone(args.limit, pool)
    print(f"\n({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
