"""``learned:PATH`` — a judge trained on human labels; the offline default judge.

The GPT-judge recipe made cheap: instead of fine-tuning a large model on TruthfulQA's human
labels, fit logistic regressions on (a) all-MiniLM-L6-v2 similarities of the answer to the
reference answers and (b) a linear probe on a small local LLM's residual stream (by default the
embedded SmolLM2-135M-Instruct) reading a prompt that holds the question, the references and
the answer, plus (c) the non-answer detector's features (evals/judges/nonanswer.py), whose
verdict every result carries. A judge is a folder: ``cfg.json`` (recipe, chosen
regularisation, training data fingerprints, measured agreement) and ``weights.safetensors``
(standardisation and coefficients as arrays). Nothing is pickled.

The recipe lives in evals/judges/recipe.py; the offline default judge (trained on first use,
cached) in evals/judges/default.py; training in evals/judges/learned_train.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.errors import InputError
from evals.io import atomic_dir
from evals.judges.base import (
    KINDS,
    Judge,
    JudgeItem,
    JudgeResult,
    NonAnswer,
    ResultCallback,
    Verdict,
)
from evals.judges.features import PROBE_SUFFIX
from evals.judges.featurizer import CHUNK, Answer, Featurizer
from evals.judges.learned_fit import LinearModel, PolyExpansion, sigmoid
from evals.judges.recipe import (
    CFG_FILE,
    DEFAULT_RECIPE,
    WEIGHTS_FILE,
    LearnedJudgeConfig,
)

__all__ = ["CFG_FILE", "DEFAULT_RECIPE", "KINDS", "REF_POLY", "WEIGHTS_FILE", "LearnedJudge",
           "LearnedJudgeConfig", "block_inputs", "predict"]

REF_POLY = "ref_poly"


def block_inputs(models: dict[str, Any], feats: dict[str, np.ndarray], block: str) -> np.ndarray:
    """A block's model inputs: its features, degree-2 expanded for "ref" when the recipe says."""
    x = feats[block]
    return models[REF_POLY](x) if block == "ref" and REF_POLY in models else x


def predict(models: dict[str, Any], feats: dict[str, np.ndarray], kind: str,
            blocks: Sequence[str]) -> np.ndarray:
    """P(yes) for ``kind`` from the block models and the combiner."""
    z = np.stack([models[f"{kind}.{b}"].logit(block_inputs(models, feats, b)) for b in blocks],
                 axis=1)
    return sigmoid(models[f"{kind}.combiner"].logit(z))


class LearnedJudge(Judge):
    """A trained judge: call :meth:`judge` on items; ``agreement`` is its measured agreement.
    Items are handed over all at once and results streamed (``streams_results``)."""

    prompt_version: str
    streams_results = True

    def __init__(self, cfg: LearnedJudgeConfig, models: dict[str, LinearModel],
                 info: dict[str, Any], model_loader: Callable | None = None,
                 name: str = "learned", feature_cache: str | os.PathLike | None = "auto") -> None:
        self.cfg = cfg
        self.models = models
        self.info = info
        self.digest = info.get("weights_sha256", "")[:8]
        self.judge_id = f"learned:{name}@{self.digest}" if self.digest else f"learned:{name}"
        self.prompt_version = f"learned-v{cfg.recipe_version}"
        self.featurize = Featurizer(cfg, model_loader, feature_cache)

    @property
    def agreement(self) -> dict[str, Any]:
        """Agreement with people: {"cv"|"heldout": {kind: {"all"|"model_written": stats}}}."""
        return self.info.get("agreement", {})

    @property
    def training_questions(self) -> set[str]:
        """Keys (evals.labels.question_key) of the questions whose labels trained this judge."""
        return set(self.info.get("train_question_keys", []))

    def record(self) -> dict[str, Any]:
        """Id, prompt version, name, measured agreement and recipe (``<slug>.judge.json``)."""
        return {"judge_id": self.judge_id, "prompt_version": self.prompt_version,
                "name": self.info.get("name"), "agreement": self.info.get("agreement", {}),
                "recipe": dataclasses.asdict(self.cfg),
                **({"validated_on": self.info["validated_on"]}
                   if self.info.get("validated_on") else {})}

    def judge(self, items: Sequence[JudgeItem], progress: bool = True, *,
              on_result: ResultCallback | None = None, kinds: Sequence[str] = KINDS
              ) -> list[JudgeResult]:
        """Score ``items`` (results in input order).

        Items are featurized question by question, in slabs of ``CHUNK``: all answers to one
        question (from every configuration of a run) share the probe's prompt prefix, so they
        are batched together whatever order they come in. ``on_result(index, result)`` is
        called as each slab finishes.
        """
        from evals.io import progress as progress_bar
        from evals.judges.nonanswer import load_detector

        detector = load_detector()
        blocks = tuple(dict.fromkeys((*self.cfg.blocks, "nonanswer")))  # the verdict needs it
        answers = [Answer.of(it) for it in items]
        order = sorted(range(len(answers)),
                       key=lambda i: (answers[i].question, answers[i].correct,
                                      answers[i].incorrect, answers[i].best))
        results: list[JudgeResult | None] = [None] * len(answers)
        with progress_bar(total=len(answers), desc=self.judge_id, unit="ans",
                          disable=not progress) as bar:
            for start in range(0, len(order), CHUNK):
                slab = order[start:start + CHUNK]
                feats = self.featurize([answers[i] for i in slab], progress=False, blocks=blocks)
                probs = {k: predict(self.models, feats, k, self.cfg.blocks) for k in KINDS}
                for j, i in enumerate(slab):
                    results[i] = self._result(answers[i], {k: float(probs[k][j]) for k in KINDS},
                                              detector.verdict(feats["nonanswer"][j]))
                    if on_result is not None:
                        on_result(i, results[i])
                bar.update(len(slab))
        return results  # type: ignore[return-value]

    def _result(self, a: Answer, p_yes: dict[str, float], nonanswer: NonAnswer | None = None
                ) -> JudgeResult:
        text = self.cfg.prompt.prefix(a.question, a.correct, a.incorrect) + " " + a.answer \
            + PROBE_SUFFIX
        v = {k: Verdict("yes" if p >= 0.5 else "no", p, text, f"p_yes={p:.4f}")
             for k, p in p_yes.items()}
        return JudgeResult(v["truthful"], v["informative"], self.judge_id, self.prompt_version,
                           nonanswer=nonanswer)

    # --- storage -----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write cfg.json + weights.safetensors into ``path`` (atomically, as a whole folder)."""
        from safetensors.numpy import save_file

        target = Path(path)
        with atomic_dir(target) as tmp:
            arrays = {}
            for key, model in self.models.items():
                arrays.update(model.to_arrays(key))
            save_file(arrays, str(tmp / WEIGHTS_FILE))
            digest = hashlib.sha256((tmp / WEIGHTS_FILE).read_bytes()).hexdigest()
            info = {**self.info, "weights_sha256": digest}
            record = _json_safe({"recipe": self.cfg.to_dict(), **info})
            (tmp / CFG_FILE).write_text(json.dumps(record, indent=2, sort_keys=True,
                                                   allow_nan=False) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, model_loader: Callable | None = None,
             feature_cache: str | os.PathLike | None = "auto") -> LearnedJudge:
        from safetensors.numpy import load_file

        folder = Path(path).expanduser()
        if not (folder / CFG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise InputError(f"learned:{path}: not a learned judge folder (needs {CFG_FILE} and "
                             f"{WEIGHTS_FILE}; make one with `truthsteer judge-train`)")
        try:
            data = json.loads((folder / CFG_FILE).read_text(encoding="utf-8"))
            cfg = LearnedJudgeConfig.from_dict(data.pop("recipe"))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(f"learned:{path}: unreadable {CFG_FILE} ({err})") from None
        arrays = load_file(str(folder / WEIGHTS_FILE))
        keys = [f"{k}.{b}" for k in KINDS for b in (*cfg.blocks, "combiner")]
        missing = [k for k in keys if f"{k}.coef" not in arrays]
        if missing:
            raise InputError(f"learned:{path}: {WEIGHTS_FILE} lacks {', '.join(missing)}")
        models: dict[str, Any] = {k: LinearModel.from_arrays(arrays, k) for k in keys}
        if cfg.ref_degree == 2:
            models[REF_POLY] = PolyExpansion.from_arrays(arrays, REF_POLY)
        judge = cls(cfg, models, data, model_loader, name=data.get("name") or folder.name,
                    feature_cache=feature_cache)
        ref = models.get(REF_POLY) or models[f"{KINDS[0]}.ref"]
        if ref.mean.size != judge.featurize.width("ref"):
            raise InputError(f"learned:{path}: its reference block takes {ref.mean.size} "
                             f"features, this truthsteer computes {judge.featurize.width('ref')} "
                             f"for its recipe (version {cfg.recipe_version}); retrain it with "
                             "`truthsteer judge-train`")
        return judge


def _json_safe(obj: Any) -> Any:
    """NaN (e.g. an AUC with one class) becomes null, so cfg.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
