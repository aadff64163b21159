"""The quickstart's settings (frozen, validated) and the pure helpers its stages use."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import EMBEDDED_MODEL, ConfigError

STAGES = 7


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of a quickstart run (the defaults are the README's one command)."""

    out: str = "truthsteer-quickstart"
    truthfulqa: str | None = None
    human_labels: str | None = None   # TruthfulQA's human label folder, for the default judge
    dictionary: str | None = None     # an existing dictionary folder (else one is trained)
    judge: str = "auto"               # auto: the default judge if built, else the quick one
    model: str = EMBEDDED_MODEL
    device: str = "auto"
    questions: int = 40               # answered / MC-scored questions (a seeded random subset)
    feature_questions: int = 40       # other questions, used only to choose the feature
    layers: tuple[int, ...] = (8, 15, 22)
    magnitudes: tuple[float, ...] = (0.0, 1.0, 3.0)  # std units (4+ breaks SmolLM2's fluency)
    dictionary_layer: int = 15
    dictionary_tokens: int = 16_384   # activations cached for training
    train_tokens: int = 400_000       # training budget (the cached activations are reshuffled)
    max_new_tokens: int = 32
    prompt_style: str = "auto"        # chat for chat models (short prompts), else the QA primer
    spotcheck: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "magnitudes", tuple(float(x) for x in self.magnitudes))
        if self.questions < 4:
            raise ConfigError(f"--questions {self.questions}: need at least 4 (two folds)")
        if self.feature_questions < 8:
            raise ConfigError(f"feature_questions={self.feature_questions}: need at least 8")
        if not self.layers or min(self.layers) < 0 or self.dictionary_layer < 0:
            raise ConfigError(f"--layers {self.layers}: give one or more layer numbers >= 0")
        if 0.0 not in self.magnitudes or len(self.magnitudes) < 2:
            raise ConfigError(f"--magnitudes {self.magnitudes}: include 0 (the baseline) and "
                              "at least one non-zero magnitude")
        if self.spotcheck < 0:
            raise ConfigError(f"--spotcheck {self.spotcheck}: must be >= 0")

    @property
    def hook(self) -> str:
        return f"blocks.{self.dictionary_layer}.hook_resid_post"

    def identity(self) -> dict[str, Any]:
        """What a rerun must match to resume (paths excluded: they may move)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in ("out", "truthfulqa", "human_labels")}


def partition_questions(n_total: int, cfg: QuickstartConfig) -> tuple[list[int], list[int], list[int]]:
    """Seeded, disjoint (pool, feature-choice, dictionary-corpus) question ids."""
    if cfg.questions + cfg.feature_questions >= n_total:
        raise ConfigError(f"--questions {cfg.questions}: too many for {n_total} questions")
    ids = list(range(n_total))
    random.Random(cfg.seed).shuffle(ids)
    pool = sorted(ids[:cfg.questions])
    feature = sorted(ids[cfg.questions:cfg.questions + cfg.feature_questions])
    corpus = sorted(ids[cfg.questions + cfg.feature_questions:])
    return pool, feature, corpus


def check_out(out: Path, cfg: QuickstartConfig) -> None:
    path = out / "quickstart.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8")).get("identity")
        if old != json.loads(json.dumps(cfg.identity())):
            raise ConfigError(f"--out {out}: holds a quickstart with other settings; use another "
                              "--out (or the same options) to resume")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not a quickstart folder; choose another")


def corpus_text(tq, ids: list[int], max_chars: int = 400_000) -> str:
    """TruthfulQA text ("Q: ...\\nA: ..." for every reference answer) of the given questions."""
    lines, size = [], 0
    for q in tq.by_id(ids):
        for a in (*q.correct_answers, *q.incorrect_answers):
            line = f"Q: {q.question} A: {a}"
            lines.append(line)
            size += len(line)
        if size > max_chars:
            break
    return "\n".join(lines) + "\n"
