"""The modality networks: their training views keep what they claim, a short training on
real images learns, and the ONNX file the app runs gives what torch gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dermdesk.exchange.datasets import plan_path  # noqa: E402
from dermdesk.imaging import modality  # noqa: E402
from dermdesk.imaging.working import Decoded, WorkImage, decode_for_checks  # noqa: E402
from dermdesk.ml import modality_net  # noqa: E402


def _frames(shared_data: Path, dataset: str, n: int, side: int) -> np.ndarray:
    import cv2

    out = []
    for item in plan_path(shared_data / dataset).items[:n]:
        rgb = decode_for_checks(item.path).rgb
        out.append(cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA))
    return np.stack(out)


@pytest.fixture(scope="module")
def real(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """24 clinical (PAD-UFES-20) and 24 dermoscopic (PH2) frames at the training size."""
    side = modality_net.CACHE_SIDE
    clinical = _frames(shared_data, "pad_ufes_20", 24, side)
    dermoscopic = _frames(shared_data, "ph2", 24, side)
    return np.concatenate([clinical, dermoscopic]), np.array([False] * 24 + [True] * 24)


def test_training_views_keep_their_size_and_the_frame_view_darkens_clinical_corners(
    real: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = real
    rng = np.random.default_rng(0)
    framed = modality_net.Recipe(frame_p=1.0, crop_p=0.0)
    view = modality_net.augment(images[0], True, rng, framed)
    assert view.shape == (modality.NET_INPUT, modality.NET_INPUT, 3) and view.dtype == np.uint8
    corner, centre = view[:8, :8].mean(), view[56:72, 56:72].mean()
    assert corner < 40 < centre  # a dark round frame around a clinical photo's centre
    texture = modality_net.augment(images[0], True, rng, modality_net.Recipe(view="texture"))
    assert texture.shape == (modality.TEXTURE_CROP, modality.TEXTURE_CROP, 3)


def test_the_backdrop_view_puts_the_photo_on_something_that_is_not_skin(
    real: tuple[np.ndarray, np.ndarray],
) -> None:
    """A dermoscopic photo shrunk onto a drape is a clinical-looking view: part of the frame
    is the photo (an irregular region), the rest a backdrop; trained as clinical."""
    images, _ = real
    plain = modality_net.Recipe(crop_p=0.0)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        view = modality_net.augment(images[24 + seed], False, rng, plain)
        out, region = modality_net.backdrop_and_region(view, rng)
        assert out.shape == view.shape and out.dtype == np.uint8
        photo, backdrop = region > 0.99, region < 0.01
        assert 0.1 < photo.mean() < 0.9 and backdrop.mean() > 0.1
        # the photo's region is an irregular blob, not the box it was pasted in
        rows, cols = np.nonzero(photo)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert photo.sum() < 0.97 * box
    # labelled clinical in training: a dermoscopic batch with backdrop_p=1 trains towards 0
    groups = np.array(["ph2|dermoscopic"] * 24)
    recipe = modality_net.Recipe(
        epochs=6, batch=8, crop_p=0.0, colour_transfer_p=0.0, mixstyle_p=0.0, backdrop_p=1.0
    )
    net = modality_net.train(images[24:], np.ones(24, bool), groups, recipe)
    framed = np.stack([modality_net.backdrop(modality.network_input(i), rng) for i in images[24:]])
    assert modality_net.predict(net, framed).mean() < 0.5


def test_colour_transfer_moves_an_image_to_the_other_images_colour(
    real: tuple[np.ndarray, np.ndarray],
) -> None:
    images, _ = real
    plain = modality_net.Recipe(crop_p=0.0)
    target = (np.array([40.0, 200.0, 40.0], np.float32), np.array([10.0, 10.0, 10.0], np.float32))
    # many draws: the other colour changes (gains, gamma) are random; the transfer is not
    means = [
        modality_net.augment(images[0], True, np.random.default_rng(s), plain, target).mean(
            axis=(0, 1)
        )
        for s in range(8)
    ]
    green = np.mean(means, axis=0)
    assert green[1] > green[0] + 40 and green[1] > green[2] + 40


def test_mixstyle_changes_training_features_only() -> None:
    mix = modality_net.MixStyle(p=1.0)
    x = torch.randn(8, 4, 6, 6) * torch.arange(1, 9).view(8, 1, 1, 1)
    mix.train()
    torch.manual_seed(0)
    assert not torch.allclose(mix(x), x)
    mix.eval()
    assert torch.equal(mix(x), x)


def test_a_short_training_learns_and_its_onnx_file_agrees(
    real: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images, dermoscopic = real
    groups = np.where(dermoscopic, "ph2|dermoscopic", "pad|clinical")
    # the plain recipe (no crops, colour transfer, MixStyle or backdrops): learns in seconds
    recipe = modality_net.Recipe(
        epochs=20, batch=8, crop_p=0.0, colour_transfer_p=0.0, mixstyle_p=0.0, backdrop_p=0.0
    )
    net = modality_net.train(images, dermoscopic, groups, recipe)
    inputs = np.stack([modality.network_input(img) for img in images])
    p = modality_net.predict(net, inputs)
    assert ((p >= 0.5) == dermoscopic).mean() >= 0.75  # on its training images: it learnt
    onnx_file = tmp_path / "frame.onnx"
    modality_net.export_onnx(net, onnx_file)
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    nets = modality.Networks({"frame": session}, 0.9)
    for img, expected in zip(images[:4], p[:4], strict=True):
        got = modality.predict_networks(nets, WorkImage(Decoded.from_array(img)))
        assert abs(got - expected) < 1e-4


def test_a_damaged_network_file_falls_back_to_the_hand_network(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dermdesk import resources

    (tmp_path / modality.NETS_FILE).write_text('{"files": {"frame": "gone.onnx"}}')
    (tmp_path / "modality_model.json").write_bytes(
        resources.resource_path("modality_model.json").read_bytes()
    )
    monkeypatch.setattr(modality, "resource_path", lambda name: tmp_path / name)
    modality._networks.cache_clear()
    try:
        assert modality._networks() is None  # said in the log, not raised per image
        work = WorkImage(decode_for_checks(shared_data / "ph2" / "images" / "IMD002.jpg"))
        assert modality.detect_modality(work).modality == "dermoscopic"
    finally:
        modality._networks.cache_clear()
