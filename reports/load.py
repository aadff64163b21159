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
from evals.io import cache_root
from evals.rundir import RunDir
from evals.scores import ScoreFile


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


def judge_info(judge_id: str | None, scores: ScoreFile | None) -> dict[str, Any]:
    """What is known about the judge: ``scores/<slug>.judge.json`` when the judge wrote one,
    else, for a learned judge (``learned:NAME@DIGEST``), the cfg.json of the cached judge whose
    weights hash starts with DIGEST. Empty when neither is found."""
    record = scores.read_record() if scores is not None else None
    if record is not None:
        return record
    if not judge_id or not judge_id.startswith("learned:") or "@" not in judge_id:
        return {}
    digest = judge_id.rpartition("@")[2]
    root = cache_root() / "judges"
    for cfg in sorted(root.glob("*/cfg.json")) if root.is_dir() else []:
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if str(data.get("weights_sha256", "")).startswith(digest):
            return {"agreement": data.get("agreement", {}), "source": str(cfg.parent),
                    "name": data.get("name"),
                    **({"validated_on": data["validated_on"]} if data.get("validated_on")
                       else {})}
    return {}


def load_run(run_dir: str | os.PathLike, judge: str | None = None,
             name: str | None = None) -> RunData:
    """Read one run for a report; ``judge`` picks a scores file (see
    :meth:`evals.scores.ScoreFile.pick`). Scores are those of the prompt version of the last
    row written (:meth:`~evals.scores.ScoreFile.latest_of_newest_version`)."""
    from evals.spotcheck import read_human_labels

    run = RunDir.open(run_dir)
    cells, answers = [], {}
    for desc, rows in run.iter_cells():
        cells.append(desc)
        answers[str(desc["cell_id"])] = sorted(rows, key=lambda r: int(r["question_id"]))
    if not cells:
        raise InputError(f"{run.path}: no finished cells yet (run or resume the sweep first)")
    score_file = ScoreFile.pick(run, judge)
    scores, version, other = score_file.latest_of_newest_version() if score_file \
        else ({}, None, 0)
    judge_id = next((str(r["judge_id"]) for r in scores.values() if r.get("judge_id")), None)
    if score_file is not None and judge_id is None:
        judge_id = score_file.stem
    sample = run.spotcheck_dir / "label.html"
    return RunData(path=run.path, name=name or run.name, info=run.info(),
                   cells=cells, answers=answers, judge_id=judge_id, prompt_version=version,
                   scores=scores, ignored_score_rows=other, labels=read_human_labels(run),
                   judge_info=judge_info(judge_id, score_file),
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


__all__ = ["RunData", "judge_info", "load_run", "load_runs"]
