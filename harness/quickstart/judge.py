"""Which judge the quickstart uses: the offline default judge when built, else the quick judge
(its recipe without the language-model probe), or any judge spec."""

from __future__ import annotations


def default_judge_built(tq, labels_dir: str | None) -> bool:
    """Whether the offline default judge is already in the cache."""
    from evals.errors import InputError
    from evals.judges.default import cached_judge_folder
    from evals.judges.recipe import CFG_FILE, DEFAULT_RECIPE

    try:
        folder, _ = cached_judge_folder("default", DEFAULT_RECIPE, tq, labels_dir)
    except (InputError, OSError):  # labels absent and not downloadable: it cannot be built
        return False
    return (folder / CFG_FILE).is_file()


QUICK_RECIPE = {"probe_model": None}  # the default recipe without its LLM probe


def quick_judge(model_loader, tq, labels_dir: str | None, progress: bool):
    """The default judge's recipe without its LLM probe: trained on the same labels (human
    labels plus the steered set's TRAIN rows) in a minute or two instead of the probe's tens of
    minutes, and cached the same way."""
    from evals.judges.default import load_or_build
    from evals.judges.learned import LearnedJudgeConfig

    return load_or_build("quickstart", LearnedJudgeConfig(**QUICK_RECIPE), model_loader, tq,
                         labels_dir, progress=progress)


def make_quickstart_judge(spec: str, model_loader, tq, labels_dir: str | None, progress: bool):
    """``auto``: the default judge when it is built, else the quick judge; ``quick``; ``default``
    (built on first use); or any judge spec evals.judges.make_judge knows."""
    from evals.judges import make_judge
    from evals.judges.default import load_or_build_default

    if spec == "auto":
        spec = "default" if default_judge_built(tq, labels_dir) else "quick"
    if spec == "quick":
        return quick_judge(model_loader, tq, labels_dir, progress)
    if spec == "default":
        return load_or_build_default(model_loader=model_loader, truthfulqa=tq,
                                     labels_dir=labels_dir, progress=progress)
    return make_judge(spec, model_loader=model_loader, truthfulqa=tq)
