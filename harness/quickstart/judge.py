"""Which judge the quickstart uses: ``auto`` is the offline default judge when it is built, else
the quick judge; any other spec is built as ``truthsteer judge --judge`` builds it."""

from __future__ import annotations


def make_quickstart_judge(spec: str, model_loader, tq, labels_dir: str | None, progress: bool):
    """``auto``: ``default`` when it is built, else ``quick``; ``default``/``quick`` (built on
    first use from ``labels_dir``); or any judge spec evals.judges.make_judge knows."""
    from evals.judges import make_judge
    from evals.judges.default import is_built, load_or_build_named
    from evals.judges.recipe import NAMED_RECIPES

    if spec == "auto":
        spec = "default" if is_built("default", tq, labels_dir) else "quick"
    if spec in NAMED_RECIPES:
        return load_or_build_named(spec, model_loader=model_loader, truthfulqa=tq,
                                   labels_dir=labels_dir, progress=progress)
    return make_judge(spec, model_loader=model_loader, truthfulqa=tq)
