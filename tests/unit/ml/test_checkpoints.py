"""Weights files are loaded safely: plain weights only, clear one-line refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from dermdesk.ml.checkpoints import ModelFileError, load_file, load_into, save_atomic, state_dict_of
from dermdesk.ml.models import build_model

pytestmark = pytest.mark.ml


class Payload:
    """Stands for any Python object a malicious pickle could smuggle in."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would run on load",))


def test_round_trip_of_a_plain_checkpoint(tmp_path: Path) -> None:
    model = build_model("vit_test", 3, 32)
    save_atomic({"model": model.state_dict(), "step": 7, "classes": ["A"]}, tmp_path / "c.pt")
    loaded = load_file(tmp_path / "c.pt")
    assert loaded["step"] == 7 and loaded["classes"] == ["A"]
    fresh = build_model("vit_test", 3, 32)
    assert load_into(fresh, state_dict_of(loaded, "c.pt"), "c.pt")[0] == len(model.state_dict())
    assert not list(tmp_path.glob("*.part"))


def test_a_file_holding_python_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": Payload()}, path)
    with pytest.raises(ModelFileError, match="refused: it holds Python objects other than weights"):
        load_file(path)


def test_non_checkpoints_are_refused_with_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match=r"notes\.pt: not a PyTorch checkpoint"):
        load_file(text)
    broken = tmp_path / "broken.pt"
    torch.save({"a": torch.zeros(3)}, broken)
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(ModelFileError, match=r"broken\.pt: damaged or not a PyTorch checkpoint"):
        load_file(broken)
    with pytest.raises(ModelFileError, match="no such file"):
        load_file(tmp_path / "missing.pt")
    listing = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listing)
    with pytest.raises(ModelFileError, match="holds a list"):
        load_file(listing)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"x": 1}, protocol=2))
    with pytest.raises(ModelFileError):
        state_dict_of(load_file(raw), "raw.pt")


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    small = build_model("vit_test", 2, 32)
    save_atomic({"model": small.state_dict()}, tmp_path / "small.pt")
    tiny = build_model("vit_tiny", 2, 32)
    weights = state_dict_of(load_file(tmp_path / "small.pt"), "small.pt")
    with pytest.raises(ModelFileError, match="do not fit this architecture"):
        load_into(tiny, weights, "small.pt")


def test_ddp_prefixes_and_timm_layouts_are_understood(tmp_path: Path) -> None:
    model = build_model("vit_test", 2, 32)
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    save_atomic({"state_dict": prefixed}, tmp_path / "ddp.pt")
    weights = state_dict_of(load_file(tmp_path / "ddp.pt"), "ddp.pt")
    assert set(weights) == set(model.state_dict())


def test_safetensors_files_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = build_model("vit_test", 2, 32)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    weights = state_dict_of(load_file(tmp_path / "w.safetensors"), "w.safetensors")
    assert torch.equal(weights["head.weight"], model.state_dict()["head.weight"])
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ModelFileError, match="damaged safetensors"):
        load_file(tmp_path / "bad.safetensors")
