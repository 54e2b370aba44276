"""Read helpers for browsing the library: gallery snapshots, tiles, groups, dashboard.

The GUI's item models adapt these functions; they never run SQL themselves.
Everything here is a plain read returning plain data (no Qt), so it runs on
any thread that owns its own :class:`Library` connection.

A gallery *snapshot* is the ordered list of image ids matching a filter, read
in one transaction together with its group counts, so rows loaded page by
page later never shift when images are imported meanwhile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from dermdesk import taxonomy
from dermdesk.library.db import id_chunks
from dermdesk.library.library import Library
from dermdesk.library.query import DEVICE_SQL, ImageFilter

# Sort keys: ORDER BY clause (after any grouping expression).
SORTS: dict[str, str] = {
    "imported": "image.imported_at DESC, image.id",
    "captured": "image.captured_at DESC, image.imported_at DESC, image.id",
    "diagnosis": "image.diagnosis, image.imported_at DESC, image.id",
    "patient": "image.patient_id, image.lesion_id, image.id",
    "lesion": "image.lesion_id, image.id",
}

# Group keys: (SQL expression, direction). Groups come first in the ordering.
GROUPS: dict[str, tuple[str, str]] = {
    "patient": ("image.patient_id", "ASC"),
    "lesion": ("image.lesion_id", "ASC"),
    "diagnosis": ("image.diagnosis", "ASC"),
    "captured": ("substr(image.captured_at, 1, 10)", "DESC"),
}

VERDICT_RANK = {"pass": 0, "warn": 1, "fail": 2}
_WORST_SQL = "max(CASE verdict WHEN 'fail' THEN 2 WHEN 'warn' THEN 1 ELSE 0 END)"
_RANK_VERDICT = {v: k for k, v in VERDICT_RANK.items()}


@dataclass(frozen=True)
class Group:
    """A run of consecutive rows in a snapshot sharing one group value."""

    key: str | None
    count: int


@dataclass
class Snapshot:
    """Ordered ids matching a filter, with the groups they fall into (in order)."""

    ids: list[str]
    groups: list[Group] = field(default_factory=list)
    sort: str = "imported"
    group: str | None = None


# A tile as a tuple of strings, ints and None. Holding 100,000 of these costs the cyclic garbage
# collector nothing (CPython stops tracking such tuples), whereas 100,000 objects made a full
# collection stall the GUI thread for ~190 ms while scrolling (measured by scripts/bench_gui.py).
TileRow = tuple[Any, ...]


@dataclass(frozen=True)
class Tile:
    """What a gallery tile shows about one image."""

    id: str
    diagnosis: str | None
    fitzpatrick: int | None  # rated (a person's or a dataset's)
    monk: int | None  # rated
    modality: str
    source: str
    patient_id: str | None
    lesion_id: str | None
    captured_at: str | None
    quality: str | None  # worst verdict of its checks, None when unchecked
    predicted: str | None  # active model's top class, None without a prediction
    fitzpatrick_est: int | None = None  # the automatic estimate, never shown as rated
    monk_est: int | None = None
    modality_method: str = "recorded"  # or detected / unsure: never shown as recorded
    free_text: str | None = None  # the current label's condition in words (OTHER's name)

    @property
    def labelled(self) -> bool:
        return self.diagnosis is not None

    def as_row(self) -> TileRow:
        """The tile as a plain tuple (see :data:`TileRow`)."""
        return (
            self.id,
            self.diagnosis,
            self.fitzpatrick,
            self.monk,
            self.modality,
            self.source,
            self.patient_id,
            self.lesion_id,
            self.captured_at,
            self.quality,
            self.predicted,
            self.fitzpatrick_est,
            self.monk_est,
            self.modality_method,
            self.free_text,
        )

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    def skin_type(self) -> tuple[int | None, bool]:
        """(Fitzpatrick, is it an estimate): the rating where there is one, else the estimate."""
        if self.fitzpatrick is not None:
            return self.fitzpatrick, False
        return self.fitzpatrick_est, self.fitzpatrick_est is not None

    def monk_tone(self) -> tuple[int | None, bool]:
        """(Monk, is it an estimate), like :meth:`skin_type`."""
        if self.monk is not None:
            return self.monk, False
        return self.monk_est, self.monk_est is not None

    @property
    def disagrees(self) -> bool:
        return bool(self.predicted and self.diagnosis and self.predicted != self.diagnosis)


def order_sql(sort: str, group: str | None) -> str:
    """ORDER BY clause for a sort key within an optional grouping."""
    if sort not in SORTS:
        raise ValueError(f"unknown sort {sort!r}; choose from {', '.join(SORTS)}")
    if group is None:
        return SORTS[sort]
    if group not in GROUPS:
        raise ValueError(f"unknown grouping {group!r}; choose from {', '.join(GROUPS)}")
    expr, direction = GROUPS[group]
    return f"{expr} {direction}, {SORTS[sort]}"


def snapshot(
    lib: Library, flt: ImageFilter | None = None, sort: str = "imported", group: str | None = None
) -> Snapshot:
    """The ordered ids matching ``flt`` and their groups, read consistently."""
    where, params = (flt or ImageFilter()).where()
    order = order_sql(sort, group)
    conn = lib.conn
    conn.execute("BEGIN")  # one read snapshot for ids and group counts (WAL)
    try:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT image.id FROM image WHERE {where} ORDER BY {order}", params
            )
        ]
        groups: list[Group] = []
        if group is not None:
            expr, direction = GROUPS[group]
            rows = conn.execute(
                f"SELECT {expr} AS g, count(*) FROM image WHERE {where} "
                f"GROUP BY g ORDER BY g {direction}",
                params,
            )
            groups = [Group(None if k is None else str(k), int(n)) for k, n in rows]
    finally:
        conn.execute("COMMIT")
    return Snapshot(ids, groups, sort, group)


def tiles(lib: Library, ids: list[str]) -> list[Tile]:
    """Tile facts for ``ids``, in the same order (ids no longer in the library are skipped)."""
    found: dict[str, Tile] = {}
    for chunk in id_chunks(ids):
        marks = ", ".join("?" * len(chunk))
        worst = dict(
            lib.conn.execute(
                f"SELECT image_id, {_WORST_SQL} FROM quality WHERE image_id IN ({marks}) "
                "GROUP BY image_id",
                chunk,
            ).fetchall()
        )
        predicted = dict(
            lib.conn.execute(
                "SELECT p.image_id, p.top FROM prediction p JOIN model m ON m.id = p.model_id "
                f"AND m.status = 'active' WHERE p.image_id IN ({marks})",
                chunk,
            ).fetchall()
        )
        free_text = dict(
            lib.conn.execute(
                "SELECT image_id, free_text FROM label WHERE is_current "
                f"AND free_text IS NOT NULL AND image_id IN ({marks})",
                chunk,
            ).fetchall()
        )
        rows = lib.conn.execute(
            "SELECT id, diagnosis, fitzpatrick, monk, modality, source, patient_id, lesion_id, "
            "captured_at, fitzpatrick_est, monk_est, modality_method "
            f"FROM image WHERE id IN ({marks})",
            chunk,
        )
        for row in rows:
            image_id, dx, fitz, monk, modality, source, patient, lesion, captured = row[:9]
            rank = worst.get(image_id)
            found[image_id] = Tile(
                image_id,
                dx,
                fitz,
                monk,
                modality,
                source,
                patient,
                lesion,
                captured,
                quality=None if rank is None else _RANK_VERDICT[int(rank)],
                predicted=predicted.get(image_id),
                fitzpatrick_est=row[9],
                monk_est=row[10],
                modality_method=row[11],
                free_text=free_text.get(image_id),
            )
    return [found[i] for i in ids if i in found]


def group_label(group: str | None, key: str | None) -> str:
    """How a group heading reads in the gallery."""
    if group == "diagnosis":
        return taxonomy.diagnoses()[key].name if key in taxonomy.diagnoses() else "Unlabelled"
    if group == "captured":
        return key or "Capture date unknown"
    if group == "patient":
        return f"Patient {key}" if key else "No patient"
    if group == "lesion":
        return f"Lesion {key}" if key else "No lesion"
    return key or ""


# -- people and places -----------------------------------------------------------------------


def patients(lib: Library, limit: int = 5000) -> list[dict[str, Any]]:
    """Patients (id, source, external id) for pickers, most recent first."""
    return list(lib.query("SELECT * FROM patient ORDER BY created_at DESC, id LIMIT ?", [limit]))


def patient_words(lib: Library, limit: int = 5000) -> list[str]:
    """What a patient field completes: each recent patient's id, and a local patient's
    own number too (most recent first)."""
    words = []
    for p in patients(lib, limit):
        words.append(p["id"])
        if p["source"] == "local" and p["external_id"]:
            words.append(p["external_id"])
    return words


def lesions_of(lib: Library, patient_id: str) -> list[dict[str, Any]]:
    return list(
        lib.query("SELECT * FROM lesion WHERE patient_id = ? ORDER BY created_at", [patient_id])
    )


def same_lesion(lib: Library, image_id: str) -> list[dict[str, Any]]:
    """Other images of the same lesion (or, without a lesion, the same patient), oldest first."""
    row = lib.conn.execute(
        "SELECT lesion_id, patient_id FROM image WHERE id = ?", (image_id,)
    ).fetchone()
    if row is None:
        return []
    column, value = ("lesion_id", row[0]) if row[0] else ("patient_id", row[1])
    if value is None:
        return []
    return list(
        lib.query(
            f"SELECT * FROM image WHERE {column} = ? AND id != ? "
            "ORDER BY coalesce(captured_at, imported_at), id",
            [value, image_id],
        )
    )


def distinct_devices(lib: Library, limit: int = 200) -> list[str]:
    """Device names present in the library (see ``query.device_name``), most frequent first."""
    rows = lib.conn.execute(
        f"SELECT {DEVICE_SQL} AS d, count(*) AS n FROM image WHERE d IS NOT NULL "
        "GROUP BY d ORDER BY n DESC, d LIMIT ?",
        (limit,),
    )
    return [r[0] for r in rows]


def current_tones(lib: Library, image_id: str) -> dict[str, dict[str, Any] | None]:
    """The current manual and estimated skin-tone rows of an image."""
    out: dict[str, dict[str, Any] | None] = {"manual": None, "estimated": None}
    for row in lib.query(
        "SELECT * FROM skin_tone WHERE image_id = ? AND is_current ORDER BY id", [image_id]
    ):
        out[row["method"]] = row
    return out


def describe_tone(tones: dict[str, dict[str, Any] | None], scale: str) -> str | None:
    """How one scale's skin tone reads for a person, with where it came from.

    ``tones`` is :func:`current_tones`' result. A rating names its rater; an estimate
    says it is one, with its ITA and confidence; both show when both exist.
    """

    def value(row: dict[str, Any] | None) -> str | None:
        if row is None or row.get(scale) is None:
            return None
        v = row[scale]
        return taxonomy.fitzpatrick_roman(v) if scale == "fitzpatrick" else str(v)

    rated, estimate = value(tones.get("manual")), value(tones.get("estimated"))
    parts = []
    if rated:
        parts.append(f"{rated} — rated by {tones['manual']['rater']}")  # type: ignore[index]
    if estimate:
        est = tones["estimated"] or {}
        detail = []
        if est.get("ita") is not None:
            detail.append(f"ITA {est['ita']:.0f}°")
        if est.get("confidence") is not None:
            detail.append(f"{est['confidence']:.0%} sure")
        suffix = f" ({', '.join(detail)})" if detail else ""
        parts.append(
            f"{estimate} — estimated{suffix}" if not rated else f"estimate {estimate}{suffix}"
        )
    return "; ".join(parts) or None


# -- dashboard -------------------------------------------------------------------------------


@dataclass
class DashboardStats:
    """Counts behind the dashboard (real images only; synthetic ones counted apart).

    Skin-tone tables count ratings; estimates are counted apart, never as ratings."""

    total: int = 0
    labelled: int = 0
    synthetic: int = 0
    by_diagnosis: dict[str | None, int] = field(default_factory=dict)
    dx_fitzpatrick: dict[tuple[str | None, int | None], int] = field(default_factory=dict)
    dx_monk: dict[tuple[str | None, int | None], int] = field(default_factory=dict)
    fitzpatrick: dict[int | None, int] = field(default_factory=dict)  # rated only
    monk: dict[int | None, int] = field(default_factory=dict)  # rated only
    # Images with no rating but an automatic estimate, per estimated value: counted apart.
    fitzpatrick_estimated: dict[int, int] = field(default_factory=dict)
    monk_estimated: dict[int, int] = field(default_factory=dict)
    devices: list[tuple[str, int]] = field(default_factory=list)
    modality: dict[str, int] = field(default_factory=dict)  # recorded only
    # Images whose modality the detector chose (sure) and those it could not decide, per
    # guessed modality: counted apart, never as recorded.
    modality_detected: dict[str, int] = field(default_factory=dict)
    modality_unsure: dict[str, int] = field(default_factory=dict)
    quality: dict[str, int] = field(default_factory=dict)  # pass/warn/fail/unchecked
    datasets: dict[str, int] = field(default_factory=dict)
    # (estimated meta-domain or None = unassigned, diagnosis) -> images (schema 13)
    dx_domain: dict[tuple[str | None, str | None], int] = field(default_factory=dict)
    domain_looks: dict[str, str] = field(default_factory=dict)  # domain -> its description

    @property
    def labelled_fraction(self) -> float:
        return self.labelled / self.total if self.total else 0.0

    @property
    def fitzpatrick_rated(self) -> int:
        return self.total - self.fitzpatrick.get(None, 0)

    @property
    def fitzpatrick_estimated_only(self) -> int:
        return sum(self.fitzpatrick_estimated.values())


def dashboard_stats(lib: Library, flt: ImageFilter | None = None) -> DashboardStats:
    """Everything the dashboard draws, for the real (non-synthetic) images matching ``flt``."""
    base = flt or ImageFilter()
    real = replace(base, synthetic=False)
    stats = DashboardStats()
    for r in lib.counts(["diagnosis", "fitzpatrick", "monk"], real):
        dx, fitz, monk, n = r["diagnosis"], r["fitzpatrick"], r["monk"], r["n"]
        stats.total += n
        stats.labelled += n if dx else 0
        _add(stats.by_diagnosis, dx, n)
        _add(stats.dx_fitzpatrick, (dx, fitz), n)
        _add(stats.dx_monk, (dx, monk), n)
        _add(stats.fitzpatrick, fitz, n)
        _add(stats.monk, monk, n)
    for scale, table in (
        ("fitzpatrick", stats.fitzpatrick_estimated),
        ("monk", stats.monk_estimated),
    ):
        for r in lib.counts([scale, f"{scale}_est"], real):
            if r[scale] is None and r[f"{scale}_est"] is not None:
                table[r[f"{scale}_est"]] = r["n"]
    stats.synthetic = lib.count(replace(base, synthetic=True))
    tables = {
        "recorded": stats.modality,
        "detected": stats.modality_detected,
        "unsure": stats.modality_unsure,
    }
    for r in lib.counts(["modality", "modality_method"], real):
        tables[r["modality_method"]][r["modality"]] = r["n"]
    for r in lib.counts(["dataset"], real):
        stats.datasets[r["dataset"] or "own images"] = r["n"]
    for r in lib.counts(["meta_domain", "diagnosis"], real):
        stats.dx_domain[(r["meta_domain"], r["diagnosis"])] = r["n"]
    if any(d for d, _ in stats.dx_domain):
        stats.domain_looks = {
            r["name"]: r["description"]
            for r in lib.query(
                "SELECT d.name, d.description FROM meta_domain d WHERE EXISTS (SELECT 1 FROM "
                "image WHERE image.meta_domain = d.name AND image.meta_domain_version = d.version)"
            )
        }
    devices = lib.counts(["device"], real)
    stats.devices = sorted(
        ((r["device"] or "unknown device", r["n"]) for r in devices), key=lambda d: (-d[1], d[0])
    )
    stats.quality = _quality_counts(lib, real, stats.total)
    return stats


def _add(table: dict[Any, int], key: Any, n: int) -> None:
    table[key] = table.get(key, 0) + n


def _quality_counts(lib: Library, flt: ImageFilter, total: int) -> dict[str, int]:
    where, params = flt.where()
    rows = lib.conn.execute(
        f"SELECT w, count(*) FROM (SELECT {_WORST_SQL} AS w FROM quality "
        f"WHERE image_id IN (SELECT id FROM image WHERE {where}) GROUP BY image_id) GROUP BY w",
        params,
    ).fetchall()
    out = {"pass": 0, "warn": 0, "fail": 0}
    for rank, n in rows:
        out[_RANK_VERDICT[int(rank)]] = int(n)
    out["unchecked"] = total - sum(out.values())
    return out


FITZPATRICK_BANDS = (("I-II", (1, 2)), ("III-IV", (3, 4)), ("V-VI", (5, 6)))
MONK_BANDS = (("1-3", (1, 2, 3)), ("4-7", (4, 5, 6, 7)), ("8-10", (8, 9, 10)))


@dataclass(frozen=True)
class Gap:
    """A hole in the dataset: a diagnosis with few or no images on a skin-tone band."""

    diagnosis: str
    scale: str  # "Fitzpatrick" or "Monk"
    band: str
    count: int

    def text(self) -> str:
        name = taxonomy.diagnoses()[self.diagnosis].name.lower()
        if self.count == 0:
            return f"no {name} on {self.scale} {self.band}"
        return (
            f"only {self.count} {name} image{'s' * (self.count != 1)} on {self.scale} {self.band}"
        )


def coverage_gaps(stats: DashboardStats, min_images: int = 10) -> list[Gap]:
    """Diagnoses with fewer than ``min_images`` on a skin-tone band, malignant ones first."""
    order = [c for c in taxonomy.diagnoses() if c != taxonomy.OTHER]
    codes = sorted(order, key=lambda c: (not taxonomy.diagnoses()[c].malignant, order.index(c)))
    gaps: list[Gap] = []
    for scale, table, bands in (
        ("Fitzpatrick", stats.dx_fitzpatrick, FITZPATRICK_BANDS),
        ("Monk", stats.dx_monk, MONK_BANDS),
    ):
        if not any(k[1] is not None for k in table):
            continue  # no skin tones on this scale at all: one gap would say nothing
        for code in codes:
            for band, values in bands:
                n = sum(table.get((code, v), 0) for v in values)
                if n < min_images:
                    gaps.append(Gap(code, scale, band, n))
    return gaps


# -- models ----------------------------------------------------------------------------------


def model_rows(lib: Library) -> list[dict[str, Any]]:
    """Registered models with their JSON columns decoded."""
    rows = lib.models()
    for row in rows:
        for key in ("parents", "training_set", "params", "metrics"):
            row[key] = _json(row.get(key))
    return rows


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Figure:
    """One reported number with its 95 % interval and the images behind it."""

    label: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    missing: str = ""  # what to say when there is no value (default: too few images)

    def text(self) -> str:
        if self.value is None:
            return self.missing or f"n={self.n}: too few images to report"
        interval = f" [{self.low:.2f}, {self.high:.2f}]" if self.low is not None else ""
        return f"{self.value:.3f}{interval}, n={self.n}"


# Groupings a report breaks its figures down by, with how a person reads them.
REPORT_GROUPINGS = (
    ("fitzpatrick", "Per skin type (rated Fitzpatrick)"),
    ("device", "Per device"),
    ("modality", "Per modality"),
    ("domain", "Per domain (modality / source)"),
    ("meta_domain", "Per visual meta-domain (estimated)"),
)


@dataclass
class ModelReport:
    """A registered model's metrics on one split, as the Models tab shows them."""

    split: str
    overall: dict[str, Figure] = field(default_factory=dict)  # balanced accuracy, AUROC, ECE
    groups: dict[str, list[Figure]] = field(default_factory=dict)  # balanced accuracy per group
    per_class: list[tuple[str, float | None, float | None, int]] = field(default_factory=list)
    note: str = ""  # e.g. the model's own training images left out of an evaluation

    @property
    def empty(self) -> bool:
        return not self.overall


def _figure(label: str, entry: Any, n: int) -> Figure:
    if not isinstance(entry, dict):
        return Figure(label, entry if isinstance(entry, int | float) else None, None, None, n)
    ci = entry.get("ci") or [None, None]
    return Figure(label, entry.get("value"), ci[0], ci[1], n)


def seen_note(report: Any) -> str:
    """What a stored evaluation (``models evaluate``) says about the model's own training
    and validation images: left out (the default) or scored anyway; '' if the query held
    none."""
    if not isinstance(report, dict):
        return ""
    if report.get("includes_seen"):
        return (
            f"includes {report['includes_seen']} of the model's training or validation "
            "images (asked): the figures flatter it"
        )
    if report.get("left_out_seen"):
        return f"{report['left_out_seen']} of the model's training or validation images left out"
    return ""


def model_report(metrics: Any, split: str = "test") -> ModelReport:
    """Read the report a fine-tuning run records (``{split: {"overall": {...},
    grouping: {group: {...}}}}``, each scalar ``{"value", "ci"}``) for one split."""
    report = ModelReport(split)
    section = metrics.get(split) if isinstance(metrics, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("overall"), dict):
        return report
    overall = section["overall"]
    report.note = seen_note(section)
    n = int(overall.get("n") or 0)
    for key, label in (
        ("balanced_accuracy", "balanced accuracy"),
        ("accuracy", "accuracy"),
        ("macro_auroc", "macro AUROC"),
        ("ece", "calibration error (ECE)"),
    ):
        if key in overall:
            report.overall[key] = _figure(label, overall[key], n)
    malignant = overall.get("malignant")
    if isinstance(malignant, dict):
        label = (
            f"{malignant.get('class')} sensitivity at "
            f"{malignant.get('specificity', 0):.0%} specificity"
        )
        report.overall["malignant"] = _figure(
            label, malignant.get("sensitivity_at_specificity"), int(malignant.get("n_positive", 0))
        )
    for grouping, _ in REPORT_GROUPINGS:
        per = section.get(grouping)
        if isinstance(per, dict):
            report.groups[grouping] = [
                _figure(str(group), entry.get("balanced_accuracy"), int(entry.get("n") or 0))
                for group, entry in per.items()
                if isinstance(entry, dict)
            ]
    for code, entry in (overall.get("per_class") or {}).items():
        if isinstance(entry, dict):
            report.per_class.append(
                (code, entry.get("sensitivity"), entry.get("specificity"), int(entry.get("n", 0)))
            )
    return report


def readable_params(params: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A model's parameters as (name, value) rows: nested options as ``loop.lr``,
    lists shortened, so a person can read them in a table."""
    rows: list[tuple[str, str]] = []
    if not isinstance(params, dict):
        return rows
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += readable_params(value, f"{name}.") if value else [(name, "—")]
        elif isinstance(value, list):
            shown = ", ".join(map(str, value[:8])) + (" …" if len(value) > 8 else "")
            rows.append((name, shown or "—"))
        else:
            rows.append((name, "—" if value is None else str(value)))
    return rows


def training_size(training_set: Any) -> int:
    """How many images a model was trained and evaluated on (every split)."""
    if not isinstance(training_set, dict):
        return 0
    split = training_set.get("split")
    if isinstance(split, dict):
        return sum(len(v) for v in split.values() if isinstance(v, list))
    ids = training_set.get("image_ids") or training_set.get("ids") or []
    return len(ids) if isinstance(ids, list) else 0


def lineage(lib: Library, model_id: str) -> list[dict[str, Any]]:
    """The model and its ancestors (following ``parents``), nearest first."""
    by_id = {m["id"]: m for m in model_rows(lib)}
    chain: list[dict[str, Any]] = []
    todo = [model_id]
    seen: set[str] = set()
    while todo:
        current = todo.pop(0)
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        chain.append(by_id[current])
        todo += [p for p in by_id[current]["parents"] or [] if isinstance(p, str)]
    return chain


# -- jobs ------------------------------------------------------------------------------------

LOG_TAIL_CHARS = 20_000


def job_rows(lib: Library, limit: int = 100) -> list[dict[str, Any]]:
    """Recent jobs, newest first, with the tail of their log and their result decoded."""
    rows = list(
        lib.query(
            "SELECT id, kind, status, params, progress, message, "
            f"substr(log, -{LOG_TAIL_CHARS}) AS log, result, model_id, error, "
            "created_at, started_at, finished_at FROM job ORDER BY id DESC LIMIT ?",
            [limit],
        )
    )
    for row in rows:
        row["result"] = _json(row["result"])
        row["params"] = _json(row["params"])
    return rows
