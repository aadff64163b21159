"""Assemble a comparison report of one or more runs and write ``index.html`` + ``report.md``.

``write_report(run_dirs, out)`` reads every run first (bad input fails before anything is
written), builds one :class:`reports.render.Document` and writes the HTML, the Markdown and the
Markdown's PNG figures, each file atomically.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from pathlib import Path

from evals.io import atomic_write_bytes, atomic_write_text
from reports import plots
from reports.fingerprint import fingerprint
from reports.load import RunData, load_runs
from reports.render import Document, Figure, Heading, Para, Table, to_html, to_markdown
from reports.tables import (
    BEST,
    BOTH,
    KINDS,
    HeadlineRow,
    choose_examples,
    featured_rows,
    headline_rows,
    human_agreement,
)

DEFAULT_EXAMPLES = 5
CI_NOTE = ("Rates are over the answers the judge scored for that verdict, with 95% Wilson score "
           "intervals in brackets. true×informative (TruthfulQA's headline) counts answers judged "
           "both truthful and informative. Δ is the paired difference in true×informative from "
           "the unsteered baseline on the same questions, with a 95% t-interval; '★ best overall' "
           "marks the steered configuration with the highest true×informative and says whether "
           "that paired interval lies above 0 ('clears baseline'), below it, or spans it "
           "('within baseline's noise'). Unscored "
           "verdicts (no score, a score of an older answer text, or a judge failure) are counted "
           "in the 'unscored' column, never treated as 'no'. MC1/MC2 are TruthfulQA's "
           "multiple-choice scores (MC1 with a Wilson, MC2 with a t-interval); CE is the steered "
           "model's cross-entropy on reference text and KL its divergence from the unsteered "
           "model there (nats/token): the fluency cost.")


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.0f}"


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


def _marks(r: HeadlineRow) -> str | list:
    return [("mark", "\n".join(r.marks))] if r.marks else ""


def _config_cells(r: HeadlineRow) -> list[str]:
    if r.is_baseline:
        return ["baseline (unsteered)", "–", "0"]
    return [r.direction, r.hook, f"{r.magnitude:g}"]


def headline_table(rows: list[HeadlineRow], with_human: bool) -> Table:
    header = ["direction", "hook", "magnitude", "marks", "answers", "% true", "% informative",
              "% true×informative", "Δ true×info vs baseline", "unscored (t/i)"]
    if with_human:
        header += ["human-corrected % true", "human-corrected % informative",
                   "human-corrected % true×informative"]
    header += ["MC1", "MC2", "CE", "KL"]
    body, css = [], []
    for r in rows:
        cells = [*_config_cells(r), _marks(r), str(r.n_answers), _rate(r.rates["truthful"]),
                 _rate(r.rates["informative"]), _rate(r.rates[BOTH]), _delta(r),
                 f"{r.unscored['truthful']}/{r.unscored['informative']}"]
        if with_human:
            cells += [_corrected(r, k) for k in (*KINDS, BOTH)]
        m = r.metrics
        cells += [_with_ci(m, "mc1"), _with_ci(m, "mc2"), _num(m.get("ce")), _num(m.get("kl"), 4)]
        body.append(tuple(cells))
        css.append("baseline" if r.is_baseline else "best" if BEST in r.marks else "")
    return Table(tuple(header), tuple(body), tuple(css), css="headline",
                 num_cols=(2, *range(4, len(header))))


def _verdict(v: bool | None, p: float | None = None) -> str:
    text = "unscored" if v is None else "yes" if v else "no"
    return text + (f" ({p:.2f})" if p is not None and v is not None else "")


def run_section(doc: Document, run: RunData, index: int, n_examples: int) -> None:
    rows = headline_rows(run)
    has_labels = any(r.n_labels for r in rows)
    doc.add(Heading(2, f"Run {index}: {run.name}", anchor=f"run-{index}"))
    if run.judge_id is None:
        doc.add(Para(("No judge has scored this run yet, so only MC1/MC2 and CE/KL are shown. "
                      "Score it with ", ("code", f"truthsteer judge {run.path}"),
                      " and rerun the report."), css="warn"))
    n_steered = sum(not r.is_baseline for r in rows)
    doc.add(Heading(3, "Headline table"),
            Para((f"Judge: {run.judge_id or 'none'}. {n_steered} steered configuration(s). "
                  "The best overall mark picks the highest true×informative among them; its "
                  "interval is not adjusted for that selection, so treat a narrow win as a "
                  "hypothesis to re-test on other questions.",)),
            headline_table(rows, has_labels))
    for direction in sorted({r.direction for r in rows if not r.is_baseline}):
        png = plots.heatmap(rows, direction)
        if png:
            doc.add(Figure(f"run{index}-heatmap-{direction}", png,
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


def agreement_block(doc: Document, run: RunData, index: int) -> None:
    doc.add(Heading(3, "Judge vs people"))
    stats = human_agreement(run)
    if not stats:
        where = ([f"label the drawn sample by opening {run.spotcheck_sample} in a browser"]
                 if run.spotcheck_sample else
                 ["draw a sample with ", ("code", f"truthsteer spotcheck sample {run.path}"),
                  " and label it"])
        doc.add(Para(("No human labels exist for this run yet, so the rates above are the "
                      "judge's alone (its measured agreement on TruthfulQA's human labels is in "
                      "the run's fingerprint). To check it on these answers: ", *where, ", then ",
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


def comparison_table(runs: list[RunData]) -> Table:
    body, css = [], []
    for run in runs:
        for r in featured_rows(headline_rows(run)):
            m = r.metrics
            body.append((run.name, *_config_cells(r), _marks(r), _rate(r.rates["truthful"]),
                         _rate(r.rates["informative"]), _rate(r.rates[BOTH]), _delta(r),
                         _with_ci(m, "mc1"), _with_ci(m, "mc2"), _num(m.get("kl"), 4)))
            css.append("baseline" if r.is_baseline else "best" if BEST in r.marks
                       else "")
    return Table(("run", "direction", "hook", "magnitude", "marks", "% true", "% informative",
                  "% true×informative", "Δ true×info vs baseline", "MC1", "MC2", "KL"),
                 tuple(body), tuple(css), css="headline", num_cols=(3, *range(5, 12)))


def build_document(runs: list[RunData], n_examples: int = DEFAULT_EXAMPLES,
                   notes: list[str] | None = None) -> Document:
    doc = Document("truthsteer report")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for note in notes or []:  # `backticks` mark commands; everything is escaped regardless
        parts = note.split("`")
        doc.add(Para(tuple(("code", p) if i % 2 else p for i, p in enumerate(parts) if p),
                     css="note"))
    doc.add(Para((f"{len(runs)} run(s), generated {stamp}. ", CI_NOTE)))
    doc.add(Heading(2, "Runs", anchor="runs"))
    prints = [fingerprint(r) for r in runs]
    keys = [k for k, _ in prints[0]]
    doc.add(Table(("", *(r.name for r in runs)),
                  tuple((k, *(dict(p)[k] for p in prints)) for k in keys), css="fingerprint"))
    doc.add(Heading(2, "Side by side: baseline and each direction's best", anchor="compare"),
            comparison_table(runs))
    for i, run in enumerate(runs, 1):
        run_section(doc, run, i, n_examples)
    return doc


def write_report(run_dirs: list[str | os.PathLike], out: str | os.PathLike,
                 judge: str | None = None, n_examples: int = DEFAULT_EXAMPLES,
                 notes: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/report.md`` (+ ``out/figures/*.png``); ``notes``
    are paragraphs shown first (plain text, escaped like everything else)."""
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

