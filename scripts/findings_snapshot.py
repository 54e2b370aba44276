"""Snapshot every finding of the quality checker, to prove a refactor or speed-up exact.

    python scripts/findings_snapshot.py write before.json [--data ../shared/data]
    (change the code)
    python scripts/findings_snapshot.py write after.json
    python scripts/findings_snapshot.py compare before.json after.json

``write`` assesses the 866 reference images, 8 degradations (blur, motion,
under/over-exposure, colour cast, JPEG 10, 4x downscale, noise) of every sixth one,
and blank, white and noise images, with detected and recorded modality, and stores
each check's score, verdict, reason and details, the modality guess, the skin-tone
estimate and the hash (2,435 assessments, about a minute). ``compare`` lists the
first differences and exits 1 if there are any.
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


def images(data: Path) -> list[Decoded]:
    with open(data / "manifest.csv", newline="") as fh:
        files = [data / row["file"] for row in csv.DictReader(fh)]
    real = [decode_for_checks(f.read_bytes()) for f in files]
    out = list(real)
    for i, decoded in enumerate(real[::6]):
        rng = random.Random(i)
        out += [degrade(decoded, rng) for degrade in DEGRADATIONS]
    noise = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    odd = (np.zeros((64, 64, 3), np.uint8), np.full((100, 80, 3), 255, np.uint8), noise)
    return out + [Decoded.from_array(a) for a in odd]


def snapshot(data: Path) -> list[dict[str, Any]]:
    out = []
    for k, decoded in enumerate(images(data)):
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
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.cmd == "write":
        snap = snapshot(args.data)
        args.out.write_text(json.dumps(snap, default=str))
        print(f"{len(snap)} assessments written to {args.out}")
        return
    before = json.loads(args.before.read_text())
    after = json.loads(args.after.read_text())
    sys.exit(compare(before, after))


if __name__ == "__main__":
    main()
