"""The sweep runner: resumable, shardable, every cell written exactly once.

``run_sweep`` expands the grid (harness/sweep_config.py), skips finished cells, fits the
directions it needs once per fold (saved in RUN_DIR/directions/ and reused on resume and by
other shards), and for each remaining cell answers the questions, scores MC1/MC2/MC3 and
measures CE/KL, then writes the cell with ``evals.runs.write_cell`` (atomically: a killed run
leaves no half cell). Fitted directions (ITI, meandiff) for fold f are fitted on the other folds'
questions and used only on fold f's questions; a direction-set file's own training questions are
never evaluated.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals.metrics import mean_ci, rate_ci
from evals.runs import finished_cells, load_run_info, write_cell, write_json_atomic
from evals.truthfulqa import kfold, load_truthfulqa
from harness.config import ConfigError
from harness.directions import (
    Direction,
    projection_std,
    random_direction,
    resolve_direction,
    to_interventions,
)
from harness.sweep_config import (
    BASELINE,
    SET_HOOK,
    Cell,
    DirectionConfig,
    SweepConfig,
    config_to_dict,
    expand_grid,
    shard_cells,
    stable_seed,
)

REPO = Path(__file__).resolve().parents[1]


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


@dataclass
class Resolved:
    """A direction family at one hook, ready to steer: the directions to use for each fold and
    the questions it must never be evaluated on."""

    by_fold: dict[int, list[Direction]]
    excluded: frozenset[int] = frozenset()
    source: dict[str, Any] = field(default_factory=dict)


def code_version() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("truthsteer")
    except PackageNotFoundError:
        pkg = "unknown"
    out = {"package": pkg}
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_commit"] = commit
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def run_identity(cfg: SweepConfig, data_sha256: str) -> dict[str, Any]:
    """What must match for a RUN_DIR to be resumed or shared: config (minus the data path,
    which may differ between machines) and the data's hash."""
    conf = config_to_dict(cfg)
    conf["data"] = {k: v for k, v in conf["data"].items() if k != "truthfulqa"}
    return json.loads(json.dumps({"config": conf, "data_sha256": data_sha256}))


def check_run_dir(out: Path, identity: dict[str, Any]) -> None:
    """Raise ConfigError when ``out`` holds a run made with another config or data."""
    info = load_run_info(out)
    if not info:
        if finished_cells(out):
            raise ConfigError(f"--out {out}: has cells but no run.json (not a sweep run dir); "
                              "choose another --out")
        return
    old = info.get("identity")
    if old != identity:
        diff = sorted(k for k in set(old or {}) | set(identity)
                      if (old or {}).get(k) != identity.get(k))
        if "config" in diff:
            sections = sorted(k for k in identity["config"]
                              if (old or {}).get("config", {}).get(k) != identity["config"][k])
            diff = [f"config [{', '.join(sections)}]" if k == "config" else k for k in diff]
        raise ConfigError(f"--out {out}: holds a run with a different {', '.join(diff)}; "
                          "use a new --out (or the original config) to resume")


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
            spec = f"random:{d.seed}"
            dirs = [self._with_std(x, d.scale) for x in resolve_direction(spec, self.model, hook)]
            return Resolved({f: dirs for f in folds}, frozenset(), {"spec": spec})
        from harness.directions.store import is_direction_set, load_direction_set

        spec = d.spec or ""
        excluded: frozenset[int] = frozenset()
        if is_direction_set(spec):
            path = spec.partition(".safetensors")[0] + ".safetensors"
            excluded = frozenset(load_direction_set(path).train_question_ids)
            if hook == SET_HOOK and ".safetensors:" not in spec:
                spec = path + ":all"
        elif hook == SET_HOOK:
            raise ConfigError(f"[[directions]] {d.name!r}: spec {spec} needs hooks = [...]")
        if hook == SET_HOOK:
            from harness.directions.store import resolve_set_spec

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


def _groups(by_fold: dict[int, list[Direction]]) -> list[tuple[list[Direction], list[int]]]:
    """Folds that share the same direction list, so fold-independent directions run once."""
    groups: dict[int, tuple[list[Direction], list[int]]] = {}
    for f, dirs in by_fold.items():
        groups.setdefault(id(dirs), (dirs, []))[1].append(f)
    return list(groups.values())


def run_cell(ctx, cell: Cell) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compute one cell: (answer rows, description with metrics)."""
    from harness.generation import generate_answers
    from harness.multiple_choice import score_mc
    from harness.sideeffects import side_effects

    cfg, plan, fold_of = ctx.cfg, ctx.plan, ctx.plan.fold_of
    start = time.time()
    if cell.cell_id == BASELINE:
        resolved, dcfg = Resolved({f: [] for f in range(len(plan.folds))}), None
    else:
        dcfg = cfg.direction(cell.direction)
        resolved = ctx.resolver.get(cell.direction, cell.hook)
    scale = dcfg.scale if dcfg else "raw"
    positions = cfg.sweep.positions
    rows, mc_parts, side = [], [], []
    for dirs, folds in _groups(resolved.by_fold):
        if dcfg is not None and not dirs:
            raise ConfigError(f"{cell.cell_id}: no direction resolved for folds {folds}")
        ivs = to_interventions(dirs, cell.magnitude, positions, scale)
        keep = [q for q in plan.answer_ids if fold_of[q] in folds and q not in resolved.excluded]
        if keep:
            qs = ctx.tqa.by_id(keep)
            answers = generate_answers(ctx.model, [q.question for q in qs], cfg.generation, ivs,
                                       progress=False)
            for q, a in zip(qs, answers):
                rows.append({
                    "cell_id": cell.cell_id, "question_id": q.id, "question": q.question,
                    "model": cfg.model.name, "hook": cell.hook,
                    "direction": cell.direction, "kind": dcfg.kind if dcfg else "none",
                    "magnitude": cell.magnitude, "positions": positions, "scale": scale,
                    "fold": fold_of[q.id], "prompt_style": a["prompt_style"],
                    "prompt_token_ids": a["prompt_token_ids"],
                    "answer_token_ids": a["answer_token_ids"], "answer": a["answer"]})
        if ctx.mc_items:
            items = [it for it in ctx.mc_items
                     if fold_of[it.question_id] in folds and it.question_id not in resolved.excluded]
            if items:
                mc_parts.append(score_mc(ctx.model, items, ivs))
        if ctx.reference is not None:
            side.append((side_effects(ctx.model, ctx.reference, ivs), len(folds)))
    rows.sort(key=lambda r: r["question_id"])
    metrics: dict[str, Any] = {}
    per_question: dict[str, list] = {}
    if mc_parts:
        merged = {k: np.concatenate([p[k] for p in mc_parts]) for k in mc_parts[0]}
        order = np.argsort(merged["question_id"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        mc1, lo1, hi1 = rate_ci(merged["mc1"])
        mc2, lo2, hi2 = mean_ci(merged["mc2"])
        lo2, hi2 = max(0.0, lo2), min(1.0, hi2)  # MC2 lives in [0, 1]
        metrics.update(mc1=mc1, mc1_ci=[lo1, hi1], mc2=mc2, mc2_ci=[lo2, hi2],
                       mc3=float(merged["mc3"].mean()), n_mc=len(order))
        per_question = {k: v.tolist() for k, v in merged.items() if k != "mc3"}
    if side:
        weight = sum(w for _, w in side)
        for key in ("ce", "kl", "ce_increase"):
            metrics[key] = sum(s[key] * w for s, w in side) / weight
        metrics["ce_baseline"] = ctx.reference.base_ce
    desc = {"cell_id": cell.cell_id, "direction": cell.direction, "hook": cell.hook,
            "magnitude": cell.magnitude, "positions": positions, "scale": scale,
            "kind": dcfg.kind if dcfg else "none", "source": resolved.source,
            "n_answers": len(rows), "n_excluded_questions": len(resolved.excluded),
            "n_interventions": {str(f): len(d) for f, d in resolved.by_fold.items()},
            "coefficients": {str(f): [float(iv.magnitude) for iv in to_interventions(
                d, cell.magnitude, positions, scale)][:64] for f, d in resolved.by_fold.items()},
            "metrics": metrics, "mc_per_question": per_question,
            "seconds": round(time.time() - start, 2), "code": ctx.code}
    return rows, desc


@dataclass
class SweepContext:
    cfg: SweepConfig
    plan: QuestionPlan
    tqa: Any
    model: Any
    resolver: DirectionResolver
    mc_items: list
    reference: Any
    code: dict[str, str]


def run_sweep(cfg: SweepConfig, out: str | Path, truthfulqa: str | None = None,
              shard: tuple[int, int] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the cells of ``cfg`` belonging to ``shard``; returns a small summary."""
    from tqdm.auto import tqdm

    out = Path(out)
    tqa = load_truthfulqa(truthfulqa or cfg.data.truthfulqa or None)
    plan = plan_questions(cfg, len(tqa))
    cells = expand_grid(cfg)
    identity = run_identity(cfg, tqa.sha256)
    check_run_dir(out, identity)
    mine = shard_cells(cells, shard)
    done = finished_cells(out)
    todo = [c for c in mine if c.cell_id not in done]
    summary = {"cells": len(cells), "shard_cells": len(mine), "already_done": len(mine) - len(todo),
               "computed": 0}
    if not todo:
        return summary
    from harness.models import load_model
    from harness.multiple_choice import mc_items
    from harness.prompts import prompt_token_ids, resolve_style
    from harness.sideeffects import load_reference_text, reference_set

    model = load_model(cfg.model)
    style = resolve_style(cfg.generation.prompt_style, model.tokenizer)
    calib = [prompt_token_ids(q.question, style, model.tokenizer)
             for q in tqa.by_id(list(plan.pool[:64]))]
    resolver = DirectionResolver(model, cfg, plan, tqa, out, calib, progress)
    ref_texts = load_reference_text(cfg.metrics.reference_text) if cfg.metrics.side_effects \
        else None
    needed = {c.direction for c in todo if c.cell_id != BASELINE}
    needed |= {cfg.direction(n).match for n in needed if cfg.direction(n).match}
    resolver.fitted([d for d in cfg.directions if d.name in needed  # one recording pass
                     and d.kind in ("iti", "meandiff")])
    for c in todo:  # resolve everything up front: bad hooks/specs fail before any cell is written
        if c.cell_id != BASELINE:
            resolver.get(c.direction, c.hook)
    code = code_version()
    info = load_run_info(out)
    if not info:
        write_json_atomic(out / "run.json", {
            "identity": identity, "config": config_to_dict(cfg), "model": model.fingerprint(),
            "data": {"origin": tqa.origin, "sha256": tqa.sha256, "n_questions": len(tqa)},
            "code": code, "prompt_style": style, "cells": [c.cell_id for c in cells],
            "folds": [list(test) for _, test in plan.folds]})
    elif info.get("model") != model.fingerprint():
        raise ConfigError(f"--out {out}: made with model {info.get('model')}, "
                          f"not {model.fingerprint()}")
    (out / "cells").mkdir(parents=True, exist_ok=True)
    ctx = SweepContext(cfg, plan, tqa, model, resolver,
                       mc_items(tqa.by_id(list(plan.pool)), model.tokenizer) if cfg.metrics.mc
                       else [], reference_set(model, ref_texts) if ref_texts else None, code)
    bar = tqdm(todo, desc="sweep cells", unit="cell", disable=not progress)
    for cell in bar:
        bar.set_postfix_str(cell.cell_id[-40:])
        if cell.cell_id in finished_cells(out):  # another shard/process finished it meanwhile
            continue
        rows, desc = run_cell(ctx, cell)
        write_cell(out, cell.cell_id, rows, desc)
        summary["computed"] += 1
    return summary
