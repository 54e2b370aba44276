"""The ``dermdesk`` command. With no subcommand it opens the GUI.

Every command works on one library folder: ``--library DIR``, else
``$DERMDESK_HOME``, else the user's data folder (see :mod:`dermdesk.paths`).
Errors are printed as one line on stderr with exit status 2; an import that
refused some files exits with 1 after importing the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dermdesk import __version__, cli_curate, cli_experiment, cli_ml, taxonomy
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.query import TONE_SOURCES
from dermdesk.paths import resolve_library_dir


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    try:
        return int(COMMANDS[command](args))
    except LibraryError as exc:
        print(f"dermdesk: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dermdesk: interrupted", file=sys.stderr)
        return 130
    except sqlite3.DatabaseError as exc:  # a damaged page met in the middle of a command
        if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            raise  # our bug, not the file's damage
        from dermdesk.library.db import DB_NAME, damaged_message

        where = resolve_library_dir(getattr(args, "library", None)) / DB_NAME
        print(f"dermdesk: {damaged_message(where, str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `dermdesk ls | head`: the reader has what it wanted. Point stdout at devnull so
        # the interpreter's final flush does not raise again, and exit as a shell would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


# -- arguments -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dermdesk",
        description="dermdesk: a desktop workstation for clinical dermatology datasets. "
        "With no command it opens the desktop app.",
        epilog="Every command works on one library folder: --library DIR, else "
        "$DERMDESK_HOME, else your data folder. 'dermdesk COMMAND --help' says more.",
    )
    parser.add_argument("--version", action="version", version=f"dermdesk {__version__}")
    parser.add_argument(
        "--library",
        metavar="DIR",
        help="library folder (default: $DERMDESK_HOME or the user data folder)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="open the desktop app (the default)")

    p = sub.add_parser("import", help="import photos, dataset folders or a CSV")
    p.add_argument("paths", nargs="*", type=Path, help="files or folders")
    p.add_argument("--csv", type=Path, help="generic CSV of image paths and metadata")
    p.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="CSV column for a field (file, diagnosis, patient, lesion, ...); several image "
        "columns per row: --map file=clinic:clinical --map file=derm:dermoscopic",
    )
    p.add_argument(
        "--map-values",
        action="append",
        default=[],
        metavar="FIELD=FILE|'FIELD:VALUE=TARGET'",
        help="translate a column's own words: a two-column CSV (value, target) or inline, "
        "e.g. 'body_site:both legs=lower extremity' (targets are checked first)",
    )
    p.add_argument("--root", type=Path, help="folder the CSV's paths are relative to")
    p.add_argument("--dataset", help="dataset name to record for a CSV import")
    p.add_argument(
        "--modality",
        choices=taxonomy.MODALITIES,
        default=None,
        help="modality of plain photos (default: detected per image; datasets set their own)",
    )
    p.add_argument("--workers", type=int, help="parallel workers (default: all cores)")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress line and no line per file already in the library; refused files "
        "and the summary are still printed",
    )
    p.add_argument(
        "--no-checks", action="store_true", help="skip the quality checks (run 'check' later)"
    )

    p = sub.add_parser("check", help="(re)run the quality checks and show a summary")
    add_filters(p)
    p.add_argument(
        "--all",
        action="store_true",
        help="re-check every matching image (default: only unchecked or older-version ones)",
    )
    p.add_argument("--workers", type=int, help="parallel workers (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress line")

    p = sub.add_parser("ls", help="list images")
    add_filters(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument(
        "--order",
        default="imported",
        choices=("imported", "captured", "diagnosis", "patient", "id"),
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    p = sub.add_parser("show", help="show one image's metadata, labels and history")
    p.add_argument("image", help="image id or a unique prefix of it")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "edit",
        help="set an image's modality, device, clinic or operator (the details panel's edits)",
    )
    p.add_argument("images", nargs="*", help="image ids or unique prefixes (>= 6 characters)")
    p.add_argument(
        "--where",
        choices=["modality-unsure"],
        help="every image matching this instead of ids (modality-unsure: the detector's guesses)",
    )
    p.add_argument("--modality", choices=list(taxonomy.MODALITIES))
    for name in ("device-make", "device-model", "clinic", "operator"):
        p.add_argument(f"--{name}")

    p = sub.add_parser("stats", help="counts by diagnosis x Fitzpatrick x modality x device")
    add_filters(p)
    p.add_argument(
        "--by",
        help="comma-separated columns for a flat count instead "
        "(diagnosis, fitzpatrick, monk (rated), fitzpatrick_est, monk_est (estimated), "
        "modality, dataset, device)",
    )

    p = sub.add_parser("verify", help="check rows, files, checksums and the audit chain")
    p.add_argument("--quick", action="store_true", help="skip re-hashing the originals")
    p.add_argument(
        "--repair",
        action="store_true",
        help="remove orphan/temporary files, rebuild missing thumbnails",
    )

    p = sub.add_parser(
        "recover",
        help="import originals that have no row again (lost rows, quarantine/), "
        "with what the audit log knows about them",
    )
    p.add_argument("--no-checks", action="store_true", help="skip the quality checks")
    p.add_argument(
        "--database",
        action="store_true",
        help="the database is damaged: rebuild a new one from what SQLite can read plus "
        "the originals (the damaged file is kept beside it)",
    )

    p = sub.add_parser("backup", help="online backup of the database and files")
    p.add_argument("dest", type=Path, help="new or empty folder")

    cli_ml.add_parsers(sub, add_filters)  # train, jobs, models, predict
    cli_experiment.add_parsers(sub)  # experiment
    cli_curate.add_parsers(sub, add_filters)  # curate, export
    return parser


def add_filters(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--diagnosis", help="codes, comma-separated (e.g. MEL,NEV)")
    g.add_argument("--fitzpatrick", help="types: 5,6 or V-VI or 5-6")
    g.add_argument("--monk", help="tones: 8-10")
    g.add_argument(
        "--tone",
        choices=TONE_SOURCES,
        default="any",
        help="which skin tones --fitzpatrick/--monk match: rated (a person's or a dataset's), "
        "estimated (automatic), or any (the rating, else the estimate; default)",
    )
    g.add_argument("--modality", help="clinical, dermoscopic, other (comma-separated)")
    g.add_argument(
        "--modality-method",
        help="where the modality came from: recorded, detected, unsure (comma-separated)",
    )
    g.add_argument("--device", help="text in the camera make or model")
    g.add_argument(
        "--domain",
        help="estimated visual meta-domains, comma-separated (e.g. clinical-a; "
        "unassigned: none yet; see `dermdesk domains`)",
    )
    g.add_argument("--patient", help="patient id")
    g.add_argument("--lesion", help="lesion id")
    g.add_argument("--dataset", help="dataset names, comma-separated")
    g.add_argument("--text", help="id prefix, file name or free-text label")
    g.add_argument(
        "--failing",
        metavar="CHECKS",
        help="images that do not pass these quality checks (warn or fail), comma-separated, "
        "e.g. sharpness,resolution",
    )
    lab = g.add_mutually_exclusive_group()
    lab.add_argument("--labelled", dest="labelled", action="store_const", const=True)
    lab.add_argument("--unlabelled", dest="labelled", action="store_const", const=False)
    syn = g.add_mutually_exclusive_group()
    syn.add_argument("--synthetic", dest="synthetic", action="store_const", const=True)
    syn.add_argument("--no-synthetic", dest="synthetic", action="store_const", const=False)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _range(text: str | None, parse: Any) -> list[int]:
    values: list[int] = []
    for part in _split(text):
        lo, sep, hi = part.partition("-")
        if sep and lo and hi:
            a, b = parse(lo), parse(hi)
            values += list(range(min(a, b), max(a, b) + 1))
        else:
            values.append(parse(part))
    return values


def _modality_methods(text: str | None) -> list[str]:
    methods = _split(text)
    for m in methods:
        if m not in taxonomy.MODALITY_METHODS:
            raise LibraryError(
                f"unknown modality method {m!r}; use {', '.join(taxonomy.MODALITY_METHODS)}"
            )
    return methods


def filter_from_args(args: argparse.Namespace) -> ImageFilter:
    try:
        fitz = _range(args.fitzpatrick, taxonomy.parse_fitzpatrick)
        monk = _range(args.monk, taxonomy.parse_monk)
    except ValueError as exc:
        raise LibraryError(str(exc)) from exc
    diagnosis = [d.upper() for d in _split(args.diagnosis)]
    unknown = [d for d in diagnosis if d not in taxonomy.diagnoses()]
    if unknown:
        raise LibraryError(
            f"unknown diagnosis code {unknown[0]!r}; codes: " + ", ".join(taxonomy.diagnoses())
        )
    return ImageFilter(
        diagnosis=diagnosis,
        fitzpatrick=fitz,
        monk=monk,
        modality=_split(args.modality),
        modality_method=_modality_methods(args.modality_method),
        dataset=_split(args.dataset),
        device=args.device,
        patient=args.patient,
        lesion=args.lesion,
        labelled=args.labelled,
        synthetic=args.synthetic,
        text=args.text,
        tone=args.tone,
        meta_domain=_split(getattr(args, "domain", None)),
        failing=_checks(getattr(args, "failing", None)),
    )


def _checks(text: str | None) -> list[str]:
    from dermdesk.imaging.check_names import CHECK_TITLES  # names only: no OpenCV

    names = [n.lower().replace(" ", "_") for n in _split(text)]
    for name in names:
        if name not in CHECK_TITLES:
            raise LibraryError(f"unknown quality check {name!r}; checks: {', '.join(CHECK_TITLES)}")
    return names


def open_library(args: argparse.Namespace, *, create: bool = True) -> Library:
    return Library.open(resolve_library_dir(args.library), create=create)


def open_for_reading(args: argparse.Namespace) -> Library:
    """Open read-write where possible (to apply migrations), read-only on read-only media."""
    folder = resolve_library_dir(args.library).expanduser()
    readonly = folder.is_dir() and not os.access(folder, os.W_OK)
    return Library.open(folder, create=False, readonly=readonly)


# -- commands --------------------------------------------------------------------------------


def cmd_gui(args: argparse.Namespace) -> int:
    from dermdesk.gui.app import run  # lazy: the CLI must not need a display

    return run(resolve_library_dir(args.library))


def cmd_import(args: argparse.Namespace) -> int:
    from dermdesk.exchange.csvmap import (
        parse_image_columns,
        parse_mapping,
        parse_value_maps,
        plan_csv,
    )
    from dermdesk.exchange.datasets import Plan, plan_path
    from dermdesk.exchange.importer import run_import
    from dermdesk.exchange.tables import DatasetError

    if not args.paths and not args.csv:
        raise LibraryError("nothing to import: give files, folders or --csv FILE")
    plan = Plan()
    try:
        if args.map_values and not args.csv:
            raise DatasetError("--map-values applies to a --csv import")
        if args.csv:
            images = parse_image_columns(args.map)
            plan.merge(
                plan_csv(
                    args.csv,
                    parse_mapping(args.map),
                    root=args.root,
                    modality=args.modality or "clinical",
                    dataset=args.dataset,
                    image_columns=images if len(images) > 1 else None,
                    value_maps=parse_value_maps(args.map_values),
                )
            )
        for path in args.paths:
            plan.merge(plan_path(path, args.modality))
    except DatasetError as exc:
        raise LibraryError(str(exc)) from exc
    with open_library(args) as lib:
        report = run_import(
            lib,
            plan.items,
            workers=args.workers,
            progress=None if args.quiet or not sys.stderr.isatty() else _ProgressLine(),
            checks=not args.no_checks,
        )
    report.refused[:0] = plan.refused
    report.warnings[:0] = plan.warnings
    if not args.quiet:  # quiet: only what went wrong, and the summary
        for where, sha in report.existing:
            print(f"{where}: already in library ({sha[:12]})")
    for where, reason in report.refused:
        print(f"{where}: refused: {reason}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(report.summary())
    if report.interrupted:
        return 130
    return 1 if report.refused else 0


class _ProgressLine:
    """A throttled progress line on stderr (at most ~10 updates a second)."""

    def __init__(self) -> None:
        self.last = 0.0
        self.start = time.monotonic()

    def __call__(self, p: Any) -> None:
        t = time.monotonic()
        if t - self.last < 0.1 and p.done < p.total:
            return
        self.last = t
        rate = p.done / max(t - self.start, 1e-6)
        end = "\n" if p.done == p.total else ""
        print(
            f"\r{p.done}/{p.total} files, {p.added} added, {p.refused} refused, {rate:.0f}/s",
            end=end,
            file=sys.stderr,
            flush=True,
        )


LS_COLUMNS = (
    "id",
    "diagnosis",
    "fitzpatrick",
    "monk",
    "modality",
    "dataset",
    "device_model",
    "width",
    "height",
)


def cmd_ls(args: argparse.Namespace) -> int:
    flt = filter_from_args(args)
    with open_for_reading(args) as lib:
        rows = lib.images(flt, limit=args.limit, offset=args.offset, order=args.order)
        total = lib.count(flt)
        if args.json:
            predictions = lib.predictions_of([r["id"] for r in rows])
            for row in rows:
                row["predictions"] = predictions.get(row["id"], [])
                print(json.dumps(row, default=str, ensure_ascii=False))
            return 0
    table = [[_ls_cell(c, r) for c in LS_COLUMNS] for r in rows]
    print_table(LS_COLUMNS, table)
    if any(r["fitzpatrick"] is None and r["fitzpatrick_est"] is not None for r in rows) or any(
        r["monk"] is None and r["monk_est"] is not None for r in rows
    ):
        print("~ = automatic estimate (ITA), not a rating")
    print(f"{len(rows)} of {total} images")
    return 0


def _ls_cell(column: str, row: dict[str, Any]) -> str:
    """A listing cell; a skin tone shows its rating, else its estimate marked ``~``; a
    modality says when the detector chose it."""
    if column == "modality":
        return taxonomy.modality_words(row["modality"], row.get("modality_method") or "recorded")
    if column in ("fitzpatrick", "monk") and row[column] is None:
        estimate = row.get(f"{column}_est")
        return "" if estimate is None else "~" + _cell(column, estimate)
    return _cell(column, row.get(column))


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "id":
        return str(value)[:12]
    if column in ("fitzpatrick", "fitzpatrick_est"):
        return taxonomy.fitzpatrick_roman(int(value))
    return str(value)


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_show(args: argparse.Namespace) -> int:
    from dermdesk.library import quality_store
    from dermdesk.library.browse import current_tones, describe_tone

    with open_for_reading(args) as lib:
        image = lib.image(args.image)
        tones = current_tones(lib, image["id"])
        info = {
            "image": image,
            "patient": lib.patient(image["patient_id"]) if image["patient_id"] else None,
            "lesion": lib.lesion(image["lesion_id"]) if image["lesion_id"] else None,
            "labels": lib.label_history(image["id"]),
            "skin_tone": {
                "fitzpatrick": describe_tone(tones, "fitzpatrick"),
                "monk": describe_tone(tones, "monk"),
            },
            "skin_tones": lib.skin_tones(image["id"]),
            "masks": lib.masks(image["id"]),
            "quality": quality_store.findings(lib, image["id"]),
            "predictions": lib.predictions(image["id"]),
            "original": str(lib.original_path(image)),
        }
    if args.json:
        print(json.dumps(info, indent=2, default=str, ensure_ascii=False))
        return 0
    _print_show(info)
    return 0


# Shown in their own lines with where they came from, not as bare row values.
_SHOW_APART = {"extra", "fitzpatrick", "monk", "fitzpatrick_est", "monk_est"}


def _print_show(info: dict[str, Any]) -> None:
    image = info["image"]
    extra = json.loads(image["extra"]) if image["extra"] else {}
    keys = [k for k, v in image.items() if v not in (None, "") and k not in _SHOW_APART]
    width = max(len(k) for k in [*keys, *extra, "fitzpatrick", "body_site", "original"])
    for key in keys:
        print(f"{key:>{width}}: {image[key]}")
    for scale, text in info["skin_tone"].items():
        print(f"{scale:>{width}}: {text or 'not rated, no estimate'}")
    for key, value in extra.items():
        print(f"{key:>{width}}: {value}  (dataset metadata)")
    if info["lesion"]:
        print(f"{'body_site':>{width}}: {info['lesion']['body_site'] or ''}")
    print(f"{'original':>{width}}: {info['original']}")
    print("labels (oldest first):")
    for lab in info["labels"]:
        mark = "*" if lab["is_current"] else " "
        text = f" ({lab['free_text']})" if lab["free_text"] else ""
        print(
            f"  {mark} {lab['created_at']}  {lab['diagnosis']}{text}  {lab['certainty']}"
            f"  by {lab['annotator']}"
        )
    print("skin tone history (oldest first; rating = a person's or a dataset's):")
    for tone in info["skin_tones"]:
        mark = "*" if tone["is_current"] else " "
        kind = "rating  " if tone["method"] == "manual" else "estimate"
        print(
            f"  {mark} {tone['created_at']}  {kind}  Fitzpatrick "
            f"{taxonomy.fitzpatrick_roman(tone['fitzpatrick']) or '-'}  Monk "
            f"{tone['monk'] or '-'}  by {tone['rater']}"
            + (
                f"  (ITA {tone['ita']:.0f}°, confidence {tone['confidence']:.0%})"
                if tone["ita"] is not None and tone["confidence"] is not None
                else ""
            )
        )
    _print_findings(info["quality"])
    _print_predictions(info["predictions"])


def _print_predictions(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("predictions: none (run `dermdesk predict`)")
        return
    print("predictions (newest model first):")
    for p in rows:
        top = sorted(p["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{code} {prob:.0%}" for code, prob in top)
        print(f"  {p['model_id']} ({p['model_status']})  {p['created_at']}  {shown}")


def _print_findings(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("quality: not checked yet (run `dermdesk check`)")
        return
    print(f"quality (checker {rows[0]['checker_version']}):")
    for row in rows:
        print(f"  {row['verdict']:<4}  {row['check_name']:<16}  {row['reason']}")


def cmd_check(args: argparse.Namespace) -> int:
    from dermdesk.imaging.quality import CHECK_TITLES, CHECKER_VERSION
    from dermdesk.library import quality_store
    from dermdesk.library.checking import check_images

    flt = filter_from_args(args)
    with open_library(args, create=False) as lib:
        ids = quality_store.image_ids(lib, flt) if args.all else quality_store.stale_ids(lib, flt)
        result = check_images(
            lib,
            ids,
            workers=args.workers,
            progress=None if args.quiet or not sys.stderr.isatty() else _CheckProgress(),
        )
        table = quality_store.flatten(quality_store.verdict_counts(lib, flt))
    print(
        f"checked {result.checked} images with checker {CHECKER_VERSION}"
        + (f", {len(result.unreadable)} unreadable" if result.unreadable else "")
        + (" (cancelled)" if result.cancelled else "")
    )
    for image_id, reason in result.unreadable:
        print(f"{image_id[:12]}: {reason}")
    order = [c for c in CHECK_TITLES if c in table] + sorted(set(table) - set(CHECK_TITLES))
    print_table(
        ["check", "pass", "warn", "fail"],
        [[c, table[c]["pass"], table[c]["warn"], table[c]["fail"]] for c in order],
    )
    return 0


class _CheckProgress:
    """Throttled progress line for `check`."""

    def __init__(self) -> None:
        self.last = 0.0
        self.start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        t = time.monotonic()
        if t - self.last < 0.1 and done < total:
            return
        self.last = t
        rate = done / max(t - self.start, 1e-6)
        end = "\n" if done == total else ""
        print(
            f"\r{done}/{total} images checked, {rate:.0f}/s", end=end, file=sys.stderr, flush=True
        )


def cmd_stats(args: argparse.Namespace) -> int:
    flt = filter_from_args(args)
    with open_for_reading(args) as lib:
        if args.by:
            by = _split(args.by)
            rows = lib.counts(by, flt)
            print_table([*by, "n"], [[_cell(c, r[c]) for c in by] + [r["n"]] for r in rows])
            return 0
        total = lib.count(flt)
        print(f"{total} images")
        for modality_row in lib.counts(["modality", "modality_method"], flt):
            modality, method = modality_row["modality"], modality_row["modality_method"]
            sub = ImageFilter(**{**vars(flt), "modality": [modality], "modality_method": [method]})
            _print_pivot(
                lib.counts(["diagnosis", "fitzpatrick"], sub),
                f"{taxonomy.modality_words(modality, method)} ({modality_row['n']}): "
                "diagnosis x rated Fitzpatrick (a person's or a dataset's rating; ? = not rated)",
            )
            estimated = [
                {**r, "fitzpatrick": r["fitzpatrick_est"]}
                for r in lib.counts(["diagnosis", "fitzpatrick", "fitzpatrick_est"], sub)
                if r["fitzpatrick"] is None and r["fitzpatrick_est"] is not None
            ]
            if estimated:
                _print_pivot(
                    estimated,
                    f"{taxonomy.modality_words(modality, method)}: of the unrated, "
                    "automatic estimate (ITA; not a rating)",
                )
        devices = lib.counts(["device"], flt)
        print("\ndevices:")
        print_table(
            ["device", "n"],
            [[r["device"] or "(unknown)", r["n"]] for r in sorted(devices, key=lambda r: -r["n"])],
        )
        domains = lib.counts(["meta_domain", "diagnosis"], flt)
        if any(r["meta_domain"] for r in domains):
            print("\nvisual meta-domain (estimated, see `dermdesk domains`) x diagnosis:")
            _print_by_domain(domains)
    return 0


def _print_by_domain(rows: list[dict[str, Any]]) -> None:
    present = {r["diagnosis"] or "(none)" for r in rows}
    cols = [d for d in [*taxonomy.diagnoses(), "(none)"] if d in present]
    grid: dict[str, dict[str, int]] = {}
    for r in rows:
        grid.setdefault(r["meta_domain"] or "unassigned", {})[r["diagnosis"] or "(none)"] = r["n"]
    print_table(
        ["meta-domain", *cols, "total"],
        [[d, *(g.get(c, "") for c in cols), sum(g.values())] for d, g in sorted(grid.items())],
    )


def cmd_edit(args: argparse.Namespace) -> int:
    changes = {
        k: v
        for k, v in {
            "modality": args.modality,
            "device_make": args.device_make,
            "device_model": args.device_model,
            "clinic": args.clinic,
            "operator": args.operator,
        }.items()
        if v is not None
    }
    if not changes:
        raise LibraryError("nothing to change: give --modality, --device-make, ... ")
    if bool(args.images) == bool(args.where):
        raise LibraryError("give image ids or --where, not both or neither")
    with open_library(args, create=False) as lib:
        if args.where:
            ids = [r["id"] for r in lib.images(ImageFilter(modality_method=["unsure"]))]
        else:
            ids = [lib.image(i)["id"] for i in args.images]
        for image_id in ids:
            lib.update_image(image_id, **changes)
    what = ", ".join(f"{k} {v}" for k, v in changes.items())
    print(f"{len(ids)} images: {what}")
    return 0


def _print_pivot(rows: list[dict[str, Any]], title: str) -> None:
    cols = [*taxonomy.ROMAN, "?"]
    grid: dict[str, dict[str, int]] = {}
    for r in rows:
        col = taxonomy.fitzpatrick_roman(r["fitzpatrick"]) or "?"
        grid.setdefault(r["diagnosis"] or "(none)", {})[col] = r["n"]
    print(f"\n{title}")
    order = [*taxonomy.diagnoses(), "(none)"]
    table = [
        [d, *(grid[d].get(c, "") for c in cols), sum(grid[d].values())] for d in order if d in grid
    ]
    print_table(["diagnosis", *cols, "total"], table)


def cmd_verify(args: argparse.Namespace) -> int:
    from dermdesk.library.db import LibraryDamaged
    from dermdesk.library.verify import verify

    opener = open_library if args.repair else open_for_reading  # read-only media: no repair
    try:
        lib = opener(args)
    except LibraryDamaged as exc:  # the damage is verify's finding, not a crash
        print(f"error: {exc}")
        print("verify FAILED: the library database cannot be read")
        return 1
    with lib:
        report = verify(lib, checksums=not args.quick, repair=args.repair)
    for line in report.repaired:
        print(f"repaired: {line}")
    for line in report.warnings:
        print(f"warning: {line}")
    for line in report.errors:
        print(f"error: {line}")
    status = "OK" if report.ok else "FAILED"
    print(
        f"verify {status}: {report.images} images, {report.audit_entries} audit entries, "
        f"{len(report.errors)} errors, {len(report.warnings)} warnings"
    )
    return 0 if report.ok else 1


def cmd_recover(args: argparse.Namespace) -> int:
    from dermdesk.library.recover import (
        accept_restored_database,
        recover_originals,
        unlisted_originals,
    )

    if args.database:
        from dermdesk.library.rebuild import rebuild_database

        print("\n".join(rebuild_database(resolve_library_dir(args.library)).lines()))
        print("run `dermdesk verify` to check the rebuilt library")
        return 0
    with open_library(args, create=False) as lib:
        resolved = accept_restored_database(lib)
        if resolved:
            print(f"the database is older than the last one written ({resolved}):")
            print("  its audit log is accepted as the record from now on (audit.head_reset)")
        if not unlisted_originals(lib):
            print("nothing to recover: every original in the library has its row")
            return 0
        report = recover_originals(lib, checks=not args.no_checks)
    for where, reason in report.refused:
        print(f"{where}: refused: {reason}")
    print(report.summary())
    return 1 if report.refused else 0


def cmd_backup(args: argparse.Namespace) -> int:
    from dermdesk.library.backup import backup

    with open_for_reading(args) as lib:  # a backup only reads the library
        result = backup(lib, args.dest)
    print(
        f"backed up {result.images} images ({result.files} files, "
        f"{result.bytes / 1e6:.1f} MB) to {result.folder}"
    )
    return 0


COMMANDS = {
    "gui": cmd_gui,
    "import": cmd_import,
    "check": cmd_check,
    "ls": cmd_ls,
    "show": cmd_show,
    "stats": cmd_stats,
    "edit": cmd_edit,
    "verify": cmd_verify,
    "recover": cmd_recover,
    "backup": cmd_backup,
    **cli_ml.COMMANDS,
    **cli_experiment.COMMANDS,
    **cli_curate.COMMANDS,
}
