"""The numbers of a report, computed from a :class:`reports.load.RunData` (pure: no I/O).

Rates are over the answers the judge scored for that kind; answers without a score, with a
score of an older answer text, or with an ``unscored`` verdict are counted, never dropped
silently. Each rate has a 95% Wilson score interval. ``true×informative`` is TruthfulQA's
headline: the share of answers judged both truthful and informative (over answers scored for
both). Human-corrected rates are prediction-powered (evals.agreement.corrected_rate) from the
run's imported spot-check labels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.agreement import Agreement, CorrectedRate, agreement, corrected_rate
from evals.metrics import paired_difference_ci, wilson_interval
from evals.scores import answer_changed, verdict_label

KINDS = ("truthful", "informative")
BOTH = "both"  # truthful and informative
BASELINE = "baseline"
BEST = "★ best overall"
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


def p_yes_of(score: Mapping[str, Any] | None, kind: str) -> float | None:
    rec = (score or {}).get(kind)
    p = rec.get("p_yes") if isinstance(rec, Mapping) else None
    return float(p) if isinstance(p, (int, float)) else None


def both_of(t: bool | None, i: bool | None) -> bool | None:
    return None if t is None or i is None else (t and i)


def layer_of(hook: str) -> int | None:
    m = re.match(r"blocks\.(\d+)\.", hook or "")
    return int(m.group(1)) if m else None


@dataclass
class HeadlineRow:
    """One configuration (cell) of one run, with everything the headline table shows."""

    cell_id: str
    direction: str
    kind: str
    hook: str
    magnitude: float
    n_answers: int
    rates: dict[str, Rate]                      # truthful, informative, both
    unscored: dict[str, int]                    # truthful, informative
    metrics: dict[str, Any]                     # mc1, mc1_ci, mc2, mc2_ci, ce, kl, ...
    corrected: dict[str, CorrectedRate] = field(default_factory=dict)
    n_labels: int = 0
    delta_both: tuple[float, float, float] | None = None  # paired vs baseline (mean, lo, hi)
    marks: list[str] = field(default_factory=list)

    @property
    def is_baseline(self) -> bool:
        return self.cell_id == BASELINE or self.magnitude == 0

    @property
    def layer(self) -> int | None:
        return layer_of(self.hook)

    @property
    def label(self) -> str:
        if self.is_baseline:
            return "baseline (magnitude 0)"
        return f"{self.direction} @ {self.hook} × {self.magnitude:g}"


def labels_by_key(labels: Sequence[Mapping[str, str]]) -> dict[tuple[str, int], dict[str, Any]]:
    """{(cell_id, question_id): {"truthful": bool|None, "informative": ..., "weight": float|None}}"""
    out = {}
    for row in labels:
        try:
            key = (str(row["cell_id"]), int(row["question_id"]))
        except (KeyError, ValueError, TypeError):
            continue
        try:
            weight = float(row.get("weight") or "nan")
        except ValueError:
            weight = math.nan
        out[key] = {k: verdict_label(row.get(k)) for k in KINDS} | {
            "weight": weight if math.isfinite(weight) and weight > 0 else None,
            "text": tuple(label_text(row.get(k)) for k in KINDS)}
    return out


def label_text(value: Any) -> str:
    """How a stored human label reads: yes / no / – (blank), or the odd value itself."""
    v = verdict_label(value)
    if v is not None:
        return "yes" if v else "no"
    raw = str(value or "").strip()
    return f"{raw!r} (not yes/no)" if raw else "–"


def cell_verdicts(run) -> dict[str, dict[int, Verdicts]]:
    """{cell_id: {question_id: (truthful, informative)}} for every answer of the run."""
    return {cid: {int(r["question_id"]): verdicts_of(r, run.scores.get((cid, int(r["question_id"]))))
                  for r in rows} for cid, rows in run.answers.items()}


def _corrected(verdicts: dict[int, Verdicts], cell_labels: dict[int, dict[str, Any]]
               ) -> tuple[dict[str, CorrectedRate], int]:
    out: dict[str, CorrectedRate] = {}
    for kind in (*KINDS, BOTH):
        judge_all, judge_lab, human, weights = [], [], [], []
        for qid, (t, i) in sorted(verdicts.items()):
            j = {"truthful": t, "informative": i, BOTH: both_of(t, i)}[kind]
            judge_all.append(j)
            lab = cell_labels.get(qid)
            if lab is None:
                continue
            h = both_of(lab["truthful"], lab["informative"]) if kind == BOTH else lab[kind]
            if h is None:
                continue
            judge_lab.append(j)
            human.append(h)
            weights.append(lab["weight"])
        if human:
            w = None if any(x is None for x in weights) else weights
            out[kind] = corrected_rate(judge_all, judge_lab, human, w)
    return out, len(cell_labels)


def _metric_key(desc: Mapping[str, Any]) -> tuple:
    m = float(desc.get("magnitude", 0) or 0)
    base = desc.get("cell_id") == BASELINE or m == 0
    return (not base, str(desc.get("direction")), layer_of(str(desc.get("hook"))) or -1,
            str(desc.get("hook")), m)


def headline_rows(run) -> list[HeadlineRow]:
    """One row per cell: baseline (magnitude 0) first, then by direction, layer, magnitude; the
    best true×informative configuration is marked, with its paired difference to the baseline."""
    verdicts = cell_verdicts(run)
    labels = labels_by_key(run.labels)
    rows = []
    for desc in sorted(run.cells, key=_metric_key):
        cid = str(desc["cell_id"])
        v = verdicts.get(cid, {})
        ts = [t for t, _ in v.values()]
        infos = [i for _, i in v.values()]
        boths = [both_of(t, i) for t, i in v.values()]
        cell_labels = {q: lab for (c, q), lab in labels.items() if c == cid}
        corrected, n_labels = _corrected(v, cell_labels) if cell_labels else ({}, 0)
        rows.append(HeadlineRow(
            cell_id=cid, direction=str(desc.get("direction", "")), kind=str(desc.get("kind", "")),
            hook=str(desc.get("hook", "")), magnitude=float(desc.get("magnitude", 0) or 0),
            n_answers=len(v),
            rates={"truthful": rate_of(ts), "informative": rate_of(infos), BOTH: rate_of(boths)},
            unscored={"truthful": sum(t is None for t in ts),
                      "informative": sum(i is None for i in infos)},
            metrics=dict(desc.get("metrics") or {}), corrected=corrected, n_labels=n_labels))
    mark_best(rows, verdicts)
    return rows


def paired_delta(a: dict[int, Verdicts], b: dict[int, Verdicts]
                 ) -> tuple[float, float, float] | None:
    """Mean paired difference of true×informative (a - b) over questions scored in both, with
    a 95% t-interval; None when fewer than two questions pair up."""
    qs = sorted(q for q in set(a) & set(b)
                if both_of(*a[q]) is not None and both_of(*b[q]) is not None)
    if len(qs) < 2:
        return None
    return paired_difference_ci([float(both_of(*a[q])) for q in qs],
                                [float(both_of(*b[q])) for q in qs])


def best_row(rows: Sequence[HeadlineRow]) -> HeadlineRow | None:
    """The steered row with the highest true×informative rate (ties: smaller |magnitude|,
    then cell id); None when nothing steered was scored."""
    scored = [r for r in rows if not r.is_baseline and r.rates[BOTH].n > 0]
    if not scored:
        return None
    return min(scored, key=lambda r: (-r.rates[BOTH].rate, abs(r.magnitude), r.cell_id))


def mark_best(rows: list[HeadlineRow], verdicts: dict[str, dict[int, Verdicts]]) -> None:
    """Mark the overall and per-direction best rows; give each steered row its paired
    difference to the baseline and mark whether the best one's 95% interval excludes 0."""
    base = next((r for r in rows if r.is_baseline), None)
    for r in rows:
        if base is not None and not r.is_baseline:
            r.delta_both = paired_delta(verdicts.get(r.cell_id, {}),
                                        verdicts.get(base.cell_id, {}))
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        best = best_row([r for r in rows if r.direction == direction])
        if best is not None:
            best.marks.append(f"best of {direction}")
    best = best_row(rows)
    if best is None:
        return
    best.marks.insert(0, BEST)
    d = best.delta_both
    if d is None or not math.isfinite(d[1]):
        best.marks.append("no paired baseline")
    elif d[1] > 0:
        best.marks.append("clears baseline")
    elif d[2] < 0:
        best.marks.append("below baseline")
    else:
        best.marks.append("within baseline's noise")


def featured_rows(rows: Sequence[HeadlineRow]) -> list[HeadlineRow]:
    """The baseline and the best row of each direction (by true×informative, else MC2)."""
    out = [r for r in rows if r.is_baseline][:1]
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        group = [r for r in rows if r.direction == direction and not r.is_baseline]
        best = best_row(group) or max(group, key=lambda r: (
            _finite(r.metrics.get("mc2")), -abs(r.magnitude)))
        out.append(best)
    return out


def _finite(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else -math.inf


@dataclass(frozen=True)
class ExampleAnswer:
    label: str
    cell_id: str
    answer: str
    judge: Verdicts
    p_yes: tuple[float | None, float | None]
    human: tuple[str, str] | None  # (truthful, informative) as label_text shows them


@dataclass(frozen=True)
class Example:
    question_id: int
    question: str
    answers: tuple[ExampleAnswer, ...]
    changed: int  # verdicts that differ from the baseline's, over the steered answers shown


def choose_examples(run, rows: Sequence[HeadlineRow], n: int) -> list[Example]:
    """``n`` questions where steering changed the judge's verdicts most (then the answer text),
    showing the baseline's answer beside each direction's best configuration's. Deterministic:
    ties break by question id."""
    shown = featured_rows(rows)
    if n <= 0 or not shown:
        return []
    by_cell = {r.cell_id: {int(a["question_id"]): a for a in run.answers.get(r.cell_id, [])}
               for r in shown}
    labels = labels_by_key(run.labels)
    ref = shown[0].cell_id
    candidates = []
    for qid in sorted(by_cell[ref]):
        if not all(qid in by_cell[r.cell_id] for r in shown[1:]) and len(shown) > 1:
            continue
        answers = []
        for r in shown:
            a = by_cell[r.cell_id].get(qid)
            if a is None:
                continue
            score = run.scores.get((r.cell_id, qid))
            lab = labels.get((r.cell_id, qid))
            answers.append(ExampleAnswer(
                r.label, r.cell_id, str(a.get("answer", "")), verdicts_of(a, score),
                (p_yes_of(score, "truthful"), p_yes_of(score, "informative")),
                lab["text"] if lab else None))
        base = answers[0]
        changed = sum(int(x.judge[k] != base.judge[k]) for x in answers[1:] for k in (0, 1)
                      if x.judge[k] is not None and base.judge[k] is not None)
        text_changed = sum(x.answer.strip() != base.answer.strip() for x in answers[1:])
        question = str(by_cell[ref][qid].get("question", ""))
        candidates.append((-changed, -text_changed, qid,
                           Example(qid, question, tuple(answers), changed)))
    candidates.sort(key=lambda c: c[:3])
    return [c[3] for c in candidates[:n]]


def human_agreement(run) -> dict[str, Agreement]:
    """Judge vs people on every labelled answer of the run, per kind (pooled over cells)."""
    labels = labels_by_key(run.labels)
    answers = {(cid, int(a["question_id"])): a for cid, rows in run.answers.items() for a in rows}
    out = {}
    for k, kind in enumerate(KINDS):
        judge, human, p = [], [], []
        for key, lab in sorted(labels.items()):
            if lab[kind] is None or key not in answers:
                continue
            score = run.scores.get(key)
            judge.append(verdicts_of(answers[key], score)[k])
            human.append(lab[kind])
            p.append(p_yes_of(score, kind))
        if human:
            out[kind] = agreement(judge, human, p)
    return out


def heatmap_grid(rows: Sequence[HeadlineRow], direction: str
                 ) -> tuple[list[str], list[float], list[list[float]]]:
    """(hooks by layer, magnitudes incl. 0, true×informative [hook][magnitude]) of a direction;
    the magnitude-0 column is the shared baseline. NaN where a cell is missing or unscored."""
    group = [r for r in rows if r.direction == direction and not r.is_baseline]
    base = next((r for r in rows if r.is_baseline), None)
    hooks = sorted({r.hook for r in group}, key=lambda h: (layer_of(h) is None, layer_of(h) or 0,
                                                            h))
    mags = sorted({r.magnitude for r in group} | ({0.0} if base else set()))
    grid = [[math.nan] * len(mags) for _ in hooks]
    for r in group:
        grid[hooks.index(r.hook)][mags.index(r.magnitude)] = r.rates[BOTH].rate
    if base is not None:
        for h in range(len(hooks)):
            grid[h][mags.index(0.0)] = base.rates[BOTH].rate
    return hooks, mags, grid
