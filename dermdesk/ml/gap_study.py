"""The dermoscopic -> clinical gap study: its data, splits, schemes and profiles (no torch).

Domains come from the library: *dermoscopic* = every labelled dermoscopic image (HAM10000,
ISIC 2017, PH2 in the shared data), *clinical* = every labelled clinical image
(PAD-UFES-20, and atlas photos with the shared labels), restricted to the shared label
set MEL, NEV, BCC, ACK (AKIEC), SEK (BKL). Per seed, both domains are split grouped by
patient, else lesion, else image, with near-duplicates joined into one group (no near
copy crosses splits), stratified by diagnosis x Fitzpatrick group:
dermoscopic 80 % train / 20 % *dermoscopic-val*, clinical 30 % train / 70 % *clinical-test*.
Nothing is tuned on either evaluation set: every run trains a fixed number of epochs and
is evaluated once, at the end.

Schemes (each evaluated on dermoscopic-val and clinical-test):

- ``FullDermoscopic``: dermoscopic train only;
- ``FullClinical``: the clinical 30 % only;
- ``FineClinic``: FullDermoscopic's weights, fine-tuned on the clinical 30 %;
- ``Joint``: dermoscopic train + the clinical 30 %, class-balanced;
- ``Curve10`` / ``Curve25`` / ``Curve50``: FullDermoscopic fine-tuned on 10 / 25 / 50 %
  of the clinical training patients (``FineClinic`` is the 100 % point);
- the adaptation (:mod:`dermdesk.ml.adapt`, issue 18): ``Joint+MetaDomain`` (stage 1,
  multi-transform contrastive training on Joint's images), ``FineClinic+MetaDomain``
  (stage 1, then stage 2: guided tuning on the clinical 30 % with learning without
  forgetting and L2-SP), and the ablation ``FineClinic+Stage1`` (stage 1, then plain
  fine-tuning) and ``FineClinic+Stage2`` (FullDermoscopic, then guided tuning).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from dermdesk import __version__
from dermdesk.exchange.splits import split_groups
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.experiment_store import ExperimentPlan, RunPlan
from dermdesk.ml.splits import grouped_split, item_from_row

SHARED_CLASSES = ("MEL", "NEV", "BCC", "ACK", "SEK")
DOMAINS = ("dermoscopic", "clinical")
EVAL_SETS = ("dermoscopic_val", "clinical_test")
CURVE = (0.10, 0.25, 0.50)


@dataclass(frozen=True)
class Recipe:
    """How every run of the study trains (the issue's reference recipe by default)."""

    arch: str = "resnet18"
    size: int = 112
    epochs: int = 60
    finetune_epochs: int = 60
    batch: int = 128
    lr: float = 2e-3
    finetune_lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_frac: float = 0.10
    label_smoothing: float = 0.1
    augment: str = "full"
    n_boot: int = 1000
    max_per_domain: int | None = None  # a seeded subset, for the smoke profile
    threads: int = 0
    curve: bool = True  # the local-data curve's runs
    # The adaptation's runs (issue 18, ml/adapt.py) and their strengths, fixed in advance
    # (never chosen on an evaluation set).
    adapt: bool = True
    contrast_weight: float = 1.0
    contrast_temperature: float = 0.1
    lwf_weight: float = 1.0
    lwf_temperature: float = 2.0
    sp_weight: float = 0.01
    # Further LwF weights for both stages ("3,10"): one more FineClinic+MetaDomain run per
    # weight and seed, the stage-2 strength's trade-off reported whole (never a pick).
    lwf_sweep: str = ""
    # Only these schemes ("FullDermoscopic,Joint,..."; empty: all); a run's start must be in.
    schemes: str = ""


PROFILES: dict[str, tuple[Recipe, int]] = {
    # (recipe, default number of seeds)
    "smoke": (
        Recipe(
            arch="vit_test",
            size=32,
            epochs=2,
            finetune_epochs=1,
            batch=32,
            n_boot=50,
            max_per_domain=60,
            augment="light",
        ),
        1,
    ),
    # Real, honest numbers on a 2-core CPU in well under 45 minutes.
    "cpu": (
        Recipe(arch="resnet10t", size=64, epochs=20, finetune_epochs=20, batch=64, n_boot=500),
        3,
    ),
    "full": (Recipe(), 3),
}


@dataclass
class Domains:
    """The labelled rows of each domain (shared classes, real images only)."""

    rows: dict[str, list[dict[str, Any]]]
    groups: dict[str, str]  # image id -> split group (patient / lesion / near-duplicates)


def collect_domains(lib: Library, recipe: Recipe, seed: int = 0) -> Domains:
    """Both domains' rows, checked: every shared class in both, enough of each."""
    flt = ImageFilter(labelled=True, synthetic=False, diagnosis=list(SHARED_CLASSES))
    every = lib.images(flt, order="id")
    rows = {d: [r for r in every if r["modality"] == d] for d in DOMAINS}
    if recipe.max_per_domain:  # a seeded subset with every class in it
        per_class = math.ceil(recipe.max_per_domain / len(SHARED_CLASSES))
        rng = np.random.default_rng(seed)
        rows = {
            d: sorted(
                (
                    r
                    for c in SHARED_CLASSES
                    for r in _first(rng, [r for r in rs if r["diagnosis"] == c], per_class)
                ),
                key=lambda r: r["id"],
            )
            for d, rs in rows.items()
        }
    _check_counts(rows, 2 if recipe.max_per_domain else 5)
    groups = split_groups(lib, [r for rs in rows.values() for r in rs])
    return Domains(rows, groups)


def _first(rng: np.random.Generator, rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [rows[i] for i in rng.permutation(len(rows))[:n]]


def _check_counts(rows: Mapping[str, list[dict[str, Any]]], minimum: int) -> None:
    problems = []
    for domain, rs in rows.items():
        counts = {c: sum(r["diagnosis"] == c for r in rs) for c in SHARED_CLASSES}
        thin = [f"{c} ({n})" for c, n in counts.items() if n < minimum]
        if thin:
            problems.append(f"{domain}: {', '.join(thin)}")
    if problems:
        raise LibraryError(
            "the gap study needs every shared class (" + ", ".join(SHARED_CLASSES) + ") in both "
            f"domains, at least {minimum} labelled images each; too few: " + "; ".join(problems)
        )


def split_domains(domains: Domains, seed: int) -> dict[str, list[str]]:
    """dermoscopic_train / dermoscopic_val (80/20) and clinical_train / clinical_test (30/70)."""
    out: dict[str, list[str]] = {}
    for domain, fractions, names in (
        ("dermoscopic", (0.8, 0.2, 0.0), ("dermoscopic_train", "dermoscopic_val")),
        ("clinical", (0.3, 0.0, 0.7), ("clinical_train", "clinical_test")),
    ):
        items = [
            replace(item_from_row(r), group=domains.groups[r["id"]]) for r in domains.rows[domain]
        ]
        split = grouped_split(items, fractions, seed)
        keep = {"train": names[0], "val": names[1], "test": names[1]}
        for name in names:
            out[name] = sorted(i for i, s in split.items() if keep.get(s) == name)
    return out


def curve_subset(
    clinical_train: list[str], groups: Mapping[str, str], fraction: float, seed: int
) -> list[str]:
    """A seeded share of the clinical training *patients* (groups), nested by fraction."""
    order = sorted({groups[i] for i in clinical_train})
    rng = np.random.default_rng((seed, 4099))
    order = [order[i] for i in rng.permutation(len(order))]
    chosen = set(order[: max(1, math.ceil(fraction * len(order)))])
    return [i for i in clinical_train if groups[i] in chosen]


def with_overrides(recipe: Any, overrides: Mapping[str, str] | None) -> Any:
    """A recipe with ``--set KEY=VALUE`` changes, each converted to the field's type."""
    if not overrides:
        return recipe
    known = {f.name: f for f in fields(recipe)}
    changes: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in known:
            raise LibraryError(f"unknown recipe value {key!r}; known: {', '.join(known)}")
        current = getattr(recipe, key)
        try:
            if isinstance(current, bool):
                changes[key] = raw.lower() in ("1", "true", "yes", "on")
            elif isinstance(current, int) or (current is None and raw.isdigit()):
                changes[key] = int(raw)
            elif isinstance(current, float):
                changes[key] = float(raw)
            else:
                changes[key] = raw
        except ValueError:
            raise LibraryError(f"--set {key}={raw}: not a {type(current).__name__}") from None
    return replace(recipe, **changes)


def new_plan(
    study: str,
    profiles: Mapping[str, tuple[Any, int]],
    profile: str,
    *,
    seeds: int | None,
    arch: str | None,
    size: int | None,
    name: str | None,
    overrides: Mapping[str, str] | None,
) -> tuple[ExperimentPlan, Any, int]:
    """An empty plan of ``study`` at ``profile`` with the recipe's changes applied; returns
    the plan, the recipe and the number of seeds (shared by every study's planner)."""
    if profile not in profiles:
        raise LibraryError(f"unknown profile {profile!r}; choose from {', '.join(profiles)}")
    recipe, default_seeds = profiles[profile]
    recipe = replace(recipe, arch=arch or recipe.arch, size=size or recipe.size)
    recipe = with_overrides(recipe, overrides)
    n_seeds = seeds if seeds is not None else default_seeds
    if n_seeds < 1:
        raise LibraryError("give at least one seed")
    plan = ExperimentPlan(
        name=name or f"{study} {profile}",
        study=study,
        profile=profile,
        params={"recipe": asdict(recipe), "seeds": n_seeds, "classes": list(SHARED_CLASSES)},
        code_version=code_version(),
    )
    return plan, recipe, n_seeds


def plan_gap(
    lib: Library,
    profile: str,
    *,
    seeds: int | None = None,
    arch: str | None = None,
    size: int | None = None,
    name: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> ExperimentPlan:
    """Every run of the study, with its exact image ids, recipe and start weights."""
    plan, recipe, n_seeds = new_plan(
        "gap", PROFILES, profile, seeds=seeds, arch=arch, size=size, name=name, overrides=overrides
    )
    for seed in range(n_seeds):
        domains = collect_domains(lib, recipe, seed)
        split = split_domains(domains, seed)
        evals = {
            "dermoscopic_val": split["dermoscopic_val"],
            "clinical_test": split["clinical_test"],
        }
        clin = split["clinical_train"]
        derm = split["dermoscopic_train"]
        schemes: list[tuple[str, list[str], str | None]] = [
            ("FullDermoscopic", derm, None),
            ("FullClinical", clin, None),
            ("FineClinic", clin, "FullDermoscopic"),
            ("Joint", sorted(derm + clin), None),
        ]
        for fraction in CURVE if recipe.curve else ():
            subset = curve_subset(clin, domains.groups, fraction, seed)
            schemes.append((f"Curve{round(fraction * 100)}", subset, "FullDermoscopic"))
        for scheme, train_ids, init in schemes:
            finetune = init is not None
            plan.runs.append(
                RunPlan(
                    name=scheme,
                    seed=seed,
                    params={
                        "scheme": scheme,
                        "init_from": init,
                        "epochs": recipe.finetune_epochs if finetune else recipe.epochs,
                        "lr": recipe.finetune_lr if finetune else recipe.lr,
                    },
                    split={"train": train_ids, **evals},
                )
            )
        if recipe.adapt:
            plan.runs += adaptation_runs(recipe, seed, derm, clin, evals)
    plan.runs = only_schemes(plan.runs, recipe.schemes)
    return plan


def sweep_weights(text: str) -> list[float]:
    """The ``lwf_sweep`` value as weights: "3,10" -> [3.0, 10.0]."""
    try:
        weights = [float(w) for w in text.replace(" ", "").split(",") if w]
    except ValueError:
        raise LibraryError(f"lwf_sweep={text!r}: give LwF weights separated by commas") from None
    if any(w < 0 for w in weights):
        raise LibraryError(f"lwf_sweep={text!r}: a weight cannot be negative")
    return weights


def strength_scheme(weight: float) -> str:
    """The run name of a swept stage-2 strength: ``FineClinic+MetaDomain LwF3``."""
    return f"FineClinic+MetaDomain LwF{weight:g}"


def only_schemes(runs: list[RunPlan], names: str) -> list[RunPlan]:
    """The runs of the named schemes (all when ``names`` is empty); refused when a kept
    run starts from a scheme that is left out."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    if not wanted:
        return runs
    known = {r.name for r in runs}
    unknown = sorted(wanted - known)
    if unknown:
        raise LibraryError(
            f"schemes: no scheme {', '.join(unknown)} in this plan; "
            f"planned: {', '.join(sorted(known))}"
        )
    kept = [r for r in runs if r.name in wanted]
    for r in kept:
        start = r.params.get("init_from")
        if start and start not in wanted:
            raise LibraryError(f"schemes: {r.name} starts from {start}; add {start}")
    return kept


# The adaptation's runs per seed (issue 18), in the order they depend on each other:
# (name, kind, start weights, trained on dermoscopic + clinical or the clinical 30 %).
ADAPTATION = (
    ("Joint+MetaDomain", "contrast", None),  # stage 1 on Joint's images
    ("FineClinic+Stage1", "classify", "Joint+MetaDomain"),  # stage 1, then plain tuning
    ("FineClinic+Stage2", "guided", "FullDermoscopic"),  # stage 2 only
    ("FineClinic+MetaDomain", "guided", "Joint+MetaDomain"),  # both stages
)


def adaptation_runs(
    recipe: Recipe,
    seed: int,
    derm: list[str],
    clin: list[str],
    evals: dict[str, list[str]],
) -> list[RunPlan]:
    """Stage 1 (multi-transform contrastive training on dermoscopic train + the clinical
    30 %), stage 2 (guided tuning on the clinical 30 %, keeping the start model's outputs
    on dermoscopic train) and the ablation between them, on the study's own splits; then
    one both-stages run per weight of ``recipe.lwf_sweep``. Guided runs record their LwF
    weight."""
    out = []
    runs: list[tuple[str, str, str | None, float | None]] = [(*a, None) for a in ADAPTATION]
    runs += [
        (strength_scheme(w), "guided", "Joint+MetaDomain", w)
        for w in sweep_weights(recipe.lwf_sweep)
    ]
    for name, kind, init, weight in runs:
        if kind == "guided" and weight is None:
            weight = recipe.lwf_weight  # recorded, so the strength table can read it
        if init is None:
            split = {"train": sorted(derm + clin), **evals}
        elif kind == "guided":
            split = {"train": clin, "keep": derm, **evals}
        else:
            split = {"train": clin, **evals}
        out.append(
            RunPlan(
                name=name,
                seed=seed,
                params={
                    "scheme": name,
                    "kind": kind,
                    "init_from": init,
                    "epochs": recipe.finetune_epochs if init else recipe.epochs,
                    "lr": recipe.finetune_lr if init else recipe.lr,
                    **({} if weight is None else {"lwf_weight": weight}),
                },
                split=split,
            )
        )
    return out


def with_backbone(
    lib: Library, plan: ExperimentPlan, ref: str, *, allow_overlap: bool = False
) -> ExperimentPlan:
    """Runs that would start from random weights start from a registered MAE backbone
    instead (``experiment run --from M-...``; position embeddings resampled where the
    size differs). A backbone that saw an evaluation image is refused unless
    ``allow_overlap``, and then the plan records how many it saw (the tables say so)."""
    from dermdesk.library.model_store import get_model

    backbone = get_model(lib, ref)
    if backbone["kind"] != "backbone":
        raise LibraryError(
            f"{backbone['id']} is a {backbone['kind']}; --from takes a backbone "
            "(dermdesk train pretrain)"
        )
    arch = plan.params["recipe"]["arch"]
    if backbone["architecture"] != arch:
        raise LibraryError(
            f"backbone {backbone['id']} is a {backbone['architecture']}; the study trains "
            f"{arch} (give --arch {backbone['architecture']})"
        )
    seen = set(backbone["training_set"].get("image_ids") or [])
    evaluated = {
        i
        for run in plan.runs
        for part, ids in run.split.items()
        if part not in ("train", "keep")
        for i in ids
    }
    overlap = len(seen & evaluated)
    if overlap and not allow_overlap:
        raise LibraryError(
            f"backbone {backbone['id']} was pretrained on {overlap} of the study's evaluation "
            "images; pretrain it without them (e.g. on other images), or give --allow-overlap "
            "(the tables then say so)"
        )
    plan.params["backbone"] = {
        "id": backbone["id"],
        "name": backbone["name"],
        "evaluation_images_seen": overlap,
    }
    for run in plan.runs:
        if run.params.get("init_from") is None and run.params.get("kind", "classify") in (
            "classify",
            "contrast",
            "distill",
        ):
            run.params["init_backbone"] = backbone["id"]
    return plan


def code_version() -> str:
    """dermdesk's version and, in a git checkout, the commit (and whether it was edited)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}" + (f" ({commit})" if commit else "")


def describe_split(split: Mapping[str, list[str]]) -> dict[str, int]:
    return {k: len(v) for k, v in split.items()}
