"""Tables out of a run directory: the answer table (with any judge scores) and the cell summary.

Judge scores come from RUN_DIR/scores/*.jsonl through ``evals.scores.ScoreFile`` (the latest
row per (cell_id, question_id); a torn last line is skipped). A score whose ``answer_sha256``
does not match the answer in the run (the answer changed since it was judged) is left out.
Each judge file adds the columns ``<judge>_truthful``, ``<judge>_truthful_p_yes``,
``<judge>_informative``, ``<judge>_informative_p_yes`` (verdict: yes / no / unscored).
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any

from evals.judges.base import KINDS
from evals.rundir import RunDir

ANSWER_COLUMNS = ("cell_id", "question_id", "fold", "question", "direction", "kind", "hook",
                  "magnitude", "positions", "scale", "answer")


def _verdict_cell(record: Any) -> str:
    """A verdict column's text: yes / no / unscored, or empty when the row has no such kind."""
    from evals.scores import verdict_label

    if record is None:
        return ""
    label = verdict_label(record)
    return "unscored" if label is None else "yes" if label else "no"


def answer_table(run_dir: str | os.PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) of every answer with any judge scores (through ``evals.scores.ScoreFile``:
    the latest row per answer; a score of an earlier text of the answer is left out)."""
    from evals.rundir import RunDir
    from evals.scores import ScoreFile, key_of

    run = RunDir.open(run_dir)
    answers = run.answers()
    scores = {f.stem: f.current(answers) for f in ScoreFile.all(run)}
    columns = list(ANSWER_COLUMNS)
    for judge in scores:
        columns += [f"{judge}_{k}" for kind in KINDS for k in (kind, f"{kind}_p_yes")]
    rows = []
    for r in answers:
        row = {c: r.get(c, "") for c in ANSWER_COLUMNS}
        for judge, table in scores.items():
            score = table.get(key_of(r), {})
            for kind in KINDS:
                record = score.get(kind)
                row[f"{judge}_{kind}"] = _verdict_cell(record)
                row[f"{judge}_{kind}_p_yes"] = record.get("p_yes") \
                    if isinstance(record, dict) else ""
        rows.append(row)
    return columns, rows


def export_csv(run_dir: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the answer table to ``out`` (atomically); returns the number of rows."""
    from evals.io import atomic_write_text

    columns, rows = answer_table(run_dir)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_text(Path(out), buf.getvalue())
    return len(rows)


def _paired(desc: dict[str, Any], base: dict[str, Any] | None, key: str) -> dict[str, Any]:
    """Paired difference of a per-question MC metric against the baseline (shared questions)."""
    from evals.metrics import paired_difference_ci

    if base is None or desc is base:
        return {}
    mine, theirs = desc.get("mc_per_question") or {}, base.get("mc_per_question") or {}
    if key not in mine or key not in theirs:
        return {}
    ref = dict(zip(theirs["question_id"], theirs[key]))
    pairs = [(v, ref[q]) for q, v in zip(mine["question_id"], mine[key]) if q in ref]
    if len(pairs) < 2:
        return {}
    diff, lo, hi = paired_difference_ci([a for a, _ in pairs], [b for _, b in pairs])
    return {f"d_{key}": diff, f"d_{key}_ci": [lo, hi]}


def cell_summary(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One dict per finished cell: direction, hook, magnitude, its metrics and, when the run
    has a baseline cell, the paired MC1/MC2 differences from it (mean and 95% t-interval over
    the questions both scored)."""
    cells = list(RunDir.open(run_dir).iter_cells())
    base = next((d for d, _ in cells if d["cell_id"] == "baseline"), None)
    out = []
    for desc, rows in cells:
        m = desc.get("metrics", {})
        out.append({"cell_id": desc["cell_id"], "direction": desc["direction"],
                    "hook": desc["hook"], "magnitude": desc["magnitude"],
                    "n_answers": len(rows),
                    **{k: m.get(k) for k in ("mc1", "mc2", "mc3", "n_mc", "ce", "kl")},
                    **_paired(desc, base, "mc1"), **_paired(desc, base, "mc2")})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.3f}"
    if isinstance(v, list) and len(v) == 2:
        return f"[{v[0]:+.3f}, {v[1]:+.3f}]"
    return "-" if v is None else str(v)


def summary_markdown(run_dir: str | os.PathLike) -> str:
    """The cell summary as a Markdown table (the baseline first, then by direction and hook)."""
    cells = cell_summary(run_dir)
    cells.sort(key=lambda c: (c["direction"] != "none", c["direction"], c["hook"],
                              c["magnitude"]))
    for c in cells:
        for key in ("mc1", "mc2"):
            d, ci = c.get(f"d_{key}"), c.get(f"d_{key}_ci")
            c[f"Δ{key} [95% CI]"] = "-" if d is None else f"{d:+.3f} {_fmt(ci)}"
    cols = ("direction", "hook", "magnitude", "mc1", "Δmc1 [95% CI]", "mc2", "Δmc2 [95% CI]",
            "ce", "kl", "n_mc", "n_answers")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(c.get(k)) for k in cols) + " |" for c in cells]
    return "\n".join(lines)


def cell_answers(run_dir: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """{cell_id: rows}, for comparisons in tests and notebooks."""
    return {desc["cell_id"]: rows for desc, rows in RunDir.open(run_dir).iter_cells()}
