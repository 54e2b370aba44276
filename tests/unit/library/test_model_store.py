"""Model registry, predictions and job rows: transactions, audit, and the one-running rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.library import Library, LibraryError, job_store, model_store
from dermdesk.library.audit import verify_chain
from dermdesk.library.model_store import ModelRecord
from dermdesk.library.records import ImageRecord
from tests.helpers import encode, skin_like


def record(lib: Library, name: str = "m", parents: list[str] | None = None) -> ModelRecord:
    model_id = model_store.new_model_id()
    folder = model_store.model_dir(lib.root, model_id)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    return ModelRecord(
        id=model_id,
        name=name,
        kind="classifier",
        architecture="vit_test",
        file=f"models/{model_id}/model.onnx",
        sha256="0" * 64,
        parents=parents or [],
        training_set={"classes": ["MEL", "NEV"], "split": {"train": ["a"], "test": ["b"]}},
        params={"lr": 0.001},
        metrics={"test": {"overall": {"n": 1, "balanced_accuracy": {"value": 0.5}}}},
    )


def add_image(lib: Library, seed: int = 0) -> str:
    stored = ingest_bytes(encode(skin_like(seed=seed)), lib.store)
    return lib.add_images([ImageRecord(stored=stored)])[0][1]


def test_register_records_everything_and_audits(lib: Library) -> None:
    rec = record(lib)
    model_store.register_model(lib, rec)
    row = model_store.get_model(lib, rec.id)
    assert row["status"] == "candidate"
    assert row["training_set"]["split"]["test"] == ["b"]
    assert row["params"] == {"lr": 0.001}
    assert model_store.get_model(lib, rec.id[:6])["id"] == rec.id
    assert model_store.get_model(lib, "m")["id"] == rec.id
    assert [e["action"] for e in lib.audit_entries(rec.id)] == ["model.register"]
    listed = model_store.list_models(lib)
    assert listed[0]["test_bacc"] == 0.5


def test_register_refuses_missing_files_and_unknown_parents(lib: Library) -> None:
    rec = record(lib)
    (lib.root / rec.file).unlink()
    with pytest.raises(LibraryError, match="missing"):
        model_store.register_model(lib, rec)
    with pytest.raises(LibraryError, match="parent model M-nope"):
        model_store.register_model(lib, record(lib, "child", parents=["M-nope"]))
    assert lib.models() == []


def test_seen_images_follow_the_lineage(lib: Library) -> None:
    """A distilled student is not scored on its teacher's training images, nor a tuned model
    on the images its MAE backbone saw; test images are never 'seen'."""
    backbone = record(lib, "backbone")
    backbone.kind, backbone.training_set = "backbone", {"image_ids": ["mae1", "mae2"]}
    teacher = record(lib, "teacher", parents=[backbone.id])
    teacher.training_set = {"split": {"train": ["t1"], "val": ["t2"], "test": ["x"]}}
    student = record(lib, "student", parents=[teacher.id])
    student.training_set = {"split": {"train": ["s1", "t1"], "val": [], "test": ["x", "y"]}}
    for rec in (backbone, teacher, student):
        model_store.register_model(lib, rec)
    seen = model_store.seen_images(lib, model_store.get_model(lib, student.id))
    assert seen == {
        "s1": student.id,
        "t1": student.id,
        "t2": teacher.id,
        "mae1": backbone.id,
        "mae2": backbone.id,
    }
    assert model_store.seen_images(lib, model_store.get_model(lib, backbone.id)).keys() == {
        "mae1",
        "mae2",
    }


def test_promoting_retires_the_previous_active_model(lib: Library) -> None:
    first, second = record(lib, "first"), record(lib, "second")
    model_store.register_model(lib, first)
    model_store.register_model(lib, second)
    model_store.set_active(lib, first.id)
    assert model_store.get_model(lib, "active")["id"] == first.id
    model_store.set_active(lib, second.id, reason={"passed": True})
    assert model_store.get_model(lib, first.id)["status"] == "retired"
    assert model_store.active_model(lib)["id"] == second.id
    actions = [e["action"] for e in lib.audit_entries()]
    assert actions[-2:] == ["model.retire", "model.promote"]
    assert verify_chain(lib.conn)[1] is None


def test_no_active_model_is_a_clear_error(lib: Library) -> None:
    with pytest.raises(LibraryError, match="no active model"):
        model_store.get_model(lib, "active")


def test_predictions_are_stored_with_their_top_class_and_replaced(lib: Library) -> None:
    rec = record(lib)
    model_store.register_model(lib, rec)
    image = add_image(lib)
    model_store.store_predictions(lib, rec.id, [(image, {"MEL": 0.7, "NEV": 0.3})])
    model_store.store_predictions(lib, rec.id, [(image, {"MEL": 0.2, "NEV": 0.8})])
    stored = lib.predictions(image)
    assert len(stored) == 1 and stored[0]["top"] == "NEV"
    assert model_store.predictions_for(lib, rec.id) == {image: {"MEL": 0.2, "NEV": 0.8}}
    assert model_store.predictions_for(lib, rec.id, ["other"]) == {}


def test_only_one_job_runs_at_a_time(lib: Library) -> None:
    a = job_store.create_job(lib, "finetune", {"epochs": 1})
    b = job_store.create_job(lib, "finetune", {})
    claimed = job_store.claim_next(lib, pid=123)
    assert claimed["id"] == a and claimed["status"] == "running"
    assert claimed["params"] == {"epochs": 1}
    assert job_store.claim_next(lib, pid=123) is None  # a is running: b waits
    job_store.update_progress(lib, a, 0.5, "half", ["line 1", "line 2"])
    job_store.finish_job(lib, a, "done", message="ok", result={"x": 1})
    row = job_store.get_job(lib, a)
    assert row["status"] == "done" and row["progress"] == 1.0
    assert row["log"] == "line 1\nline 2\n" and row["result"] == {"x": 1}
    assert job_store.claim_next(lib, pid=123)["id"] == b


def test_finishing_a_job_registers_its_model_in_the_same_transaction(lib: Library) -> None:
    job = job_store.create_job(lib, "finetune", {})
    job_store.claim_next(lib, pid=1)
    bad = record(lib, parents=["M-missing"])
    with pytest.raises(LibraryError):
        job_store.finish_job(lib, job, "done", model=bad)
    assert job_store.get_job(lib, job)["status"] == "running"  # nothing half-written
    good = record(lib)
    job_store.finish_job(lib, job, "done", model=good)
    assert job_store.get_job(lib, job)["model_id"] == good.id
    assert model_store.get_model(lib, good.id)["status"] == "candidate"


def test_cancel_and_resume_rules(lib: Library) -> None:
    job = job_store.create_job(lib, "finetune", {})
    assert job_store.cancel_queued(lib, job)
    assert job_store.get_job(lib, job)["status"] == "cancelled"
    job_store.requeue_job(lib, job)
    assert job_store.get_job(lib, job)["status"] == "queued"
    with pytest.raises(LibraryError, match="only failed or cancelled"):
        job_store.requeue_job(lib, job)
    job_store.claim_next(lib, pid=1)
    assert not job_store.cancel_queued(lib, job)  # running: cancel goes through the runner
    with pytest.raises(LibraryError, match="no job 999"):
        job_store.get_job(lib, 999)
    actions = [e["action"] for e in lib.audit_entries(str(job))]
    assert actions == ["job.submit", "job.cancelled", "job.resume", "job.start"]


def test_model_dir_is_inside_the_library(tmp_path: Path) -> None:
    assert model_store.model_dir(tmp_path, "M-1") == tmp_path / "models" / "M-1"


def test_backups_carry_the_model_files(lib: Library, tmp_path: Path) -> None:
    from dermdesk.library.backup import backup

    rec = record(lib)
    model_store.register_model(lib, rec)
    backup(lib, tmp_path / "bak")
    assert (tmp_path / "bak" / rec.file).read_bytes() == b"onnx"
