"""An experiment's tables from its runs' recorded metrics (numpy only: CLI, GUI, export).

Each scheme's figure is the mean over seeds with a 95 % t-interval over the seeds (the
seeds vary both the split and the training); with one seed, the run's own bootstrap
interval over images is shown instead and the table says so.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dermdesk.ml.imbalance_study import LEGACY_MAE_IMAGES, MAE_POOL_WORDS

UNIT = (0.0, 1.0)  # bounds of a proportion
# Two-sided 95 % Student t quantiles by degrees of freedom (seeds - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class Estimate:
    mean: float | None
    low: float | None
    high: float | None
    n: int  # seeds
    per_seed: list[float] = field(default_factory=list)

    def text(self) -> str:
        if self.mean is None:
            return "—"
        if self.low is None:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def over_seeds(
    values: Sequence[float | None],
    bootstrap: Sequence[Any] = (),
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """Mean and 95 % t-interval over seeds (a single seed: its bootstrap interval); a
    proportion's interval is cut to ``bounds`` (3 seeds make wide t-intervals)."""
    est = _over_seeds(values, bootstrap)
    if bounds is not None and est.low is not None and est.high is not None:
        est.low, est.high = max(bounds[0], est.low), min(bounds[1], est.high)
    return est


def _over_seeds(values: Sequence[float | None], bootstrap: Sequence[Any] = ()) -> Estimate:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return Estimate(None, None, None, 0)
    mean = float(np.mean(vals))
    if len(vals) == 1:
        ci = bootstrap[0] if bootstrap and bootstrap[0] else None
        return Estimate(mean, ci[0] if ci else None, ci[1] if ci else None, 1, vals)
    half = _T95.get(len(vals) - 1, 1.96) * float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    return Estimate(mean, mean - half, mean + half, len(vals), vals)


def _bacc(
    run: dict[str, Any], eval_set: str, grouping: str | None = None, group: str | None = None
) -> tuple[float | None, Any]:
    section = (run.get("metrics") or {}).get(eval_set) or {}
    entry = section.get("overall") if grouping is None else (section.get(grouping) or {}).get(group)
    if not isinstance(entry, dict) or "balanced_accuracy" not in entry:
        return None, None
    ba = entry["balanced_accuracy"]
    return ba.get("value"), ba.get("ci")


@dataclass
class GapTables:
    """What the gap study reports."""

    schemes: list[dict[str, Any]]  # scheme, dermoscopic_val, clinical_test, gap, seeds
    forgetting: Estimate
    curve: list[dict[str, Any]]  # fraction, clinical_test, per Fitzpatrick group
    domains: list[dict[str, Any]]  # scheme, domain, balanced accuracy
    seeds: int
    runs_done: int
    runs_total: int
    ablation: list[dict[str, Any]] = field(default_factory=list)  # stages + a scheme's row
    strength: list[dict[str, Any]] = field(default_factory=list)  # lwf_weight + a scheme's row

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=lambda o: asdict(o)))


MAIN_SCHEMES = ("FullDermoscopic", "FullClinical", "FineClinic", "Joint")
CURVE_SCHEMES = (("Curve10", 0.10), ("Curve25", 0.25), ("Curve50", 0.50), ("FineClinic", 1.0))


def gap_tables(runs: Sequence[dict[str, Any]]) -> GapTables:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["name"], []).append(r)
    done = [r for r in runs if r["status"] == "done"]
    seeds = len({r["seed"] for r in runs})
    schemes = []
    for name in [
        *(n for n in MAIN_SCHEMES if n in by),
        *(n for n in by if n not in MAIN_SCHEMES and not n.startswith("Curve")),
    ]:
        group = [r for r in by.get(name, []) if r["status"] == "done"]
        derm = [_bacc(r, "dermoscopic_val") for r in group]
        clin = [_bacc(r, "clinical_test") for r in group]
        gaps = [
            d[0] - c[0]
            for d, c in zip(derm, clin, strict=True)
            if d[0] is not None and c[0] is not None
        ]
        schemes.append(
            {
                "scheme": name,
                "dermoscopic_val": over_seeds([d[0] for d in derm], [d[1] for d in derm], UNIT),
                "clinical_test": over_seeds([c[0] for c in clin], [c[1] for c in clin], UNIT),
                "gap": over_seeds(gaps),
                "forgetting": _forgetting(by, name)
                if name != "FullDermoscopic"
                else Estimate(None, None, None, 0),
                "seeds": len(group),
            }
        )
    forgetting = _forgetting(by)
    curve = _curve(by)
    domains = _domains(by)
    ablation = _ablation(schemes)
    strength = _strength(schemes, by)
    return GapTables(
        schemes, forgetting, curve, domains, seeds, len(done), len(runs), ablation, strength
    )


# The adaptation's ablation (issue 18): what each stage adds to fine-tuning on the clinic.
ABLATION = (
    ("neither (FineClinic)", "FineClinic"),
    ("stage 1 only", "FineClinic+Stage1"),
    ("stage 2 only", "FineClinic+Stage2"),
    ("both (FineClinic+MetaDomain)", "FineClinic+MetaDomain"),
)


def _ablation(schemes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["scheme"]: r for r in schemes}
    if sum(name in by for _, name in ABLATION) < 2:
        return []  # one row is no comparison (a plan with some schemes left out)
    return [{"stages": words, **by[name]} for words, name in ABLATION if name in by]


def _strength(
    schemes: list[dict[str, Any]], by: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Both stages at each LwF weight (the base run and the ``lwf_sweep`` runs), by weight;
    empty when nothing was swept."""
    rows = []
    for r in schemes:
        name = r["scheme"]
        if not name.startswith("FineClinic+MetaDomain"):
            continue
        weight = (by[name][0].get("params") or {}).get("lwf_weight")
        if weight is not None:
            rows.append({"lwf_weight": float(weight), **r})
    return sorted(rows, key=lambda r: r["lwf_weight"]) if len(rows) > 1 else []


def _forgetting(by: dict[str, list[dict[str, Any]]], scheme: str = "FineClinic") -> Estimate:
    """FullDermoscopic's dermoscopic-val score minus the scheme's, paired by seed: what
    the dermoscopic model's knowledge lost (negative: it gained)."""
    full = {
        r["seed"]: _bacc(r, "dermoscopic_val")[0]
        for r in by.get("FullDermoscopic", [])
        if r["status"] == "done"
    }
    fine = {
        r["seed"]: _bacc(r, "dermoscopic_val")[0]
        for r in by.get(scheme, [])
        if r["status"] == "done"
    }
    pairs: list[float | None] = []
    for seed, value in full.items():
        other = fine.get(seed)
        if value is not None and other is not None:
            pairs.append(value - other)
    return over_seeds(pairs)


def _curve(by: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    if not any(name in by for name, _ in CURVE_SCHEMES if name != "FineClinic"):
        return []  # planned without the curve (--set curve=false): FineClinic alone is no curve
    rows = []
    for name, fraction in CURVE_SCHEMES:
        group = [r for r in by.get(name, []) if r["status"] == "done"]
        if not group:
            continue
        clin = [_bacc(r, "clinical_test") for r in group]
        fitz = {}
        for g in ("I-II", "III-IV", "V-VI", "unknown"):
            vals = [_bacc(r, "clinical_test", "fitzpatrick", g) for r in group]
            est = over_seeds([v[0] for v in vals], [v[1] for v in vals])
            n = _group_n(group[0], "clinical_test", "fitzpatrick", g)
            fitz[g] = {"estimate": est, "n": n}
        rows.append(
            {
                "fraction": fraction,
                "scheme": name,
                "train_images": round(
                    float(np.mean([len((r.get("split") or {}).get("train", [])) for r in group]))
                    or 0
                ),
                "clinical_test": over_seeds([c[0] for c in clin], [c[1] for c in clin]),
                "fitzpatrick": fitz,
            }
        )
    return rows


def _group_n(run: dict[str, Any], eval_set: str, grouping: str, group: str) -> int:
    entry = (((run.get("metrics") or {}).get(eval_set) or {}).get(grouping) or {}).get(group)
    return int(entry.get("n", 0)) if isinstance(entry, dict) else 0


def _domains(by: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name in (*MAIN_SCHEMES, "Joint+MetaDomain", "FineClinic+MetaDomain"):
        group = [r for r in by.get(name, []) if r["status"] == "done"]
        if not group:
            continue
        names = set()
        for r in group:
            for eval_set in ("dermoscopic_val", "clinical_test"):
                names |= set(((r.get("metrics") or {}).get(eval_set) or {}).get("domain", {}))
        for domain in sorted(names):
            eval_set = "dermoscopic_val" if domain.startswith("dermoscopic") else "clinical_test"
            vals = [_bacc(r, eval_set, "domain", domain) for r in group]
            rows.append(
                {
                    "scheme": name,
                    "domain": domain,
                    "n": _group_n(group[0], eval_set, "domain", domain),
                    "balanced_accuracy": over_seeds(
                        [v[0] for v in vals], [v[1] for v in vals], UNIT
                    ),
                }
            )
    return rows


def wall_time(seconds: float) -> str:
    """``42 s`` below two minutes, else ``29.5 min``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def mae_budget(recipe: Mapping[str, Any]) -> str:
    """What the imbalance study's MAE runs read and for how long, in words."""
    epochs = recipe["mae_epochs"]
    if recipe.get("mae_images", LEGACY_MAE_IMAGES) == "pool":
        return (
            f"{epochs} epochs' worth of steps over the training images, drawn from the pool "
            f"({MAE_POOL_WORDS})"
        )
    return f"{epochs} epochs on the training images"


def profile_note(exp: dict[str, Any], runs: Sequence[dict[str, Any]]) -> str:
    """One line under the tables: the recipe, the code version and the wall time."""
    recipe = exp["params"]["recipe"]
    if exp.get("study") == "imbalance":
        return (
            f"Profile {exp['profile']}: at {recipe['size']} px, student {recipe['arch']}, "
            f"teacher {recipe['teacher_arch']}, baseline {recipe['baseline_arch']}; MAE "
            f"{mae_budget(recipe)} (mask {recipe['mask_ratio']}, lr {recipe['mae_lr']}), "
            f"classifiers {recipe['epochs']} epochs (ViT lr {recipe['vit_lr']}, CNN lr "
            f"{recipe['lr']}), batch {recipe['batch']}, distillation T={recipe['temperature']} "
            f"alpha={recipe['alpha']}; code {exp['code_version']}; wall time "
            f"{wall_time(sum(r['seconds'] or 0 for r in runs))} over {len(runs)} runs."
        )
    backbone = exp["params"].get("backbone")
    start = ""
    if backbone:
        seen = backbone.get("evaluation_images_seen") or 0
        start = f" From-scratch runs start from backbone {backbone['id']} ({backbone['name']})" + (
            f", which was pretrained on {seen} of the evaluation images (optimistic)."
            if seen
            else ", pretrained on none of the evaluation images."
        )
    return (
        f"Profile {exp['profile']}: {recipe['arch']} at {recipe['size']} px, "
        f"{recipe['epochs']} epochs "
        f"({recipe['finetune_epochs']} fine-tuning), batch {recipe['batch']}, lr {recipe['lr']} "
        f"(fine-tuning {recipe['finetune_lr']}), code {exp['code_version']}; wall time "
        f"{wall_time(sum(r['seconds'] or 0 for r in runs))} over {len(runs)} runs." + start
    )


# -- output -----------------------------------------------------------------------------------


def interval_words(seeds: int, partial: bool = False) -> str:
    """What the tables' intervals are, in words (``partial``: some runs not done yet, so
    a row may have one seed and its bootstrap interval)."""
    if seeds > 1:
        return "95 % t-interval over seeds" + (
            "; a row with one seed done so far: its bootstrap interval over the test images"
            if partial
            else ""
        )
    return "one seed: the 95 % bootstrap interval over its test images"


def markdown(title: str, tables: GapTables, note: str = "") -> str:
    """The tables as Markdown (what `experiment show` and `export --format md` print)."""
    interval = interval_words(tables.seeds, tables.runs_done < tables.runs_total)
    out = [
        f"## {title}",
        "",
        f"{tables.runs_done} of {tables.runs_total} runs done, {tables.seeds} seed(s); "
        f"balanced accuracy, mean [{interval}].",
    ]
    if note:
        out += ["", note]
    out += [
        "",
        "| scheme | dermoscopic-val | clinical-test | gap (val − test) | forgetting | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for r in tables.schemes:
        out.append(
            f"| {r['scheme']} | {r['dermoscopic_val'].text()} | {r['clinical_test'].text()} | "
            f"{r['gap'].text()} | {r['forgetting'].text()} | {r['seeds']} |"
        )
    fine = any(r["scheme"] == "FineClinic" for r in tables.schemes)
    out += [
        "",
        "Forgetting: FullDermoscopic's dermoscopic-val score minus the scheme's, paired by seed"
        + (f" (FineClinic: {tables.forgetting.text()})." if fine else "."),
    ]
    if tables.ablation:
        out += [
            "",
            "Adaptation ablation (fine-tuning on the clinical 30 %; stage 1 = multi-transform "
            "contrastive training on both domains, stage 2 = guided tuning, LwF + L2-SP):",
            "",
            "| stages | dermoscopic-val | clinical-test | forgetting | seeds |",
            "|---|---|---|---|---|",
        ]
        for r in tables.ablation:
            out.append(
                f"| {r['stages']} | {r['dermoscopic_val'].text()} | "
                f"{r['clinical_test'].text()} | {r['forgetting'].text()} | {r['seeds']} |"
            )
    if tables.strength:
        out += [
            "",
            "Stage-2 strength (both stages; LwF weight on keeping the stage-1 model's outputs "
            "on the dermoscopic training images; every weight set before the run, all shown):",
            "",
            "| LwF weight | dermoscopic-val | clinical-test | forgetting | seeds |",
            "|---|---|---|---|---|",
        ]
        for r in tables.strength:
            out.append(
                f"| {r['lwf_weight']:g} | {r['dermoscopic_val'].text()} | "
                f"{r['clinical_test'].text()} | {r['forgetting'].text()} | {r['seeds']} |"
            )
    if tables.curve:
        out += [
            "",
            "Local-data curve: FullDermoscopic fine-tuned on a share of the clinical "
            "training patients (clinical-test):",
            "",
        ]
        out += [
            "| share | train images | clinical-test | I-II | III-IV | V-VI | unknown |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in tables.curve:
            cells = [
                f"{r['fitzpatrick'][g]['estimate'].text()} (n={r['fitzpatrick'][g]['n']})"
                for g in ("I-II", "III-IV", "V-VI", "unknown")
            ]
            out.append(
                f"| {r['fraction']:.0%} | {r['train_images']} | {r['clinical_test'].text()} | "
                + " | ".join(cells)
                + " |"
            )
    if tables.domains:
        out += [
            "",
            "Per domain (modality/source):",
            "",
            "| scheme | domain | images | balanced accuracy |",
            "|---|---|---|---|",
        ]
        for r in tables.domains:
            out.append(
                f"| {r['scheme']} | {r['domain']} | {r['n']} | {r['balanced_accuracy'].text()} |"
            )
    return "\n".join(out) + "\n"


def csv_rows(tables: GapTables) -> str:
    """One row per scheme and per curve point (mean, low, high), for spreadsheets."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "scheme", "measure", "mean", "low", "high", "seeds"])
    for r in tables.schemes:
        for measure in ("dermoscopic_val", "clinical_test", "gap", "forgetting"):
            e: Estimate = r[measure]
            w.writerow(["schemes", r["scheme"], measure, e.mean, e.low, e.high, e.n])
    e = tables.forgetting
    w.writerow(
        ["forgetting", "FullDermoscopic-FineClinic", "dermoscopic_val", e.mean, e.low, e.high, e.n]
    )
    for r in tables.curve:
        e = r["clinical_test"]
        w.writerow(
            ["curve", r["scheme"], f"clinical_test@{r['fraction']:.2f}", e.mean, e.low, e.high, e.n]
        )
    return buf.getvalue()


# -- the imbalance study ----------------------------------------------------------------------

IMBALANCE_EVALS = ("dermoscopic_val", "clinical_test")
IMBALANCE_MINORITY = ("MEL", "BCC", "ACK")


@dataclass
class ImbalanceTables:
    """What the imbalance study reports (see :mod:`dermdesk.ml.imbalance_study`)."""

    rows: list[dict[str, Any]]  # scheme, arch, per eval set: balanced accuracy, minority
    pretraining: list[dict[str, Any]]  # run, arch, first and final MAE loss, images/s
    comparisons: list[dict[str, Any]]  # a - b, paired by seed, per eval set
    seeds: int
    runs_done: int
    runs_total: int

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=lambda o: asdict(o)))


def _sensitivity(run: dict[str, Any], eval_set: str, code: str) -> float | None:
    section = ((run.get("metrics") or {}).get(eval_set) or {}).get("overall") or {}
    return ((section.get("per_class") or {}).get(code) or {}).get("sensitivity")


def _paired(by: dict[str, list[dict[str, Any]]], a: str, b: str, eval_set: str) -> Estimate:
    """Scheme a minus scheme b on one evaluation set, paired by seed."""
    first = {r["seed"]: _bacc(r, eval_set)[0] for r in by.get(a, []) if r["status"] == "done"}
    second = {r["seed"]: _bacc(r, eval_set)[0] for r in by.get(b, []) if r["status"] == "done"}
    diffs: list[float | None] = []
    for seed, value in first.items():
        other = second.get(seed)
        if value is not None and other is not None:
            diffs.append(value - other)
    return over_seeds(diffs)


IMBALANCE_COMPARISONS = (
    ("MAEViT", "ScratchViT", "what MAE pretraining adds to the student ViT"),
    ("MAEViT", "ScratchResNet18", "goal: the MAE-pretrained ViT beats the CNN (> 0)"),
    ("Distilled", "MAETeacher", "goal: the student within 2 points of its teacher (> -0.02)"),
    ("Distilled", "MAEViT", "what distillation adds to the MAE-pretrained student"),
)


def imbalance_tables(runs: Sequence[dict[str, Any]]) -> ImbalanceTables:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["name"], []).append(r)
    rows = []
    pretraining = []
    for name, group in by.items():
        done = [r for r in group if r["status"] == "done"]
        kind = (group[0].get("params") or {}).get("kind", "classify")
        arch = (group[0].get("params") or {}).get("arch", "")
        if kind == "mae":
            stats = [(r.get("metrics") or {}).get("pretraining") or {} for r in done]
            pretraining.append(
                {
                    "run": name,
                    "arch": arch,
                    "first_loss": over_seeds([s.get("first_loss") for s in stats]),
                    "final_loss": over_seeds([s.get("final_loss") for s in stats]),
                    "images_per_second": over_seeds([s.get("images_per_second") for s in stats]),
                    "images": over_seeds([s.get("images") for s in stats]),
                    "images_seen": over_seeds([s.get("images_seen") for s in stats]),
                    "reads": (group[0].get("params") or {}).get("mae_images", LEGACY_MAE_IMAGES),
                    "seeds": len(done),
                }
            )
            continue
        row: dict[str, Any] = {"scheme": name, "arch": arch, "seeds": len(done)}
        for eval_set in IMBALANCE_EVALS:
            vals = [_bacc(r, eval_set) for r in done]
            row[eval_set] = over_seeds([v[0] for v in vals], [v[1] for v in vals], UNIT)
            row[f"{eval_set}_minority"] = {
                code: over_seeds([_sensitivity(r, eval_set, code) for r in done], (), UNIT)
                for code in IMBALANCE_MINORITY
            }
        rows.append(row)
    comparisons = [
        {
            "a": a,
            "b": b,
            "meaning": meaning,
            **{eval_set: _paired(by, a, b, eval_set) for eval_set in IMBALANCE_EVALS},
        }
        for a, b, meaning in IMBALANCE_COMPARISONS
        if a in by and b in by
    ]
    done_runs = sum(1 for r in runs if r["status"] == "done")
    seeds = len({r["seed"] for r in runs})
    return ImbalanceTables(rows, pretraining, comparisons, seeds, done_runs, len(runs))


def imbalance_markdown(title: str, tables: ImbalanceTables, note: str = "") -> str:
    interval = interval_words(tables.seeds, tables.runs_done < tables.runs_total)
    out = [
        f"## {title}",
        "",
        f"{tables.runs_done} of {tables.runs_total} runs done, {tables.seeds} seed(s); every "
        f"classifier trained jointly on dermoscopic-train + the clinical 30 %; balanced "
        f"accuracy, mean [{interval}].",
    ]
    if note:
        out += ["", note]
    out += [
        "",
        "| scheme | arch | dermoscopic-val | clinical-test | seeds |",
        "|---|---|---|---|---|",
    ]
    for r in tables.rows:
        out.append(
            f"| {r['scheme']} | {r['arch']} | {r['dermoscopic_val'].text()} | "
            f"{r['clinical_test'].text()} | {r['seeds']} |"
        )
    out += [
        "",
        "Minority-class sensitivity (recall), mean over seeds [95 % t-interval]:",
        "",
        "| scheme | "
        + " | ".join(f"{c} {d}" for d in ("derm", "clin") for c in IMBALANCE_MINORITY)
        + " |",
        "|---|" + "---|" * (2 * len(IMBALANCE_MINORITY)),
    ]
    for r in tables.rows:
        cells = [
            r[f"{eval_set}_minority"][c].text()
            for eval_set in IMBALANCE_EVALS
            for c in IMBALANCE_MINORITY
        ]
        out.append(f"| {r['scheme']} | " + " | ".join(cells) + " |")
    if tables.comparisons:
        out += [
            "",
            "Paired by seed (difference in balanced accuracy, mean [95 % t-interval]):",
            "",
            "| comparison | dermoscopic-val | clinical-test | what it says |",
            "|---|---|---|---|",
        ]
        for c in tables.comparisons:
            out.append(
                f"| {c['a']} − {c['b']} | {c['dermoscopic_val'].text()} | "
                f"{c['clinical_test'].text()} | {c['meaning']} |"
            )
    if tables.pretraining:
        out += [
            "",
            "MAE pretraining (masked-patch loss on normalised pixels; reads the pool = "
            f"{MAE_POOL_WORDS}, or the training images only):",
            "",
            "| run | arch | reads | images | images seen | first loss | final loss | images/s "
            "| seeds |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for p in tables.pretraining:
            out.append(
                f"| {p['run']} | {p['arch']} | {p.get('reads', 'train')} | "
                f"{_count(p.get('images'))} | {_count(p.get('images_seen'))} | "
                f"{p['first_loss'].text()} | {p['final_loss'].text()} | "
                f"{p['images_per_second'].text()} | {p['seeds']} |"
            )
    return "\n".join(out) + "\n"


def _count(e: Estimate | None) -> str:
    """A per-seed count's mean, as a whole number ('-' when none was recorded)."""
    return "-" if e is None or e.mean is None else f"{e.mean:,.0f}"


def imbalance_csv(tables: ImbalanceTables) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["table", "scheme", "measure", "mean", "low", "high", "seeds"])
    for r in tables.rows:
        for eval_set in IMBALANCE_EVALS:
            e: Estimate = r[eval_set]
            w.writerow(["schemes", r["scheme"], eval_set, e.mean, e.low, e.high, e.n])
            for code, est in r[f"{eval_set}_minority"].items():
                w.writerow(
                    [
                        "minority",
                        r["scheme"],
                        f"{code}@{eval_set}",
                        est.mean,
                        est.low,
                        est.high,
                        est.n,
                    ]
                )
    for c in tables.comparisons:
        for eval_set in IMBALANCE_EVALS:
            e = c[eval_set]
            w.writerow(["paired", f"{c['a']}-{c['b']}", eval_set, e.mean, e.low, e.high, e.n])
    return buf.getvalue()
