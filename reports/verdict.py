"""The verdict a report opens with, in words (pure: no I/O).

What, if anything, beat the unsteered baseline, by how much and how sure, read only from what
the report already computes: the cross-fitted choice (reports.selection: a configuration is
named best only when both folds choose it, and "beat the baseline" only when its paired 95%
interval lies above 0), the rates with their intervals, the non-answer flags and the judge's
measured agreement with people. It never says more than those numbers: when the folds disagree
no configuration is named a winner, and an interval that spans 0 reads "within the baseline's
noise".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from reports.fingerprint import longform_agreement, steered_agreement, tqa_agreement
from reports.rates import BOTH, KINDS, Rate
from reports.render import Para, Span
from reports.selection import MOSTLY_NONANSWERS, CrossFit, verdict_vs_baseline


def pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}"


def rate_text(r: Rate) -> str:
    """``40% [19–64]``: a rate with its 95% Wilson interval (– when nothing was scored)."""
    if r.n == 0:
        return "–"
    lo, hi = r.ci
    return f"{pct(r.rate)}% [{pct(lo)}–{pct(hi)}]"


def delta_text(d: tuple[float, float, float]) -> str:
    """``+6 pts [-4, +16]``: a paired difference in percentage points with its interval."""
    ci = f" [{100 * d[1]:+.0f}, {100 * d[2]:+.0f}]" if all(math.isfinite(x) for x in d[1:]) \
        else ""
    return f"{100 * d[0]:+.0f} pts{ci}"


def _kappa(stats: Any) -> str:
    k = stats.get("kappa") if isinstance(stats, Mapping) else getattr(stats, "kappa", None)
    return f"{k:.2f}" if isinstance(k, (int, float)) and math.isfinite(k) else "n/a"


def _n(stats: Any) -> Any:
    return stats.get("n") if isinstance(stats, Mapping) else getattr(stats, "n", None)


def _kappas(stats: Mapping[str, Any]) -> str:
    return ", ".join(f"{kind} {_kappa(s)}" for kind, s in stats.items())


def result_line(rows: Sequence[Any], sel: CrossFit, judged: bool) -> tuple[list[Span], bool]:
    """(the verdict's first sentence, whether it is a warning rather than a result)."""
    base = next((r for r in rows if r.is_baseline), None)
    steered = [r for r in rows if not r.is_baseline]
    vs = "" if base is None else f" vs the baseline's {rate_text(base.rates[BOTH])}"
    if not judged:
        return ["Not judged yet, so there is no true×informative verdict: only MC1/MC2 and "
                "CE/KL are shown."], True
    if not steered:
        return ["Only the unsteered baseline was run: there is nothing to compare."], True
    if all(r.mostly_nonanswers for r in steered):
        return [f"No configuration can be compared with the baseline: all {len(steered)} "
                "steered configurations were mostly non-answers."], True
    if not all(c.cell_id for c in sel.choices):
        empty = " and ".join(c.fold for c in sel.choices if not c.cell_id)
        return [f"No configuration is marked best: fold {empty} had no eligible steered "
                "configuration with scored answers."], True
    reading = verdict_vs_baseline(sel.delta)
    paired = "" if sel.delta is None else f", {delta_text(sel.delta)} paired on the same questions"
    if sel.crowned is not None:
        name = ("b", sel.choices[0].label)
        rates = f"true×informative {rate_text(sel.estimate)}{vs}{paired}"
        if reading == "clears baseline":
            return [name, f" beat the baseline: {rates}. Both cross-fitting folds chose it, so "
                    "these are out-of-fold rates."], False
        if reading == "below baseline":
            return ["No configuration beat the baseline. Both cross-fitting folds chose ", name,
                    f", and it is below the baseline: {rates}."], False
        if reading == "no paired baseline":
            return ["Both cross-fitting folds chose ", name, f" ({rates}, out-of-fold), but "
                    "there is no paired interval to compare it with the baseline."], False
        return ["No configuration beat the baseline beyond its noise. Both cross-fitting folds "
                "chose ", name, f": {rates}, an interval that spans 0."], False
    a, b = sel.choices
    folds: list[Span] = ["the folds disagree: fold A chose ", ("b", a.label), ", fold B ",
                         ("b", b.label)]
    pooled = f"; pooled out-of-fold {rate_text(sel.estimate)}{vs}"
    diff = "" if sel.delta is None else f", diff {delta_text(sel.delta)}"
    if reading == "clears baseline":
        return ["Picking the best configuration beat the baseline, but no single configuration "
                "did (", *folds, f"{pooled}{diff}: the gain holds out of fold, but which "
                "configuration wins depends on the questions)."], False
    if reading == "below baseline":
        return ["No configuration beat the baseline (", *folds, f"{pooled}{diff}, below the "
                "baseline)."], False
    if reading == "no paired baseline":
        return ["No configuration is marked best (", *folds, f"{pooled}; no paired "
                "baseline)."], False
    return ["No configuration beat the baseline beyond its noise (", *folds,
            f"{pooled}{diff})."], False


def nonanswer_line(rows: Sequence[Any], judged: bool) -> tuple[str, bool] | None:
    """How many configurations were mostly non-answers (None when the run is not judged)."""
    if not judged:
        return None
    if not any(r.nonanswers.n for r in rows):
        return ("Non-answers are not counted: this judge does not run the non-answer "
                "detector, so a configuration that stopped answering cannot be flagged."), True
    steered = [r for r in rows if not r.is_baseline]
    k = sum(r.mostly_nonanswers for r in steered)
    base = any(r.mostly_nonanswers for r in rows if r.is_baseline)
    text = (f"{k} of {len(steered)} steered configurations were mostly non-answers (more than "
            f"{MOSTLY_NONANSWERS:.0%} of their answers refusals, evasions or degenerate text by "
            "the non-answer detector; never marked best)")
    text += "; so was the unsteered baseline." if base else "."
    return ("⚠ " + text if k or base else text), bool(k or base)


def judge_line(judge_id: str | None, judge_info: Mapping[str, Any],
               human: Mapping[str, Any]) -> tuple[list[Span], bool] | None:
    """The judge's measured agreement (Cohen's κ), in one line, each figure naming who made its
    labels: on steered and long-form answers (AI readers' labels, adjudicated by the
    maintainers), on TruthfulQA's labels (people's), and on this run's spot-check labels."""
    if judge_id is None:
        return None
    steered = steered_agreement(judge_info)
    parts = [f"Judge {judge_id}, Cohen's κ: "]
    if steered is None:
        parts.append("⚠ not measured on steered answers, so its verdicts on them are unchecked")
    else:
        where, stats = steered
        parts.append(f"on steered answers {_kappas(stats)} ({where}, "
                     f"n={_n(next(iter(stats.values())))}, AI readers' labels)")
    longform = longform_agreement(judge_info)
    if longform is not None:
        where, stats = longform
        parts.append(f"; on long-form chat answers {_kappas(stats)} ({where}, "
                     f"n={_n(next(iter(stats.values())))}, AI readers' labels)")
    tqa = tqa_agreement(judge_info)
    if tqa is not None:
        where, stats = tqa
        parts.append(f"; on TruthfulQA's labels {_kappas({k: s for k, (_, s) in stats.items()})}"
                     f" ({where}, people's labels)")
    else:
        parts.append("; not measured on TruthfulQA's labels")
    labelled = {k: human[k] for k in KINDS if k in human}
    if labelled:
        parts.append(f"; on this run's spot-check labels {_kappas(labelled)} "
                     f"(n={_n(next(iter(labelled.values())))}, yours)")
    parts.append(".")
    return ["".join(parts)], steered is None


def validated_line(rows: Sequence[Any], outside: Mapping[str, tuple[int, int]] | None,
                   judged: bool) -> tuple[str, bool] | None:
    """Where the judge's measured agreement reaches: how many answers lie outside the kinds of
    text it was measured on (evals/judges/domain.py), per configuration, and the spot check
    that would cover them. None for an unjudged run."""
    from evals.judges.domain import spotcheck_size

    if not judged:
        return None
    if outside is None:
        return ("⚠ This judge records no kinds of text it was measured on, so nothing says its "
                "agreement holds on these answers: spot-check them.", True)
    n_out, n = sum(o for o, _ in outside.values()), sum(t for _, t in outside.values())
    if not n_out:
        return (f"All {n} answers lie within the kinds of text the judge was measured on "
                "(length, claims, lists).", False)
    label = {r.cell_id: r.label for r in rows}
    cells = ", ".join(f"{label.get(c, c)} {o}/{t}" for c, (o, t) in outside.items() if o)
    return (f"⚠ {n_out} of {n} answers ({pct(n_out / n)}%) lie outside the kinds of text the judge "
            f"was measured on (longer, more claims or lists: {cells}); its agreement does not "
            f"cover them. Label about {spotcheck_size(n_out / n, n_out)} of them "
            "(truthsteer spotcheck sample) for a corrected rate within about ±10 points.", True)


def run_verdict(rows: Sequence[Any], sel: CrossFit, judge_id: str | None,
                judge_info: Mapping[str, Any], human: Mapping[str, Any],
                name: str = "", outside: Mapping[str, tuple[int, int]] | None = None
                ) -> list[Para]:
    """One run's verdict: the result, the non-answer count, the judge's agreement; warnings
    (not results) styled as such. ``name`` prefixes the result (several runs)."""
    n_questions = len(sel.folds[0]) + len(sel.folds[1])
    result, warn = result_line(rows, sel, judge_id is not None)
    lead: list[Span] = [("b", name), ": "] if name else []
    tail = f" ({n_questions} questions; intervals are 95%.)" if n_questions else ""
    out = [Para(tuple([*lead, *result, tail]), css="warn" if warn else "verdict")]
    nonanswers = nonanswer_line(rows, judge_id is not None)
    if nonanswers is not None:
        out.append(Para((nonanswers[0],), css="warn" if nonanswers[1] else ""))
    judge = judge_line(judge_id, judge_info, human)
    if judge is not None:
        out.append(Para(tuple(judge[0]), css="warn" if judge[1] else ""))
    validated = validated_line(rows, outside, judge_id is not None)
    if validated is not None:
        out.append(Para((validated[0],), css="warn" if validated[1] else ""))
    return out


def text_of(paras: Sequence[Para]) -> str:
    """The paragraphs' plain text, one per line (for tests and logs)."""
    return "\n".join("".join(s if isinstance(s, str) else s[1] for s in p.spans) for p in paras)


__all__ = ["delta_text", "judge_line", "nonanswer_line", "pct", "rate_text", "result_line",
           "run_verdict", "text_of", "validated_line"]
