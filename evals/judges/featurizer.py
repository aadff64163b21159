"""Computing (and caching) the learned judge's features for many answers at once.

:class:`Featurizer` turns (question, answer, references) into the recipe's feature blocks —
``ref`` (MiniLM reference features, plus the claim features of evals/judges/claims.py when
the recipe has them), ``nonanswer`` (the non-answer detector's features, also
MiniLM) and ``probe`` (the LLM's activations) — reading them from the
persistent feature cache when it has them and storing what it computes (probe features every
``CHUNK`` answers, so an interrupted build resumes).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.errors import InputError
from evals.io import cache_root
from evals.judges.base import JudgeItem
from evals.judges.claims import CLAIM_FEATURE_NAMES, CLAIMS_VERSION, claim_features
from evals.judges.feature_cache import FeatureCache, answer_key, model_fingerprint, space_name
from evals.judges.features import (
    FEATURES_VERSION,
    NO_COMMENT,
    PROBE_SUFFIX,
    REF_FEATURE_NAMES,
    SentenceEmbedder,
    minilm_folder,
    probe_features,
    reference_features,
)
from evals.judges.fluency import FLUENCY_NAMES, FLUENCY_VERSION, fluency_features
from evals.judges.longform import (
    LONGFORM_FEATURE_NAMES,
    LONGFORM_VERSION,
    claim_texts,
    longform_features,
)
from evals.judges.nonanswer import FEATURE_NAMES as NONANSWER_NAMES
from evals.judges.nonanswer import NONANSWER_VERSION, PROTOTYPES, nonanswer_features
from evals.judges.recipe import LearnedJudgeConfig

CHUNK = 512  # probe features are cached every CHUNK answers


@dataclass(frozen=True)
class Answer:
    """One (question, answer) pair with the references its features need."""

    question: str
    answer: str
    correct: tuple[str, ...]
    incorrect: tuple[str, ...]
    best: str = ""

    @classmethod
    def of(cls, item: JudgeItem) -> Answer:
        return cls(item.question, item.answer, tuple(item.correct_answers),
                   tuple(item.incorrect_answers), item.best_answer)


class Featurizer:
    """Computes both feature blocks, reading and filling the feature cache; loads MiniLM and
    the probe model lazily, once. ``cache``: a path, None (no cache) or "auto" (the default,
    ``$TRUTHSTEER_CACHE/learned_features.sqlite``)."""

    def __init__(self, cfg: LearnedJudgeConfig, model_loader: Callable | None,
                 cache: str | os.PathLike | None = "auto") -> None:
        self.cfg = cfg
        self.model_loader = model_loader
        self.cache_path = (cache_root() / "learned_features.sqlite" if cache == "auto"
                           else None if cache is None else Path(cache))
        self._embedder: SentenceEmbedder | None = None
        self._model: tuple[Any, Any] | None = None
        self._spaces: dict[str, str] = {}

    def _lm(self) -> tuple[Any, Any]:
        if self._model is None:
            if self.model_loader is None:
                raise InputError(f"the learned judge needs its probe model {self.cfg.probe_model!r}"
                                 " (no model_loader was given)")
            self._model = self.model_loader(self.cfg.probe_model)
        return self._model

    @property
    def ref_names(self) -> tuple[str, ...]:
        """The reference block's feature names: similarities, then claims when the recipe says."""
        return REF_FEATURE_NAMES + (CLAIM_FEATURE_NAMES if self.cfg.claim_features else ())

    def _ref_row(self, a: Answer, emb: Callable[[str], np.ndarray]) -> np.ndarray:
        sims = reference_features(a.question, a.answer, a.correct, a.incorrect, a.best, emb)
        if not self.cfg.claim_features:
            return sims
        return np.concatenate([sims, claim_features(a.question, a.answer, a.correct,
                                                    a.incorrect)])

    def space(self, block: str) -> str:
        """The cache space of a block: everything that decides its numbers."""
        if block not in self._spaces:
            if block in ("ref", "nonanswer", "longform"):
                weights = minilm_folder() / "model.safetensors"
                fields = {"block": "ref", "names": self.ref_names, "version": FEATURES_VERSION,
                          "minilm": weights.stat().st_size if weights.exists() else 0}
                if block == "ref" and self.cfg.claim_features:
                    fields["claims_version"] = CLAIMS_VERSION
                if block == "nonanswer":
                    fields.update(block="nonanswer", names=NONANSWER_NAMES,
                                  version=NONANSWER_VERSION, prototypes=PROTOTYPES)
                if block == "longform":
                    fields.update(block="longform", names=LONGFORM_FEATURE_NAMES,
                                  version=LONGFORM_VERSION, claims_version=CLAIMS_VERSION)
            elif block == "fluency":
                fields = {"block": "fluency", "model": self.cfg.probe_model,
                          "weights": model_fingerprint(self._lm()[0]), "names": FLUENCY_NAMES,
                          "max_answer_tokens": self.cfg.max_answer_tokens,
                          "version": FLUENCY_VERSION}
            else:
                fields = {"block": "probe", "model": self.cfg.probe_model,
                          "weights": model_fingerprint(self._lm()[0]),
                          "layers": self.cfg.probe_layers, "prompt": dataclasses.asdict(
                              self.cfg.prompt), "suffix": PROBE_SUFFIX,
                          "version": FEATURES_VERSION}
            self._spaces[block] = space_name(**fields)
        return self._spaces[block]

    def width(self, block: str) -> int:
        if block == "ref":
            return len(self.ref_names)
        if block == "nonanswer":
            return len(NONANSWER_NAMES)
        if block == "longform":
            return len(LONGFORM_FEATURE_NAMES)
        if block == "fluency":
            return len(FLUENCY_NAMES)
        return len(self.cfg.probe_layers) * int(self._lm()[0].config.hidden_size)

    def __call__(self, answers: Sequence[Answer], progress: bool = True,
                 desc: str = "learned judge", blocks: Sequence[str] | None = None
                 ) -> dict[str, np.ndarray]:
        """{block: [len(answers), width]} for the recipe's blocks (or ``blocks``)."""
        keys = [answer_key(a.question, a.answer, a.correct, a.incorrect, a.best) for a in answers]
        cache = FeatureCache(self.cache_path) if self.cache_path else None
        out = {}
        try:
            for block in blocks or self.cfg.blocks:
                have = cache.get_many(self.space(block), keys) if cache else {}
                todo = {k: a for k, a in zip(keys, answers) if k not in have}
                if todo:
                    have.update(self._compute(block, todo, cache, progress, desc))
                out[block] = (np.stack([have[k] for k in keys]).astype(np.float32) if keys
                              else np.zeros((0, self.width(block)), dtype=np.float32))
        finally:
            if cache:
                cache.close()
        return out

    def _compute(self, block: str, todo: dict[str, Answer], cache: FeatureCache | None,
                 progress: bool, desc: str) -> dict[str, np.ndarray]:
        """Features of ``todo`` {key: answer}, stored in ``cache`` as they are computed (probe
        features chunk by chunk, so an interrupted build keeps what it finished)."""
        from evals.io import progress as progress_bar

        answers = list(todo.values())
        if block in ("ref", "nonanswer", "longform"):
            if self._embedder is None:
                self._embedder = SentenceEmbedder()
            texts = {NO_COMMENT, *PROTOTYPES} if block == "nonanswer" else {NO_COMMENT}
            for a in answers:
                texts.update((a.question, a.answer, a.best, *a.correct, *a.incorrect))
                if block == "longform":
                    texts.update(claim_texts(a.answer))
            with progress_bar(total=len(texts), desc=f"{desc}: MiniLM", unit="text",
                              disable=not progress) as bar:
                vecs = dict(zip(sorted(texts), self._embedder.embed(sorted(texts), bar.update)))
            if block == "ref":
                fresh = dict(zip(todo, (self._ref_row(a, vecs.__getitem__) for a in answers)))
            elif block == "longform":
                fresh = dict(zip(todo, (longform_features(
                    a.question, a.answer, a.correct, a.incorrect, vecs.__getitem__)
                    for a in answers)))
            else:
                fresh = dict(zip(todo, (nonanswer_features(
                    a.question, a.answer, (*a.correct, *a.incorrect), vecs.__getitem__)
                    for a in answers)))
            if cache:
                cache.put_many(self.space(block), fresh)
            return fresh
        model, tok = self._lm()
        if block == "fluency":
            ordered = sorted(todo, key=lambda k: todo[k].question)
            with progress_bar(total=len(ordered), desc=f"{desc}: {self.cfg.probe_model} fluency",
                              unit="ans", disable=not progress) as bar:
                feats = fluency_features(model, tok, [todo[k].question for k in ordered],
                                         [todo[k].answer for k in ordered], self.cfg.batch_size,
                                         self.cfg.max_answer_tokens, bar.update)
            fresh = dict(zip(ordered, feats))
            if cache:
                cache.put_many(self.space(block), fresh)
            return fresh
        prompt = self.cfg.prompt
        prefix = {k: prompt.prefix(a.question, a.correct, a.incorrect) for k, a in todo.items()}
        ordered = sorted(todo, key=lambda k: prefix[k])  # a question's answers stay together
        fresh = {}
        with progress_bar(total=len(ordered), desc=f"{desc}: {self.cfg.probe_model} features",
                          unit="ans", disable=not progress) as bar:
            for start in range(0, len(ordered), CHUNK):
                chunk = ordered[start:start + CHUNK]
                feats = probe_features(model, tok, [prefix[k] for k in chunk],
                                       [todo[k].answer for k in chunk], self.cfg.probe_layers,
                                       self.cfg.batch_size, self.cfg.max_answer_tokens,
                                       bar.update)
                part = dict(zip(chunk, feats))
                if cache:
                    cache.put_many(self.space(block), part)
                fresh.update(part)
        return fresh
