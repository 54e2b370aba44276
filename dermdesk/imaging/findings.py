"""The result type every quality check returns, and grading a score against limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "warn", "fail"]
VERDICTS: tuple[Verdict, ...] = ("pass", "warn", "fail")
_RANK = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class CheckResult:
    """One check's finding on one image.

    ``score`` is the measured value in the check's own unit (``None`` when it
    could not be measured); ``reason`` is one line a nurse understands, saying
    what was measured, what is needed and what to do.
    """

    check: str
    score: float | None
    verdict: Verdict
    reason: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"


@dataclass(frozen=True)
class Limits:
    """Warn/fail limits of one score. ``higher_is_better`` says which side is bad."""

    warn: float
    fail: float
    higher_is_better: bool = True

    def grade(self, score: float) -> Verdict:
        if self.higher_is_better:
            return "fail" if score < self.fail else "warn" if score < self.warn else "pass"
        return "fail" if score > self.fail else "warn" if score > self.warn else "pass"

    def needed(self, verdict: Verdict) -> str:
        """'needs >= 40' style text for a reason line."""
        bound = self.warn
        sign = "≥" if self.higher_is_better else "≤"
        del verdict
        return f"needs {sign} {_fmt(bound)}"


def graded(
    check: str,
    score: float,
    limits: Limits,
    ok: str,
    bad: str,
    *,
    verdict: Verdict | None = None,
    digits: int | None = 3,
    details: dict[str, Any] | None = None,
    **fields: Any,
) -> CheckResult:
    """Grade ``score`` against ``limits`` (unless ``verdict`` is given) and word the finding.

    ``ok`` (for a pass) and ``bad`` (warn or fail) are :meth:`str.format` templates
    that may use ``{score}``, ``{needed}`` (what the limits ask for: "needs ≥ 40")
    and the keywords in ``fields``. A ``bad`` reason says what was measured, what is
    needed and what to do. The score is rounded to ``digits`` (None: kept as is).
    """
    if verdict is None:
        verdict = limits.grade(score)
    template = ok if verdict == "pass" else bad
    reason = template.format(score=score, needed=limits.needed(verdict), **fields)
    value = score if digits is None else round(float(score), digits)
    return CheckResult(check, value, verdict, reason, dict(details or {}))


def severity(verdict: Verdict) -> int:
    """0 for pass, 1 for warn, 2 for fail."""
    return _RANK[verdict]


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe of several verdicts ('pass' for none)."""
    return max(verdicts, key=_RANK.__getitem__, default="pass")


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.2g}"
