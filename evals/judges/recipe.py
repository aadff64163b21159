"""The recipe of a learned judge (:class:`LearnedJudgeConfig`) and the names of its files: what
the featurizer, the judge and its trainer share, so that none of them imports another's module
for it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from evals.errors import InputError
from evals.judges.features import ProbePrompt

RECIPE_VERSION = "4"  # 2: the non-answer block and the steered training rows; 3: claim features;
# 4: the long-form block and the long-form set's TRAIN rows (weight 3)
CFG_FILE, WEIGHTS_FILE = "cfg.json", "weights.safetensors"
EMBEDDED_PROBE_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class LearnedJudgeConfig:
    """The recipe of a learned judge (saved in cfg.json; part of the default judge's cache key)."""

    probe_model: str | None = EMBEDDED_PROBE_MODEL  # None: MiniLM reference features only
    probe_layers: tuple[int, ...] = (8, 12)  # the forward stops after block 12 (of 30)
    max_refs_chars: int = 400
    max_answer_tokens: int = 48
    c_grid: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03)
    ref_c_grid: tuple[float, ...] = (0.01, 0.03, 0.1)  # also the nonanswer and fluency blocks
    ref_degree: int = 2  # 2: reference features plus their pairwise products
    folds: int = 5
    max_train_answers: int | None = None  # a random subset of distinct answers (cheaper build)
    batch_size: int = 32
    seed: int = 0
    nonanswer_block: bool = True  # the non-answer detector's features as a block of their own
    fluency: bool = False  # the probe model's log-probability of the answer (3x the probe's cost)
    steered_weight: float = 1.0  # sample weight of a steered TRAIN row (chosen by grouped CV)
    claim_features: bool = True  # the reference block adds evals/judges/claims.py's features
    longform_block: bool = True  # evals/judges/longform.py's claim-by-claim features, a block;
    # a judge with it also trains on the long-form development set's TRAIN rows
    longform_weight: float = 3.0  # sample weight of a long-form TRAIN row (chosen by grouped CV)
    recipe_version: str = RECIPE_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "probe_layers", tuple(int(x) for x in self.probe_layers))
        object.__setattr__(self, "c_grid", tuple(float(x) for x in self.c_grid))
        object.__setattr__(self, "ref_c_grid", tuple(float(x) for x in self.ref_c_grid))
        if self.fluency and self.probe_model is None:
            raise InputError("learned judge: fluency needs a probe model (it scores answers "
                             "with that model)")
        if self.probe_model is not None and not self.probe_layers:
            raise InputError("learned judge: probe_layers is empty (give e.g. 8,12)")
        if any(x < 0 for x in self.probe_layers):
            raise InputError(f"learned judge: probe_layers {self.probe_layers} must be >= 0")
        if self.ref_degree not in (1, 2):
            raise InputError(f"learned judge: ref_degree={self.ref_degree} must be 1 or 2")
        if self.folds < 2:
            raise InputError(f"learned judge: folds={self.folds} must be >= 2")
        if not self.c_grid or not self.ref_c_grid or min(self.c_grid + self.ref_c_grid) <= 0:
            raise InputError("learned judge: regularisation grids must hold positive numbers")
        if not self.longform_weight > 0:
            raise InputError(f"learned judge: longform_weight={self.longform_weight} must be > 0")
        if not self.steered_weight > 0:
            raise InputError(f"learned judge: steered_weight={self.steered_weight} must be > 0")
        if self.max_train_answers is not None and self.max_train_answers < 50:
            raise InputError(f"learned judge: max_train_answers={self.max_train_answers} "
                             "is too few (>= 50)")

    @property
    def prompt(self) -> ProbePrompt:
        return ProbePrompt(self.max_refs_chars, self.max_answer_tokens)

    @property
    def blocks(self) -> tuple[str, ...]:
        probe = ("probe",) + (("fluency",) if self.fluency else ())
        return (("ref",) + (probe if self.probe_model is not None else ())
                + (("nonanswer",) if self.nonanswer_block else ())
                + (("longform",) if self.longform_block else ()))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnedJudgeConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"learned judge recipe: unknown key(s) {', '.join(unknown)} "
                             "(made by a newer truthsteer?)")
        if "nonanswer_block" not in data:  # a version-1 judge: no non-answer block
            data = {**data, "nonanswer_block": False}
        if "claim_features" not in data:  # before version 3: similarities-only reference block
            data = {**data, "claim_features": False}
        if "longform_block" not in data:  # before version 4: no long-form block
            data = {**data, "longform_block": False}
        return cls(**data)


DEFAULT_RECIPE = LearnedJudgeConfig()
# The quick judge: the default recipe without its language-model probe (MiniLM reference and
# claim features plus the non-answer block); builds in a minute or two instead of tens.
QUICK_RECIPE = dataclasses.replace(DEFAULT_RECIPE, probe_model=None)
# The offline judges known by name (``--judge default``, ``--judge quick``).
NAMED_RECIPES = {"default": DEFAULT_RECIPE, "quick": QUICK_RECIPE}
