"""The on-disk layout of a run directory, shared by the sweep writer, judges and reports.

    RUN_DIR/
      run.json                  the resolved sweep config and fingerprints (model, data, code)
      cells/<cell_id>.jsonl     answer rows of one finished grid cell (written once, atomically)
      cells/<cell_id>.json      that cell's description and metrics (MC1, MC2, CE, KL, ...)
      scores/<judge_slug>.jsonl judge results, one row per (cell_id, question_id); append-only
      labels/human.csv          human spot-check labels imported with ``truthsteer spotcheck import``

An answer row holds at least: cell_id, question_id, question, model, hook, direction, magnitude,
positions, prompt_token_ids, answer_token_ids, answer. A cell's ``.jsonl`` appears only when the
cell has finished (temp file + rename), so a half-written cell never looks finished.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from evals.errors import InputError


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temp file and rename, so readers never see half a file."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not (path / "cells").is_dir():
        raise InputError(f"{path}: not a run directory (no cells/ folder; make one with "
                         "`truthsteer sweep CONFIG --out RUN_DIR`)")
    return path


def cell_paths(run_dir: Path, cell_id: str) -> tuple[Path, Path]:
    """(answers .jsonl, description .json) of a cell."""
    return run_dir / "cells" / f"{cell_id}.jsonl", run_dir / "cells" / f"{cell_id}.json"


def finished_cells(run_dir: Path) -> set[str]:
    cells = run_dir / "cells"
    if not cells.is_dir():
        return set()
    return {p.stem for p in cells.glob("*.jsonl") if (cells / f"{p.stem}.json").exists()}


def write_cell(run_dir: Path, cell_id: str, rows: list[dict[str, Any]],
               description: dict[str, Any]) -> None:
    """Record a finished cell: its answer rows, then its description (the 'finished' mark)."""
    answers, desc = cell_paths(run_dir, cell_id)
    write_jsonl_atomic(answers, rows)
    write_json_atomic(desc, description)


def iter_cells(run_dir: str | os.PathLike) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(description, answer rows) of each finished cell, in sorted cell-id order."""
    path = check_run_dir(run_dir)
    for cell_id in sorted(finished_cells(path)):
        answers, desc = cell_paths(path, cell_id)
        yield json.loads(desc.read_text(encoding="utf-8")), read_jsonl(answers)


def load_answers(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every answer row of a run, sorted by (cell_id, question_id)."""
    rows = [row for _, cell_rows in iter_cells(run_dir) for row in cell_rows]
    return sorted(rows, key=lambda r: (r["cell_id"], r["question_id"]))


def judge_slug(judge_id: str) -> str:
    """A file-name-safe name for a judge id such as ``openai:gpt-4o-mini``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", judge_id).strip("_") or "judge"


def scores_path(run_dir: Path, judge_id: str) -> Path:
    return Path(run_dir) / "scores" / f"{judge_slug(judge_id)}.jsonl"


RUN_LOG_SUFFIX = ".runs.jsonl"  # scores/<slug>.runs.jsonl: a judge's usage log, not scores


def score_files(run_dir: str | os.PathLike) -> list[Path]:
    """The judge score files of a run: ``scores/*.jsonl`` minus the judges' usage logs
    (``<slug>.runs.jsonl``); ``<slug>.judge.json`` records are not ``.jsonl``."""
    folder = Path(run_dir) / "scores"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jsonl") if not p.name.endswith(RUN_LOG_SUFFIX))


def load_run_info(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
