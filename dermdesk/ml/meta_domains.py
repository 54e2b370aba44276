"""Visual meta-domains: images grouped by modality and acquisition look (numpy only).

Issue 18. Each image's meta-domain starts from its modality (dermoscopic / clinical /
other) and is refined, within the modality, by clustering what the quality checker
already measured about how the photo was taken: sharpness (whole frame and lesion),
motion blur, exposure, clipping, contrast, glare, colour cast, noise, JPEG quality and
blockiness, resolution, hair / ruler / ink marks; plus its dataset and device (one-hot,
each scaled so a categorical weighs like one measured feature).

Clustering: k-means (k-means++ start, several seeded restarts) on robust z-scores (median
and IQR of the modality's images) for every k in ``K_RANGE``; the k with the highest
mean silhouette (on a seeded sample of at most ``SILHOUETTE_SAMPLE`` images) is chosen,
and if no k reaches ``MIN_SILHOUETTE`` the modality stays one domain (clusters that do
not separate are not domains). The same images, scores and seed give the same domains.
Domains are named ``<modality>-<letter>`` (``a`` the largest) and described by their most
distinctive features and their main dataset.

With a registered MAE backbone (``dermdesk domains assign --backbone M-...``) the
clustering reads its features instead of the look measurements (their first
``EMBEDDING_DIMS`` principal components per modality, plus dataset and device); domains are
still described by their look, and the version says which backbone made them.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METHOD_VERSION = "look-kmeans 1"
EMBEDDING_VERSION = "backbone-kmeans 1"
EMBEDDING_DIMS = 8
K_RANGE = range(2, 7)
MIN_SILHOUETTE = 0.15
SILHOUETTE_SAMPLE = 1500
RESTARTS = 4
MIN_DOMAIN_IMAGES = 10  # a modality with fewer images stays one domain

# (check name, transform of its stored score): logs where the scores are skewed
FEATURES: tuple[tuple[str, str], ...] = (
    ("sharpness", "log"),
    ("lesion_sharpness", "log"),
    ("motion_blur", "log"),
    ("exposure", "id"),
    ("clipping", "log1p"),
    ("contrast", "id"),
    ("glare", "log1p"),
    ("colour_cast", "id"),
    ("noise", "log1p"),
    ("compression", "id"),
    ("blockiness", "id"),
    ("resolution", "log"),
    ("hair", "log1p"),
    ("ruler", "log1p"),
    ("ink", "log1p"),
)
WORDS = {  # how a domain that scores high / low on a feature reads
    "sharpness": ("sharp", "blurred"),
    "lesion_sharpness": ("sharp lesions", "soft lesions"),
    "motion_blur": ("steady", "shaken"),
    "exposure": ("bright", "dark"),
    "clipping": ("clipped highlights", "no clipping"),
    "contrast": ("high contrast", "low contrast"),
    "glare": ("glare", "no glare"),
    "colour_cast": ("colour cast", "neutral colour"),
    "noise": ("noisy", "clean"),
    "compression": ("light JPEG", "heavy JPEG"),
    "blockiness": ("blocky", "smooth"),
    "resolution": ("high resolution", "low resolution"),
    "hair": ("hair", "no hair"),
    "ruler": ("rulers", "no rulers"),
    "ink": ("ink marks", "no ink"),
}


@dataclass(frozen=True)
class DomainItem:
    """What the clustering reads of one image."""

    image_id: str
    modality: str
    dataset: str | None
    device: str
    scores: Mapping[str, float | None]  # check name -> stored score


@dataclass
class DomainDef:
    name: str
    modality: str
    n: int
    description: str
    centre: dict[str, float]  # feature -> robust z-score of the domain's centre


@dataclass
class Assignment:
    """Every image's meta-domain and how the clustering was chosen."""

    version: str
    seed: int
    by_image: dict[str, str]
    domains: list[DomainDef]
    # modality -> k -> mean silhouette (what chose k), and the k chosen
    silhouettes: dict[str, dict[int, float]] = field(default_factory=dict)
    chosen_k: dict[str, int] = field(default_factory=dict)


def assign_domains(
    items: Sequence[DomainItem],
    seed: int = 0,
    k: int | None = None,
    embeddings: Mapping[str, np.ndarray] | None = None,
    backbone: str | None = None,
) -> Assignment:
    """Meta-domains of ``items``: per modality, k-means on the look features (or on a
    backbone's ``embeddings`` of the images, reduced to ``EMBEDDING_DIMS`` principal
    components, when given) with k chosen by silhouette (or the given ``k``)."""
    if k is not None and k < 1:
        raise ValueError("k must be at least 1")
    if embeddings is not None:
        items = [i for i in items if i.image_id in embeddings]
        method = f"{EMBEDDING_VERSION} ({backbone or 'backbone'})"
    else:
        method = METHOD_VERSION
    out = Assignment(version=f"{method} seed {seed}", seed=seed, by_image={}, domains=[])
    by_modality: dict[str, list[DomainItem]] = {}
    for item in sorted(items, key=lambda i: i.image_id):
        by_modality.setdefault(item.modality or "other", []).append(item)
    for modality in sorted(by_modality):
        group = by_modality[modality]
        x, names = feature_matrix(group)
        if embeddings is not None:
            looks = x  # still what the domains are described by
            x = np.hstack(
                [
                    embedding_matrix([embeddings[i.image_id] for i in group]),
                    x[:, [n.startswith(("dataset=", "device=")) for n in names]],
                ]
            )
        else:
            looks = x
        labels, scores = _cluster(x, seed, k)
        out.silhouettes[modality] = scores
        out.chosen_k[modality] = int(labels.max()) + 1
        order = [c for c, _ in Counter(labels.tolist()).most_common()]
        overall = looks.mean(axis=0)
        for rank, c in enumerate(order):
            members = np.flatnonzero(labels == c)
            name = f"{modality}-{string.ascii_lowercase[rank]}" if len(order) > 1 else modality
            mean = looks[members].mean(axis=0)
            centre = {n: float(v) for n, v in zip(names, mean, strict=True)}
            # described by how it differs from the modality's other images
            versus = {n: float(v) for n, v in zip(names, mean - overall, strict=True)}
            out.domains.append(
                DomainDef(
                    name=name,
                    modality=modality,
                    n=len(members),
                    description=describe(versus, [group[i] for i in members]),
                    centre=centre,
                )
            )
            for i in members:
                out.by_image[group[i].image_id] = name
    return out


def feature_matrix(items: Sequence[DomainItem]) -> tuple[np.ndarray, list[str]]:
    """Robust z-scores of the look features plus scaled one-hots of dataset and device."""
    cols, names = [], []
    for check, how in FEATURES:
        raw = np.array(
            [_transform(item.scores.get(check), how) for item in items], dtype=np.float64
        )
        if np.isnan(raw).all():
            continue
        median = float(np.nanmedian(raw))
        q75, q25 = np.nanpercentile(raw, [75, 25])
        spread = float(q75 - q25) or float(np.nanstd(raw)) or 1.0
        z = np.nan_to_num((raw - median) / spread, nan=0.0)
        cols.append(np.clip(z, -4, 4))  # a few extreme photos must not make their own domain
        names.append(check)
    for attr in ("dataset", "device"):
        values = [getattr(item, attr) or "unknown" for item in items]
        distinct = sorted(set(values))
        if len(distinct) < 2:
            continue
        for value in distinct:  # one unit of distance between two images of different values
            cols.append(np.array([v == value for v in values], dtype=np.float64) / math.sqrt(2))
            names.append(f"{attr}={value}")
    if not cols:
        return np.zeros((len(items), 1)), ["none"]
    return np.stack(cols, axis=1), names


def embedding_matrix(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Backbone features -> their first ``EMBEDDING_DIMS`` principal components, each
    scaled to unit variance (so they weigh like the look features' z-scores)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    if len(x) < 2:
        return np.zeros((len(x), 1))
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    dims = min(EMBEDDING_DIMS, len(s))
    pcs = u[:, :dims] * s[:dims]
    return pcs / np.maximum(pcs.std(axis=0), 1e-9)


def _transform(score: float | None, how: str) -> float:
    if score is None or not math.isfinite(float(score)):
        return math.nan
    v = float(score)
    if how == "log":
        return math.log(max(v, 1e-3))
    if how == "log1p":
        return math.log1p(max(v, 0.0))
    return v


def _cluster(x: np.ndarray, seed: int, k: int | None) -> tuple[np.ndarray, dict[int, float]]:
    n = len(x)
    if k is not None:
        k = min(k, n)
        return (kmeans(x, k, seed)[0] if k > 1 else np.zeros(n, dtype=np.int64)), {}
    scores: dict[int, float] = {}
    best: tuple[float, np.ndarray] | None = None
    if n >= MIN_DOMAIN_IMAGES:
        sample = np.random.default_rng((seed, 7)).permutation(n)[:SILHOUETTE_SAMPLE]
        for kk in K_RANGE:
            if kk >= n:
                break
            labels = kmeans(x, kk, seed)[0]
            scores[kk] = silhouette(x[sample], labels[sample])
            if best is None or scores[kk] > best[0]:
                best = (scores[kk], labels)
    if best is None or best[0] < MIN_SILHOUETTE:
        return np.zeros(n, dtype=np.int64), scores
    return best[1], scores


def kmeans(
    x: np.ndarray, k: int, seed: int, restarts: int = RESTARTS, iters: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ starts; the best of ``restarts`` seeded runs."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for r in range(restarts):
        rng = np.random.default_rng((seed, k, r))
        centres = _plus_plus(x, k, rng)
        labels = np.zeros(len(x), dtype=np.int64)
        for it in range(iters):
            d = _sq_dist(x, centres)
            new = d.argmin(axis=1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = x[labels == c]
                # an emptied cluster restarts at the point farthest from its centre
                centres[c] = members.mean(axis=0) if len(members) else x[d.min(axis=1).argmax()]
        inertia = float(_sq_dist(x, centres)[np.arange(len(x)), labels].sum())
        if best is None or inertia < best[2]:
            best = (labels.copy(), centres.copy(), inertia)
    assert best is not None
    return best


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d = _sq_dist(x, np.array(centres)).min(axis=1)
        total = d.sum()
        pick = rng.choice(len(x), p=d / total) if total > 0 else rng.integers(len(x))
        centres.append(x[pick])
    return np.array(centres, dtype=np.float64)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None, :], 0.0)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Rousseeuw 1987) of a clustering; 0 for one cluster."""
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    d = np.sqrt(_sq_dist(x, x))
    a = np.zeros(len(x))
    b = np.full(len(x), np.inf)
    for c in clusters:
        inside = labels == c
        mean_to = d[:, inside].sum(axis=1)
        own = inside.sum()
        a = np.where(inside, mean_to / max(own - 1, 1), a)
        b = np.where(inside, b, np.minimum(b, mean_to / own))
    singles = np.array([(labels == labels[i]).sum() == 1 for i in range(len(x))])
    s = np.where(singles, 0.0, (b - a) / np.maximum(np.maximum(a, b), 1e-12))
    return float(s.mean())


def describe(versus: Mapping[str, float], members: Sequence[DomainItem]) -> str:
    """Words for a domain: the two look features where it differs most from the rest of
    its modality (in robust z units, at least 0.3), and its main source."""
    looks = sorted(
        ((abs(v), n, v) for n, v in versus.items() if n in WORDS and abs(v) >= 0.3),
        reverse=True,
    )[:2]
    words = [WORDS[n][0 if v > 0 else 1] for _, n, v in looks] or ["typical look"]
    sources = Counter(m.dataset or "local" for m in members).most_common(1)
    main, count = sources[0] if sources else ("local", 0)
    share = count / max(1, len(members))
    return f"{', '.join(words)}; {'mostly ' if share < 0.995 else ''}{main} ({share:.0%})"


def summary(assignment: Assignment) -> dict[str, Any]:
    """Plain data for a job's result and the CLI."""
    return {
        "version": assignment.version,
        "images": len(assignment.by_image),
        "domains": [
            {"name": d.name, "n": d.n, "description": d.description} for d in assignment.domains
        ],
        "silhouettes": {
            m: {str(k): round(v, 4) for k, v in s.items()}
            for m, s in assignment.silhouettes.items()
        },
        "chosen_k": assignment.chosen_k,
    }
