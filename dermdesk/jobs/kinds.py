"""The job kinds the runner knows: name -> task function, by import path.

Tasks are named as ``"module:function"`` strings and imported only inside
the worker process, so submitting a job never imports torch in the GUI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

KINDS: dict[str, str] = {
    "finetune": "dermdesk.ml.finetune:run_job",
    "pretrain": "dermdesk.ml.pretrain:run_job",
    "distill": "dermdesk.ml.distill:run_job",
    "adapt": "dermdesk.ml.adapt_job:run_job",
    "crossval": "dermdesk.ml.crossval:run_job",
    "embed_duplicates": "dermdesk.ml.embeddings:run_job",
    "predict": "dermdesk.inference.predict_job:run_job",
    "evaluate": "dermdesk.inference.evaluate_job:run_job",
    "check": "dermdesk.jobs.check_job:run_job",
    "domains": "dermdesk.jobs.domains_job:run_job",
    "experiment.run": "dermdesk.ml.experiment_job:run_job",
}


def register_kind(name: str, target: str) -> None:
    """Add a job kind (used by plug-ins and tests): ``target`` is ``"module:function"``."""
    if ":" not in target:
        raise ValueError(f"job target must be 'module:function', got {target!r}")
    KINDS[name] = target


def target_of(kind: str) -> str:
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown job kind {kind!r}; known: {', '.join(sorted(KINDS))}") from None


def resolve(target: str) -> Callable[..., Any]:
    """Import ``"module:function"``."""
    module_name, _, func_name = target.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module_name), func_name)
    return fn
