"""Read what a report needs from a run directory (the only module of reports/ that reads runs).

A :class:`RunData` holds one run's run.json, its finished cells (descriptions and answer rows),
the chosen judge's score rows, the imported human labels and whatever is known about the
judge's measured agreement with people. Everything else in reports/ is computed from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals.errors import InputError
from evals.runs import check_run_dir, iter_cells, judge_slug, load_run_info, score_files


@dataclass
class RunData:
    """One run, as read from disk. ``scores`` maps (cell_id, question_id) to a score row."""

    path: Path
    name: str
    info: dict[str, Any]
    cells: list[dict[str, Any]]
    answers: dict[str, list[dict[str, Any]]]
    judge_id: str | None = None
    prompt_version: str | None = None
    scores: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    ignored_score_rows: int = 0  # rows of other prompt versions than the one reported
    labels: list[dict[str, str]] = field(default_factory=list)
    judge_info: dict[str, Any] = field(default_factory=dict)
    spotcheck_sample: Path | None = None


def _first_judge_id(path: Path) -> str | None:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("judge_id"):
                return str(row["judge_id"])
    return None


def pick_score_file(run_dir: Path, judge: str | None) -> Path | None:
    """The scores file of ``judge`` (an id, its slug, or the file's name), or the only one.

    None when the run has no scores (and no judge was asked for); InputError when ``judge``
    scored nothing here, or when several judges did and none was chosen.
    """
    files = score_files(run_dir)
    if judge is not None:
        wanted = {judge, judge_slug(judge), judge.removesuffix(".jsonl")}
        hits = [f for f in files if f.stem in wanted] or [
            f for f in files if _first_judge_id(f) in (judge,)]
        if not hits:
            have = ", ".join(f.stem for f in files) or "none"
            raise InputError(f"--judge {judge}: {run_dir} has no scores by that judge (it has: "
                             f"{have}; score it with `truthsteer judge {run_dir} --judge "
                             f"{judge}`)")
        return hits[0]
    if len(files) > 1:
        raise InputError(f"{run_dir}: several judges scored this run "
                         f"({', '.join(f.stem for f in files)}); pick one with --judge")
    return files[0] if files else None


def read_scores(path: Path) -> tuple[dict[tuple[str, int], dict[str, Any]], str | None, int]:
    """(latest row per key of the newest prompt version, that version, rows of other versions).

    A file may hold rows of several prompt versions after a judge's prompt changed; the report
    uses the version of the last row written and counts the others (their items count as
    unscored unless rescored). A torn last line is skipped, as in evals.scores.
    """
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "cell_id" in row and "question_id" in row:
                rows.append(row)
    if not rows:
        return {}, None, 0
    version = rows[-1].get("prompt_version")
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    other = 0
    for row in rows:
        if row.get("prompt_version") != version:
            other += 1
            continue
        latest[(str(row["cell_id"]), int(row["question_id"]))] = row
    return latest, version, other


def judge_info(run_dir: Path, judge_id: str | None, score_file: Path | None) -> dict[str, Any]:
    """What is known about the judge: ``scores/<slug>.judge.json`` when the judge wrote one,
    else, for a learned judge (``learned:NAME@DIGEST``), the cfg.json of the cached judge whose
    weights hash starts with DIGEST. Empty when neither is found."""
    if score_file is not None:
        beside = score_file.with_name(score_file.stem + ".judge.json")
        if beside.is_file():
            return json.loads(beside.read_text(encoding="utf-8"))
    if not judge_id or not judge_id.startswith("learned:") or "@" not in judge_id:
        return {}
    digest = judge_id.rpartition("@")[2]
    from evals.judges.learned import default_cache_root

    root = default_cache_root() / "judges"
    for cfg in sorted(root.glob("*/cfg.json")) if root.is_dir() else []:
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if str(data.get("weights_sha256", "")).startswith(digest):
            return {"agreement": data.get("agreement", {}), "source": str(cfg.parent),
                    "name": data.get("name")}
    return {}


def load_run(run_dir: str | os.PathLike, judge: str | None = None,
             name: str | None = None) -> RunData:
    """Read one run for a report; ``judge`` picks a scores file (see :func:`pick_score_file`)."""
    from evals.spotcheck import read_human_labels

    path = check_run_dir(run_dir)
    cells, answers = [], {}
    for desc, rows in iter_cells(path):
        cells.append(desc)
        answers[str(desc["cell_id"])] = sorted(rows, key=lambda r: int(r["question_id"]))
    if not cells:
        raise InputError(f"{path}: no finished cells yet (run or resume the sweep first)")
    score_file = pick_score_file(path, judge)
    scores, version, other = read_scores(score_file) if score_file else ({}, None, 0)
    judge_id = next((str(r["judge_id"]) for r in scores.values() if r.get("judge_id")), None)
    if score_file is not None and judge_id is None:
        judge_id = score_file.stem
    sample = path / "spotcheck" / "label.html"
    return RunData(path=path, name=name or path.resolve().name, info=load_run_info(path),
                   cells=cells, answers=answers, judge_id=judge_id, prompt_version=version,
                   scores=scores, ignored_score_rows=other, labels=read_human_labels(path),
                   judge_info=judge_info(path, judge_id, score_file),
                   spotcheck_sample=sample if sample.is_file() else None)


def load_runs(run_dirs: list[str | os.PathLike], judge: str | None = None) -> list[RunData]:
    """Several runs, with display names made unique (``name``, ``name (2)``, ...)."""
    runs, seen = [], {}
    for d in run_dirs:
        run = load_run(d, judge)
        base = run.name
        seen[base] = seen.get(base, 0) + 1
        if seen[base] > 1:
            run.name = f"{base} ({seen[base]})"
        runs.append(run)
    return runs


__all__ = ["RunData", "load_run", "load_runs", "pick_score_file", "read_scores", "score_files"]
