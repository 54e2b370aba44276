"""The ONNX Runtime predictor: refuses foreign files, predicts and stores, skips bad images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermdesk.exchange.ingest import ingest_bytes
from dermdesk.inference.predictor import ModelLoadError, OnnxClassifier, predict_library, softmax
from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.library import Library, model_store
from dermdesk.library.model_store import ModelRecord
from dermdesk.library.records import ImageRecord
from dermdesk.library.store import sha256_file
from tests.helpers import encode, skin_like

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

CLASSES = ["MEL", "NEV"]


def tiny_onnx(path: Path, *, meta: bool = True, **override: str) -> Path:
    """Mean colour per channel -> 2 logits: a real ONNX graph, small enough to write by hand."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [4.0, -4.0, 0.0, 0.0, -4.0, 4.0])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [weights],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if meta:
        spec = PreprocessSpec(size=16)
        for key, value in {
            "dermdesk.classes": '["MEL", "NEV"]',
            "dermdesk.preprocess": spec.to_json(),
            **{f"dermdesk.{k}": v for k, v in override.items()},
        }.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def register_tiny(lib: Library, model_id: str) -> Path:
    folder = model_store.model_dir(lib.root, model_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = tiny_onnx(folder / "model.onnx")
    model_store.register_model(
        lib,
        ModelRecord(
            model_id,
            "tiny",
            "classifier",
            "hand-made",
            f"models/{model_id}/model.onnx",
            sha256_file(path),
            training_set={"classes": CLASSES},
        ),
    )
    return path


@pytest.mark.parametrize(
    ("meta", "reason"),
    [
        ({"classes": "[MEL, NEV"}, "class list is not valid JSON"),
        ({"classes": '"MEL,NEV"'}, "not a list of distinct class codes"),
        ({"classes": '["MEL", "MEL"]'}, "not a list of distinct class codes"),
        ({"classes": '["MEL", "NEV", "BCC"]'}, "outputs 2 scores for 3 classes"),
        ({"preprocess": "{}"}, "preprocessing metadata is malformed"),
        (
            {"preprocess": PreprocessSpec(size=16, crop_fraction=0.0).to_json()},
            "preprocessing is out of range",
        ),
        ({"preprocess": PreprocessSpec(size=40000).to_json()}, "preprocessing is out of range"),
        ({"preprocess": PreprocessSpec(size=32).to_json()}, "does not take 3 x 32 x 32"),
    ],
    ids=[
        "bad-json",
        "classes-string",
        "duplicate",
        "count",
        "empty",
        "crop-0",
        "size-40000",
        "size-mismatch",
    ],
)
def test_crafted_model_metadata_is_refused_in_one_line(
    tmp_path: Path, meta: dict[str, str], reason: str
) -> None:
    path = tiny_onnx(tmp_path / "crafted.onnx", **meta)
    with pytest.raises(ModelLoadError, match=reason) as refused:
        OnnxClassifier(path)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_a_registered_model_whose_file_changed_is_not_used(lib: Library) -> None:
    from dermdesk.library.verify import verify

    model_id = model_store.new_model_id()
    path = register_tiny(lib, model_id)
    assert verify(lib, checksums=False).ok
    tiny_onnx(path, classes='["NEV", "MEL"]')  # same graph, swapped labels
    with pytest.raises(ModelLoadError, match="changed since it was registered"):
        predict_library(lib, model_id)
    report = verify(lib, checksums=False)
    assert any(f"model {model_id}: model.onnx changed" in e for e in report.errors)


def test_softmax_rows_sum_to_one() -> None:
    p = softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]]))
    assert p.sum(axis=1) == pytest.approx([1.0, 1.0]) and p[1, 0] == pytest.approx(1.0)


def test_foreign_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"junk\.onnx: not a usable ONNX model"):
        OnnxClassifier(junk)
    bare = tiny_onnx(tmp_path / "bare.onnx", meta=False)
    with pytest.raises(ModelLoadError, match=r"bare\.onnx: not a dermdesk model"):
        OnnxClassifier(bare)
    with pytest.raises(ModelLoadError, match="no such model file"):
        OnnxClassifier(tmp_path / "missing.onnx")


def test_predict_library_stores_probabilities_and_skips_unreadable_images(
    lib: Library, shared_data: Path
) -> None:
    ids = []
    for path in sorted((shared_data / "pad_ufes_20").rglob("*.jpg"))[:5]:
        stored = ingest_bytes(path.read_bytes(), lib.store)
        ids.append(lib.add_images([ImageRecord(stored=stored)])[0][1])
    broken = ingest_bytes(encode(skin_like(seed=9)), lib.store)
    broken_id = lib.add_images([ImageRecord(stored=broken)])[0][1]
    lib.store.path(broken.file).write_bytes(b"damaged on disk")
    model_id = model_store.new_model_id()
    folder = model_store.model_dir(lib.root, model_id)
    folder.mkdir(parents=True)
    register_tiny(lib, model_id)
    seen: list[tuple[int, int]] = []
    report = predict_library(lib, model_id, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert report.predicted == 5
    assert [i for i, _ in report.failed] == [broken_id]
    assert seen[-1] == (6, 6)
    stored = model_store.predictions_for(lib, model_id)
    assert set(stored) == set(ids)
    probs = stored[ids[0]]
    assert set(probs) == set(CLASSES) and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    # Skin photos are red-dominant: the hand-made weights call that MEL.
    assert lib.predictions(ids[0])[0]["top"] == "MEL"


def test_onnx_runtime_writes_no_telemetry_id(tmp_path: Path) -> None:
    """Offline means offline: loading and running a model leaves nothing in the home."""
    import os
    import subprocess
    import sys

    model = tiny_onnx(tmp_path / "tiny.onnx")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY",)}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    script = (
        "import numpy as np\n"
        "from dermdesk.inference.predictor import OnnxClassifier\n"
        f"m = OnnxClassifier({str(model)!r})\n"
        "print(m.logits(np.zeros((1, 3, 16, 16), np.float32)).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert "(1, 2)" in out.stdout
    assert [p for p in home.rglob("*")] == []  # no ~/.cache/Microsoft/.../deviceid
