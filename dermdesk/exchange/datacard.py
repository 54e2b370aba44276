"""The data card of an export (issue 16): Markdown, a self-contained HTML page, PNG charts.

Everything on it is counted from the exported rows: diagnosis against rated Fitzpatrick
type, rated Monk tone, device, modality and split; rated against estimated skin tone
(estimates are counted apart, never as ratings); the quality checks' verdicts; the gaps a
reader should know about (thin diagnosis x skin-type cells, missing patient ids, label
conflicts, leakage between splits); and a checklist in the spirit of CLEAR Derm
(Daneshjou et al., JAMA Dermatology 2022) filled from the library. Charts are drawn with
Pillow (no plotting dependency); the same export draws the same bytes.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from dermdesk import taxonomy
from dermdesk.library import Library
from dermdesk.library.db import id_chunks

if TYPE_CHECKING:
    from dermdesk.exchange.export import ExportPlan

THIN_CELL = 5  # a diagnosis x skin-type cell with fewer rated images is a known gap
TOP_DEVICES = 8


def _cross(
    rows: Sequence[Mapping[str, str]],
    column: str,
    values: Sequence[str] | None = None,
    empty: str = "unknown",
) -> tuple[list[str], list[str], list[list[int]]]:
    """Diagnosis (rows) x ``column`` (columns) counts."""
    dx_order = [*taxonomy.diagnoses()]
    counts = Counter((r["code"], r.get(column) or empty) for r in rows)
    diags = [d for d in [*dx_order, "unlabelled"] if any(k[0] == d for k in counts)]
    cols = list(values) if values is not None else sorted({k[1] for k in counts})
    if values is not None and any(k[1] == empty for k in counts) and empty not in cols:
        cols.append(empty)
    return diags, cols, [[counts.get((d, c), 0) for c in cols] for d in diags]


def _font(size: int) -> Any:
    return ImageFont.load_default(size=size)


def _label_width(names: Sequence[str], font: Any) -> int:
    return int(max([font.getlength(str(n)) for n in names] + [0]))


def heatmap_png(
    title: str, row_names: Sequence[str], col_names: Sequence[str], table: Sequence[Sequence[int]]
) -> bytes:
    """A count table as a heatmap with the numbers in the cells; column names written
    upwards so long device names stay readable."""
    font, small = _font(15), _font(13)
    names = [str(c)[:32] for c in col_names]
    cell_w, cell_h = 58, 28
    left = 20 + _label_width(row_names, small)
    # Names that fit a cell are written across; longer ones (devices) upwards.
    upright = _label_width(names, small) <= cell_w - 8
    top = 44 + (18 if upright else _label_width(names, small))
    width = max(left + cell_w * len(names) + 20, 20 + int(font.getlength(title)))
    height = top + cell_h * len(row_names) + 16
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 8), title, fill="black", font=font)
    peak = max([max(r) for r in table if r] + [1])
    for j, name in enumerate(names):
        if upright:
            draw.text((left + j * cell_w + 6, top - 22), name, fill="black", font=small)
            continue
        w = max(int(small.getlength(name)), 1)
        label = Image.new("RGB", (w + 4, 18), "white")
        ImageDraw.Draw(label).text((2, 1), name, fill="black", font=small)
        label = label.transpose(Image.Transpose.ROTATE_90)
        img.paste(label, (left + j * cell_w + cell_w // 2 - 9, top - 6 - label.height))
    for i, name in enumerate(row_names):
        draw.text((10, top + i * cell_h + 6), str(name), fill="black", font=small)
        for j, n in enumerate(table[i]):
            x, y = left + j * cell_w, top + i * cell_h
            shade = int(255 - 185 * (n / peak) ** 0.5) if n else 255
            fill = (shade, shade, 255) if n else (250, 235, 235)
            draw.rectangle(
                [x, y, x + cell_w - 2, y + cell_h - 2], fill=fill, outline=(210, 210, 210)
            )
            colour = "white" if n and n / peak > 0.45 else "black"
            draw.text((x + 6, y + 6), str(n), fill=colour, font=small)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def _md_table(
    row_names: Sequence[str],
    col_names: Sequence[str],
    table: Sequence[Sequence[int]],
    corner: str = "diagnosis",
) -> str:
    head = f"| {corner} | " + " | ".join(col_names) + " | total |"
    rule = "|---" * (len(col_names) + 2) + "|"
    body = [
        f"| {r} | " + " | ".join(str(n) for n in vals) + f" | {sum(vals)} |"
        for r, vals in zip(row_names, table, strict=True)
    ]
    return "\n".join([head, rule, *body])


def _quality(lib: Library, ids: Sequence[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for chunk in id_chunks(ids):
        marks = ", ".join("?" * len(chunk))
        for check, verdict, n in lib.conn.execute(
            f"SELECT check_name, verdict, count(*) FROM quality WHERE image_id IN ({marks}) "
            "GROUP BY check_name, verdict",
            chunk,
        ):
            entry = out.setdefault(check, {"pass": 0, "warn": 0, "fail": 0})
            entry[verdict] = entry.get(verdict, 0) + int(n)
    return dict(sorted(out.items()))


def _devices(rows: Sequence[Mapping[str, str]]) -> list[str]:
    common = [
        d for d, _ in Counter(r["device"] for r in rows if r["device"]).most_common(TOP_DEVICES)
    ]
    return sorted(common)


def build(lib: Library, plan: ExportPlan, rows: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """Everything the card shows, as plain data (tables, counts, gaps, checklist)."""
    from dermdesk.exchange.splits import leakage_report

    # Each row with its diagnosis code (the metadata rows carry names).
    rows = [
        dict(r, code=it.row.get("diagnosis") or "unlabelled")
        for it, r in zip(plan.items, rows, strict=True)
    ]
    n = len(rows)
    devices = _devices(rows)
    device_rows = [
        dict(r, device=r["device"] if r["device"] in devices else ("other" if r["device"] else ""))
        for r in rows
    ]
    tables = {
        "fitzpatrick": (
            "Diagnosis x rated Fitzpatrick type",
            _cross(rows, "fitzpatrick_skin_type", taxonomy.ROMAN, "unrated"),
        ),
        "monk": (
            "Diagnosis x rated Monk tone",
            _cross(rows, "monk_skin_tone", [str(i) for i in range(1, 11)], "unrated"),
        ),
        "device": (
            "Diagnosis x device",
            _cross(
                device_rows,
                "device",
                [*devices, "other"] if len(devices) == TOP_DEVICES else devices,
            ),
        ),
        "modality": (
            "Diagnosis x modality",
            _cross(rows, "modality", ["clinical", "dermoscopic", "other"]),
        ),
        "split": (
            "Diagnosis x split",
            _cross(
                rows,
                "split",
                [p for p in ("train", "val", "test") if any(r["split"] == p for r in rows)],
                "all",
            ),
        ),
    }
    domains = sorted({r.get("meta_domain_estimated") or "" for r in rows} - {""})
    if domains:  # estimated, so apart from the recorded fields (dermdesk domains assign)
        tables["meta_domain"] = (
            "Diagnosis x visual meta-domain (estimated)",
            _cross(rows, "meta_domain_estimated", domains, "unassigned"),
        )
    if not any(r["monk_skin_tone"] for r in rows):
        del tables["monk"]  # no rated Monk tone at all: the tone section says so
    rated = sum(bool(r["fitzpatrick_skin_type"]) for r in rows)
    est_only = sum(
        bool(r["fitzpatrick_skin_type_estimated"]) and not r["fitzpatrick_skin_type"] for r in rows
    )
    tone = {
        "fitzpatrick_rated": rated,
        "fitzpatrick_estimated_only": est_only,
        "fitzpatrick_none": n - rated - est_only,
        "monk_rated": sum(bool(r["monk_skin_tone"]) for r in rows),
        "monk_estimated_only": sum(
            bool(r["monk_skin_tone_estimated"]) and not r["monk_skin_tone"] for r in rows
        ),
    }
    diags, cols, fitz = tables["fitzpatrick"][1]
    thin = [
        f"{d} x {c} ({v})"
        for d, vals in zip(diags, fitz, strict=True)
        for c, v in zip(cols, vals, strict=True)
        if c != "unrated" and v < THIN_CELL and d != "unlabelled"
    ]
    leakage = None
    if plan.split:
        parts = {it.row["id"]: it.part or "" for it in plan.items if it.part}
        leakage = leakage_report(lib, parts)
    certainty = Counter(r["diagnosis_confirm_type"] or "unknown" for r in rows if r["diagnosis"])
    return {
        "n": n,
        "tables": tables,
        "tone": tone,
        "quality": _quality(lib, [it.row["id"] for it in plan.items]),
        "thin_cells": thin,
        "no_patient": sum(not r["patient_id"] for r in rows),
        "unlabelled": sum(not r["diagnosis"] for r in rows),
        "with_age": sum(bool(r["age_approx"]) for r in rows),
        "with_sex": sum(bool(r["sex"]) for r in rows),
        "with_site": sum(bool(r["anatom_site_general"]) for r in rows),
        "with_device": sum(bool(r["device"]) for r in rows),
        "synthetic": sum(r["image_manipulation"] == "synthetic" for r in rows),
        "datasets": dict(sorted(Counter(r["dataset"] or "local" for r in rows).items())),
        "certainty": dict(sorted(certainty.items())),
        "leakage": leakage,
        "warnings": list(plan.warnings),
        "left_out": dict(plan.left_out),
        "query": plan.options.as_params(),
        "split": plan.split,
    }


def _pct(a: int, b: int) -> str:
    return f"{a} of {b} ({a / b * 100:.0f} %)" if b else "0"


def checklist(card: Mapping[str, Any]) -> list[tuple[str, bool, str]]:
    """(item, reported, what the library says) in the spirit of CLEAR Derm's data items."""
    n = card["n"]
    leak = card["leakage"]
    histo = card["certainty"].get("histopathology", 0)
    labelled = n - card["unlabelled"]
    return [
        ("Image sources named", True, ", ".join(f"{k} ({v})" for k, v in card["datasets"].items())),
        (
            "Acquisition device recorded",
            card["with_device"] > 0,
            _pct(card["with_device"], n) + " images name their device",
        ),
        ("Imaging modality stated", True, "clinical / dermoscopic per image (column modality)"),
        (
            "Image quality assessed",
            bool(card["quality"]),
            f"{len(card['quality'])} automatic checks"
            if card["quality"]
            else "no quality checks were run",
        ),
        (
            "Inclusion and exclusion stated",
            True,
            card["query"]["query_text"]
            + (
                "; left out: " + "; ".join(f"{v} {k}" for k, v in card["left_out"].items())
                if card["left_out"]
                else ""
            ),
        ),
        (
            "Ground truth method stated",
            labelled > 0,
            f"histopathology for {_pct(histo, labelled)} labelled images",
        ),
        (
            "Skin tone reported (rated, not estimated)",
            card["tone"]["fitzpatrick_rated"] > 0,
            _pct(card["tone"]["fitzpatrick_rated"], n)
            + " have a rated Fitzpatrick type; "
            + f"{card['tone']['fitzpatrick_estimated_only']} only an estimate (kept apart)",
        ),
        (
            "Age and sex reported",
            card["with_age"] > 0 and card["with_sex"] > 0,
            f"age {_pct(card['with_age'], n)}, sex {_pct(card['with_sex'], n)}",
        ),
        ("Body site reported", card["with_site"] > 0, _pct(card["with_site"], n)),
        (
            "Partition by patient, no leakage",
            bool(leak and leak["clean"]),
            "no split exported"
            if leak is None
            else (
                "clean: no patient, lesion or near-duplicate crosses parts"
                if leak["clean"]
                else f"{leak['near_duplicate_pairs']} near-duplicate pairs, "
                f"{leak['patients_across']} patients cross parts"
            ),
        ),
        (
            "Class and skin-type coverage",
            not card["thin_cells"],
            f"{len(card['thin_cells'])} diagnosis x skin-type cells under {THIN_CELL} rated images"
            if card["thin_cells"]
            else "every cell has enough images",
        ),
        (
            "Synthetic images declared",
            True,
            f"{card['synthetic']} synthetic (image_manipulation=synthetic)"
            if card["synthetic"]
            else "none included",
        ),
        ("De-identified", True, "pseudonymous ids; EXIF/XMP/IPTC/comments removed; no file names"),
    ]


def _markdown(card: Mapping[str, Any], charts: Mapping[str, str]) -> str:
    q = card["query"]
    lines = [
        "# Data card",
        "",
        f"{card['n']} images exported as `{q['format']}` from a dermdesk library; "
        f"query: {q['query_text']}"
        + (
            f"; split `{card['split']['name']}` (seed {card['split'].get('seed')})"
            if card["split"]
            else ""
        )
        + ".",
        "",
        "## Composition",
        "",
    ]
    for key, (title, (rows, cols, table)) in card["tables"].items():
        lines += [
            f"### {title}",
            "",
            f"![{title}]({charts[key]})",
            "",
            _md_table(rows, cols, table),
            "",
        ]
    t = card["tone"]
    lines += [
        "## Skin tone: rated and estimated",
        "",
        "Ratings come from a person or the source dataset; estimates come from the ITA "
        "estimator and are never counted as ratings.",
        "",
        "| scale | rated | estimate only | neither |",
        "|---|---|---|---|",
        f"| Fitzpatrick | {t['fitzpatrick_rated']} | {t['fitzpatrick_estimated_only']} "
        f"| {t['fitzpatrick_none']} |",
        f"| Monk | {t['monk_rated']} | {t['monk_estimated_only']} "
        f"| {card['n'] - t['monk_rated'] - t['monk_estimated_only']} |",
        "",
        "## Quality checks",
        "",
    ]
    if card["quality"]:
        lines += ["| check | pass | warn | fail |", "|---|---|---|---|"]
        lines += [
            f"| {c} | {v['pass']} | {v['warn']} | {v['fail']} |" for c, v in card["quality"].items()
        ]
    else:
        lines.append("No quality checks were run on these images.")
    lines += ["", "## Known gaps", ""]
    gaps = []
    if card["thin_cells"]:
        gaps.append(
            f"Diagnosis x Fitzpatrick cells with fewer than {THIN_CELL} rated images: "
            + ", ".join(card["thin_cells"])
        )
    if t["fitzpatrick_none"] + t["fitzpatrick_estimated_only"]:
        gaps.append(
            f"{t['fitzpatrick_none'] + t['fitzpatrick_estimated_only']} images have no rated "
            "Fitzpatrick type"
        )
    if card["no_patient"]:
        gaps.append(
            f"{card['no_patient']} images have no patient id (grouped by lesion or "
            "near-duplicate instead)"
        )
    if card["unlabelled"]:
        gaps.append(f"{card['unlabelled']} images have no diagnosis")
    gaps += card["warnings"]
    leak = card["leakage"]
    if leak is not None:
        gaps.append(
            "Leakage between splits: none"
            if leak["clean"]
            else f"Leakage between splits: {leak['near_duplicate_pairs']} near-duplicate pairs, "
            f"{leak['patients_across']} patients and {leak['lesions_across']} lesions cross parts"
        )
    lines += [f"- {g}" for g in gaps] or ["- none found"]
    lines += [
        "",
        "## Checklist (CLEAR Derm data items)",
        "",
        "| item | | from the library |",
        "|---|---|---|",
    ]
    lines += [
        f"| {item} | {'yes' if ok else 'GAP'} | {text} |" for item, ok, text in checklist(card)
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A table cell; numbers right-aligned."""
    numeric = text.replace(" ", "").isdigit()
    return f"<td class='n'>{text}</td>" if numeric else f"<td>{_inline(text)}</td>"


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` spans as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html(markdown: str, pngs: Mapping[str, bytes]) -> str:
    """The Markdown as a self-contained page: tables and headings converted, charts inline."""
    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Data card</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:left}td.n{text-align:right}img{max-width:100%}"
        "</style></head><body>"
    ]
    table: list[str] = []

    def flush() -> None:
        if table:
            head, *body = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
            out.append(
                "<table><tr>"
                + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
                + "</tr>"
            )
            out.extend("<tr>" + "".join(_cell(c.strip()) for c in r) + "</tr>" for r in body)
            out.append("</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("![") and "](" in line:
            alt, src = line[2:].split("](", 1)
            data = base64.b64encode(pngs[src.rstrip(")")]).decode("ascii")
            out.append(f"<p><img alt='{html.escape(alt)}' src='data:image/png;base64,{data}'></p>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(lib: Library, plan: ExportPlan, rows: Sequence[Mapping[str, str]]) -> dict[str, bytes]:
    """The card's files: ``DATACARD.md``, ``datacard.html`` and ``datacard/*.png``."""
    card = build(lib, plan, rows)
    pngs: dict[str, bytes] = {}
    charts: dict[str, str] = {}
    for key, (title, (r, c, t)) in card["tables"].items():
        name = f"datacard/{key}.png"
        pngs[name] = heatmap_png(title, r, c, t)
        charts[key] = name
    markdown = _markdown(card, charts)
    return {
        "DATACARD.md": markdown.encode("utf-8"),
        "datacard.html": _html(markdown, pngs).encode("utf-8"),
        **pngs,
    }
