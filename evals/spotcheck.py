"""Human spot checks of a run's answers: a stratified sample, a labelling page, label import.

``truthsteer spotcheck sample RUN_DIR`` draws answers stratified across configurations
(``cell_id``) and, when a judge has scored the run, across that judge's truthful verdicts
(equal allocation, so rare verdicts are seen too), and writes into ``RUN_DIR/spotcheck/``:

* ``sample.csv``  one row per item (id, question, references, answer, empty label columns) —
  fill it in a spreadsheet, or
* ``label.html``  a self-contained labelling page (no server, no network) that saves
  ``labels.csv`` (id, truthful, informative);
* ``sample.json`` the sample's design: each item's stratum and weight (stratum size / items
  drawn from it), which the prediction-powered correction needs.

``truthsteer spotcheck import RUN_DIR labels.csv`` validates every row first (unknown ids,
duplicates, bad values: a one-line error, nothing written) and merges the labels into
``RUN_DIR/labels/human.csv`` atomically. An item's id is ``<cell_id>/<question_id>``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evals.errors import InputError
from evals.io import atomic_write_text
from evals.judges.base import KINDS
from evals.rundir import RunDir
from evals.scores import ScoreFile, verdict_label
from evals.truthfulqa import TruthfulQA

LABEL_COLUMNS = KINDS  # the label columns of a spot-check sheet
OVERSAMPLE = 3.0  # an oversampled cell's share of the draws, relative to any other cell
_TRUE = {"yes", "y", "true", "t", "1"}
_FALSE = {"no", "n", "false", "f", "0"}


@dataclass(frozen=True)
class SpotItem:
    """One answer to label, with the references shown beside it and its sampling weight."""

    id: str
    cell_id: str
    question_id: int
    question: str
    answer: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    judge_truthful: str | None
    judge_informative: str | None
    stratum: str
    weight: float


def item_id(cell_id: str, question_id: int) -> str:
    return f"{cell_id}/{question_id}"


def _yes_no(value: Any) -> str | None:
    label = verdict_label(value)
    return None if label is None else ("yes" if label else "no")


def read_verdicts(run_dir: str | os.PathLike | RunDir, judge: str | None = None,
                  answers: Sequence[dict[str, Any]] | None = None
                  ) -> tuple[str | None, dict[tuple[str, int], tuple[str | None, str | None]]]:
    """(judge id, {(cell_id, question_id): (truthful, informative)}) as "yes"/"no"/None.

    The score file is chosen by :meth:`evals.scores.ScoreFile.pick` (``judge``: an id, its
    slug or the file's name; needed when several judges scored the run). With ``answers``,
    a verdict on an answer that has changed since it was scored is left out.
    """
    scores = ScoreFile.pick(RunDir.open(run_dir), judge)
    if scores is None:
        return None, {}
    rows = scores.current(answers) if answers is not None else scores.latest()
    verdicts = {key: (_yes_no(row.get("truthful")), _yes_no(row.get("informative")))
                for key, row in rows.items()}
    return scores.judge_id() or scores.stem, verdicts


def allocate(sizes: dict[Any, int], n: int) -> dict[Any, int]:
    """Split ``n`` draws as equally as possible across strata, none above its size."""
    take = {k: 0 for k in sizes}
    left = min(n, sum(sizes.values()))
    while left > 0:
        open_ = sorted((k for k in sizes if take[k] < sizes[k]), key=lambda k: (take[k], str(k)))
        share = max(1, left // len(open_))
        for k in open_:
            add = min(share, sizes[k] - take[k], left)
            take[k] += add
            left -= add
            if left == 0:
                break
    return take


def allocate_weighted(sizes: dict[Any, int], n: int, weights: dict[Any, float]) -> dict[Any, int]:
    """Split ``n`` draws across strata in proportion to ``weights`` (default 1), none above
    its size: one draw at a time to the open stratum furthest below its weighted share (ties
    by name). Equal weights give :func:`allocate`'s equal split."""
    take = {k: 0 for k in sizes}
    for _ in range(min(n, sum(sizes.values()))):
        k = min((k for k in sizes if take[k] < sizes[k]),
                key=lambda k: ((take[k] + 1) / weights.get(k, 1.0), str(k)))
        take[k] += 1
    return take


def draw_sample(answers: Sequence[dict[str, Any]],
                verdicts: dict[tuple[str, int], tuple[str | None, str | None]],
                tq: TruthfulQA | None, n: int, seed: int = 0,
                oversample: Sequence[str] = ()) -> list[SpotItem]:
    """A stratified sample of ``n`` answer rows: equal across cells (cells in ``oversample``
    get :data:`OVERSAMPLE` times the share of the others), then across verdicts. Weights are
    per stratum (size / drawn), so per-cell corrected rates stay unbiased either way."""
    if n < 1:
        raise InputError(f"--n {n}: must be at least 1")
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for row in answers:
        by_cell.setdefault(str(row["cell_id"]), []).append(row)
    if not by_cell:
        raise InputError("the run has no finished answers to sample")
    rng = random.Random(seed)
    sizes = {c: len(rows) for c, rows in by_cell.items()}
    focus = {str(c) for c in oversample} & set(by_cell)
    per_cell = allocate_weighted(sizes, n, {c: OVERSAMPLE for c in focus}) if focus else \
        allocate(sizes, n)
    items: list[SpotItem] = []
    for cell, rows in sorted(by_cell.items()):
        strata: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            v = verdicts.get((cell, int(row["question_id"])), (None, None))[0]
            strata.setdefault(f"{cell}|judge_truthful={v or 'none'}", []).append(row)
        take = allocate({s: len(r) for s, r in strata.items()}, per_cell[cell])
        for stratum, srows in sorted(strata.items()):
            if not take[stratum]:
                continue
            chosen = rng.sample(sorted(srows, key=lambda r: int(r["question_id"])), take[stratum])
            weight = len(srows) / take[stratum]
            for row in chosen:
                items.append(_item(row, cell, verdicts, tq, stratum, weight))
    rng.shuffle(items)  # labellers see configurations interleaved, in no telling order
    return items


def _item(row: dict[str, Any], cell: str, verdicts, tq: TruthfulQA | None, stratum: str,
          weight: float) -> SpotItem:
    qid = int(row["question_id"])
    question = str(row.get("question", ""))
    ref = None
    if tq is not None and 0 <= qid < len(tq.questions):
        ref = tq.questions[qid]
        if question and ref.question.strip() != question.strip():
            ref = next((q for q in tq.questions if q.question.strip() == question.strip()), None)
    t, i = verdicts.get((cell, qid), (None, None))
    return SpotItem(
        id=item_id(cell, qid), cell_id=cell, question_id=qid,
        question=question or (ref.question if ref else ""), answer=str(row.get("answer", "")),
        best_answer=ref.best_answer if ref else "",
        correct_answers=ref.correct_answers if ref else (),
        incorrect_answers=ref.incorrect_answers if ref else (),
        judge_truthful=t, judge_informative=i, stratum=stratum, weight=weight)


def write_sample(run_dir: Path, items: Sequence[SpotItem], meta: dict[str, Any]) -> list[Path]:
    """Write sample.csv, label.html and sample.json into RUN_DIR/spotcheck/ (atomically)."""
    from evals.spotcheck_page import render_page

    out = RunDir(run_dir).spotcheck_dir
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["id", "cell_id", "question_id", "question", "best_answer",
                     "correct_answers", "incorrect_answers", "answer", *LABEL_COLUMNS])
    for it in items:
        writer.writerow([it.id, it.cell_id, it.question_id, it.question, it.best_answer,
                         "; ".join(it.correct_answers), "; ".join(it.incorrect_answers),
                         it.answer, "", ""])
    paths = [out / "sample.csv", out / "label.html", out / "sample.json"]
    atomic_write_text(paths[0], buf.getvalue())
    atomic_write_text(paths[1], render_page(items, title=f"Spot check: {Path(run_dir).name}",
                                            key=meta.get("key", "")))
    atomic_write_text(paths[2], json.dumps({**meta, "items": [asdict(it) for it in items]},
                                           indent=2) + "\n")
    return paths


def sample_run(run_dir: str | os.PathLike, n: int = 100, judge: str | None = None,
               seed: int = 0, truthfulqa: TruthfulQA | None = None,
               oversample: Sequence[str] = ()) -> tuple[list[Path], dict]:
    """Draw and write a spot-check sample of a run; returns (paths, summary). ``oversample``:
    cell ids drawn :data:`OVERSAMPLE` times as often as the others (the report's best
    configurations and the baseline: reports.spotcheck.sample_for_report picks them)."""
    run = RunDir.open(run_dir)
    path = run.path
    answers = run.answers()
    judge_id, verdicts = read_verdicts(run, judge, answers)
    items = draw_sample(answers, verdicts, truthfulqa, n, seed, oversample)
    cells = {str(r["cell_id"]) for r in answers}
    focus = sorted(c for c in dict.fromkeys(map(str, oversample)) if c in cells)
    meta = {"n": len(items), "seed": seed, "judge_id": judge_id,
            "stratified_by": ["cell_id"] + (["judge truthful verdict"] if verdicts else []),
            "oversampled": {"cells": focus, "factor": OVERSAMPLE} if focus else None,
            "key": f"{path.resolve()}|{seed}|{len(items)}"}
    paths = write_sample(path, items, meta)
    n_cells = len({it.cell_id for it in items})
    return paths, {"n": len(items), "cells": n_cells, "judge_id": judge_id,
                   **({"oversampled": focus} if focus else {})}


def _parse_value(value: str, where: str, column: str) -> str:
    v = value.strip().lower()
    if v == "":
        return ""
    if v in _TRUE:
        return "yes"
    if v in _FALSE:
        return "no"
    raise InputError(f"{where}: {column}={value.strip()[:20]!r} is not a label "
                     "(use yes/no, true/false, or leave it blank)")


def parse_labels_csv(text: str, origin: str, valid_ids: set[str]) -> dict[str, dict[str, str]]:
    """{id: {"truthful": "yes"|"no"|"", "informative": …}}; InputError on the first problem."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    reader.fieldnames = header
    if "id" not in header or not any(c in header for c in LABEL_COLUMNS):
        raise InputError(f"{origin}: needs an 'id' column and a 'truthful' and/or 'informative' "
                         f"column (found: {', '.join(header) or 'nothing'})")
    labels: dict[str, dict[str, str]] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        where = f"{origin}:{reader.line_num}"
        if None in row:
            raise InputError(f"{where}: more fields than the header (check quoting)")
        rid = (row.get("id") or "").strip()
        if not rid:
            raise InputError(f"{where}: empty id")
        if rid not in valid_ids:
            raise InputError(f"{where}: unknown id {rid[:60]!r} (not an answer of this run)")
        if rid in labels:
            raise InputError(f"{where}: duplicate id {rid[:60]!r} (first at line {first_line[rid]})")
        first_line[rid] = reader.line_num
        labels[rid] = {c: _parse_value(row.get(c) or "", where, c) for c in LABEL_COLUMNS}
    return labels


def read_human_labels(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """The run's imported labels (RUN_DIR/labels/human.csv), or [] when none were imported."""
    path = RunDir(run_dir).human_labels_path
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def import_labels(run_dir: str | os.PathLike, labels_csv: str | os.PathLike) -> dict[str, int]:
    """Validate ``labels_csv`` against the run and merge it into RUN_DIR/labels/human.csv."""
    run = RunDir.open(run_dir)
    path = run.path
    src = Path(labels_csv)
    if not src.is_file():
        raise InputError(f"{src}: no such labels file")
    try:
        text = src.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{src}: not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    answers = {item_id(str(r["cell_id"]), int(r["question_id"])): r for r in run.answers()}
    new = parse_labels_csv(text, str(src), set(answers))
    new = {k: v for k, v in new.items() if any(v.values())}
    weights = {}
    design = run.spotcheck_dir / "sample.json"
    if design.is_file():
        weights = {it["id"]: it["weight"] for it in json.loads(design.read_text())["items"]}
    merged = {r["id"]: r for r in read_human_labels(path)}
    updated = sum(1 for k in new if k in merged)
    for rid, vals in new.items():
        row = answers[rid]
        merged[rid] = {"id": rid, "cell_id": str(row["cell_id"]),
                       "question_id": str(row["question_id"]), **vals,
                       "weight": str(weights.get(rid, merged.get(rid, {}).get("weight", "")))}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ["id", "cell_id", "question_id", *LABEL_COLUMNS, "weight"])
    writer.writeheader()
    for rid in sorted(merged):
        writer.writerow(merged[rid])
    atomic_write_text(run.human_labels_path, buf.getvalue())
    return {"imported": len(new), "updated": updated, "total": len(merged)}
