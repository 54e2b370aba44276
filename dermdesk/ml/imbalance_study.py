"""The imbalance study: does MAE pretraining and distillation beat a from-scratch CNN? (no torch)

Same data and splits as the gap study (:mod:`dermdesk.ml.gap_study`): the five shared
classes, both domains, per seed dermoscopic 80/20 and clinical 30/70, grouped by patient,
lesion and near-duplicate. Every classifier trains *jointly* on dermoscopic-train plus the
clinical 30 % (class-balanced) and is evaluated once, at the end, on dermoscopic-val and
clinical-test.

MAE pretraining (``mae_images``) reads, without labels, either the *pool* (default): every
real image of the library -- any label or none, either modality -- except the seed's
evaluation images and everything that shares a patient, lesion or near-copy with one
(grouped over the whole library), or (*train*) the runs' training images only. Unlabelled
images are what self-supervision is for; an evaluation image is never seen, not even
unlabelled. The budget is the same either way: ``mae_epochs`` passes' worth of optimiser
steps over the training images, drawn from the pool when it is used (``max_steps``).

Runs per seed (archs come from the profile):

- ``MAE-student`` / ``MAE-teacher``: MAE pretraining of the student / teacher ViT;
- ``ScratchViT``: the student ViT from random initialisation;
- ``MAEViT``: the student ViT fine-tuned from ``MAE-student``;
- ``MAETeacher``: the teacher ViT fine-tuned from ``MAE-teacher``;
- ``Distilled``: the student ViT started from ``MAE-student`` and distilled from
  ``MAETeacher`` (hard labels + temperature-softened teacher outputs);
- ``ScratchResNet18``: the from-scratch CNN baseline to beat.

Reported: balanced accuracy per domain and the sensitivity of the minority classes
(MEL, BCC, ACK) per domain, mean over seeds with a 95 % t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dermdesk.exchange.splits import split_groups
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.experiment_store import ExperimentPlan, RunPlan
from dermdesk.ml.gap_study import Recipe, collect_domains, new_plan
from dermdesk.ml.gap_study import split_domains as split_gap_domains

MINORITY = ("MEL", "BCC", "ACK")
CLASSIFIER_RUNS = (
    "ScratchViT",
    "MAEViT",
    "MAETeacher",
    "Distilled",
    "ScratchResNet18",
)
PRETRAIN_RUNS = ("MAE-student", "MAE-teacher")
MAE_IMAGES = ("pool", "train")

# What an MAE run reads when its plan does not say: experiments planned before the pool
# existed pretrained on their training images.
LEGACY_MAE_IMAGES = "train"
# The pool, in the words every table and line uses.
MAE_POOL_WORDS = (
    "every real library image but the seed's evaluation patients, lesions and near-copies"
)


@dataclass(frozen=True)
class ImbalanceRecipe(Recipe):
    """The gap study's recipe plus what pretraining and distillation need."""

    arch: str = "vit_tiny_8"  # the student
    teacher_arch: str = "vit_small_8"
    baseline_arch: str = "resnet18"
    mae_epochs: int = 150  # the budget, in passes over the training images
    mae_images: str = "pool"  # or "train" (see the module docstring)
    mae_lr: float = 1.5e-3
    mask_ratio: float = 0.75
    decoder_dim: int = 256
    decoder_depth: int = 4
    decoder_heads: int = 8
    temperature: float = 4.0
    alpha: float = 0.5
    # The CNN keeps the gap study's recipe; the ViTs fine-tune at a lower peak rate.
    vit_lr: float = 1e-3


PROFILES: dict[str, tuple[ImbalanceRecipe, int]] = {
    "smoke": (
        ImbalanceRecipe(
            arch="vit_test",
            teacher_arch="vit_test",
            size=32,
            epochs=2,
            finetune_epochs=2,
            mae_epochs=2,
            batch=32,
            n_boot=50,
            max_per_domain=60,
            augment="light",
            decoder_dim=32,
            decoder_depth=1,
            decoder_heads=2,
        ),
        1,
    ),
    # Small enough for a 2-core CPU in about half an hour: a 6-layer ViT-Mini/8 student, a
    # ViT-Ti/8 teacher, at 64 px on a seeded subset of 400 images per domain.
    "cpu": (
        ImbalanceRecipe(
            arch="vit_mini_8",
            teacher_arch="vit_tiny_8",
            size=64,
            epochs=12,
            finetune_epochs=12,
            mae_epochs=20,
            batch=64,
            n_boot=500,
            max_per_domain=400,
            decoder_dim=128,
            decoder_depth=2,
            decoder_heads=4,
        ),
        3,
    ),
    # The reference sizes: ViT-Ti/8 student, ViT-S/8 teacher at 112 px, MAE 150
    # epochs, fine-tuning 40, on every shared image (a GPU job).
    "full": (ImbalanceRecipe(epochs=40, finetune_epochs=40), 3),
}


def plan_imbalance(
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
        "imbalance",
        PROFILES,
        profile,
        seeds=seeds,
        arch=arch,
        size=size,
        name=name,
        overrides=overrides,
    )
    r = recipe
    if r.mae_images not in MAE_IMAGES:
        raise LibraryError(
            f"mae_images must be one of {', '.join(MAE_IMAGES)}, not {r.mae_images!r}"
        )
    library_groups = _real_image_groups(lib) if r.mae_images == "pool" else {}
    for seed in range(n_seeds):
        split = split_gap_domains(collect_domains(lib, recipe, seed), seed)
        train = sorted(split["dermoscopic_train"] + split["clinical_train"])
        evals = {
            "dermoscopic_val": split["dermoscopic_val"],
            "clinical_test": split["clinical_test"],
        }
        mae_train = train
        mae = {"kind": "mae", "epochs": r.mae_epochs, "lr": r.mae_lr, "mae_images": "train"}
        if r.mae_images == "pool":
            mae_train = mae_pool(
                library_groups, [*evals["dermoscopic_val"], *evals["clinical_test"]]
            )
            steps = r.mae_epochs * math.ceil(len(train) / r.batch)
            mae |= {
                "epochs": max(1, math.ceil(steps * r.batch / len(mae_train))),
                "max_steps": steps,
                "mae_images": "pool",
            }
        vit = {"epochs": r.epochs, "lr": r.vit_lr}
        runs: list[tuple[str, dict[str, Any]]] = [
            ("MAE-student", {**mae, "arch": r.arch}),
            ("MAE-teacher", {**mae, "arch": r.teacher_arch}),
            ("ScratchViT", {**vit, "arch": r.arch}),
            ("MAEViT", {**vit, "arch": r.arch, "init_from": "MAE-student"}),
            ("MAETeacher", {**vit, "arch": r.teacher_arch, "init_from": "MAE-teacher"}),
            (
                "Distilled",
                {
                    **vit,
                    "kind": "distill",
                    "arch": r.arch,
                    "init_from": "MAE-student",
                    "teacher": "MAETeacher",
                },
            ),
            ("ScratchResNet18", {"epochs": r.epochs, "lr": r.lr, "arch": r.baseline_arch}),
        ]
        for run_name, params in runs:
            plan.runs.append(
                RunPlan(
                    name=run_name,
                    seed=seed,
                    params={"scheme": run_name, "init_from": None, "kind": "classify", **params},
                    split=(
                        {"train": mae_train}
                        if params.get("kind") == "mae"
                        else {"train": train, **evals}
                    ),
                )
            )
    return plan


def _real_image_groups(lib: Library) -> dict[str, str]:
    """Every real image of the library (labelled or not) -> its split group (patient,
    lesion and near-copies joined, over the whole library)."""
    return split_groups(lib, lib.images(ImageFilter(synthetic=False), order="id"))


def mae_pool(groups: Mapping[str, str], evaluation_ids: Sequence[str]) -> list[str]:
    """The images MAE may read for a seed: every image of ``groups`` whose group holds none
    of ``evaluation_ids`` (so no evaluation patient, lesion or near-copy), sorted."""
    banned = {groups[i] for i in evaluation_ids if i in groups}
    return sorted(i for i, g in groups.items() if g not in banned)
