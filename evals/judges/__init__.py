"""Judges of truthfulness and informativeness, built from a spec string by :func:`make_judge`.

=====================  ==================================================================
``openai:MODEL``       any OpenAI-compatible endpoint (evals/judges/openai.py)
``hf:MODEL``           an in-process transformers model, next-token P(yes) (evals/judges/hf.py)
``learned:PATH``       a judge trained with ``truthsteer judge-train`` (evals/judges/learned.py)
``default``            the offline default judge (built on first use; evals/judges/default.py)
``quick``              the default recipe without its language-model probe (builds in minutes)
``surface``            the surface-only baseline: style cues, no question or references
                       (evals/judges/surface.py); a floor that a judge of truth must clear
=====================  ==================================================================

Models for ``hf:``/``learned:``/``default`` come through ``model_loader(name) -> (hf_model,
tokenizer)`` so that evals/ never imports harness/ (the CLI passes one built on
``harness.models.load_model``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from evals.errors import InputError
from evals.judges.base import Judge, JudgeItem, JudgeResult, ResultCallback, Verdict

ModelLoader = Callable[[str], tuple[Any, Any]]
DEFAULT_JUDGE = "default"  # what --judge means when it is not given
SPEC_FORMS = "openai:MODEL, hf:MODEL, learned:PATH, default, quick or surface"

__all__ = [
    "DEFAULT_JUDGE",
    "SPEC_FORMS",
    "Judge",
    "JudgeItem",
    "JudgeResult",
    "ModelLoader",
    "Verdict",
    "judge_incrementally",
    "make_judge",
]


def make_judge(spec: str, *, model_loader: ModelLoader | None = None, truthfulqa: Any = None,
               base_url: str | None = None, api_key_env: str | None = None,
               prompt: str | None = None, info_model: str | None = None, concurrency: int = 8,
               batch_size: int = 16, cache: Any = "auto", **options: Any) -> Judge:
    """Build the judge ``spec`` names.

    ``prompt``: ``ref-aware`` or ``gpt-judge`` (default: ref-aware, except gpt-judge for hf
    models whose name says they are TruthfulQA judges). ``info_model``: a second model for the
    informative verdicts (GPT-judge-style judges come as a truth/info pair). ``cache``: a
    :class:`evals.cache.JudgeCache`, a path, True (default path), None/False (none), or "auto"
    (the default path for openai, none for hf). Extra ``options`` go to the backend's config
    (e.g. ``timeout_s``, ``max_retries`` for openai).
    """
    from evals.cache import open_cache
    from evals.judges.recipe import NAMED_RECIPES

    spec = (spec or "").strip()
    backend, _, name = spec.partition(":")
    if spec in NAMED_RECIPES:
        from evals.judges.default import load_or_build_named

        return load_or_build_named(spec, model_loader=model_loader, truthfulqa=truthfulqa)
    if spec == "surface":
        from evals.judges.surface import SurfaceJudge

        return SurfaceJudge()
    if backend == "learned":
        from evals.judges.learned import LearnedJudge

        if not name:
            raise InputError("--judge learned:PATH: give the path of a trained judge")
        return LearnedJudge.load(name, model_loader=model_loader)
    if backend == "openai" and name:
        from evals.judges.openai import DEFAULT_KEY_ENV, OpenAIJudge, OpenAIJudgeConfig

        cfg = OpenAIJudgeConfig(model=name, base_url=base_url,
                                api_key_env=api_key_env or DEFAULT_KEY_ENV,
                                prompt=prompt or "ref-aware", info_model=info_model,
                                concurrency=concurrency, **options)
        return OpenAIJudge(cfg, cache=open_cache(True if cache == "auto" else cache))
    if backend == "hf" and name:
        from evals.judges.hf import HFJudge, HFJudgeConfig, default_style

        cfg = HFJudgeConfig(model=name, prompt=prompt or default_style(name),
                            info_model=info_model, batch_size=batch_size, **options)
        return HFJudge(cfg, model_loader=model_loader,
                       cache=open_cache(None if cache == "auto" else cache))
    raise InputError(f"--judge {spec!r}: unknown judge (give {SPEC_FORMS})")


def judge_incrementally(judge: Judge, items: Sequence[JudgeItem], on_result: ResultCallback,
                        progress: bool = True, chunk_size: int = 64) -> list[JudgeResult]:
    """Judge ``items``, calling ``on_result(index, result)`` as results become available.

    Judges declaring ``streams_results`` stream each result; others are called chunk by
    chunk, so an interruption loses at most one chunk of work.
    """
    if judge.streams_results:
        return judge.judge(items, progress=progress, on_result=on_result)
    from evals.io import progress as progress_bar

    results: list[JudgeResult] = []
    with progress_bar(total=len(items), desc=judge.judge_id, unit="ans",
                      disable=not progress) as bar:
        for start in range(0, len(items), chunk_size):
            chunk = judge.judge(items[start:start + chunk_size], progress=False)
            for offset, res in enumerate(chunk):
                on_result(start + offset, res)
            results.extend(chunk)
            bar.update(len(chunk))
    return results
