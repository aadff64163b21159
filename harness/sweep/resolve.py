"""How a sweep gets its directions: per fold, fitted once, saved in RUN_DIR/directions/.

``DirectionResolver.get(name, hook)`` turns one [[directions]] family at one hook into a
:class:`Resolved`: the directions to use for each fold, and the question ids the family must
never be evaluated on (a saved set's own training questions). Fitted families (ITI, meandiff)
for fold f are fitted on the other folds' questions from ONE recording pass over the pool's
reference answers, and written exclusively, so concurrent shards all use the first file.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.directions import Direction, projection_std, random_direction, resolve_direction
from harness.directions.spec import FileSpec, RandomSpec, parse_spec
from harness.sweep.config import SET_HOOK, DirectionConfig, SweepConfig
from harness.sweep.grid import QuestionPlan, stable_seed


@dataclass
class Resolved:
    """A direction family at one hook, ready to steer: the directions to use for each fold and
    the questions it must never be evaluated on."""

    by_fold: dict[int, list[Direction]]
    excluded: frozenset[int] = frozenset()
    source: dict[str, Any] = field(default_factory=dict)


class DirectionResolver:
    """Resolves each (direction family, hook) once per process, fitting what needs fitting."""

    def __init__(self, model, cfg: SweepConfig, plan: QuestionPlan, tqa, out: Path,
                 calibration_prompts: list[list[int]], progress: bool = True):
        self.model, self.cfg, self.plan, self.tqa, self.out = model, cfg, plan, tqa, out
        self.calib, self.progress = calibration_prompts, progress
        self._fitted: dict[str, dict[int, Any]] = {}
        self._cache: dict[tuple[str, str], Resolved] = {}

    def set_path(self, name: str, fold: int) -> Path:
        return self.out / "directions" / f"{name}.fold{fold}.safetensors"

    def get(self, name: str, hook: str) -> Resolved:
        if (name, hook) not in self._cache:
            self._cache[(name, hook)] = self._resolve(self.cfg.direction(name), hook)
        return self._cache[(name, hook)]

    def _with_std(self, d: Direction, scale: str) -> Direction:
        if scale != "std" or d.std is not None:
            return d
        return dataclasses.replace(d, std=projection_std(self.model, d, self.calib))

    def _resolve(self, d: DirectionConfig, hook: str) -> Resolved:
        folds = range(len(self.plan.folds))
        if d.kind in ("iti", "meandiff"):
            sets = self.fitted([d])[d.name]
            by_fold = {f: list(sets[f].directions if hook == SET_HOOK else sets[f].at(hook))
                       for f in folds}
            return Resolved(by_fold, frozenset(), {"files": [str(self.set_path(d.name, f))
                                                             for f in folds]})
        if d.kind == "random":
            if d.match:
                target = self.get(d.match, hook)
                by_fold = {f: [Direction(t.hook, random_direction(
                    stable_seed(d.seed, t.hook, t.head), t.vector.numel()), t.head, t.std,
                    f"random:{d.name}") for t in target.by_fold[f]] for f in folds}
                return Resolved(by_fold, target.excluded, {"match": d.match, "seed": d.seed})
            spec = RandomSpec(d.seed)
            dirs = [self._with_std(x, d.scale) for x in resolve_direction(spec, self.model, hook)]
            return Resolved({f: dirs for f in folds}, frozenset(), {"spec": str(spec)})
        from harness.directions.store import is_direction_set, load_direction_set, resolve_set_spec

        spec = parse_spec(d.spec or "")
        excluded: frozenset[int] = frozenset()
        if isinstance(spec, FileSpec) and is_direction_set(spec):
            excluded = frozenset(load_direction_set(spec.path).train_question_ids)
        elif hook == SET_HOOK:
            raise ConfigError(f"[[directions]] {d.name!r}: spec {spec} needs hooks = [...]")
        if hook == SET_HOOK:
            if not spec.select:
                spec = dataclasses.replace(spec, select="all", text="")
            dirs = resolve_set_spec(spec, self.model, hook)
        else:
            dirs = resolve_direction(spec, self.model, hook)
        dirs = [self._with_std(x, d.scale) for x in dirs]
        return Resolved({f: dirs for f in folds}, excluded, {"spec": d.spec})

    def fitted(self, entries: list[DirectionConfig]) -> dict[str, dict[int, Any]]:
        """Per-fold direction sets of fitted families, loaded from RUN_DIR/directions when
        present, otherwise fitted from ONE recording pass over the pool's reference answers."""
        from harness.directions.store import load_direction_set

        folds = range(len(self.plan.folds))
        missing = []
        for d in entries:
            if d.name in self._fitted:
                continue
            if all(self.set_path(d.name, f).exists() for f in folds):
                self._fitted[d.name] = {f: self._load_checked(d, f) for f in folds}
            else:
                missing.append(d)
        if missing:
            self._fit(missing)
            for d in missing:
                self._fitted[d.name] = {f: load_direction_set(self.set_path(d.name, f))
                                        for f in folds}
        return {d.name: self._fitted[d.name] for d in entries}

    def _load_checked(self, d: DirectionConfig, fold: int):
        from harness.directions.store import load_direction_set

        path = self.set_path(d.name, fold)
        dset = load_direction_set(path)
        if dset.info.get("sweep_direction") != json.loads(json.dumps(dataclasses.asdict(d))) or \
                tuple(dset.train_question_ids) != self.plan.folds[fold][0]:
            raise ConfigError(f"{path}: fitted with other settings or questions; delete "
                              f"{path.parent} to refit")
        return dset

    def _fit(self, entries: list[DirectionConfig]) -> None:
        from harness.directions.contrast import collect_last_token, contrast_set, head_hooks
        from harness.directions.iti import fit_iti, iti_direction_set
        from harness.directions.meandiff import meandiff_direction_set
        from harness.directions.store import save_direction_set
        from harness.steering import resolve_hook

        record: list[str] = []
        for d in entries:
            for h in head_hooks(self.model.n_layers) if d.kind == "iti" else d.hooks:
                if d.kind == "meandiff" and resolve_hook(self.model, h).kind == "attn.hook_z":
                    raise ConfigError(f"[[directions]] {d.name!r}: per-head hook {h} is for ITI")
                if h not in record:
                    record.append(h)
        contrast = contrast_set(self.tqa.by_id(list(self.plan.pool)), self.model.tokenizer)
        acts = collect_last_token(self.model, contrast.token_ids, record, progress=self.progress)
        for d in entries:
            for f, (train, _test) in enumerate(self.plan.folds):
                rows = contrast.subset(train)
                info = {"model": self.model.fingerprint(), "fold": f,
                        "sweep_direction": dataclasses.asdict(d)}
                if d.kind == "iti":
                    import torch

                    heads = torch.stack([acts[h][rows] for h in head_hooks(self.model.n_layers)],
                                        dim=1)
                    fit = fit_iti(heads, contrast.labels[rows], contrast.question_ids[rows],
                                  d.iti_config())
                    dset = iti_direction_set(fit, d.iti_config(), info, d.name)
                else:
                    dset = meandiff_direction_set({h: acts[h][rows] for h in d.hooks},
                                                  contrast.labels[rows],
                                                  contrast.question_ids[rows], info, d.name)
                if tuple(dset.train_question_ids) != tuple(train):
                    raise RuntimeError("fold bookkeeping error: fitted on unexpected questions")
                # exclusive: when another shard saved it first, everyone uses that file
                save_direction_set(self.set_path(d.name, f), dset, exclusive=True)
