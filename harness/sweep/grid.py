"""The grid of a sweep config (pure, no model): cells, the question plan and shards.

The grid is every (direction, hook, non-zero magnitude) plus ONE shared ``baseline`` cell for
magnitude 0.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from evals.truthfulqa import kfold
from harness.config import ConfigError
from harness.directions.spec import FeatureSpec, parse_spec
from harness.sweep.config import BASELINE, SET_HOOK, DirectionConfig, SweepConfig


@dataclass(frozen=True)
class Cell:
    """One grid cell: a direction family at one hook and one magnitude (or the baseline)."""

    cell_id: str
    direction: str            # the direction's name, or "none" for the baseline
    hook: str                 # a hook name, SET_HOOK, or "none"
    magnitude: float


def format_magnitude(m: float) -> str:
    return format(float(m), "g")


def cell_id(name: str, hook: str, magnitude: float) -> str:
    return f"{name}__{hook}__m{format_magnitude(magnitude)}"


def direction_hooks(d: DirectionConfig, cfg: SweepConfig) -> tuple[str, ...]:
    """The hooks a direction family is swept over (its own, the matched one's, or SET_HOOK)."""
    if d.kind == "iti":
        return (SET_HOOK,)
    if d.hooks:
        return d.hooks
    if d.match:
        return direction_hooks(cfg.direction(d.match), cfg)
    if d.kind == "spec" and d.spec:
        spec = parse_spec(d.spec)
        if isinstance(spec, FeatureSpec):
            return (feature_hook(spec),)
    return (SET_HOOK,)  # a direction-set file used with all of its own hooks


def feature_hook(spec: FeatureSpec) -> str:
    """The hook a ``feature:DIR:ID`` dictionary (a folder or a hub REF) was trained at, as
    :func:`dictionaries.hub.dictionary_hook` reads it."""
    from dictionaries.config import DictionaryConfigError
    from dictionaries.hub import dictionary_hook, is_dictionary_ref

    if not is_dictionary_ref(spec.location) and not (spec.folder / "cfg.json").is_file():
        raise ConfigError(f"spec {spec}: no dictionary cfg.json in {spec.location}")
    try:
        hook = dictionary_hook(spec.location)
    except DictionaryConfigError as err:
        raise ConfigError(f"spec {spec}: {err}") from None
    if not hook:
        raise ConfigError(f"spec {spec}: the dictionary records no hook and none can be "
                          "inferred; give hooks = [...]")
    return hook


def expand_grid(cfg: SweepConfig) -> list[Cell]:
    """All cells, baseline first; magnitude 0 of every family is the one shared baseline cell."""
    cells: list[Cell] = []
    has_zero = 0.0 in cfg.sweep.magnitudes
    for d in cfg.directions:
        mags = d.magnitudes if d.magnitudes is not None else cfg.sweep.magnitudes
        has_zero = has_zero or 0.0 in mags
        for hook in direction_hooks(d, cfg):
            cells += [Cell(cell_id(d.name, hook, m), d.name, hook, m) for m in mags if m != 0]
    if has_zero:
        cells.insert(0, Cell(BASELINE, "none", "none", 0.0))
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ConfigError("two grid cells share an id (repeated hooks or magnitudes?)")
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` (0-based shard i of n)."""
    m = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ConfigError(f"--shard {text!r}: expected i/n with 0 <= i < n, e.g. 0/2 and 1/2")
    return int(m.group(1)), int(m.group(2))


def shard_cells(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """The cells of shard i of n: the cells whose sorted-id rank is i modulo n (deterministic,
    balanced, and the same in every process that reads the same config)."""
    if shard is None:
        return cells
    i, n = shard
    mine = {c.cell_id for k, c in enumerate(sorted(cells, key=lambda c: c.cell_id)) if k % n == i}
    return [c for c in cells if c.cell_id in mine]


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from any printable parts (same in every process and platform)."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16) >> 1


@dataclass(frozen=True)
class QuestionPlan:
    """The question pool, its folds (train, test) and the ids that get generated answers."""

    pool: tuple[int, ...]
    folds: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
    answer_ids: tuple[int, ...]

    @property
    def fold_of(self) -> dict[int, int]:
        return {q: f for f, (_, test) in enumerate(self.folds) for q in test}


def plan_questions(cfg: SweepConfig, n_available: int) -> QuestionPlan:
    """Pure: pool ids, k folds by question (disjoint tests covering the pool), answer subset."""
    q = cfg.data.questions
    pool = list(range(n_available)) if q is None else list(range(q)) if isinstance(q, int) \
        else sorted(q)
    bad = [i for i in pool if not 0 <= i < n_available]
    if bad or (isinstance(q, int) and q > n_available):
        raise ConfigError(f"[data] questions: ids {bad[:5] or [q]} are out of range "
                          f"(the data has {n_available} questions)")
    folds = tuple((tuple(tr), tuple(te)) for tr, te in kfold(pool, cfg.data.folds,
                                                             cfg.data.fold_seed))
    n = cfg.metrics.answer_questions
    answer_ids = tuple(pool if n is None else pool[:n]) if cfg.metrics.answers else ()
    return QuestionPlan(tuple(pool), folds, answer_ids)
