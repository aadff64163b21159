"""Spot-check samples aimed at what a report claims: the configurations it marks best (and the
configurations each cross-fitting fold chose) are drawn :data:`evals.spotcheck.OVERSAMPLE`
times as often as the others, with the baseline, so the human-corrected true×informative of
the rows that matter rests on more labels. (evals/ cannot know what the report marks; this
module reads the marks and hands the cell ids to :func:`evals.spotcheck.sample_run`.)
"""

from __future__ import annotations

import os
from pathlib import Path

from evals.truthfulqa import TruthfulQA
from reports.load import load_run
from reports.tables import headline


def report_focus(run) -> list[str]:
    """Cell ids to oversample: the baseline, every row marked best (overall or of its
    direction) and each fold's choice; in headline order."""
    head = headline(run)
    chosen = {c.cell_id for c in head.selection.choices if c.cell_id}
    return [r.cell_id for r in head.rows
            if r.is_baseline or r.cell_id in chosen or any("best" in m for m in r.marks)]


def sample_for_report(run_dir: str | os.PathLike, n: int = 100, judge: str | None = None,
                      seed: int = 0, truthfulqa: TruthfulQA | None = None
                      ) -> tuple[list[Path], dict]:
    """Draw and write a spot-check sample of a run, oversampling :func:`report_focus`'s cells
    (see :func:`evals.spotcheck.sample_run`; returns its (paths, summary))."""
    from evals.spotcheck import sample_run

    focus = report_focus(load_run(run_dir, judge))
    return sample_run(run_dir, n=n, judge=judge, seed=seed, truthfulqa=truthfulqa,
                      oversample=focus)


__all__ = ["report_focus", "sample_for_report"]
