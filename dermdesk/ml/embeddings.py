"""A registered MAE backbone's features of library images (torch): meta-domains, near-copies.

The mean of the backbone's patch tokens on each image's inference view (the cache's
centre crop at the backbone's own size), the same features the pretraining's linear probe
reads: issue 18's first choice for the meta-domains' clustering, and issue 16's
near-duplicates by embedding cosine (`curate embed-duplicates`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dermdesk.inference.preprocess import PreprocessSpec
from dermdesk.library import ImageFilter, Library, LibraryError
from dermdesk.library.db import id_chunks
from dermdesk.library.model_store import get_model, model_dir
from dermdesk.ml import checkpoints
from dermdesk.ml.cached_data import CachedEvalViews, cache_for
from dermdesk.ml.data import Sample
from dermdesk.ml.loop import Control, NullControl
from dermdesk.ml.models import build_model
from dermdesk.ml.pretrain import pooled_features

if TYPE_CHECKING:
    from dermdesk.jobs.context import JobContext

# Centred, normalised mean patch tokens of a backbone: a re-encoded or resized copy stays
# above this (not validated on a backbone pretrained at full size here: docs/design.md).
DEFAULT_MIN_COSINE = 0.95


def backbone_embeddings(
    lib: Library, backbone: str, image_ids: list[str], control: Control | None = None
) -> tuple[str, dict[str, np.ndarray]]:
    """(the backbone's id, image id -> feature vector) for the given images."""
    control = control or NullControl()
    record = get_model(lib, backbone)
    if record["kind"] != "backbone":
        raise LibraryError(
            f"{record['id']} is a {record['kind']}; meta-domains read a backbone's features "
            "(dermdesk train pretrain makes one)"
        )
    payload: dict[str, Any] = checkpoints.load_file(model_dir(lib.root, record["id"]) / "model.pt")
    spec = PreprocessSpec.from_json(payload["preprocess"])
    encoder = build_model(str(payload["arch"]), 0, spec.size)
    encoder.load_state_dict(checkpoints.state_dict_of(payload, record["id"]))
    encoder.eval()
    rows: dict[str, dict[str, Any]] = {}
    for chunk in id_chunks(image_ids):
        for r in lib.images(ImageFilter(ids=chunk)):
            rows[r["id"]] = r
    samples = [_sample(lib, rows[i]) for i in image_ids if i in rows]
    cache = cache_for(
        Path(lib.root), spec, samples, log=control.log, should_stop=control.should_stop
    )
    feats = pooled_features(
        encoder, CachedEvalViews(cache, samples, spec), torch.device("cpu"), control
    )
    return record["id"], {s.image_id: f for s, f in zip(samples, feats, strict=True)}


def _sample(lib: Library, row: dict[str, Any]) -> Sample:
    return Sample(
        image_id=row["id"],
        path=str(lib.original_path(row)),
        diagnosis=None,
        label=-1,
        fitzpatrick=None,
        device="",
        modality=row["modality"],
        dataset=row["dataset"],
        source=row["source"],
        patient_id=None,
        lesion_id=None,
    )


def embedding_duplicates(
    lib: Library,
    backbone: str,
    image_ids: list[str],
    min_cosine: float,
    control: Control | None = None,
) -> tuple[str, list[tuple[str, str, float]], int]:
    """(the backbone's id, near-duplicate pairs by cosine, images compared): what
    `curate embed-duplicates` and the ``embed_duplicates`` job store."""
    from dermdesk.imaging.dedup import cosine_pairs

    if not 0.0 < min_cosine <= 1.0:
        raise LibraryError("--min-cosine must be in (0, 1]")
    if len(image_ids) < 2:
        raise LibraryError("fewer than two real images to compare")
    model_id, features = backbone_embeddings(lib, backbone, image_ids, control)
    kept = [i for i in image_ids if i in features]
    pairs = cosine_pairs(kept, np.stack([features[i] for i in kept]), min_cosine)
    return model_id, pairs, len(kept)


def run_job(ctx: JobContext) -> dict[str, Any]:
    """The ``embed_duplicates`` job (the Duplicates dialog's "Find with a backbone"):
    params ``backbone``, ``min_cosine``; the runner stores the pairs."""
    min_cosine = float(ctx.params.get("min_cosine", DEFAULT_MIN_COSINE))
    with Library.open(ctx.library_dir, readonly=True) as lib:
        ids = [r["id"] for r in lib.images(ImageFilter(synthetic=False), order="id")]
        model_id, pairs, n = embedding_duplicates(
            lib, str(ctx.params["backbone"]), ids, min_cosine, ctx
        )
    ctx.request_write(
        "embedding_pairs", {"model_id": model_id, "min_cosine": min_cosine, "pairs": pairs}
    )
    return {"message": f"{len(pairs)} pairs of {n} images at cosine >= {min_cosine} by {model_id}"}
