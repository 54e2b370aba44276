"""Benchmark the quality checker against a bare full-resolution decode, measured in one run.

1. The 866 reference images (manifest.csv): per image, a bare full-resolution
   decode (Pillow, upright 8-bit RGB) versus all checks (DCT-reduced decode,
   every pixel check, modality, segmentation, artefacts, skin tone, hash).
2. A 12-megapixel JPEG (a real image enlarged to 4000x3000 with sensor-like
   noise, written to a temporary folder): the same comparison.
3. Import of the reference images into a fresh library, with and without the
   checks, next to the bare full decode of the same files.
4. Live capture: ``live_check`` on 640x480 frames, one core.
5. Where the time of the checks goes on the reference images: each shared view of
   ``WorkImage`` (its own cost, in dependency order), each check, modality
   detection, skin tone and the hash, in ms per image.
6. The floor: one bare OpenCV call per family of checks the issue asks for (the two
   views, CIELAB, a focus blur, edges for the ruler, the Hough search for bubbles
   on dermoscopic images, the hair black-hat, a threshold-and-label lesion mask,
   the hash) on the same decoded pixels, against the bare decode. No check can
   cost less than its own primitive, however it is written.

Everything runs on one core (``cv2.setNumThreads(1)``, one worker), files are
read into memory first so disk speed does not count (except for the import,
which reads its files as it would for a user).

    PYTHONPATH=. python scripts/bench_quality.py [--limit N] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _shared import SHARED_DATA, manifest
from PIL import Image

from dermdesk.exchange.datasets import plan_files
from dermdesk.exchange.importer import run_import
from dermdesk.imaging import artefacts, dedup
from dermdesk.imaging import checks as pixel_checks
from dermdesk.imaging import quality_config as cfg
from dermdesk.imaging.decode import decode_rgb
from dermdesk.imaging.modality import detect_modality
from dermdesk.imaging.quality import PIXEL_CHECKS, assess, assess_decoded, live_check
from dermdesk.imaging.skintone import estimate_from_work
from dermdesk.imaging.working import WorkImage, decode_for_checks, resize_long
from dermdesk.library import Library


def per_call_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median wall time of ``rounds`` calls, in ms."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def bench_files(datas: list[bytes], rounds: int) -> tuple[float, float, float]:
    """(bare full decode, all checks incl. their decode, checks on an already decoded image)
    in ms per image, each the total of the per-image medians divided by the image count."""
    full = checks = checks_only = 0.0
    for data in datas:
        full += per_call_ms(lambda d=data: decode_rgb(d), rounds)
        checks += per_call_ms(lambda d=data: assess(d), rounds)
        decoded = decode_for_checks(data)
        checks_only += per_call_ms(lambda dec=decoded: assess_decoded(dec), rounds)
    n = len(datas)
    return full / n, checks / n, checks_only / n


def twelve_megapixel_jpeg(folder: Path) -> bytes:
    source = decode_rgb(SHARED_DATA / "pad_ufes_20" / "images" / "PAT_858_1632_977.jpg")
    big = cv2.resize(source, (4000, 3000), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big += np.random.default_rng(0).normal(0, 3.0, big.shape)  # sensor-like grain
    out = io.BytesIO()
    Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=92)
    (folder / "12mp.jpg").write_bytes(out.getvalue())
    return out.getvalue()


def bench_import(paths: list[Path], folder: Path) -> tuple[float, float, float]:
    """Seconds to import ``paths`` with checks, without, and to fully decode them (one worker)."""
    times = []
    for checks in (True, False):
        with Library.open(folder / f"lib-{checks}", actor="bench") as lib:
            start = time.perf_counter()
            report = run_import(lib, plan_files(paths, None).items, workers=1, checks=checks)
            times.append(time.perf_counter() - start)
            assert len(report.added) == len(paths), report.summary()
    start = time.perf_counter()
    for path in paths:
        decode_rgb(path.read_bytes())
    times.append(time.perf_counter() - start)
    return times[0], times[1], times[2]


def bench_live(frames: list[np.ndarray], seconds: float = 5.0) -> float:
    """Frames per second of live_check over a loop of real 640x480 frames."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        live_check(frames[done % len(frames)])
        done += 1
    return done / (time.perf_counter() - start)


def bench_parts(datas: list[bytes]) -> list[tuple[str, float]]:
    """(part, ms per image) of everything ``assess`` does, most costly first."""
    totals: defaultdict[str, float] = defaultdict(float)
    for data in datas:
        _time_parts(data, totals)
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    return [(part, 1000.0 * t / len(datas)) for part, t in ranked]


def _time_parts(data: bytes, totals: defaultdict[str, float]) -> None:
    """Add the seconds each part of ``assess`` takes on one image to ``totals``."""

    def timed(part: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        totals[part] += time.perf_counter() - start
        return result

    work = WorkImage(timed("decode for the checks (DCT-reduced)", lambda: decode_for_checks(data)))
    for view in VIEWS:  # class order is dependency order: each view's own cost
        timed(f"view: {view}", lambda v=view: getattr(work, v))
    work.modality = timed("modality detection", lambda: detect_modality(work)).modality
    for name, fn in PIXEL_CHECKS:
        timed(f"check: {name}", lambda f=fn: f(work))
    timed("check: framing (size, cut, centre)", lambda: pixel_checks.check_framing(work))
    timed("skin tone", lambda: estimate_from_work(work))
    timed("perceptual hash", lambda: dedup.phash(work.small))


def bench_modality(datas: list[bytes]) -> list[tuple[str, float]]:
    """(detector, ms per image) on the same decoded images, side by side: the hand-feature
    network alone, the CNN alone (ONNX Runtime, one thread) and the shipped vote of both."""
    from dermdesk.imaging import modality

    decoded = [decode_for_checks(d) for d in datas]  # each run gets fresh (uncached) views
    nets = modality._networks()
    runs: list[tuple[str, Callable[[WorkImage], Any]]] = [
        ("hand-feature network alone", lambda w: modality.predict(modality.features(w))),
    ]
    if nets is not None:
        cnn = modality.Networks(nets.sessions, nets.sure_confidence, hand=False)
        runs.append(("CNN alone (ONNX Runtime)", lambda w: modality.predict_networks(cnn, w)))
    runs.append(("shipped detector (detect_modality)", detect_modality))
    out = []
    for name, fn in runs:
        fn(WorkImage(decoded[0]))  # warm: the first call loads the model files
        works = [WorkImage(d) for d in decoded]
        start = time.perf_counter()
        for w in works:
            fn(w)
        out.append((name, 1000.0 * (time.perf_counter() - start) / len(works)))
    return out


def bench_floor(datas: list[bytes], dermoscopic: list[bool]) -> list[tuple[str, float]]:
    """(step, ms per image) of one bare primitive per check family, and the bare decode."""
    totals: defaultdict[str, float] = defaultdict(float)
    for data, derm in zip(datas, dermoscopic, strict=True):
        _time_floor(data, derm, totals)
    return [(step, 1000.0 * t / len(datas)) for step, t in totals.items()]


def _time_floor(data: bytes, dermoscopic: bool, totals: defaultdict[str, float]) -> None:
    def timed(step: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        totals[step] += time.perf_counter() - start
        return result

    rgb = timed("bare full decode", lambda: decode_rgb(data))
    gray = timed(
        "grey view (SHARP_SIZE)",
        lambda: resize_long(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cfg.SHARP_SIZE),
    )
    small = timed("colour view (WORK_SIZE)", lambda: resize_long(rgb, cfg.WORK_SIZE))
    timed("CIELAB of the colour view", lambda: cv2.cvtColor(small, cv2.COLOR_RGB2Lab))
    timed("focus: one Gaussian blur", lambda: cv2.GaussianBlur(gray, (0, 0), 1.0))
    timed("ruler: Canny edges", lambda: cv2.Canny(gray, 50, 150))
    if dermoscopic:
        # smoothed first, as the bubble check does: raw edges make the search far slower
        timed(
            "bubbles: Hough circles (dermoscopic)",
            lambda: artefacts.bubble_candidates(cv2.GaussianBlur(gray, (3, 3), 0)),
        )
    small_gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.HAIR_KERNEL, cfg.HAIR_KERNEL))
    timed("hair: black-hat", lambda: cv2.morphologyEx(small_gray, cv2.MORPH_BLACKHAT, kernel))
    timed("lesion: Otsu threshold + labels", lambda: _otsu_labels(small_gray))
    timed("hash: perceptual hash", lambda: dedup.phash(small))


def _otsu_labels(gray: np.ndarray) -> Any:
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return cv2.connectedComponentsWithStats(mask)


VIEWS = [name for name, attr in vars(WorkImage).items() if isinstance(attr, cached_property)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="only the first N reference images")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per image (median)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = manifest()[: args.limit] if args.limit else manifest()
    paths = [SHARED_DATA / r["file"] for r in rows]
    datas = [p.read_bytes() for p in paths]
    pixels = sum(
        Image.open(io.BytesIO(d)).size[0] * Image.open(io.BytesIO(d)).size[1] for d in datas
    ) / len(datas)
    assess(datas[0])  # load the modality model once, outside the timings

    print(
        "## Quality checks vs bare full-resolution decode (one core, median of "
        f"{args.rounds} runs per image)\n"
    )
    print(
        "| images | mean size | full decode | all checks (own decode) | checks only | "
        "checks / full decode |"
    )
    print("|---|---|---|---|---|---|")
    full, checks, only = bench_files(datas, args.rounds)
    print(
        f"| {len(datas)} reference images | {pixels / 1e6:.2f} MP | {full:.1f} ms | "
        f"{checks:.1f} ms | {only:.1f} ms | {checks / full:.2f}x |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big = twelve_megapixel_jpeg(folder)
        full, checks, only = bench_files([big], max(args.rounds, 5))
        print(
            f"| 12 MP JPEG (4000x3000) | 12.00 MP | {full:.1f} ms | {checks:.1f} ms | "
            f"{only:.1f} ms | {checks / full:.2f}x |"
        )

        print("\n## Import (one worker, files read from disk, new library each time)\n")
        with_checks, without, decode = bench_import(paths, folder)
        n = len(paths)
        print(
            "| import of | with checks | without checks | bare full decode | "
            "with / decode | without / decode |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| {n} reference images | {with_checks:.1f} s ({1000 * with_checks / n:.1f} ms/img) "
            f"| {without:.1f} s ({1000 * without / n:.1f} ms/img) | {decode:.1f} s "
            f"({1000 * decode / n:.1f} ms/img) | {with_checks / decode:.2f}x | "
            f"{without / decode:.2f}x |"
        )
        copies = [folder / f"12mp-{i}.jpg" for i in range(3)]
        for i, copy in enumerate(copies):  # distinct bytes: the library stores each once
            copy.write_bytes(big + bytes([i]))
        with_checks, without, decode = bench_import(copies, folder / "big")
        print(
            f"| 3 x 12 MP JPEG | {with_checks:.2f} s | {without:.2f} s | {decode:.2f} s | "
            f"{with_checks / decode:.2f}x | {without / decode:.2f}x |"
        )

    frames = [
        cv2.resize(decode_rgb(d), (640, 480), interpolation=cv2.INTER_AREA)
        for d in datas[:: max(1, len(datas) // 20)]
    ]
    fps = bench_live(frames)
    print(
        f"\n## Live capture\n\nlive_check on 640x480 frames, one core: {fps:.0f} frames/s "
        f"({1000 / fps:.1f} ms per frame; goal >= 25 frames/s)"
    )

    parts = bench_parts(datas)
    total = sum(ms for _, ms in parts)
    print(f"\n## Where the time goes ({len(datas)} reference images, one run)\n")
    print("| part | ms per image | share |")
    print("|---|---|---|")
    for part, ms in parts:
        print(f"| {part} | {ms:.2f} | {ms / total:.0%} |")
    print(f"| total | {total:.2f} | |")

    print(f"\n## Modality detectors side by side ({len(datas)} reference images, decoded once)\n")
    print("| detector | ms per image |")
    print("|---|---|")
    for name, ms in bench_modality(datas):
        print(f"| {name} | {ms:.2f} |")

    floor = bench_floor(datas, [r["modality"] == "dermoscopic" for r in rows])
    decode = dict(floor).pop("bare full decode")
    steps = [(step, ms) for step, ms in floor if step != "bare full decode"]
    least = sum(ms for _, ms in steps)
    print(f"\n## The floor: one bare call per check family ({len(datas)} reference images)\n")
    print("| step | ms per image |")
    print("|---|---|")
    for step, ms in steps:
        print(f"| {step} | {ms:.2f} |")
    print(
        f"| all steps | {least:.2f} |\n\nbare full decode {decode:.2f} ms: the floor alone is "
        f"{least / decode:.1f}x a decode (the checks: {total:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
