"""The DDP path: the same fine-tuning loop under torchrun with 2 CPU processes (gloo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermdesk.jobs.runner import JobRunner
from dermdesk.library import Library, model_store
from dermdesk.ml.checkpoints import load_file
from tests.unit.ml.test_finetune import FAST, TIMEOUT, make_library

pytestmark = [pytest.mark.ml, pytest.mark.slow]


def test_fine_tuning_under_torchrun_with_two_gloo_processes(
    shared_data: Path, tmp_path: Path
) -> None:
    root = make_library(tmp_path / "library", shared_data, n=100)
    runner = JobRunner(root, actor="tester")
    try:
        job = runner.submit(
            "finetune", {**FAST, "epochs": 3, "devices": 2, "quantize": False, "name": "ddp"}
        )
        row = runner.wait(job, timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    assert "launching 2 processes with torchrun" in row["log"]
    assert "2 process(es)" in row["log"]
    work = root / "jobs" / str(job)
    assert "Traceback" not in (work / "ddp.log").read_text()
    assert "DDP replicas: weight checksums of 2 ranks differ by at most 0.0e+00" in row["log"]
    checkpoint = load_file(work / "checkpoint.pt")
    assert checkpoint["step"] == row["result"]["steps"] > 0
    with Library.open(root) as lib:
        model = model_store.get_model(lib, row["model_id"])
        assert model["name"] == "ddp" and model["params"]["devices"] == 2
        assert model["metrics"]["onnx"]["parity_max_abs_logit_diff"] < 1e-4
