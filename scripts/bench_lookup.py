"""One image by id on a 100,000-row library: ``Library.image`` against the old LIKE scan.

    python scripts/bench_lookup.py [--rows 100000] [--calls 400]

The GUI looks images up by id up to 400 times per selection change (annotation panel,
edits). Rows are made with plain SQL (ids are random SHA-256-like hex, as real ones are);
the lookups are measured side by side in one run: the query ``Library.image`` used to run
(``WHERE id LIKE ?``, a table scan), and ``Library.image`` now with a full id (primary
key) and with a 12-character prefix (a range on the primary key).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dermdesk.library import Library  # noqa: E402


def fill(lib: Library, rows: int) -> list[str]:
    ids = [secrets.token_hex(32) for _ in range(rows)]
    with lib.transaction() as txn:
        txn.conn.executemany(
            "INSERT INTO image (id, file, format, width, height, bytes, modality, source, "
            "imported_at) VALUES (?, 'f', 'JPEG', 1, 1, 1, 'clinical', 'import', 'now')",
            [(i,) for i in ids],
        )
    return ids


def per_call_ms(fn, keys: list[str]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for key in keys:
        fn(key)
    return 1000 * (time.perf_counter() - start) / len(keys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dermdesk-lookup-"))
    try:
        with Library.open(work / "library", actor="bench") as lib:
            ids = fill(lib, args.rows)
            keys = ids[:: max(1, len(ids) // args.calls)][: args.calls]

            def old(key: str) -> object:
                return lib.query("SELECT * FROM image WHERE id LIKE ? LIMIT 2", [key + "%"])

            results: dict[str, list[float]] = {
                "old: id LIKE ? (scan)": [],
                "full id": [],
                "12-character prefix": [],
            }
            for _ in range(3):  # alternate, median of three
                results["old: id LIKE ? (scan)"].append(per_call_ms(old, keys[:20]))
                results["full id"].append(per_call_ms(lib.image, keys))
                results["12-character prefix"].append(
                    per_call_ms(lib.image, [k[:12] for k in keys])
                )
        print(f"Library.image on {args.rows:,} rows, ms per call (median of 3 rounds):")
        for name, values in results.items():
            print(f"  {name:<24} {statistics.median(values):8.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
