"""The controlled vocabulary: diagnoses, certainty, skin-tone scales, body sites.

Everything is loaded from ``resources/taxonomy.json`` so a clinic can read
(and, carefully, extend) it without touching code. Dataset-specific label
spellings map into the small hierarchical set of diagnosis codes; conditions
outside that set become ``OTHER`` with their original text kept.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from dermdesk.resources import resource_path

OTHER = "OTHER"
MODALITIES = ("clinical", "dermoscopic", "other")
SOURCES = ("import", "capture", "synthetic")
ROMAN = ("I", "II", "III", "IV", "V", "VI")
# Where an image's modality came from (schema version 12): a person's or a dataset's word, the
# detector's sure answer, or its guess below the calibrated confidence.
MODALITY_METHODS = ("recorded", "detected", "unsure")


def modality_words(modality: str, method: str) -> str:
    """A modality with its provenance: ``clinical``, ``clinical (detected)`` or
    ``unsure (looks clinical)``, so a guess is never shown as a recorded value."""
    if method == "detected":
        return f"{modality} (detected)"
    if method == "unsure":
        return f"unsure (looks {modality})"
    return modality


@dataclass(frozen=True)
class Diagnosis:
    """One diagnosis code and where it sits in the hierarchy."""

    code: str
    name: str
    parent: str
    malignant: bool | None
    melanocytic: bool | None
    key: str  # default number-key shortcut in the annotation panel


@dataclass(frozen=True)
class LabelMatch:
    """Result of mapping a raw label onto the vocabulary."""

    code: str
    free_text: str | None
    known: bool  # False when the raw text was not recognised and fell back to OTHER


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    with open(resource_path("taxonomy.json"), encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@lru_cache(maxsize=1)
def diagnoses() -> dict[str, Diagnosis]:
    """All diagnosis codes, in display order."""
    return {
        d["code"]: Diagnosis(
            d["code"], d["name"], d["parent"], d["malignant"], d["melanocytic"], d["key"]
        )
        for d in _raw()["diagnoses"]
    }


def group_parents() -> dict[str, str | None]:
    """Parent of each group node in the diagnosis tree."""
    return {g["code"]: g["parent"] for g in _raw()["groups"]}


def group_names() -> dict[str, str]:
    return {g["code"]: g["name"] for g in _raw()["groups"]}


def ancestors(code: str) -> list[str]:
    """Group nodes above a diagnosis code, nearest first."""
    parents = group_parents()
    node: str | None = diagnoses()[code].parent
    chain = []
    while node:
        chain.append(node)
        node = parents.get(node)
    return chain


def is_malignant(code: str, free_text: str | None = None) -> bool | None:
    """Malignancy of a label; for OTHER, looked up from the kept free text."""
    if code == OTHER:
        kind = _raw()["other_conditions"].get((free_text or "").strip().lower())
        return None if kind is None else kind == "malignant"
    return diagnoses()[code].malignant


IsicLevels = tuple[str, str, str]


@lru_cache(maxsize=1)
def _isic_subtypes() -> list[tuple[str, list[str], IsicLevels]]:
    return [
        (s["code"], [words(w) for w in s["any"]], (s["isic"][0], s["isic"][1], s["isic"][2]))
        for s in _raw().get("isic_subtypes", [])
        if "code" in s
    ]


def isic_diagnosis(code: str, free_text: str | None = None) -> IsicLevels:
    """The ISIC Archive's ``diagnosis_1/2/3`` strings of a label ("Malignant", "Malignant
    adnexal epithelial proliferations - Follicular", "Basal cell carcinoma"): the code's own,
    refined by the kept wording where the Archive has a finer term ("Bowen's disease" ->
    "Squamous cell carcinoma in situ"); an unknown OTHER condition has none."""
    if code == OTHER:
        known = _raw()["isic_other_conditions"].get((free_text or "").strip().lower())
        return (known[0], known[1], known[2]) if known else ("", "", "")
    if free_text:
        padded = f" {words(free_text)} "
        for subtype_code, anywhere, levels in _isic_subtypes():
            if subtype_code == code and any(f" {w} " in padded for w in anywhere):
                return levels
    entry = next(d for d in _raw()["diagnoses"] if d["code"] == code)
    level1, level2, level3 = entry["isic"]
    return (level1, level2, level3)


def isic_diagnosis_2() -> dict[str, str]:
    """The ISIC Archive's second-level diagnosis names, each with its first level."""
    return {
        name: level1
        for level1, names in _raw()["isic_diagnosis_2"].items()
        if not level1.startswith("_")
        for name in names
    }


def certainty_codes() -> list[str]:
    return [c["code"] for c in _raw()["certainty"]]


def certainty_names() -> dict[str, str]:
    return {c["code"]: c["name"] for c in _raw()["certainty"]}


def fitzpatrick_scale() -> list[dict[str, Any]]:
    """Fitzpatrick I-VI with descriptions and display swatches."""
    return list(_raw()["fitzpatrick"])


def monk_scale() -> list[dict[str, Any]]:
    """Monk Skin Tone 1-10 with the scale's reference colours."""
    return list(_raw()["monk"])


def body_sites() -> dict[str, str]:
    """Body-site code -> display name."""
    return {b["code"]: b["name"] for b in _raw()["body_sites"]}


def dataset_label(dataset: str, raw: str) -> LabelMatch:
    """Map a public dataset's own label spelling onto a diagnosis code."""
    text = raw.strip()
    table = _raw()["dataset_labels"].get(dataset, {})
    code = table.get(text) or table.get(text.lower())
    if code:
        # Keep the original wording when it is finer than the code (e.g. "atypical_nevus").
        keep = None if text.upper() == code or text.lower() in ("nv", "nevus") else text
        return LabelMatch(code, keep, True)
    if text.lower() in _raw()["other_conditions"]:
        return LabelMatch(OTHER, text.lower(), True)
    return normalize_label(text)


def words(raw: str) -> str:
    """Text as matched against the vocabulary: lower case, punctuation as spaces, British
    and plural spellings in their American singular ("Naevi, dysplastic" -> "nevus
    dysplastic")."""
    spellings = _raw().get("label_spellings", {})
    tokens = "".join(c if c.isalnum() else " " for c in raw.lower()).split()
    return " ".join(spellings.get(t, t) for t in tokens)


@lru_cache(maxsize=1)
def _patterns() -> list[tuple[str, list[str], list[str]]]:
    return [
        (p["code"], [words(w) for w in p["any"]], [words(w) for w in p.get("none", [])])
        for p in _raw().get("label_patterns", [])
        if "code" in p
    ]


def _subtype(text: str) -> str | None:
    """The code whose subtype words the text contains (first pattern wins)."""
    padded = f" {words(text)} "
    for code, anywhere, unless in _patterns():
        if any(f" {w} " in padded for w in unless):
            continue
        if any(f" {w} " in padded for w in anywhere):
            return code
    return None


def normalize_label(raw: str) -> LabelMatch:
    """Map free label text onto the vocabulary: a code, a synonym, a known other condition,
    or a subtype ("melanoma in situ", "Spitz naevus", "nodular BCC") whose parent code it
    gets, with the original wording kept as free text. Unknown text -> OTHER, kept."""
    text = raw.strip()
    if not text:
        raise ValueError("empty diagnosis")
    if text.upper() in diagnoses():
        return LabelMatch(text.upper(), None, True)
    synonyms = _raw()["label_synonyms"]
    code = synonyms.get(text.lower()) or synonyms.get(words(text))
    if code:
        return LabelMatch(code, None, True)
    others = _raw()["other_conditions"]
    for key in (text.lower(), words(text).replace(" ", "-")):
        if key in others:
            return LabelMatch(OTHER, key, True)
    code = _subtype(text)
    if code:
        return LabelMatch(code, text, True)
    return LabelMatch(OTHER, text, False)


def body_site(raw: str | None) -> str | None:
    """Map a body-site spelling ("FOREARM", "lower extremity", "both legs", "Scalp/neck")
    to a code; None if blank; ValueError if nothing in it is a known site."""
    if raw is None or not raw.strip():
        return None
    aliases = _raw()["body_site_aliases"]
    sites = body_sites()

    def known(text: str) -> str | None:
        text = text.strip().lower()
        for candidate in (text, " ".join(text.split()), words(text)):
            if candidate in aliases:
                return str(aliases[candidate])
            code = candidate.replace(" ", "_")
            if code in sites:
                return code
            if candidate.endswith("s") and candidate[:-1].replace(" ", "_") in sites:
                return candidate[:-1].replace(" ", "_")  # "thighs", "ears"
        return None

    found = known(raw)
    if found:
        return found
    # Compound and slash forms ("scalp and neck", "back/shoulder", "left upper arm"): the
    # first part that is a site; a side ("left", "both") is not part of the site.
    cleaned = words(raw)
    for side in ("left", "right", "both", "bilateral", "l", "r"):
        cleaned = f" {cleaned} ".replace(f" {side} ", " ").strip()
    found = known(cleaned)
    if found:
        return found
    for part in raw.replace("/", ",").replace(" and ", ",").replace("&", ",").split(","):
        found = known(part) or known(
            " ".join(w for w in words(part).split() if w not in ("left", "right", "both"))
        )
        if found:
            return found
    raise ValueError(f"unknown body site {raw!r}")


def _as_number(raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        return None if isinstance(raw, float) and math.isnan(raw) else float(raw)
    text = str(raw).strip()
    if not text:
        return None
    return float(text)


def parse_fitzpatrick(raw: object) -> int | None:
    """Fitzpatrick type 1-6 from "3", "3.0", "III" or 3; None for blank or -1 (unknown)."""
    if isinstance(raw, str) and raw.strip().upper() in ROMAN:
        return ROMAN.index(raw.strip().upper()) + 1
    try:
        value = _as_number(raw)
    except ValueError:
        raise ValueError(f"not a Fitzpatrick type: {raw!r} (expected 1-6 or I-VI)") from None
    if value is None or value == -1:
        return None
    if value != int(value) or not 1 <= value <= 6:
        raise ValueError(f"not a Fitzpatrick type: {raw!r} (expected 1-6 or I-VI)")
    return int(value)


def parse_monk(raw: object) -> int | None:
    """Monk skin tone 1-10; None for blank."""
    try:
        value = _as_number(raw)
    except ValueError:
        raise ValueError(f"not a Monk skin tone: {raw!r} (expected 1-10)") from None
    if value is None:
        return None
    if value != int(value) or not 1 <= value <= 10:
        raise ValueError(f"not a Monk skin tone: {raw!r} (expected 1-10)")
    return int(value)


def fitzpatrick_roman(value: int | None) -> str:
    return "" if value is None else ROMAN[value - 1]


@dataclass(frozen=True)
class LabelChoice:
    """One entry of the diagnosis search: a code, or OTHER with a known condition."""

    code: str
    free_text: str | None
    title: str  # "MEL — Melanoma", "keloid — Other (benign)"
    terms: tuple[str, ...]  # what a search matches: code, name, synonyms, in `words` form

    @property
    def key(self) -> str:
        """How settings remember it: ``MEL`` or ``OTHER:keloid``."""
        return self.code if self.free_text is None else f"{self.code}:{self.free_text}"


@lru_cache(maxsize=1)
def label_choices() -> tuple[LabelChoice, ...]:
    """Every diagnosis code (with the vocabulary's synonyms), then the known other
    conditions, in the taxonomy's order."""
    synonyms: dict[str, list[str]] = {}
    for text, code in _raw()["label_synonyms"].items():
        synonyms.setdefault(code, []).append(words(text))
    choices = [
        LabelChoice(
            d.code,
            None,
            f"{d.code} — {d.name}",
            tuple(dict.fromkeys([d.code.lower(), words(d.name), *synonyms.get(d.code, [])])),
        )
        for d in diagnoses().values()
    ]
    for condition, kind in _raw()["other_conditions"].items():
        choices.append(
            LabelChoice(
                OTHER, condition, f"{condition} — Other ({kind})", (words(condition), "other")
            )
        )
    return tuple(choices)


def label_choice(key: str) -> LabelChoice | None:
    """The choice a settings key names (``MEL``, ``OTHER:keloid``); None if unknown."""
    return next((c for c in label_choices() if c.key == key), None)


def _match_tier(query: str, choice: LabelChoice) -> int | None:
    """0: the query is a code or synonym; 1: a term starts with it; 2: each query word
    starts a word of one term; 3: it occurs inside a term; None: no match."""
    if query in choice.terms:
        return 0
    if any(t.startswith(query) for t in choice.terms):
        return 1
    parts = query.split()
    for term in choice.terms:
        term_words = term.split()
        if all(any(w.startswith(p) for w in term_words) for p in parts):
            return 2
    return 3 if any(query in t for t in choice.terms) else None


def search_labels(query: str, recent: tuple[str, ...] | list[str] = ()) -> list[LabelChoice]:
    """The choices matching ``query``, best first; ties (and an empty query) put the
    ``recent`` keys first, most recent first, then the taxonomy's order."""
    q = words(query)
    ranked = []
    for order, choice in enumerate(label_choices()):
        tier = _match_tier(q, choice) if q else 0
        if tier is not None:
            recency = recent.index(choice.key) if choice.key in recent else len(recent)
            ranked.append((tier, recency, order, choice))
    return [choice for *_, choice in sorted(ranked, key=lambda r: r[:3])]
