"""Was this judge measured on text like this? A judge's agreement with people holds on the kinds
of text it was validated on; an answer far from all of them is judged, but its verdict is not
covered by any measured agreement.

The *shape* of an answer (:data:`SHAPE_NAMES`: length in words, number of claims, list items) is
what separates the kinds of text seen so far: TruthfulQA's short answers, the embedded model's
steered text, today's long chat answers. Each validation set is summarised by a box per shape
feature (its 1st to 99th percentile, :data:`COVERAGE`); an answer is **inside** when it falls in
every feature's box of at least one set, and its *distance* is how far (in the set's own spread,
0 inside) it lies from the nearest set; beyond :data:`TOLERANCE` it is *outside*. The boxes are
written with the judge (``validated_on`` in its record) from the rows it was measured on, so a
judge validated on
long-form answers accepts them and one validated only on short ones flags them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evals.judges.longform import split_claims

SHAPE_NAMES = ("log_words", "log_claims", "log_list_items")
COVERAGE = (0.01, 0.99)  # each set's box: its 1st to 99th percentile of each shape feature
# An answer is outside when it lies more than TOLERANCE spreads beyond every set's box. Chosen on
# the development sets' TRAIN rows: boxes fitted on half of TruthfulQA's labelled answers and
# the steered TRAIN split flag 0.3% of the other half and of the steered rows left out (2.6% at
# 0), while flagging the multi-paragraph long-form answers (43% of the long-form set: its short
# personas are rightly inside).
TOLERANCE = 1.0
_WORD = re.compile(r"[A-Za-z0-9']+")
_LIST = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+", re.MULTILINE)


def text_shape(answer: str) -> np.ndarray:
    """The answer's shape, in the order of :data:`SHAPE_NAMES`."""
    return np.array([np.log1p(len(_WORD.findall(answer))), np.log(len(split_claims(answer))),
                     np.log1p(len(_LIST.findall(answer)))])


def fit_boxes(sets: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``{set name: {"n", "lo", "hi", "spread"}}`` over the answers of each validation set."""
    out = {}
    for name, answers in sets.items():
        if not answers:
            continue
        x = np.stack([text_shape(a) for a in answers])
        lo, hi = np.quantile(x, COVERAGE[0], axis=0), np.quantile(x, COVERAGE[1], axis=0)
        out[name] = {"n": len(answers), "lo": lo.round(4).tolist(), "hi": hi.round(4).tolist(),
                     "spread": np.maximum(x.std(0), 0.25).round(4).tolist()}
    return out


def distance(answer: str, boxes: Mapping[str, Any]) -> tuple[float, str | None]:
    """(distance to the nearest validation set's box in that set's spreads, that set's name);
    0.0 inside a box; the answer is outside when the distance exceeds :data:`TOLERANCE`."""
    x = text_shape(answer)
    best, nearest = float("inf"), None
    for name, box in boxes.items():
        lo, hi, spread = (np.array(box[k]) for k in ("lo", "hi", "spread"))
        d = float(np.max((np.maximum(lo - x, 0) + np.maximum(x - hi, 0)) / spread))
        if d < best:
            best, nearest = d, name
    return (best if nearest is not None else float("inf")), nearest


def outside_share(answers: Sequence[str], boxes: Mapping[str, Any]) -> tuple[int, int]:
    """(answers outside every validation set's box, answers)."""
    return sum(is_outside(a, boxes) for a in answers), len(answers)


def is_outside(answer: str, boxes: Mapping[str, Any]) -> bool:
    return distance(answer, boxes)[0] > TOLERANCE


def spotcheck_size(p_outside: float, n_outside: int, half_width: float = 0.1) -> int:
    """Labels to draw from the outside answers so that a 95% interval of the judge's error rate
    on them is about ±``half_width`` (worst case p = 0.5: n = (1.96 / (2 w))^2 ≈ 96 for ±10
    points), capped at the number of outside answers."""
    if n_outside <= 0 or p_outside <= 0:
        return 0
    return int(min(n_outside, np.ceil((1.96 / (2 * half_width)) ** 2)))
