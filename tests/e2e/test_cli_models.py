"""`dermdesk train / jobs / models / predict` end to end, as a user runs them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_cli import run

pytestmark = [pytest.mark.ml, pytest.mark.slow]

TINY = [
    "--arch", "vit_test", "--img-size", "32", "--epochs", "3", "--batch-size", "16",
    "--micro-batch", "8", "--threads", "1", "--boot", "30", "--min-class-images", "5",
    "--augment", "none",
]  # fmt: skip


@pytest.fixture
def home(tmp_path: Path, shared_data: Path) -> Path:
    home = tmp_path / "lib"
    pad = tmp_path / "pad"
    (pad / "images").mkdir(parents=True)
    lines = (shared_data / "pad_ufes_20" / "metadata.csv").read_text().splitlines()
    kept = [lines[0]]
    for line in lines[1:121]:
        name = line.split(",")[lines[0].split(",").index("img_id")]
        found = next((shared_data / "pad_ufes_20").rglob(Path(name).stem + ".*"), None)
        if found:
            shutil.copy(found, pad / "images" / found.name)
            kept.append(line)
    (pad / "metadata.csv").write_text("\n".join(kept) + "\n")
    run(home, "import", pad, "--quiet")
    return home


def test_train_inspect_promote_and_predict(home: Path) -> None:
    out = run(home, "train", "finetune", *TINY, "--name", "cli model").stdout
    assert "job 1: finetune queued" in out
    assert re.search(r"job 1 done: model M-\w+: test n=\d+ balanced accuracy", out)
    model_id = re.search(r"model (M-\w+) registered", out).group(1)

    listing = run(home, "jobs", "list").stdout
    assert "finetune" in listing and "done" in listing and model_id in listing
    shown = run(home, "jobs", "show", "1").stdout
    assert "training on cpu (fp32)" in shown and "ONNX export: max |logit diff|" in shown

    models = run(home, "models", "list").stdout
    assert model_id in models and "cli model" in models and "candidate" in models
    card = run(home, "models", "show", model_id).stdout
    assert "split: patient-grouped" in card and "fitzpatrick" in card
    assert "ONNX parity: max |logit diff|" in card and "int8: validation balanced accuracy" in card
    assert "no active model yet" in card

    check = run(home, "models", "promote", model_id, "--check", check=False)
    assert "rule: promote only if balanced accuracy >= active" in check.stdout
    assert "vs chance" in check.stdout  # a first model is judged against chance
    promoted = run(home, "models", "promote", model_id, "--force").stdout
    assert f"model {model_id} is now active" in promoted

    predicted = run(home, "predict").stdout
    assert re.search(r"predicted \d+ images, 0 unreadable", predicted)
    shown_image = run(home, "ls", "--limit", "1", "--json").stdout
    assert shown_image.strip()

    _evaluate_on_queries(home, model_id)


def _evaluate_on_queries(home: Path, model_id: str) -> None:
    """`models evaluate`: a report per skin type and domain kept with the model; a query
    it cannot be scored on is refused in one line and stores nothing."""
    import json
    import sqlite3

    out = run(
        home, "models", "evaluate", model_id, "--modality", "clinical", "--n-boot", "50",
        "--min-group", "5", "--name", "our clinic",
    ).stdout  # fmt: skip
    assert re.search(r"job \d+: evaluate M-\w+ on our clinic queued", out)
    assert re.search(r"done: M-\w+ on our clinic: n=\d+ balanced accuracy", out)
    assert "domain clinical/pad_ufes_20" in out and "fitzpatrick" in out

    shown = json.loads(run(home, "models", "show", model_id, "--json").stdout)
    (ev,) = shown["evaluations"]
    assert ev["name"] == "our clinic" and ev["query"] == {"modality": ["clinical"]}
    con = sqlite3.connect(home / "library.sqlite")
    n_clinical = con.execute("SELECT count(*) FROM image WHERE modality = 'clinical'").fetchone()
    stored_ids = json.loads(con.execute("SELECT image_ids FROM model_evaluation").fetchone()[0])
    audit = con.execute("SELECT count(*) FROM audit WHERE action = 'model.evaluate'").fetchone()
    split = shown["training_set"]["split"]
    (trained_patient,) = con.execute(
        "SELECT patient_id FROM image WHERE id = ?", [split["train"][0]]
    ).fetchone()  # patient-grouped: all of this patient's images are training images
    con.close()
    overall = ev["report"]["overall"]
    # The model's own training and validation images are left out (they would flatter it):
    # what is scored is its test split, and the rest is counted.
    assert set(stored_ids) == set(split["test"])
    assert ev["report"]["left_out_seen"] == len(split["train"]) + len(split["val"])
    assert n_clinical[0] == len(stored_ids) + ev["report"]["left_out_seen"]
    assert len(stored_ids) == overall["n"] + overall["skipped_unknown_label"]
    assert "training or validation images left out" in run(home, "models", "show", model_id).stdout
    assert set(ev["report"]["fitzpatrick"]) <= {"I-II", "III-IV", "V-VI", "unknown"}
    assert audit == (1,)
    assert "our clinic" in run(home, "models", "show", model_id).stdout

    seen_only = ["--patient", trained_patient]
    for bad, says in (
        (seen_only, "are training or validation images of"),
        (["--dataset", "ham10000"], "matches no images"),
        (["--unlabelled"], "the query (not labelled) matches no images"),
        (["M-nosuchmodel"], "no model"),
    ):
        args = bad if bad[0].startswith("M-") else [model_id, *bad]
        refused = run(home, "models", "evaluate", *args, check=False)
        assert refused.returncode != 0
        assert says in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert len(json.loads(run(home, "models", "show", model_id, "--json").stdout)[
        "evaluations"]) == 1  # fmt: skip


def test_queue_cancel_resume_and_bad_options(home: Path) -> None:
    queued = run(home, "train", "finetune", *TINY, "--queue").stdout
    assert "job 1: finetune queued" in queued
    assert "job 1 cancelled" in run(home, "jobs", "cancel", "1").stdout
    queued_again = run(home, "jobs", "resume", "1", "--queue").stdout
    assert "job 1 queued to resume" in queued_again and "done" not in queued_again
    ran = run(home, "jobs", "run").stdout
    assert "job 1 done" in ran
    assert "already done" in run(home, "jobs", "cancel", "1").stdout

    bad = run(home, "train", "finetune", "--arch", "resnet9000", check=False)
    assert bad.returncode == 2 and "unknown architecture 'resnet9000'" in bad.stderr
    bad = run(home, "train", "finetune", "--from", str(home / "nope.pt"), check=False)
    assert bad.returncode == 2 and "nope.pt: no such file" in bad.stderr
    missing = run(home, "models", "show", "M-404", check=False)
    assert missing.returncode == 2 and "no model 'M-404'" in missing.stderr
    assert run(home, "jobs", "show", "99", check=False).returncode == 2


def test_a_refused_checkpoint_is_one_short_line(home: Path, tmp_path: Path) -> None:
    """A pickle that is not just weights is refused; the user gets one line, the job's
    log gets the traceback."""
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("this ran while loading",))

    evil = tmp_path / "weights.pt"
    evil.write_bytes(pickle.dumps({"model": Payload()}, protocol=2))
    proc = run(home, "train", "finetune", *TINY, "--from", str(evil), check=False)
    assert proc.returncode == 1
    assert "this ran while loading" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dermdesk:")]
    assert len(lines) == 1 and len(lines[0]) <= 240, proc.stderr
    assert "refused" in lines[0] and "Traceback" not in proc.stderr
    assert "Traceback" in run(home, "jobs", "show", "1").stdout
