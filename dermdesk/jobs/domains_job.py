"""The ``domains`` job: assign every checked image its visual meta-domain in a worker.

The worker reads the library and clusters (:mod:`dermdesk.ml.meta_domains`, numpy); the
runner, the library's writer, stores the assignment in one transaction
(:func:`dermdesk.library.domain_store.save_assignment`). Params: ``seed`` (default 0),
``k`` (domains per modality; default chosen by silhouette) and ``backbone`` (a registered
MAE backbone whose features are clustered instead of the look measurements). The CLI twin is
`dermdesk domains assign`.
"""

from __future__ import annotations

from typing import Any

from dermdesk.jobs.context import JobContext
from dermdesk.library import Library, LibraryError
from dermdesk.library.domain_store import domain_items
from dermdesk.ml.meta_domains import assign_domains, summary


def run_job(ctx: JobContext) -> dict[str, Any]:
    seed = int(ctx.params.get("seed", 0))
    k = ctx.params.get("k")
    embeddings, backbone = None, ctx.params.get("backbone")
    with Library.open(ctx.library_dir, readonly=True) as lib:
        items = domain_items(lib)
        if not items:
            raise LibraryError("no checked images to assign meta-domains to (run the checks first)")
        if backbone:
            from dermdesk.ml.embeddings import backbone_embeddings

            ctx.progress(0.05, f"features of {len(items)} images")
            backbone, embeddings = backbone_embeddings(
                lib, str(backbone), [i.image_id for i in items], ctx
            )
    ctx.progress(0.5, f"clustering {len(items)} images")
    assignment = assign_domains(
        items,
        seed=seed,
        k=int(k) if k is not None else None,
        embeddings=embeddings,
        backbone=backbone,
    )
    ctx.progress(0.9, "storing")
    ctx.request_write("meta_domains", {"assignment": assignment})
    info = summary(assignment)
    ctx.log(f"chosen k per modality: {info['chosen_k']}; silhouettes: {info['silhouettes']}")
    return {
        "message": f"{info['images']} images in {len(assignment.domains)} meta-domains "
        f"({assignment.version})",
        **info,
    }
