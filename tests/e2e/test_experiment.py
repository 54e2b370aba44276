"""`dermdesk experiment`: the gap study's smoke profile end to end on real images."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dermdesk.exchange.splits import split_groups
from dermdesk.library import ImageFilter, Library
from dermdesk.library.experiment_store import runs as stored_runs
from dermdesk.ml.gap_study import SHARED_CLASSES
from tests.e2e.test_cli import run
from tests.helpers import copy_pad_subset

pytestmark = [pytest.mark.ml, pytest.mark.slow]
sklearn_metrics = pytest.importorskip("sklearn.metrics")


@pytest.fixture(scope="module")
def template(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HAM10000 (dermoscopic) and 150 PAD-UFES-20 photos (clinical), checked (hashes)."""
    home = tmp_path_factory.mktemp("gap") / "lib"
    pad = tmp_path_factory.mktemp("pad")
    copy_pad_subset(shared_data, pad, 150)
    run(home, "import", shared_data / "ham10000", pad, "--quiet")
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "lib"
    shutil.copytree(template, dest)
    return dest


def test_the_smoke_profile_gives_the_whole_table(home: Path, qtbot: object) -> None:
    out = run(home, "experiment", "run", "gap", "--profile", "smoke").stdout
    assert "experiment 1: 11 runs queued" in out and "11 of 11 runs done" in out
    table = out.split("| scheme | dermoscopic-val")[1].split("\n\n")[0].splitlines()[1:]
    assert [row.split("|")[1].strip() for row in table[1:]] == [
        "FullDermoscopic",
        "FullClinical",
        "FineClinic",
        "Joint",
        "Joint+MetaDomain",
        "FineClinic+Stage1",
        "FineClinic+Stage2",
        "FineClinic+MetaDomain",
    ]
    assert "Forgetting: FullDermoscopic's dermoscopic-val score" in out and "| 100% |" in out
    ablation = out.split("| stages |")[1].split("\n\n")[0].splitlines()[2:]
    assert [row.split("|")[1].strip() for row in ablation] == [
        "neither (FineClinic)",
        "stage 1 only",
        "stage 2 only",
        "both (FineClinic+MetaDomain)",
    ]
    rows = list(
        csv.DictReader(
            io.StringIO(run(home, "experiment", "export", "1", "--format", "csv").stdout)
        )
    )
    assert {r["scheme"] for r in rows if r["table"] == "schemes"} >= {"Joint", "FineClinic"}
    data = json.loads(run(home, "experiment", "export", "1", "--format", "json").stdout)
    assert len(data["tables"]["schemes"]) == 8 and len(data["runs"]) == 11
    assert len(data["tables"]["ablation"]) == 4
    assert "experiment 1" not in run(home, "experiment", "list").stdout.splitlines()[0]
    check_recorded_runs(home)
    check_experiments_tab(home, data, qtbot)


def check_experiments_tab(home: Path, exported: dict, qtbot: object) -> None:
    """The Experiments tab shows the same figures the CLI exports, as interval charts."""
    from dermdesk.gui.experiments_panel import ExperimentsPanel

    with Library.open(home, readonly=True) as lib:
        panel = ExperimentsPanel(lib)
        qtbot.addWidget(panel)  # type: ignore[attr-defined]
        panel.resize(1280, 900)
        panel.refresh()
        assert panel.table.rowCount() == 1 and panel.table.item(0, 4).text() == "11 of 11"
        assert "11 of 11 runs done" in panel.title.text() and "wall time" in panel.title.text()
        shown = panel.charts["clinical_test"].rows
        schemes = exported["tables"]["schemes"]
        assert [f.label for f in shown] == [s["scheme"] for s in schemes]
        assert [f.value for f in shown] == [s["clinical_test"]["mean"] for s in schemes]
        domains = [f.label for f in panel.charts["domain"].rows]
        assert any("dermoscopic/ham10000" in d for d in domains)
        assert "Forgetting" in panel.tables.toPlainText()
        if os.environ.get("DERMDESK_SCREENSHOTS"):
            panel.grab().save(os.environ["DERMDESK_SCREENSHOTS"])


def check_recorded_runs(home: Path) -> None:
    """Every recorded figure agrees with scikit-learn, and no patient or lesion is on both
    sides of a split."""
    db = sqlite3.connect(home / "library.sqlite")
    owner = {
        image_id: patient or lesion or image_id
        for image_id, patient, lesion in db.execute("SELECT id, patient_id, lesion_id FROM image")
    }
    for split_text, metrics_text in db.execute("SELECT split, metrics FROM experiment_run"):
        split, report = json.loads(split_text), json.loads(metrics_text)
        train = {owner[i] for i in split["train"]}
        for eval_set in ("dermoscopic_val", "clinical_test"):
            assert not train & {owner[i] for i in split[eval_set]}, eval_set
            overall = report[eval_set]["overall"]
            cm = overall["confusion_matrix"]["rows"]
            y = [t for t, row in enumerate(cm) for p, n in enumerate(row) for _ in range(n)]
            pred = [p for t, row in enumerate(cm) for p, n in enumerate(row) for _ in range(n)]
            assert overall["n"] == len(y) == len(split[eval_set])
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                expected = sklearn_metrics.balanced_accuracy_score(y, pred)
            assert overall["balanced_accuracy"]["value"] == pytest.approx(expected)
    db.close()


def test_the_imbalance_smoke_profile_gives_its_table(home: Path, qtbot: object) -> None:
    """Issue 17's study: MAE runs, the classifiers started from them, the distilled student
    and the CNN baseline, on the gap study's splits; MAE never sees an evaluation image."""
    out = run(home, "experiment", "run", "imbalance", "--profile", "smoke").stdout
    assert "experiment 1: 7 runs queued" in out and "7 of 7 runs done" in out
    assert "started from MAE-student seed 0" in out and "taught by MAETeacher" in out
    table = out.split("| scheme | arch | dermoscopic-val")[1].split("\n\n")[0].splitlines()[2:]
    assert [row.split("|")[1].strip() for row in table] == [
        "ScratchViT",
        "MAEViT",
        "MAETeacher",
        "Distilled",
        "ScratchResNet18",
    ]
    assert "| MAE-student | vit_test |" in out.split("MAE pretraining (masked-patch")[1]
    assert "| MAEViT − ScratchResNet18 |" in out and "| MEL derm |" in out
    data = json.loads(run(home, "experiment", "export", "1", "--format", "json").stdout)
    runs = {r["name"]: r for r in data["runs"]}
    pre = data["tables"]["pretraining"][0]
    assert pre["final_loss"]["mean"] < pre["first_loss"]["mean"]
    # MAE reads the pool: the library's real images, labelled or not, less every patient,
    # lesion and near-copy of the evaluation sets; the classifiers' training images are in it
    assert set(runs["MAE-student"]["images"]) == {"train"}
    with Library.open(home, readonly=True) as lib:
        split = {(r["name"], r["seed"]): r["split"] for r in stored_runs(lib, 1, with_split=True)}
        groups = split_groups(lib, lib.images(ImageFilter(synthetic=False)))
        other = {r["id"] for r in lib.images() if r["diagnosis"] not in SHARED_CLASSES}
    mae_images = set(split["MAE-student", 0]["train"])
    scratch = split["ScratchViT", 0]
    evaluated = set(scratch["dermoscopic_val"]) | set(scratch["clinical_test"])
    assert set(scratch["train"]) < mae_images and not mae_images & evaluated
    assert not {groups[i] for i in mae_images} & {groups[i] for i in evaluated}
    assert mae_images & other  # HAM10000's DF, VASC: no classifier's class, still pixels to learn
    assert len(mae_images) == pre["images"]["mean"] == runs["MAE-student"]["images"]["train"]
    assert "| MAE-student | vit_test | pool |" in out
    rows = list(
        csv.DictReader(
            io.StringIO(run(home, "experiment", "export", "1", "--format", "csv").stdout)
        )
    )
    assert {r["table"] for r in rows} == {"schemes", "minority", "paired"}
    from dermdesk.gui.experiments_panel import ExperimentsPanel

    with Library.open(home, readonly=True) as lib:
        panel = ExperimentsPanel(lib)
        qtbot.addWidget(panel)  # type: ignore[attr-defined]
        panel.refresh()
        labels = [f.label for f in panel.charts["clinical_test"].rows]
        assert labels == [r["scheme"] for r in data["tables"]["rows"]]
        assert "Minority classes" in panel.boxes["domain"].title()
        assert "ScratchViT · MEL" in [f.label for f in panel.charts["domain"].rows]


def test_a_library_without_one_domain_is_refused_and_nothing_written(
    home: Path, shared_data: Path, tmp_path: Path
) -> None:
    only_pad = tmp_path / "pad_only"
    run(only_pad, "import", shared_data / "pad_ufes_20", "--quiet", "--no-checks")
    proc = run(only_pad, "experiment", "run", "gap", "--profile", "smoke", check=False)
    assert proc.returncode == 2
    assert "dermoscopic: MEL (0), NEV (0), BCC (0), ACK (0), SEK (0)" in proc.stderr
    assert run(only_pad, "experiment", "list").stdout.strip().count("\n") == 0  # header only
    bad = run(
        home, "experiment", "run", "gap", "--profile", "smoke", "--arch", "resnet9000", check=False
    )
    assert bad.returncode == 2 and "unknown architecture 'resnet9000'" in bad.stderr


def test_a_stage_2_strength_sweep_runs_only_the_asked_schemes(home: Path) -> None:
    """`--set lwf_sweep=0,4 --set schemes=...`: one more both-stages run per weight, only
    the named schemes trained, and a strength table that lists every weight."""
    names = "FullDermoscopic,Joint+MetaDomain,FineClinic+MetaDomain"
    sweep = "FineClinic+MetaDomain LwF0,FineClinic+MetaDomain LwF4"
    out = run(
        home, "experiment", "run", "gap", "--profile", "smoke",
        "--set", "lwf_sweep=0,4", "--set", f"schemes={names},{sweep}",
    ).stdout  # fmt: skip
    assert "experiment 1: 5 runs queued" in out and "5 of 5 runs done" in out
    table = out.split("| LwF weight |")[1].split("\n\n")[0].splitlines()[2:]
    assert [row.split("|")[1].strip() for row in table] == ["0", "1", "4"]
    # What was left out is not reported as missing: no one-row ablation, no FineClinic figure.
    assert "| stages |" not in out and "(FineClinic:" not in out and "| FullClinical |" not in out
    runs = {r["name"]: r for r in json.loads(
        run(home, "experiment", "export", "1", "--format", "json").stdout
    )["runs"]}  # fmt: skip
    assert set(runs) == {*names.split(","), *sweep.split(",")}
    assert [runs[n]["params"]["lwf_weight"] for n in sweep.split(",")] == [0.0, 4.0]
    # The weight is what each run trained with (its job's log says so).
    db = sqlite3.connect(home / "library.sqlite")
    logs = "\n".join(log for (log,) in db.execute("SELECT log FROM job"))
    db.close()
    assert "(LwF x0.0)" in logs and "(LwF x4.0)" in logs and "(LwF x1.0)" in logs

    for bad, message in (
        ("schemes=Joint,Nope", "no scheme Nope in this plan"),
        ("schemes=FineClinic", "FineClinic starts from FullDermoscopic; add FullDermoscopic"),
        ("lwf_sweep=3,x", "give LwF weights separated by commas"),
    ):
        proc = run(
            home, "experiment", "run", "gap", "--profile", "smoke", "--set", bad, check=False
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert run(home, "experiment", "list").stdout.strip().count("\n") == 1  # nothing added


def test_a_stopped_experiment_resumes_where_it_was(home: Path) -> None:
    """Ctrl-C cancels the running run with a checkpoint; kill -9 leaves a job whose worker
    vanished; `experiment resume` finishes every run either way."""
    env = {**os.environ, "DERMDESK_HOME": str(home)}
    # without the adaptation's runs: the four schemes and the curve are enough to stop
    run(home, "experiment", "run", "gap", "--profile", "smoke", "--set", "adapt=false", "--queue")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "experiment", "resume", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "training on" not in _job_log(home, 1):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "continue it with: dermdesk experiment resume 1" in out, out[-2000:]
    again = subprocess.Popen(
        [sys.executable, "-m", "dermdesk", "experiment", "resume", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    before = _runs_done(home)
    while time.monotonic() < deadline + 120 and _runs_done(home) == before:
        time.sleep(0.2)
    os.killpg(again.pid, signal.SIGKILL)  # the CLI and the run's worker, mid-experiment
    again.wait()
    done = run(home, "experiment", "resume", "1").stdout
    assert "7 of 7 runs done" in done
    check_recorded_runs(home)


def _runs_done(home: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{home / 'library.sqlite'}?mode=ro", uri=True)
        n = db.execute("SELECT count(*) FROM experiment_run WHERE status = 'done'").fetchone()[0]
        db.close()
        return int(n)
    except sqlite3.Error:
        return 0


def _job_log(home: Path, job_id: int) -> str:
    try:
        db = sqlite3.connect(f"file:{home / 'library.sqlite'}?mode=ro", uri=True)
        row = db.execute("SELECT log FROM job WHERE id = ?", (job_id,)).fetchone()
        db.close()
        return row[0] if row else ""
    except sqlite3.Error:
        return ""


def test_the_gap_study_starts_from_a_registered_backbone(home: Path) -> None:
    """Issue 17: `experiment run gap --from M-...`; a backbone that saw evaluation images
    is refused unless asked, and the tables then say how many."""
    pretrain = [
        "train", "pretrain", "--arch", "vit_test", "--img-size", "32", "--epochs", "1",
        "--batch-size", "16", "--micro-batch", "16", "--threads", "1",
    ]  # fmt: skip
    # on images the study never uses (no shared class): no evaluation image seen
    run(home, *pretrain, "--diagnosis", "DF,VASC", "--name", "outside")
    out = run(
        home, "experiment", "run", "gap", "--profile", "smoke", "--from", "outside",
        "--set", "adapt=false", "--set", "curve=false",
    ).stdout  # fmt: skip
    assert (
        "4 of 4 runs done" in out
        and "started from backbone" in run(home, "jobs", "show", "2").stdout
    )
    assert "pretrained on none of the evaluation images" in out
    run(home, *pretrain, "--name", "everything")
    refused = run(
        home, "experiment", "run", "gap", "--profile", "smoke", "--from", "everything",
        check=False,
    )  # fmt: skip
    assert refused.returncode == 2 and "of the study's evaluation images" in refused.stderr
    wrong = run(
        home, "experiment", "run", "gap", "--profile", "smoke", "--from", "everything",
        "--arch", "resnet10t", check=False,
    )  # fmt: skip
    assert wrong.returncode == 2 and "give --arch vit_test" in wrong.stderr
