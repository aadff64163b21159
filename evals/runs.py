"""Deprecated: the run-folder functions of before :class:`evals.rundir.RunDir`, each a one-line
delegation to it (or to evals.io / evals.scores), kept only until the last callers in harness/
have moved. Use ``RunDir`` and ``ScoreFile``; delete this module when nothing imports it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evals.io import atomic_write_json as write_json_atomic
from evals.io import atomic_write_jsonl as write_jsonl_atomic
from evals.io import atomic_write_text as write_text_atomic
from evals.rundir import RunDir, judge_slug, read_jsonl

__all__ = ["cell_paths", "check_run_dir", "finished_cells", "iter_cells", "judge_slug",
           "load_answers", "load_run_info", "read_jsonl", "score_files", "scores_path",
           "write_cell", "write_json_atomic", "write_jsonl_atomic", "write_text_atomic"]


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    return RunDir.open(run_dir).path


def cell_paths(run_dir: Path, cell_id: str) -> tuple[Path, Path]:
    return RunDir(run_dir).cell_paths(cell_id)


def finished_cells(run_dir: Path) -> set[str]:
    return RunDir(run_dir).finished_cells()


def write_cell(run_dir: Path, cell_id: str, rows: list[dict[str, Any]],
               description: dict[str, Any]) -> None:
    RunDir(run_dir).write_cell(cell_id, rows, description)


def iter_cells(run_dir: str | os.PathLike) -> Iterator[tuple[dict[str, Any], list[dict]]]:
    return RunDir.open(run_dir).iter_cells()


def load_answers(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    return RunDir.open(run_dir).answers()


def load_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    return RunDir(run_dir).info()


def scores_path(run_dir: Path, judge_id: str) -> Path:
    from evals.scores import ScoreFile

    return ScoreFile.for_judge(RunDir(run_dir), judge_id).path


def score_files(run_dir: str | os.PathLike) -> list[Path]:
    from evals.scores import ScoreFile

    return [f.path for f in ScoreFile.all(RunDir(run_dir))]
