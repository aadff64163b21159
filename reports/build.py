"""Assemble a comparison report of one or more runs and write ``index.html`` + ``report.md``.

``write_report(run_dirs, out)`` reads every run first (bad input fails before anything is
written), builds one :class:`reports.render.Document` and writes the HTML, the Markdown and the
Markdown's PNG figures, each file atomically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
from pathlib import Path

from evals.io import atomic_write_bytes, atomic_write_text
from reports import plots
from reports.fingerprint import MEASURE_STEERED, fingerprint, steered_agreement
from reports.guide import HOW_TO_READ, how_to_read
from reports.load import RunData, load_runs
from reports.render import Document, Figure, Heading, Para, Table, to_html, to_markdown
from reports.selection import MOSTLY_NONANSWERS, NONANSWER_FLAG, CrossFit
from reports.tables import (
    BEST,
    BOTH,
    KINDS,
    Headline,
    HeadlineRow,
    Rate,
    choose_examples,
    featured_rows,
    headline,
    human_agreement,
)
from reports.verdict import pct as _pct
from reports.verdict import run_verdict

DEFAULT_EXAMPLES = 5


def _slug(name: str) -> str:
    """A file-name-safe, unique stand-in for a name from the data (figure file names)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:40] or "x"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _rate(r) -> str | list:
    if r.n == 0:
        return "–"
    lo, hi = r.ci
    return [f"{_pct(r.rate)}%", ("small", f"\n[{_pct(lo)}–{_pct(hi)}]")]


def _num(x, digits: int = 3) -> str:
    return f"{float(x):.{digits}f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _with_ci(m: dict, key: str) -> str | list:
    v, ci = m.get(key), m.get(f"{key}_ci")
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "–"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(
            isinstance(c, (int, float)) and math.isfinite(c) for c in ci):
        return [f"{v:.3f}", ("small", f"\n[{ci[0]:.3f}–{ci[1]:.3f}]")]
    return f"{v:.3f}"


def _delta(row: HeadlineRow) -> str:
    if row.is_baseline:
        return "(reference)"
    d = row.delta_both
    if d is None or not math.isfinite(d[0]):
        return "–"
    lo, hi = ("–", "–") if not math.isfinite(d[1]) else (f"{100 * d[1]:+.0f}", f"{100 * d[2]:+.0f}")
    return [f"{100 * d[0]:+.0f} pts", ("small", f"\n[{lo}, {hi}]")]


def _corrected(row: HeadlineRow, kind: str) -> str | list:
    c = row.corrected.get(kind)
    if c is None or not math.isfinite(c.corrected):
        return "–"
    clip = lambda x: min(1.0, max(0.0, x))
    ci = "" if not math.isfinite(c.ci) else f"[{_pct(clip(c.low))}–{_pct(clip(c.high))}] "
    return [f"{_pct(clip(c.corrected))}%", ("small", f"\n{ci}n={c.n_labelled}")]


def _share(r: Rate) -> str | list:
    """A share with its k/n (– when not measured)."""
    return "–" if r.n == 0 else [f"{_pct(r.rate)}%", ("small", f"\n{r.k}/{r.n}")]


def _marks(r: HeadlineRow) -> str | list:
    """Marks in green, the non-answer flag (a warning, not an award) in amber."""
    good = [m for m in r.marks if m != NONANSWER_FLAG]
    spans: list = [("mark", "\n".join(good))] if good else []
    if NONANSWER_FLAG in r.marks:
        spans.append(("flag", ("\n" if good else "") + NONANSWER_FLAG))
    return spans or ""


def _config_cells(r: HeadlineRow) -> list[str]:
    if r.is_baseline:
        return ["baseline (unsteered)", "–", "0"]
    return [r.direction, r.hook, f"{r.magnitude:g}"]


def headline_table(rows: list[HeadlineRow], with_human: bool) -> Table:
    header = ["direction", "hook", "magnitude", "marks", "answers", "non-answers", "% true",
              "% informative", "% true×informative", "Δ true×info vs baseline", "unscored (t/i)"]
    if with_human:
        header += ["human-corrected % true", "human-corrected % informative",
                   "human-corrected % true×informative"]
    header += ["MC1", "MC2", "CE", "KL"]
    body, css = [], []
    for r in rows:
        cells = [*_config_cells(r), _marks(r), str(r.n_answers), _share(r.nonanswers),
                 _rate(r.rates["truthful"]),
                 _rate(r.rates["informative"]), _rate(r.rates[BOTH]), _delta(r),
                 f"{r.unscored['truthful']}/{r.unscored['informative']}"]
        if with_human:
            cells += [_corrected(r, k) for k in (*KINDS, BOTH)]
        m = r.metrics
        cells += [_with_ci(m, "mc1"), _with_ci(m, "mc2"), _num(m.get("ce")), _num(m.get("kl"), 4)]
        body.append(tuple(cells))
        css.append("baseline" if r.is_baseline else "best" if BEST in r.marks else "")
    return Table(tuple(header), tuple(body), tuple(css), css="headline",
                 num_cols=(2, *range(4, len(header))),
                 wrap_cols=tuple(range(11, len(header) - 2)))  # human-corrected, MC1, MC2


def _verdict(v: bool | None, p: float | None = None) -> str:
    text = "unscored" if v is None else "yes" if v else "no"
    return text + (f" ({p:.2f})" if p is not None and v is not None else "")


def run_section(doc: Document, run: RunData, index: int, n_examples: int,
                head: Headline | None = None) -> None:
    head = head or headline(run)
    rows = head.rows
    has_labels = any(r.n_labels for r in rows)
    doc.add(Heading(2, f"Run {index}: {run.name}", anchor=f"run-{index}"))
    if run.judge_id is None:
        doc.add(Para(("No judge has scored this run yet, so only MC1/MC2 and CE/KL are shown. "
                      "Score it with ", ("code", f"truthsteer judge {run.path}"),
                      " and rerun the report."), css="warn"))
    elif steered_agreement(run.judge_info) is None:
        doc.add(Para((f"The judge ({run.judge_id}) has not been measured on steered text, so "
                      "its verdicts on steered answers are unchecked: steering at large "
                      "magnitudes produces evasions, self-talk and repetition that a judge "
                      "validated on TruthfulQA's labels alone can call truthful and "
                      "informative. Measure it on the project's steered development set with ",
                      ("code", MEASURE_STEERED), " (JUDGE: ", run.judge_id,
                      "), or spot-check this run's answers."), css="warn"))
    n_steered = sum(not r.is_baseline for r in rows)
    has_detector = any(r.nonanswers.n for r in rows)
    detector = ("" if has_detector or run.judge_id is None else
                " This judge does not run the non-answer detector, so no configuration can be "
                "flagged as mostly non-answers; a learned judge (the offline default) does.")
    doc.add(Heading(3, "Headline table"),
            Para((f"Judge: {run.judge_id or 'none'}. {n_steered} steered configuration(s). "
                  "The best overall mark is chosen on one fold of questions and rated on the "
                  "other (see 'Choosing the best configuration' below).", detector)),
            headline_table(rows, has_labels))
    selection_block(doc, rows, head.selection)
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        png = plots.heatmap(rows, direction)
        if png:
            doc.add(Figure(f"run{index}-heatmap-{_slug(direction)}", png,
                           f"heat map of % true×informative for {direction} over layer × "
                           "magnitude", f"{run.name}: {direction} — % true×informative by layer "
                           "and magnitude (magnitude 0 is the shared baseline)."))
    png = plots.tradeoff(rows)
    if png:
        doc.add(Figure(f"run{index}-tradeoff", png, "truthfulness vs informativeness and "
                       "true×informative vs KL as magnitude grows",
                       f"{run.name}: each line is one direction at one hook, from the baseline "
                       "(■) outwards by magnitude."))
    agreement_block(doc, run, index)
    examples_block(doc, run, rows, n_examples)


def _fold_line(c, label_of) -> list:
    if c.cell_id is None:
        return [f"Fold {c.fold}: no steered configuration that is not mostly non-answers was "
                "scored on it."]
    lo, hi = c.out_of_fold.ci
    oof = ("not rated (no scored answers on the other fold)" if c.out_of_fold.n == 0 else
           f"{_pct(c.out_of_fold.rate)}% [{_pct(lo)}–{_pct(hi)}] on the other fold's "
           f"{c.out_of_fold.n} answers")
    return [f"Fold {c.fold} chose ", ("b", label_of(c.cell_id)),
            f" ({_pct(c.in_fold.rate)}% true×informative in-sample on fold {c.fold}); "
            f"out-of-fold: {oof}. "]


def selection_block(doc: Document, rows: list[HeadlineRow], sel: CrossFit) -> None:
    """How the best configuration was chosen, with out-of-fold rates, the human-corrected
    true×informative of the rows the report features and the flagged configurations."""
    by_id = {r.cell_id: r for r in rows}
    label = lambda cid: by_id[cid].label
    doc.add(Heading(3, "Choosing the best configuration"))
    sizes = f"{len(sel.folds[0])} and {len(sel.folds[1])} questions"
    words: list = [f"The questions were split into two folds ({sizes}, by a hash of the "
                   f"question id, seed {sel.seed}). Each fold chose the steered configuration "
                   "with the highest judged true×informative on its own questions (in-sample) "
                   "and was rated on the other fold's questions (out-of-fold). "]
    for c in sel.choices:
        words += _fold_line(c, label)
    if sel.crowned is not None:
        r = by_id[sel.crowned]
        lo, hi = r.rates[BOTH].ci
        words += ["Both folds chose it, so it is marked '", BEST, "': its true×informative "
                  f"over both folds, {_pct(r.rates[BOTH].rate)}% [{_pct(lo)}–{_pct(hi)}], is "
                  "made of out-of-fold rates only, and its interval is honest for the choice."]
    elif all(c.cell_id for c in sel.choices):
        lo, hi = sel.estimate.ci
        words += ["The folds disagree, so no configuration is marked best: the winner depends "
                  "on which questions are asked. The chosen configurations' pooled out-of-fold "
                  f"true×informative is {_pct(sel.estimate.rate)}% [{_pct(lo)}–{_pct(hi)}]."]
    else:
        words += ["So no configuration is marked best."]
    if sel.delta is not None and sel.crowned is None and all(c.cell_id for c in sel.choices):
        d = sel.delta
        words += [f" Paired with the baseline on the same questions: {100 * d[0]:+.0f} pts"
                  + (f" [{100 * d[1]:+.0f}, {100 * d[2]:+.0f}]." if all(
                      math.isfinite(x) for x in d[1:]) else ".")]
    doc.add(Para(tuple(words)))
    if sel.excluded:
        doc.add(Para((f"Not eligible ({NONANSWER_FLAG}: more than {MOSTLY_NONANSWERS:.0%} of "
                      "their answers are non-answers by the detector): "
                      + "; ".join(label(c) for c in sel.excluded) + ". A high % true there "
                      "means the model stopped answering, not that it became truthful.",),
                     css="warn"))
    featured = [r for r in rows if r.is_baseline][:1] + [
        by_id[c] for c in dict.fromkeys(c.cell_id for c in sel.choices if c.cell_id)]
    if not any(r.n_labels for r in featured):
        return
    body = []
    for r in featured:
        role = "baseline" if r.is_baseline else ", ".join(
            f"chosen on fold {c.fold}" for c in sel.choices if c.cell_id == r.cell_id)
        body.append((r.label, role, _rate(r.rates[BOTH]), _corrected(r, BOTH)))
    doc.add(Para(("Human-corrected (prediction-powered, from this run's spot-check labels) "
                  "true×informative of the baseline and the chosen configuration(s); '–' where "
                  "none of its answers were labelled.",)),
            Table(("configuration", "role", "judge: % true×informative",
                   "human-corrected % true×informative"), tuple(body), num_cols=(2, 3)))


def agreement_block(doc: Document, run: RunData, index: int) -> None:
    doc.add(Heading(3, "Judge vs people"))
    stats = human_agreement(run)
    if not stats:
        where = ([f"label the drawn sample by opening {run.spotcheck_sample} in a browser"]
                 if run.spotcheck_sample else
                 ["draw a sample with ", ("code", f"truthsteer spotcheck sample {run.path}"),
                  " and label it"])
        doc.add(Para(("No human labels exist for this run yet, so the rates above are the "
                      "judge's alone (its measured agreement, on TruthfulQA's human labels and on "
                      "steered answers where measured, is in the run's fingerprint). To check it "
                      "on these answers: ", *where, ", then ",
                      ("code", f"truthsteer spotcheck import {run.path} labels.csv"),
                      " and rerun the report for human-corrected rates."), css="note"))
        return
    body = []
    for kind, a in stats.items():
        body.append((kind, str(a.n), str(a.n_unscored), _num(a.accuracy, 2), _num(a.kappa, 2),
                     _num(a.auc, 2), f"{_pct(a.judge_rate)}%", f"{_pct(a.human_rate)}%",
                     f"{100 * a.bias:+.0f} ± {_pct(a.bias_ci)} pts"))
    doc.add(Para(("Pooled over every labelled answer of the run (a stratified sample, so these "
                  "describe the sample; the corrected rates in the headline table use its "
                  "weights).",)),
            Table(("verdict", "labelled", "judge unscored", "accuracy", "Cohen's κ", "AUC",
                   "judge rate", "human rate", "bias (judge − human, 95% CI)"), tuple(body),
                  num_cols=tuple(range(1, 9))))
    png = plots.agreement_figure(stats)
    if png:
        doc.add(Figure(f"run{index}-agreement", png, "judge vs human confusion matrices and bias",
                       f"{run.name}: judge verdicts against human labels."))


def examples_block(doc: Document, run: RunData, rows: list[HeadlineRow], n: int) -> None:
    examples = choose_examples(run, rows, n)
    if not examples:
        return
    doc.add(Heading(3, "Example answers"),
            Para((f"{len(examples)} question(s) where steering changed the judge's verdicts most "
                  "(ties: where the answer text changed, then by question id), the baseline's "
                  "answer beside each direction's best configuration. Judge verdicts show "
                  "P(yes) in brackets where the judge gives one.",)))
    for ex in examples:
        body = []
        for a in ex.answers:
            human = "–" if a.human is None else \
                f"true: {a.human[0]}, informative: {a.human[1]}"
            body.append((a.label, a.answer, _verdict(a.judge[0], a.p_yes[0]),
                         _verdict(a.judge[1], a.p_yes[1]), human))
        doc.add(Table(("configuration", "answer", "judge: truthful", "judge: informative",
                       "human label"), tuple(body), css="examples",
                      caption=f"Q{ex.question_id}: {ex.question}"))


def comparison_table(runs: list[RunData], heads: list[Headline] | None = None) -> Table:
    body, css = [], []
    for run, head in zip(runs, heads or [headline(r) for r in runs]):
        for r in featured_rows(head.rows):
            m = r.metrics
            body.append((run.name, *_config_cells(r), _marks(r), _share(r.nonanswers),
                         _rate(r.rates["truthful"]), _rate(r.rates["informative"]),
                         _rate(r.rates[BOTH]), _delta(r),
                         _with_ci(m, "mc1"), _with_ci(m, "mc2"), _num(m.get("kl"), 4)))
            css.append("baseline" if r.is_baseline else "best" if BEST in r.marks
                       else "")
    return Table(("run", "direction", "hook", "magnitude", "marks", "non-answers", "% true",
                  "% informative", "% true×informative", "Δ true×info vs baseline", "MC1", "MC2",
                  "KL"), tuple(body), tuple(css), css="headline", num_cols=(3, *range(5, 13)),
                 wrap_cols=(10, 11))


def outside_validated(run: RunData) -> dict[str, tuple[int, int]] | None:
    """{cell_id: (answers outside the text the judge was measured on, answers)}, or None when
    the judge's record names no validated text (evals/judges/domain.py)."""
    from evals.judges.domain import outside_share

    boxes = run.judge_info.get("validated_on")
    if not boxes:
        return None
    return {cid: outside_share([r["answer"] for r in rows], boxes)
            for cid, rows in sorted(run.answers.items())}


def build_document(runs: list[RunData], n_examples: int = DEFAULT_EXAMPLES,
                   notes: list[str] | None = None) -> Document:
    """Verdict first (reports.verdict), then the results (side by side, each run's tables,
    figures and checks), what was run (fingerprints), and how to read it all (reports.guide)."""
    doc = Document("truthsteer report")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    heads = [headline(r) for r in runs]
    doc.add(Heading(2, "Verdict", anchor="verdict"))
    for i, (run, head) in enumerate(zip(runs, heads), 1):
        doc.add(*run_verdict(head.rows, head.selection, run.judge_id, run.judge_info,
                             human_agreement(run),
                             name=f"Run {i}, {run.name}" if len(runs) > 1 else "",
                             outside=outside_validated(run)))
    doc.add(Para((f"{len(runs)} run(s), generated {stamp}. What each column and mark means"
                  + (f", and {len(notes)} note(s) on how this report was made," if notes else "")
                  + f" is under '{HOW_TO_READ}' at the end.",)))
    doc.add(Heading(2, "Side by side: baseline and each direction's best", anchor="compare"),
            comparison_table(runs, heads))
    for i, (run, head) in enumerate(zip(runs, heads), 1):
        run_section(doc, run, i, n_examples, head)
    doc.add(Heading(2, "Runs", anchor="runs"))
    prints = [fingerprint(r) for r in runs]
    keys = [k for k, _ in prints[0]]
    doc.add(Table(("", *(r.name for r in runs)),
                  tuple((k, *(dict(p)[k] for p in prints)) for k in keys), css="fingerprint"))
    doc.add(*how_to_read(notes))
    return doc


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike,
                 judge: str | None = None, n_examples: int = DEFAULT_EXAMPLES,
                 notes: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/report.md`` (+ ``out/figures/*.png``); ``notes``
    are paragraphs on how the report was made, shown in its closing 'How to read this report'
    section (plain text, escaped like everything else)."""
    from evals.errors import InputError

    if not run_dirs:
        raise InputError("give at least one RUN_DIR")
    if n_examples < 0:
        raise InputError(f"--examples {n_examples}: must be >= 0")
    runs = load_runs(list(run_dirs), judge)
    doc = build_document(runs, n_examples, notes)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    markdown, files = to_markdown(doc)
    for rel, data in files.items():
        atomic_write_bytes(out / rel, data)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "index.html", to_html(doc))
    return out / "index.html", out / "report.md"

