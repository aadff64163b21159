"""Sweep configs: TOML -> frozen, validated dataclasses (pure, no model).

A config names the model, the questions and folds, the generation settings, the metrics, the
magnitudes and a list of directions (see docs/sweeps.md). The grid of cells it describes is
built in harness/sweep/grid.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import POSITIONS, ConfigError, GenerationConfig, ModelConfig
from harness.directions.spec import parse_spec

KINDS = ("iti", "meandiff", "random", "spec")
SET_HOOK = "set"          # the hook label meaning "each direction of the set at its own hook"
BASELINE = "baseline"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_COMMON = ("name", "kind", "scale", "magnitudes")
KIND_KEYS = {
    "iti": _COMMON + ("top_k", "method", "layers", "val_fraction", "seed"),
    "meandiff": _COMMON + ("hooks",),
    "random": _COMMON + ("hooks", "seed", "match"),
    "spec": _COMMON + ("spec", "hooks"),
}


def _keys_error(section: str, unknown: list[str], valid: list[str]) -> ConfigError:
    return ConfigError(f"{section}: unknown key(s) {', '.join(unknown)} "
                       f"(valid: {', '.join(sorted(valid))})")


def _build(cls: type, data: Any, section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{section}: expected a table, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise _keys_error(section, unknown, names)
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{section}: {err}") from None


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{what} must be a list of integers")
    return tuple(value)


@dataclass(frozen=True)
class DataConfig:
    """The question pool (first N ids, a list of ids, or None for all) and its folds."""

    truthfulqa: str | None = None
    questions: int | tuple[int, ...] | None = None
    folds: int = 2
    fold_seed: int = 0

    def __post_init__(self) -> None:
        q = self.questions
        if isinstance(q, list):
            object.__setattr__(self, "questions", _int_list(q, "[data] questions"))
        elif q is not None and (isinstance(q, bool) or not isinstance(q, (int, tuple)) or
                                isinstance(q, int) and q < 2):
            raise ConfigError(f"[data] questions={q!r}: give a count >= 2 or a list of ids")
        if isinstance(self.questions, tuple) and len(set(self.questions)) != len(self.questions):
            raise ConfigError("[data] questions: the list repeats an id")
        if not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"[data] folds={self.folds!r} must be an integer >= 2")


@dataclass(frozen=True)
class MetricsConfig:
    """What each cell measures. ``answer_questions``: how many pool questions (in id order) get
    generated answers (None: all); MC and CE/KL use the whole pool / the reference text."""

    answers: bool = True
    answer_questions: int | None = None
    mc: bool = True
    side_effects: bool = True
    reference_text: str | None = None

    def __post_init__(self) -> None:
        for key in ("answers", "mc", "side_effects"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"[metrics] {key} must be true or false")
        n = self.answer_questions
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"[metrics] answer_questions={n!r} must be a positive integer")
        if not (self.answers or self.mc or self.side_effects):
            raise ConfigError("[metrics]: answers, mc and side_effects are all off; "
                              "nothing to measure")


def _magnitudes(value: Any, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        raise ConfigError(f"{what} must be a non-empty list of finite numbers")
    if len({float(v) for v in value}) != len(value):
        raise ConfigError(f"{what} repeats a value")
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class DirectionConfig:
    """One direction family to sweep. Which keys apply depends on ``kind`` (see KIND_KEYS)."""

    name: str
    kind: str
    scale: str = "std"
    magnitudes: tuple[float, ...] | None = None
    hooks: tuple[str, ...] = ()
    spec: str | None = None
    top_k: int | None = None
    method: str = "mass_mean"
    layers: tuple[int, ...] | None = None
    val_fraction: float = 0.2
    seed: int = 0
    match: str | None = None

    def __post_init__(self) -> None:
        where = f"[[directions]] {self.name!r}"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name) or \
                self.name == BASELINE:
            raise ConfigError(f"{where}: name must be letters, digits, _ or - (and not "
                              f"{BASELINE!r})")
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind {self.kind!r} is unknown (choose {', '.join(KINDS)})")
        if self.scale not in ("raw", "std"):
            raise ConfigError(f"{where}: scale {self.scale!r} is unknown (choose raw or std)")
        if self.magnitudes is not None:
            object.__setattr__(self, "magnitudes", _magnitudes(self.magnitudes,
                                                               f"{where} magnitudes"))
        if isinstance(self.hooks, str) or not all(isinstance(h, str) and h for h in self.hooks):
            raise ConfigError(f"{where}: hooks must be a list of hook names")
        object.__setattr__(self, "hooks", tuple(self.hooks))
        if len(set(self.hooks)) != len(self.hooks):
            raise ConfigError(f"{where}: hooks repeats a hook")
        if self.layers is not None:
            object.__setattr__(self, "layers", _int_list(self.layers, f"{where} layers"))
        if self.kind == "meandiff" and not self.hooks:
            raise ConfigError(f"{where}: meandiff needs hooks, e.g. "
                              "hooks = [\"blocks.6.hook_resid_post\"]")
        if self.kind == "spec" and not self.spec:
            raise ConfigError(f"{where}: kind spec needs spec = \"random:SEED\", "
                              "\"FILE.safetensors[:NAME]\" or \"feature:DIR:ID\"")
        if self.kind == "spec":
            parse_spec(self.spec)  # syntax only: files are read when the sweep resolves it
        if self.kind == "random" and not self.hooks and not self.match:
            raise ConfigError(f"{where}: random needs hooks, or match = \"<direction name>\" "
                              "to copy another direction's hooks and norms")
        if self.kind == "iti":
            self.iti_config()  # validates top_k, method, layers, val_fraction

    def iti_config(self):
        from harness.directions.iti import ITIConfig

        return ITIConfig(top_k=self.top_k, method=self.method, val_fraction=self.val_fraction,
                         seed=self.seed, layers=self.layers)


@dataclass(frozen=True)
class SweepSettings:
    """The [sweep] table: magnitudes (0 is the shared baseline) and where vectors are added."""

    magnitudes: tuple[float, ...] = (0.0,)
    positions: str = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "magnitudes", _magnitudes(self.magnitudes, "[sweep] magnitudes"))
        if self.positions not in POSITIONS:
            raise ConfigError(f"[sweep] positions {self.positions!r} is unknown "
                              f"(choose {', '.join(POSITIONS)})")


@dataclass(frozen=True)
class SweepConfig:
    model: ModelConfig
    data: DataConfig
    generation: GenerationConfig
    metrics: MetricsConfig
    sweep: SweepSettings
    directions: tuple[DirectionConfig, ...]

    def __post_init__(self) -> None:
        names = [d.name for d in self.directions]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"[[directions]]: name(s) {', '.join(dup)} used twice")
        by_name = {d.name: d for d in self.directions}
        for d in self.directions:
            if d.match is not None:
                target = by_name.get(d.match)
                if target is None or target is d or target.kind == "random":
                    raise ConfigError(f"[[directions]] {d.name!r}: match = {d.match!r} must name "
                                      f"another, non-random direction (have: {', '.join(names)})")
        if not self.directions and 0.0 not in self.sweep.magnitudes:
            raise ConfigError("config has no [[directions]] and no magnitude 0: nothing to run")

    def direction(self, name: str) -> DirectionConfig:
        return next(d for d in self.directions if d.name == name)


SECTIONS = {"model": ModelConfig, "data": DataConfig, "generation": GenerationConfig,
            "metrics": MetricsConfig, "sweep": SweepSettings}


def parse_config(data: dict[str, Any], origin: str = "config") -> SweepConfig:
    """Build a SweepConfig from parsed TOML, with one-line errors naming the bad key."""
    valid = [*SECTIONS, "directions"]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise _keys_error(origin, unknown, valid)
    parts = {name: _build(cls, data.get(name, {}), f"[{name}]") for name, cls in SECTIONS.items()}
    raw_dirs = data.get("directions", [])
    if not isinstance(raw_dirs, list):
        raise ConfigError("directions: use [[directions]] tables (an array of tables)")
    dirs = []
    for i, d in enumerate(raw_dirs):
        if not isinstance(d, dict):
            raise ConfigError(f"[[directions]] #{i + 1}: expected a table")
        kind = d.get("kind")
        if kind not in KIND_KEYS:
            raise ConfigError(f"[[directions]] #{i + 1}: kind {kind!r} is unknown "
                              f"(choose {', '.join(KINDS)})")
        if "name" not in d:
            raise ConfigError(f"[[directions]] #{i + 1}: needs a name")
        bad = sorted(set(d) - set(KIND_KEYS[kind]))
        if bad:
            raise _keys_error(f"[[directions]] {d['name']!r} (kind {kind})", bad, KIND_KEYS[kind])
        dirs.append(_build(DirectionConfig, d, f"[[directions]] {d['name']!r}"))
    return SweepConfig(directions=tuple(dirs), **parts)


def load_config(path: str | Path) -> SweepConfig:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such config file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML ({err})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    return parse_config(data, str(p))


def config_to_dict(cfg: SweepConfig) -> dict[str, Any]:
    """JSON-able form (tuples become lists), as recorded in run.json."""
    return dataclasses.asdict(cfg)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return format(v, "g") if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _toml_table(obj: Any, keys: tuple[str, ...] | None = None) -> list[str]:
    """``key = value`` lines of a config dataclass: unset (None) values and, for directions,
    keys left at their defaults or not valid for the kind, are left out."""
    lines = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None or keys is not None and (f.name not in keys or (
                f.name not in ("name", "kind") and v == f.default)):
            continue
        lines.append(f"{f.name} = {_toml_value(v)}")
    return lines


def config_to_toml(cfg: SweepConfig, header: str = "") -> str:
    """The config as TOML that :func:`load_config` reads back to an equal SweepConfig (for
    people to read, edit and rerun; nothing here parses it)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name in SECTIONS:
        lines += ["", f"[{name}]", *_toml_table(getattr(cfg, name))]
    for d in cfg.directions:
        lines += ["", "[[directions]]", *_toml_table(d, KIND_KEYS[d.kind])]
    return "\n".join(lines).lstrip("\n") + "\n"
