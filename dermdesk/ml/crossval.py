"""Out-of-fold probabilities for label review: the ``crossval`` job kind (issue 16).

Confident learning (cleanlab's ``find_label_issues``) wants, for every labelled image, a
probability from a model that never saw it. A model's held-out predictions cover only its
test split; this job covers every labelled image of its classes: the images are split
into ``folds`` patient-grouped folds (patient, else lesion, stratified as fine-tuning's
split), and for each fold a classifier is fine-tuned on the other folds (its own
validation part, 10 % of their patients, chooses the checkpoint; the fold itself is only
predicted) through the one training loop, each fold with its own checkpoint, so a
resumed job continues at the fold it was in.

The result is registered as a model of kind ``crossval`` (never promotable, it predicts
nothing new): its file ``oof.json`` holds the classes, each image's fold and its
out-of-fold probabilities; its metrics the out-of-fold report per group. `curate
label-review --model <it>` (and the GUI's review queue, which prefers the newest one)
rank every labelled image by it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermdesk.jobs.context import JobCancelled, JobContext
from dermdesk.library import ImageFilter, Library
from dermdesk.library.db import id_chunks
from dermdesk.library.model_store import ModelRecord, model_dir, new_model_id
from dermdesk.ml import metrics
from dermdesk.ml.config import CrossvalConfig
from dermdesk.ml.data import collect_samples, subgroups
from dermdesk.ml.finetune import SPLIT_NAMES, FinetuneTask, predict_torch
from dermdesk.ml.loop import Control, train
from dermdesk.ml.splits import grouped_folds, grouped_split, item_from_row, summarize

OOF_FILE = "oof.json"
VAL_SHARE = 0.1  # of the training folds' patients: the checkpoint choice, never the fold


class FoldTask(FinetuneTask):
    """Fine-tuning on every fold but one (``test`` is the fold left out)."""

    def __init__(self, library_dir: Path, cfg: CrossvalConfig, control: Control, fold: int) -> None:
        super().__init__(library_dir, cfg, control)
        self.fold = fold
        self.folds: dict[str, int] = {}

    def _new_split(self, rows: dict[str, dict[str, Any]]) -> None:
        cfg: CrossvalConfig = self.cfg  # type: ignore[assignment]
        self.classes = self.cfg.classes or self._default_classes(rows)
        keep = [r for r in rows.values() if r["diagnosis"] in self.classes]
        items = [item_from_row(r) for r in keep]
        self.folds = grouped_folds(items, cfg.folds, self.cfg.split_seed)
        rest = [it for it in items if self.folds[it.image_id] != self.fold]
        inner = grouped_split(rest, (1 - VAL_SHARE, VAL_SHARE, 0.0), self.cfg.split_seed)
        split = {
            **{i: ("train" if s == "train" else "val") for i, s in inner.items()},
            **{it.image_id: "test" for it in items if self.folds[it.image_id] == self.fold},
        }
        self.split_ids = {n: sorted(i for i, s in split.items() if s == n) for n in SPLIT_NAMES}
        self.split_summary = summarize(split, items)
        self.split_method = f"fold {self.fold + 1} of {cfg.folds} left out"

    def _restore_split(self, saved: dict[str, Any], rows: dict[str, dict[str, Any]]) -> None:
        super()._restore_split(saved, rows)
        cfg: CrossvalConfig = self.cfg  # type: ignore[assignment]
        items = [item_from_row(r) for r in rows.values() if r["diagnosis"] in self.classes]
        self.folds = grouped_folds(items, cfg.folds, self.cfg.split_seed)


def run_job(ctx: JobContext) -> dict[str, Any]:
    """Entry point of the ``crossval`` job kind (in the worker process)."""
    cfg = CrossvalConfig.from_params(ctx.params)
    probabilities: dict[str, list[float]] = {}
    folds: dict[str, int] = {}
    classes: list[str] = []
    for fold in range(cfg.folds):
        done = ctx.work_dir / f"fold{fold}.json"
        if done.is_file():  # a resumed job keeps the folds it finished
            saved = json.loads(done.read_text())
            classes, folds = saved["classes"], saved["folds"]
            probabilities.update(saved["probabilities"])
            continue
        ctx.log(f"fold {fold + 1} of {cfg.folds}")
        fold_cfg = replace(cfg, loop=replace(cfg.loop, seed=cfg.loop.seed + fold))
        task = FoldTask(ctx.library_dir, fold_cfg, _FoldControl(ctx, fold, cfg.folds), fold)
        checkpoint = ctx.work_dir / f"fold{fold}.ckpt"
        result, model = train(
            task, fold_cfg.loop, task.control, checkpoint, resume=checkpoint.is_file()
        )
        if ctx.should_stop():
            raise JobCancelled(f"cancelled in fold {fold + 1} (the folds done are kept)")
        model = model.cpu().eval()
        if result.best_state:
            model.load_state_dict(result.best_state)
        _, probs = predict_torch(
            model, task.eval_set("test"), torch.device("cpu"), should_stop=ctx.should_stop
        )
        part = {
            s.image_id: [round(float(p), 6) for p in row]
            for s, row in zip(task.samples["test"], probs, strict=True)
        }
        classes, folds = task.classes, task.folds
        done.write_text(json.dumps({"classes": classes, "folds": folds, "probabilities": part}))
        probabilities.update(part)
    return _register(ctx, cfg, classes, folds, probabilities)


class _FoldControl:
    """The job's control with each fold's progress scaled into the whole job's."""

    def __init__(self, ctx: JobContext, fold: int, folds: int) -> None:
        self.ctx, self.fold, self.folds = ctx, fold, folds

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        text = f"fold {self.fold + 1}/{self.folds}: {message}" if message else None
        self.ctx.progress((self.fold + fraction) / self.folds, text, force=force)

    def log(self, line: str) -> None:
        self.ctx.log(line)

    def should_stop(self) -> bool:
        return self.ctx.should_stop()


def _register(
    ctx: JobContext,
    cfg: CrossvalConfig,
    classes: list[str],
    folds: dict[str, int],
    probabilities: dict[str, list[float]],
) -> dict[str, Any]:
    with Library.open(ctx.library_dir, readonly=True) as lib:
        ids = sorted(probabilities)
        samples = []
        for chunk in id_chunks(ids):
            flt = ImageFilter(ids=chunk, labelled=True)
            samples += [s for s in collect_samples(lib, flt, classes) if s.label >= 0]
    samples.sort(key=lambda s: s.image_id)
    y = np.array([s.label for s in samples])
    probs = np.array([probabilities[s.image_id] for s in samples])
    report = metrics.evaluate_groups(
        y, probs, classes, subgroups(samples), n_boot=cfg.n_boot, seed=cfg.split_seed
    )
    model_id = new_model_id()
    folder = model_dir(ctx.library_dir, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / OOF_FILE
    text = json.dumps(
        {"classes": classes, "folds": folds, "probabilities": probabilities}, sort_keys=True
    )
    path.write_text(text)
    record = ModelRecord(
        id=model_id,
        name=cfg.name or f"{cfg.arch} {cfg.folds}-fold out-of-fold probabilities",
        kind="crossval",
        architecture=cfg.arch,
        file=path.relative_to(ctx.library_dir).as_posix(),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        training_set={
            "classes": classes,
            "filter": cfg.filter,
            "method": f"{cfg.folds} patient-grouped folds",
            "seed": cfg.split_seed,
            "folds": folds,
        },
        params=cfg.to_params(),
        metrics={"out_of_fold": report},
    )
    head = metrics.headline(report["overall"]) if report["overall"].get("n") else "no images"
    return {
        "message": f"model {model_id}: out-of-fold {head} on {len(samples)} images",
        "model": record.to_json(),
    }
