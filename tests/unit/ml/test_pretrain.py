"""MAE pretraining, backbones and distillation on real PAD-UFES-20 images (issue 17).

Everything runs the 2-layer test ViT at 32-48 px on the CPU: the MAE loss falls on real
images, masking keeps exactly the ratio asked for, a pretraining job registers a backbone
with its images and previews, fine-tuning starts from it at another input size (position
embeddings resampled), a student distilled from a classifier moves towards its teacher,
and a cancelled pretraining resumes to exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dermdesk.exchange.datasets import plan_path
from dermdesk.inference.preprocess import MEAN, STD
from dermdesk.jobs.context import JobCancelled
from dermdesk.jobs.runner import JobRunner
from dermdesk.library import Library, LibraryError, job_store, model_store
from dermdesk.ml.config import PretrainConfig
from dermdesk.ml.loop import train
from dermdesk.ml.mae import MaskedAutoencoder, keep_count
from dermdesk.ml.models import build_model
from dermdesk.ml.pretrain import MaskedViews, PretrainTask
from dermdesk.ml.promotion import check_promotion
from tests.e2e.test_cli import run
from tests.unit.ml.test_finetune import make_library
from tests.unit.ml.test_loop import StopAfter, quiet

pytestmark = [pytest.mark.ml]

TIMEOUT = 300
TINY_MAE = {
    "arch": "vit_test",
    "img_size": 32,
    "epochs": 3,
    "batch_size": 32,
    "micro_batch": 32,
    "decoder_dim": 32,
    "decoder_depth": 1,
    "decoder_heads": 2,
    "threads": 1,
    "probe_min_class_images": 5,
}
TINY_CLASSIFIER = {
    "arch": "vit_test",
    "epochs": 3,
    "batch_size": 16,
    "micro_batch": 8,
    "threads": 1,
    "n_boot": 30,
    "min_class_images": 5,
    "augment": "none",
}


def real_images(shared_data: Path, n: int, size: int) -> torch.Tensor:
    """``n`` PAD-UFES-20 photos, resized, normalised as the models see them."""
    plan = plan_path(shared_data / "pad_ufes_20", "clinical")
    out = []
    for item in plan.items[:n]:
        with Image.open(item.path) as im:
            rgb = im.convert("RGB").resize((size, size), Image.BILINEAR)
        x = (np.asarray(rgb, np.float32) / 255 - np.array(MEAN)) / np.array(STD)
        out.append(torch.from_numpy(x.transpose(2, 0, 1)).float())
    return torch.stack(out)


# -- the model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("size", [32, 64])
def test_masking_hides_exactly_the_asked_share_of_patches(ratio: float, size: int) -> None:
    mae = MaskedAutoencoder(build_model("vit_test", 0, size), decoder_dim=32, mask_ratio=ratio)
    n = mae.n_patches
    noise = torch.rand(5, n, generator=torch.Generator().manual_seed(0))
    kept, mask, _ = mae.masking(noise)
    assert torch.all(mask.sum(1) == n - keep_count(n, ratio))
    assert keep_count(n, ratio) == round(n * (1 - ratio))
    for row in range(5):  # the visible patches are exactly the unmasked ones
        assert set(kept[row].tolist()) == set(torch.nonzero(mask[row] == 0).flatten().tolist())
    latent = mae.encode(torch.zeros(5, 3, size, size), kept)
    assert latent.shape[1] == 1 + keep_count(n, ratio)  # the encoder saw only those


def test_mae_loss_goes_down_on_real_images(shared_data: Path) -> None:
    torch.manual_seed(0)
    x = real_images(shared_data, 16, 32)
    mae = MaskedAutoencoder(build_model("vit_test", 0, 32), decoder_dim=32, decoder_depth=1)
    noise = torch.rand(len(x), mae.n_patches, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(mae.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = mae(x, noise)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_masks_are_the_same_for_the_same_seed_epoch_and_image(shared_data: Path) -> None:
    from dermdesk.ml.data import Sample

    class FakeCache:  # the views only need pixels; the noise is what is compared
        def get(self, image_id: str) -> np.ndarray:
            return np.zeros((36, 36, 3), np.uint8)

    samples = [Sample(f"i{k}", "", "MEL", 0, None, "", "clinical", "", "", None, None)
               for k in range(4)]  # fmt: skip
    a = MaskedViews(FakeCache(), samples, seed=3, augment=None, n_patches=16)  # type: ignore[arg-type]
    b = MaskedViews(FakeCache(), samples, seed=3, augment=None, n_patches=16)  # type: ignore[arg-type]
    assert np.array_equal(a.item(2, 5)[2], b.item(2, 5)[2])
    assert not np.array_equal(a.item(2, 5)[2], a.item(2, 6)[2])  # a new mask every epoch


# -- the jobs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pad_library(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_library(tmp_path_factory.mktemp("mae") / "library", shared_data, n=120)


def run_job(library: Path, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    runner = JobRunner(library, actor="tester")
    try:
        row = runner.wait(runner.submit(kind, params), timeout_s=TIMEOUT)
    finally:
        runner.close()
    assert row["status"] == "done", row["error"]
    return row


@pytest.fixture(scope="module")
def backbone(pad_library: Path) -> dict[str, Any]:
    row = run_job(pad_library, "pretrain", {**TINY_MAE, "name": "bb"})
    with Library.open(pad_library) as lib:
        return {**model_store.get_model(lib, row["model_id"]), "job": row}


def test_pretraining_registers_a_backbone_with_its_images_and_previews(
    pad_library: Path, backbone: dict[str, Any]
) -> None:
    assert backbone["kind"] == "backbone" and backbone["architecture"] == "vit_test"
    with Library.open(pad_library) as lib:
        assert sorted(backbone["training_set"]["image_ids"]) == sorted(
            r["id"] for r in lib.images()
        )
        with pytest.raises(LibraryError, match="is a backbone, not a classifier"):
            check_promotion(lib, backbone["id"])
    evals = backbone["metrics"]["training"]["evaluations"]
    assert len(evals) == TINY_MAE["epochs"]  # one per epoch
    assert all(0 <= e["probe_balanced_accuracy"] <= 1 for e in evals)
    assert evals[-1]["val_recon_loss"] < evals[0]["val_recon_loss"]
    previews = pad_library / "jobs" / str(backbone["job"]["id"]) / "previews"
    assert len(list(previews.glob("eval_*.png"))) == len(evals)
    with Image.open(previews / "latest.png") as grid:
        assert grid.size[1] == 3 * 32 + 2 * 2  # original / masked / reconstruction rows
    folder = model_store.model_dir(pad_library, backbone["id"])
    assert (folder / "reconstruction.png").is_file() and (folder / "model.pt").is_file()


def test_fine_tuning_starts_from_the_backbone_at_another_size(
    pad_library: Path, backbone: dict[str, Any]
) -> None:
    row = run_job(
        pad_library,
        "finetune",
        {**TINY_CLASSIFIER, "img_size": 48, "init": backbone["id"], "name": "from bb"},
    )
    with Library.open(pad_library) as lib:
        model = model_store.get_model(lib, row["model_id"])
        log = job_store.get_job(lib, row["id"])["log"]
    assert model["parents"] == [backbone["id"]]
    assert backbone["id"] in model["params"]["init_from"]
    assert "position embeddings resampled from a 4x4 to a 6x6 patch grid" in log
    assert re.search(r"30/32 tensors loaded; new classifier head", log)


def test_distillation_moves_the_student_towards_its_teacher(
    pad_library: Path, backbone: dict[str, Any]
) -> None:
    teacher_row = run_job(
        pad_library, "finetune", {**TINY_CLASSIFIER, "img_size": 32, "name": "teacher"}
    )
    row = run_job(
        pad_library,
        "distill",
        {
            **TINY_CLASSIFIER,
            "img_size": 32,
            "epochs": 6,
            "lr": 3e-3,
            "teacher": teacher_row["model_id"],
            "alpha": 1.0,  # only the teacher's term: the KL must fall
            "name": "student",
        },
    )
    with Library.open(pad_library) as lib:
        teacher = model_store.get_model(lib, teacher_row["model_id"])
        student = model_store.get_model(lib, row["model_id"])
    assert student["parents"][0] == teacher["id"]
    assert student["training_set"]["split"] == teacher["training_set"]["split"]
    assert student["training_set"]["classes"] == teacher["training_set"]["classes"]
    kl = [e["val_kl_to_teacher"] for e in student["metrics"]["training"]["evaluations"]]
    assert kl[-1] < kl[0]
    assert student["metrics"]["distillation"]["teacher"] == teacher["id"]
    assert student["metrics"]["onnx"]["parity_max_abs_logit_diff"] < 1e-4  # ONNX = torch


def test_a_deit_student_learns_its_teacher_through_the_distillation_token(
    pad_library: Path,
) -> None:
    """DeiT's distillation token (issue 17's option): the class token learns the labels,
    the distillation token the teacher; inference averages both heads, ONNX included."""
    teacher_row = run_job(  # trained longer than the others: outputs worth learning
        pad_library,
        "finetune",
        {**TINY_CLASSIFIER, "img_size": 32, "epochs": 8, "lr": 3e-3, "name": "sure teacher"},
    )
    row = run_job(
        pad_library,
        "distill",
        {
            **TINY_CLASSIFIER,
            "arch": "deit_test",
            "img_size": 32,
            "epochs": 6,
            "lr": 3e-3,
            "teacher": teacher_row["model_id"],
            "alpha": 0.9,
            "distill_token": True,
            "name": "deit student",
        },
    )
    with Library.open(pad_library) as lib:
        student = model_store.get_model(lib, row["model_id"])
    assert student["architecture"] == "deit_test"
    assert student["metrics"]["distillation"]["distill_token"] is True
    kl = [e["val_kl_to_teacher"] for e in student["metrics"]["training"]["evaluations"]]
    assert kl[-1] < 0.5 * kl[0]  # measured: 0.0154 -> 0.0039 over six evaluations
    assert student["metrics"]["onnx"]["parity_max_abs_logit_diff"] < 1e-4
    from dermdesk.ml.config import DistillConfig

    with pytest.raises(ValueError, match="the distillation token needs a DeiT student"):
        DistillConfig.from_params({"teacher": "x", "arch": "vit_test", "distill_token": True})


def test_a_cancelled_pretraining_resumes_to_the_same_weights(
    pad_library: Path, tmp_path: Path
) -> None:
    cfg = PretrainConfig.from_params({**TINY_MAE, "epochs": 2, "eval_every": 3})

    def task(folder: str) -> PretrainTask:
        return PretrainTask(pad_library, cfg, quiet(), tmp_path / folder)

    _, full = train(task("a"), cfg.loop, quiet(), tmp_path / "full.pt")
    with pytest.raises(JobCancelled):
        train(task("b"), cfg.loop, StopAfter(5), tmp_path / "part.pt")
    _, resumed = train(task("b"), cfg.loop, quiet(), tmp_path / "part.pt", resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


# -- bad input, refused before any worker starts ----------------------------------------------


@pytest.fixture
def cli_home(pad_library: Path, backbone: dict[str, Any]) -> Iterator[Path]:
    yield pad_library


def test_bad_pretraining_and_distillation_requests_fail_in_one_line(
    cli_home: Path, backbone: dict[str, Any], tmp_path: Path
) -> None:
    def refused(*args: str | Path) -> str:
        proc = run(cli_home, "train", *args, check=False)
        assert proc.returncode != 0, proc.stdout
        assert "queued" not in proc.stdout  # nothing was submitted
        return proc.stderr.strip().splitlines()[-1]

    assert "matches no images" in refused("pretrain", "--dataset", "no-such-dataset")
    assert "MAE pretrains a ViT" in refused("pretrain", "--arch", "resnet18")
    other = refused("finetune", "--from", backbone["id"], "--arch", "vit_small")
    assert re.search(r"is a vit_test backbone; this job trains vit_small", other)
    assert "is a backbone, not a classifier" in refused(
        "distill", "--teacher", backbone["id"], "--arch", "vit_test"
    )
    good = model_store.model_dir(cli_home, backbone["id"]) / "model.pt"
    damaged = tmp_path / "damaged.pt"
    data = bytearray(good.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\0" * 64
    damaged.write_bytes(bytes(data))
    assert "damaged checkpoint" in refused("finetune", "--from", damaged, "--arch", "vit_test")
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not weights")
    assert "not a PyTorch checkpoint" in refused("finetune", "--from", garbage)
