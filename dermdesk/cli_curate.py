"""`dermdesk curate` (stored splits, leakage) and `dermdesk export` (de-identified datasets).

dermdesk curate split --name v1 --fractions 70/15/15 --seed 0 [filters]
dermdesk curate splits                      # stored splits
dermdesk curate show-split v1               # its parts side by side
dermdesk curate leakage --split v1 | --csv split.csv [--naive 70/15/15]
dermdesk export --format isic|imagefolder [--split v1] [filters] OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EMBEDDING_MIN_COSINE = 0.95  # ml.embeddings.DEFAULT_MIN_COSINE, without importing torch


def add_parsers(sub: Any, add_filters: Any) -> None:
    dom = sub.add_parser(
        "domains",
        help="visual meta-domains: assign (modality refined by acquisition look) or list",
    )
    dsub = dom.add_subparsers(dest="domains_command", metavar="ACTION")
    assign = dsub.add_parser("assign", help="(re)compute every checked image's meta-domain")
    assign.add_argument("--seed", type=int, default=0)
    assign.add_argument(
        "--k", type=int, help="domains per modality (default: chosen by silhouette)"
    )
    assign.add_argument(
        "--backbone",
        help="cluster a registered MAE backbone's features (an id or name) instead of the "
        "quality checker's look measurements",
    )
    dsub.add_parser("list", help="the domains images are in now (the default)")
    p = sub.add_parser("curate", help="stored patient-grouped splits and leakage reports")
    cur = p.add_subparsers(dest="curate_command", metavar="ACTION", required=True)
    split = cur.add_parser(
        "split", help="make and store a split grouped by patient, lesion and near-duplicate"
    )
    split.add_argument("--name", required=True, help="the split's name (never reused)")
    split.add_argument("--fractions", default="70/15/15", help="train/val/test (default 70/15/15)")
    split.add_argument("--seed", type=int, default=0)
    add_filters(split)
    cur.add_parser("splits", help="stored splits")
    show = cur.add_parser("show-split", help="a stored split's parts side by side")
    show.add_argument("name")
    leak = cur.add_parser("leakage", help="what crosses the parts of a split")
    src = leak.add_mutually_exclusive_group(required=True)
    src.add_argument("--split", help="a stored split's name")
    src.add_argument("--csv", type=Path, help="a CSV with columns image_id, split")
    leak.add_argument(
        "--naive",
        metavar="FRACTIONS",
        help="also report a random image-level split of the same images (e.g. 70/15/15)",
    )
    leak.add_argument("--json", action="store_true", help="the report as JSON")
    dup = cur.add_parser("duplicates", help="near-duplicate pairs with distances and decisions")
    dup.add_argument("--undecided", action="store_true", help="only pairs not decided yet")
    dup.add_argument("--limit", type=int, default=50)
    add_filters(dup)
    emb = cur.add_parser(
        "embed-duplicates",
        help="find near-duplicates by a registered backbone's features (cosine) and keep them",
    )
    emb.add_argument("--backbone", required=True, help="a registered MAE backbone (id or name)")
    emb.add_argument(
        "--min-cosine",
        type=float,
        default=EMBEDDING_MIN_COSINE,
        help=f"pairs at least this close (default {EMBEDDING_MIN_COSINE})",
    )
    add_filters(emb)
    dec = cur.add_parser("decide", help="decide a near-duplicate pair (B is linked or excluded)")
    dec.add_argument("a", help="image id (or 6+ character prefix) kept as it is")
    dec.add_argument("b", help="image id linked to A's lesion, or excluded")
    dec.add_argument(
        "decision",
        choices=("same_lesion", "merge", "exclude", "not_duplicate"),
        help="same_lesion: both stay, one lesion; merge: one lesion, B excluded; "
        "exclude: B excluded; not_duplicate: different pictures (splits stop joining them)",
    )
    dec.add_argument("--note")
    undo = cur.add_parser("undo", help="take a duplicate decision back")
    undo.add_argument("decision", type=int)
    exc = cur.add_parser("exclude", help="keep images out of datasets (never deleted)")
    exc.add_argument("images", nargs="+")
    exc.add_argument("--reason", required=True)
    inc = cur.add_parser("include", help="withdraw images' exclusion")
    inc.add_argument("images", nargs="+")
    rev = cur.add_parser(
        "label-review",
        help="annotator agreement (Cohen's kappa) and labels a model's held-out "
        "predictions doubt (confident learning, cleanlab)",
    )
    rev.add_argument(
        "--model",
        default="auto",
        help="whose probabilities: auto (the newest `train crossval`, else the active "
        "model's held-out predictions), a model id or name",
    )
    rev.add_argument("--limit", type=int, default=20)
    rev.add_argument("--json", action="store_true")

    exp = sub.add_parser("export", help="export a de-identified dataset with a data card")
    exp.add_argument("out", type=Path, help="a new or empty folder")
    exp.add_argument("--format", choices=("isic", "imagefolder", "dicom"), default="isic")
    exp.add_argument("--split", help="a stored split (dermdesk curate split)")
    exp.add_argument(
        "--include-synthetic", action="store_true", help="export synthetic images too (flagged)"
    )
    exp.add_argument(
        "--include-free-text",
        action="store_true",
        help="export free-text labels and the source datasets' extra columns",
    )
    exp.add_argument("--dry-run", action="store_true", help="show what would be exported")
    add_filters(exp)


def cmd_curate(args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args, open_for_reading, open_library, print_table
    from dermdesk.exchange import splits as sp
    from dermdesk.library import split_store

    action = args.curate_command
    if action in ("decide", "undo", "exclude", "include"):
        return _curate_write(args)
    if action == "split":
        fractions = sp.parse_fractions(args.fractions)
        with open_library(args, create=False) as lib:
            plan = sp.plan_split(lib, filter_from_args(args), fractions, args.seed)
            split_store.create_split(lib, args.name, plan.assignment, plan.params, plan.report)
        print(f"split {args.name!r} stored: {len(plan.assignment)} images, seed {args.seed}")
        print(sp.render_report(plan.report))
        return 0
    with open_for_reading(args) as lib:
        if action == "splits":
            rows = split_store.splits(lib)
            print_table(
                ["name", "train", "val", "test", "seed", "query", "created"],
                [
                    [
                        r["name"],
                        *r["parts"].values(),
                        r["params"].get("seed"),
                        r["params"].get("query_text") or "all images",
                        r["created_at"][:16],
                    ]
                    for r in rows
                ],
            )
            return 0
        if action == "show-split":
            info = split_store.split_info(lib, args.name)
            print(f"split {info['name']!r}: {info['params'].get('query_text') or 'all images'}, ")
            print(
                f"fractions {info['params']['fractions']}, seed {info['params']['seed']}; "
                f"grouping: {info['params']['grouping']}"
            )
            print(sp.render_report(info["report"]))
            return 0
        if action == "duplicates":
            return _duplicates(lib, args)
        if action == "embed-duplicates":
            return _embed_duplicates(lib, args)
        if action == "label-review":
            return _label_review(lib, args)
        assignment = (
            split_store.assignment(lib, args.split)
            if args.split
            else sp.read_split_csv(args.csv, lib)
        )
        report = sp.leakage_report(lib, assignment)
        naive = None
        if args.naive:
            fractions = sp.parse_fractions(args.naive)
            naive = sp.leakage_report(lib, sp.random_image_split(list(assignment), fractions))
    if args.json:
        print(json.dumps({"split": report, "naive": naive}, indent=2))
        return 0
    print(sp.render_leakage(report))
    if naive is not None:
        print("\na random image-level split of the same images would have:")
        print(sp.render_leakage(naive))
    return 0 if report["clean"] else 1


def _duplicates(lib: Any, args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args, print_table
    from dermdesk.library import curation_store as cs

    flt = filter_from_args(args)
    ids = None if flt.is_empty() else [r["id"] for r in lib.images(flt)]
    pairs = cs.duplicate_pairs(lib, ids)
    if args.undecided:
        pairs = [p for p in pairs if p["decision"] is None]
    excluded = cs.excluded_ids(lib)
    print(f"{len(pairs)} near-duplicate pairs" + (" not decided yet" if args.undecided else ""))
    print_table(
        ["a", "b", "distance", "cosine", "decision", "excluded"],
        [
            [
                p["a"][:12],
                p["b"][:12],
                "-" if p["distance"] is None else p["distance"],
                "-" if p.get("cosine") is None else f"{p['cosine']:.3f}",
                f"{p['decision']} (#{p['decision_id']})" if p["decision"] else "-",
                ", ".join(x[:12] for x in (p["a"], p["b"]) if x in excluded) or "-",
            ]
            for p in pairs[: args.limit]
        ],
    )
    return 0


def _embed_duplicates(lib: Any, args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args
    from dermdesk.library import curation_store as cs
    from dermdesk.ml.embeddings import embedding_duplicates

    flt = filter_from_args(args)
    ids = [r["id"] for r in lib.images(flt, order="id") if r["source"] != "synthetic"]
    model_id, pairs, n = embedding_duplicates(lib, args.backbone, ids, args.min_cosine)
    cs.save_embedding_pairs(lib, model_id, args.min_cosine, pairs)
    phash = {(p["a"], p["b"]) for p in cs.duplicate_pairs(lib, ids) if p["distance"] is not None}
    new = sum((a, b) not in phash for a, b, _ in pairs)
    print(
        f"{len(pairs)} pairs of {n} images at cosine >= {args.min_cosine} by "
        f"{model_id}; {new} not found by the perceptual hash (kept: `curate duplicates`)"
    )
    return 0


def _label_review(lib: Any, args: argparse.Namespace) -> int:
    from dermdesk.cli import print_table
    from dermdesk.exchange.label_review import agreement, label_issues
    from dermdesk.library import LibraryError

    report: dict[str, Any] = {"agreement": agreement(lib)}
    try:
        report["issues"] = label_issues(lib, args.model, args.limit)
    except LibraryError as exc:
        report["issues"] = {"unavailable": str(exc)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    pairs = report["agreement"]["pairs"]
    print(f"annotator pairs with images in common: {len(pairs)}")
    print_table(
        ["annotators", "images", "agree", "kappa", "lowest class kappa"],
        [
            [
                " / ".join(p["annotators"]),
                p["images"],
                f"{p['agreement']:.0%}",
                f"{p['kappa']:.2f}",
                min(p["per_class"].items(), key=lambda kv: kv[1], default=("", ""))[0],
            ]
            for p in pairs
        ],
    )
    print(f"images whose annotators disagree: {len(report['agreement']['disagreeing'])}")
    issues = report["issues"]
    if "unavailable" in issues:
        print(f"label issues: {issues['unavailable']}")
        return 0
    print(
        f"\nlabel issues (confident learning on {issues['held_out']} held-out predictions "
        f"of model {issues['model']}): {issues['issues_found']}"
    )
    for warning in issues["warnings"]:
        print(f"  cleanlab: {warning}")
    print_table(
        ["image", "label", "p(label)", "model says", "p"],
        [
            [i["image_id"][:12], i["label"], i["p_label"], i["model_says"], i["p_model"]]
            for i in issues["issues"]
        ],
    )
    return 0


def _curate_write(args: argparse.Namespace) -> int:
    from dermdesk.cli import open_library
    from dermdesk.library import curation_store as cs

    with open_library(args, create=False) as lib:
        if args.curate_command == "decide":
            n = cs.decide(lib, args.a, args.b, args.decision, args.note)
            print(f"decision {n}: {args.decision} (dermdesk curate undo {n} takes it back)")
        elif args.curate_command == "undo":
            cs.undo(lib, args.decision)
            print(f"decision {args.decision} undone")
        elif args.curate_command == "exclude":
            ids = [lib.image(i)["id"] for i in args.images]
            print(f"{cs.exclude(lib, ids, args.reason)} images excluded from datasets")
        else:
            ids = [lib.image(i)["id"] for i in args.images]
            print(f"{cs.include(lib, ids)} images back in datasets")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from dermdesk.cli import filter_from_args, open_for_reading
    from dermdesk.exchange.export import ExportOptions, plan_export, write_export

    options = ExportOptions(
        args.format,
        split=args.split,
        flt=filter_from_args(args),
        include_synthetic=args.include_synthetic,
        include_free_text=args.include_free_text,
    )
    with open_for_reading(args) as lib:
        plan = plan_export(lib, options)
        counts = plan.counts()
        print(
            f"{counts['images']} images to export as {args.format}: "
            + ", ".join(f"{k} {v}" for k, v in counts["parts"].items())
        )
        for reason, n in counts["left_out"].items():
            print(f"  left out: {n} {reason}")
        for warning in plan.warnings:
            print(f"  warning: {warning}", file=sys.stderr)
        if args.dry_run:
            return 0
        last = [0.0]

        def progress(done: int, total: int) -> None:
            import time

            now = time.monotonic()
            if sys.stderr.isatty() and (now - last[0] > 0.5 or done == total):
                last[0] = now
                print(f"\r  {done}/{total} images", end="", file=sys.stderr, flush=True)

        result = write_export(lib, plan, args.out, progress=progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print(
        f"exported {result.images} images ({result.bytes / 1e6:.1f} MB, {result.files} files) "
        f"to {result.folder}; data card: {result.folder / 'DATACARD.md'}"
    )
    return 0


def cmd_domains(args: argparse.Namespace) -> int:
    """`dermdesk domains assign|list`: the GUI's Library > Assign meta-domains twin."""
    from dermdesk.cli import open_for_reading, open_library, print_table
    from dermdesk.library import LibraryError, domain_store

    if args.domains_command == "assign":
        from dermdesk.ml.meta_domains import assign_domains

        if args.k is not None and args.k < 1:
            raise LibraryError("--k must be at least 1")
        with open_library(args, create=False) as lib:
            items = domain_store.domain_items(lib)
            if not items:
                raise LibraryError(
                    "no checked images to assign meta-domains to (run `dermdesk check` first)"
                )
            embeddings, backbone = None, None
            if args.backbone:
                from dermdesk.ml.embeddings import backbone_embeddings

                backbone, embeddings = backbone_embeddings(
                    lib, args.backbone, [i.image_id for i in items]
                )
            assignment = assign_domains(
                items, seed=args.seed, k=args.k, embeddings=embeddings, backbone=backbone
            )
            changed = domain_store.save_assignment(lib, assignment)
        print(
            f"{len(assignment.by_image)} images in {len(assignment.domains)} meta-domains "
            f"({assignment.version}; {changed} changed)"
        )
        for modality, scores in assignment.silhouettes.items():
            text = ", ".join(f"k={k}: {v:.3f}" for k, v in scores.items())
            print(
                f"  {modality}: k={assignment.chosen_k[modality]}"
                + (f" by silhouette ({text})" if text else "")
            )
    with open_for_reading(args) as lib:
        rows = domain_store.domain_rows(lib)
    print_table(
        ["meta-domain", "images", "looks", "version"],
        [[r["name"], r["n"], r["description"] or "", r["version"] or ""] for r in rows],
    )
    return 0


COMMANDS = {"curate": cmd_curate, "export": cmd_export, "domains": cmd_domains}
