"""Snapshot every finding of the quality checker, to prove a refactor or speed-up exact.

    python scripts/findings_snapshot.py write before.json [--data ../shared/data] [--extra]
    (change the code)
    python scripts/findings_snapshot.py write after.json [--extra]
    python scripts/findings_snapshot.py compare before.json after.json

``write`` assesses the 866 reference images, 8 degradations (blur, motion,
under/over-exposure, colour cast, JPEG 10, 4x downscale, noise) of every sixth one,
and odd synthetic images (blank, white, noise, flat grey, a gradient, two grey
levels, letterboxed), every fifth also with a recorded modality, and stores each
check's score, verdict, reason and details, the modality guess, the skin-tone
estimate and the hash (2,440 assessments, about a minute). ``--extra`` adds the
5,371 images of manifest_extra.csv (224-256 px sets, PH2, Fitzpatrick17k; about
three minutes more). ``compare`` lists the first differences and exits 1 if there
are any. To snapshot an older commit, run this script with ``PYTHONPATH`` set to a
``git worktree`` of it.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_quality as ev  # the degradations the evaluation uses

from dermdesk.imaging.quality import assess_decoded
from dermdesk.imaging.working import Decoded, decode_for_checks

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEGRADATIONS = (
    ev.gaussian_blur(3),
    ev.motion_blur(15),
    ev.exposure(-2.5),
    ev.exposure(2),
    ev.colour_cast(1.5),
    ev.jpeg(10),
    ev.downscale(4),
    ev.noise(20),
)


def images(data: Path, extra: bool = False) -> list[Decoded]:
    """The reference images, degraded copies of every sixth, odd synthetic images, and
    with ``extra`` the 5,371 images of manifest_extra.csv at the end."""
    real = [decode_for_checks(f.read_bytes()) for f in _files(data / "manifest.csv")]
    out = list(real)
    for i, decoded in enumerate(real[::6]):
        rng = random.Random(i)
        out += [degrade(decoded, rng) for degrade in DEGRADATIONS]
    out += [Decoded.from_array(a) for a in _odd_images()]
    if extra:
        out += [decode_for_checks(f.read_bytes()) for f in _files(data / "manifest_extra.csv")]
    return out


def _files(manifest: Path) -> list[Path]:
    with open(manifest, newline="") as fh:
        return [manifest.parent / row["file"] for row in csv.DictReader(fh)]


def _odd_images() -> list[np.ndarray]:
    """Blank, white, noise, flat grey, a gradient, two grey levels, a letterboxed photo."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    ramp = np.broadcast_to(np.linspace(0, 255, 240, dtype=np.float32)[None, :, None], (180, 240, 3))
    two = np.where(rng.random((120, 160, 1)) < 0.5, 90, 170).repeat(3, axis=2).astype(np.uint8)
    boxed = np.zeros((240, 320, 3), np.uint8)
    boxed[30:210] = rng.integers(120, 200, (180, 320, 3), dtype=np.uint8)
    return [
        np.zeros((64, 64, 3), np.uint8),
        np.full((100, 80, 3), 255, np.uint8),
        noise,
        np.full((90, 90, 3), 128, np.uint8),
        ramp.astype(np.uint8),
        two,
        boxed,
    ]


def snapshot(data: Path, extra: bool = False) -> list[dict[str, Any]]:
    out = []
    for k, decoded in enumerate(images(data, extra)):
        for modality in (None, "dermoscopic") if k % 5 == 0 else (None,):
            a = assess_decoded(decoded, modality)
            out.append(
                {
                    "image": k,
                    "modality": modality,
                    "checks": [
                        [c.check, c.score, c.verdict, c.reason, c.details] for c in a.checks
                    ],
                    "guess": [a.modality.modality, a.modality.confidence],
                    "tone": repr(a.skin_tone),
                    "phash": a.phash,
                }
            )
    return out


def compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> int:
    if len(before) != len(after):
        print(f"different lengths: {len(before)} vs {len(after)}")
        return 1
    differing = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    for b, a in differing[:10]:
        print(f"image {b['image']} (modality {b['modality']}):")
        for key in b:
            if key == "checks":
                for cb, ca in zip(b[key], a[key], strict=False):
                    if cb != ca:
                        print(f"  before {cb}\n  after  {ca}")
            elif b[key] != a[key]:
                print(f"  {key}: {b[key]} -> {a[key]}")
    print(f"{len(differing)} of {len(before)} assessments differ")
    return 1 if differing else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("out", type=Path)
    w.add_argument("--data", type=Path, default=DEFAULT_DATA)
    w.add_argument("--extra", action="store_true", help="also the 5,371 images of manifest_extra")
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.cmd == "write":
        snap = snapshot(args.data, args.extra)
        args.out.write_text(json.dumps(snap, default=str))
        print(f"{len(snap)} assessments written to {args.out}")
        return
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    sys.exit(compare(before, after))


if __name__ == "__main__":
    main()
