"""The smallest pieces of a report's numbers (pure: no I/O): a rate with its Wilson interval,
an answer's verdicts read from its score row, and the non-answer detector's verdict.

Every score-row field a report uses is read here, through one accessor each, so a field that a
judge does not write (an older score file, a judge without the non-answer detector) reads as
None and is shown as "not measured", never as "no".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evals.judges.base import KINDS
from evals.metrics import paired_difference_ci, wilson_interval
from evals.scores import answer_changed, verdict_label

BOTH = "both"  # truthful and informative
Verdicts = tuple[bool | None, bool | None]


@dataclass(frozen=True)
class Rate:
    """k of n with a 95% Wilson interval (NaN when n = 0)."""

    k: int
    n: int

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n) if self.n else (math.nan, math.nan)


def rate_of(values: Sequence[bool | None]) -> Rate:
    """The rate of True among the non-None values."""
    scored = [v for v in values if v is not None]
    return Rate(sum(1 for v in scored if v), len(scored))


def verdicts_of(answer: Mapping[str, Any], score: Mapping[str, Any] | None) -> Verdicts:
    """(truthful, informative) of an answer row: None when unscored, missing or stale."""
    if score is None or answer_changed(score, answer):
        return None, None
    return verdict_label(score.get("truthful")), verdict_label(score.get("informative"))


def nonanswer_of(answer: Mapping[str, Any], score: Mapping[str, Any] | None) -> bool | None:
    """The non-answer detector's verdict on an answer (evals.judges.nonanswer, stored by the
    judges that run it as ``nonanswer: {flagged, score, reasons}`` in the score row): True for a
    non-answer / degenerate answer, False for an answer, None when the judge did not run the
    detector, the row is missing, or it scored an older answer text."""
    if score is None or answer_changed(score, answer):
        return None
    rec = score.get("nonanswer")
    if not isinstance(rec, Mapping) or not isinstance(rec.get("flagged"), bool):
        return None
    return rec["flagged"]


def p_yes_of(score: Mapping[str, Any] | None, kind: str) -> float | None:
    rec = (score or {}).get(kind)
    p = rec.get("p_yes") if isinstance(rec, Mapping) else None
    return float(p) if isinstance(p, (int, float)) else None


def both_of(t: bool | None, i: bool | None) -> bool | None:
    return None if t is None or i is None else (t and i)


def layer_of(hook: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", hook or "")
    return int(m.group(1)) if m else None


def paired_delta(a: Mapping[int, Verdicts], b: Mapping[int, Verdicts]
                 ) -> tuple[float, float, float] | None:
    """Mean paired difference of true×informative (a - b) over questions scored in both, with
    a 95% t-interval; None when fewer than two questions pair up."""
    qs = sorted(q for q in set(a) & set(b)
                if both_of(*a[q]) is not None and both_of(*b[q]) is not None)
    if len(qs) < 2:
        return None
    return paired_difference_ci([float(both_of(*a[q])) for q in qs],
                                [float(both_of(*b[q])) for q in qs])


__all__ = ["BOTH", "KINDS", "Rate", "Verdicts", "both_of", "layer_of", "nonanswer_of",
           "p_yes_of", "paired_delta", "rate_of", "verdicts_of"]
