"""A run folder and its one owner, :class:`RunDir`: shared by the sweep writer, judges, spot
checks and reports.

    RUN_DIR/
      run.json                  the resolved sweep config and fingerprints (model, data, code);
                                ``data.origin`` is the TruthfulQA file the answers were made from
      cells/<cell_id>.jsonl     answer rows of one finished grid cell (written once, atomically)
      cells/<cell_id>.json      that cell's description and metrics (MC1, MC2, CE, KL, ...)
      scores/<judge_slug>.jsonl judge results, one row per (cell_id, question_id); append-only
                                (read and written through :class:`evals.scores.ScoreFile`)
      labels/human.csv          human spot-check labels (``truthsteer spotcheck import``)

An answer row holds at least: cell_id, question_id, question, model, hook, direction, magnitude,
positions, prompt_token_ids, answer_token_ids, answer. A cell's ``.jsonl`` appears only when the
cell has finished (temp file + rename), so a half-written cell never looks finished.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evals.errors import InputError
from evals.io import atomic_write_json, atomic_write_jsonl

RUN_INFO = "run.json"
SCORES = "scores"
HUMAN_LABELS = Path("labels") / "human.csv"
PARTIAL = ".partial"  # cells/<cell_id>.jsonl.partial: rows of a cell still being answered
REPO = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, str]:
    """The installed truthsteer version and, in a git checkout, its commit (run.json ``code``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("truthsteer")
    except PackageNotFoundError:
        pkg = "unknown"
    out = {"package": pkg}
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSON-lines file; InputError naming ``path:line`` on a bad line."""
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


def judge_slug(judge_id: str) -> str:
    """A file-name-safe name for a judge id such as ``openai:gpt-4o-mini``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", judge_id).strip("_") or "judge"


class RunDir:
    """One run folder. ``RunDir(path)`` is any folder (a sweep writing a new run);
    :meth:`open` insists on an existing run (a ``cells/`` folder) for readers."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @classmethod
    def open(cls, path: str | os.PathLike | RunDir) -> RunDir:
        run = path if isinstance(path, RunDir) else cls(path)
        if not (run.path / "cells").is_dir():
            raise InputError(f"{run.path}: not a run directory (no cells/ folder; make one with "
                             "`truthsteer sweep CONFIG --out RUN_DIR`)")
        return run

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.resolve().name

    # --- run.json ----------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """run.json, or {} when the run has none yet."""
        path = self.path / RUN_INFO
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def write_info(self, info: dict[str, Any]) -> None:
        atomic_write_json(self.path / RUN_INFO, info)

    def truthfulqa_path(self) -> Path | None:
        """The TruthfulQA file the run was made from (run.json ``data.origin``, written by the
        sweep; else the config's ``data.truthfulqa``), when it is a file on this machine."""
        info = self.info()
        data = info.get("data")
        config_data = (info.get("config") or {}).get("data")
        for origin in (data.get("origin") if isinstance(data, dict) else None,
                       config_data.get("truthfulqa") if isinstance(config_data, dict) else None):
            if isinstance(origin, str) and origin and Path(origin).is_file():
                return Path(origin)
        return None

    def load_truthfulqa(self, path: str | os.PathLike | None = None):
        """TruthfulQA from ``path``, else ``$TRUTHSTEER_TRUTHFULQA``, else the file the run was
        made from, else the hub (see :func:`evals.truthfulqa.load_truthfulqa`)."""
        from evals.truthfulqa import ENV_VAR, load_truthfulqa

        if path is None and not os.environ.get(ENV_VAR):
            path = self.truthfulqa_path()
        return load_truthfulqa(path)

    # --- cells and answers -------------------------------------------------------------------

    def cell_paths(self, cell_id: str) -> tuple[Path, Path]:
        """(answers .jsonl, description .json) of a cell."""
        cells = self.path / "cells"
        return cells / f"{cell_id}.jsonl", cells / f"{cell_id}.json"

    def partial_cell_path(self, cell_id: str) -> Path:
        """Where the rows of a cell still being answered go, one per line as each finishes
        (``truthsteer generate``); the cell's ``.jsonl`` replaces it when all are done."""
        return self.path / "cells" / f"{cell_id}.jsonl{PARTIAL}"

    def finished_cells(self) -> set[str]:
        cells = self.path / "cells"
        if not cells.is_dir():
            return set()
        return {p.stem for p in cells.glob("*.jsonl") if (cells / f"{p.stem}.json").exists()}

    def write_cell(self, cell_id: str, rows: list[dict[str, Any]],
                   description: dict[str, Any]) -> None:
        """Record a finished cell: its answer rows, then its description (the 'finished' mark)."""
        answers, desc = self.cell_paths(cell_id)
        atomic_write_jsonl(answers, rows)
        atomic_write_json(desc, description)

    def iter_cells(self) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """(description, answer rows) of each finished cell, in sorted cell-id order."""
        for cell_id in sorted(self.finished_cells()):
            answers, desc = self.cell_paths(cell_id)
            yield json.loads(desc.read_text(encoding="utf-8")), read_jsonl(answers)

    def answers(self) -> list[dict[str, Any]]:
        """Every answer row of the run, sorted by (cell_id, question_id)."""
        rows = [row for _, cell_rows in self.iter_cells() for row in cell_rows]
        return sorted(rows, key=lambda r: (r["cell_id"], r["question_id"]))

    # --- scores and labels -------------------------------------------------------------------

    @property
    def scores_dir(self) -> Path:
        return self.path / SCORES

    @property
    def human_labels_path(self) -> Path:
        return self.path / HUMAN_LABELS

    @property
    def spotcheck_dir(self) -> Path:
        return self.path / "spotcheck"
