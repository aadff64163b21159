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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evals.agreement import Agreement, CorrectedRate, agreement, corrected_rate
from evals.scores import verdict_label
from reports.rates import (
    BOTH,
    KINDS,
    Rate,
    Verdicts,
    both_of,
    layer_of,
    nonanswer_of,
    p_yes_of,
    paired_delta,
    rate_of,
    verdicts_of,
)
from reports.selection import (
    MOSTLY_NONANSWERS,
    NONANSWER_FLAG,
    CrossFit,
    cross_fit,
    verdict_vs_baseline,
)

BASELINE = "baseline"
BEST = "★ best overall"


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
    nonanswers: Rate = Rate(0, 0)  # answers the detector called non-answers, of those it saw

    @property
    def mostly_nonanswers(self) -> bool:
        """More than MOSTLY_NONANSWERS of the answers the detector saw are non-answers."""
        return self.nonanswers.n > 0 and self.nonanswers.rate > MOSTLY_NONANSWERS

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


def cell_nonanswers(run) -> dict[str, Rate]:
    """{cell_id: non-answers among the answers the detector judged} (Rate(0, 0): not run)."""
    return {cid: rate_of([nonanswer_of(r, run.scores.get((cid, int(r["question_id"]))))
                          for r in rows]) for cid, rows in run.answers.items()}


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


@dataclass(frozen=True)
class Headline:
    """A run's headline rows and the cross-fitted choice of its best configuration."""

    rows: list[HeadlineRow]
    selection: CrossFit


def headline(run) -> Headline:
    """One row per cell: baseline (magnitude 0) first, then by direction, layer, magnitude; the
    best configuration is chosen by cross-fitting (reports.selection) and marked, each steered
    row has its paired difference to the baseline, and configurations that are mostly
    non-answers are flagged (and never marked best)."""
    verdicts = cell_verdicts(run)
    nonanswers = cell_nonanswers(run)
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
            metrics=dict(desc.get("metrics") or {}), corrected=corrected, n_labels=n_labels,
            nonanswers=nonanswers.get(cid, Rate(0, 0))))
    return Headline(rows, mark_best(rows, verdicts))


def headline_rows(run) -> list[HeadlineRow]:
    """The rows of :func:`headline`."""
    return headline(run).rows


def best_row(rows: Sequence[HeadlineRow]) -> HeadlineRow | None:
    """In-sample: the steered row, not mostly non-answers, with the highest true×informative
    rate (ties: smaller |magnitude|, then cell id); None when nothing eligible was scored.
    Not a "best" mark (those are cross-fitted, :func:`mark_best`)."""
    scored = [r for r in rows if not r.is_baseline and not r.mostly_nonanswers
              and r.rates[BOTH].n > 0]
    if not scored:
        return None
    return min(scored, key=lambda r: (-r.rates[BOTH].rate, abs(r.magnitude), r.cell_id))


def mark_best(rows: list[HeadlineRow], verdicts: dict[str, dict[int, Verdicts]]) -> CrossFit:
    """Flag rows that are mostly non-answers; give each steered row its paired difference to
    the baseline; mark the configuration cross-fitting crowns overall (:data:`BEST`, with
    whether its out-of-fold paired interval vs the baseline lies above 0) and within each
    direction ("best of D"). Returns the overall :class:`~reports.selection.CrossFit`."""
    base = next((r for r in rows if r.is_baseline), None)
    for r in rows:
        if r.mostly_nonanswers:
            r.marks.append(NONANSWER_FLAG)
        if base is not None and not r.is_baseline:
            r.delta_both = paired_delta(verdicts.get(r.cell_id, {}),
                                        verdicts.get(base.cell_id, {}))
    by_id = {r.cell_id: r for r in rows}
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        group = [r for r in rows if r.direction == direction or r is base]
        crowned = cross_fit(group, verdicts).crowned
        if crowned is not None:
            by_id[crowned].marks.insert(0, f"best of {direction}")
    selection = cross_fit(rows, verdicts)
    if selection.crowned is not None:
        best = by_id[selection.crowned]
        best.marks.insert(0, BEST)
        best.marks.append(verdict_vs_baseline(selection.delta))
    return selection


def featured_rows(rows: Sequence[HeadlineRow]) -> list[HeadlineRow]:
    """The baseline and one row of each direction: the one marked its best, else its in-sample
    best (not mostly non-answers) by true×informative, else by MC2."""
    out = [r for r in rows if r.is_baseline][:1]
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        group = [r for r in rows if r.direction == direction and not r.is_baseline]
        marked = next((r for r in group if f"best of {direction}" in r.marks), None)
        best = marked or best_row(group) or max(group, key=lambda r: (
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
