"""The sweep runner: resumable, shardable, every cell written exactly once.

``run_sweep`` expands the grid (harness/sweep/grid.py), skips finished cells, fits the
directions it needs once per fold (saved in RUN_DIR/directions/ and reused on resume and by
other shards), and for each remaining cell answers the questions, scores MC1/MC2/MC3 and
measures CE/KL, then writes the cell with ``RunDir.write_cell`` (atomically: a killed run
leaves no half cell). Cells are computed in packs of ``pack``: their answers and MC scores
share batches through per-row steering (the same results as cell by cell), and each cell is
still written on its own. Fitted directions (ITI, meandiff) for fold f are fitted on the other folds'
questions and used only on fold f's questions; a direction-set file's own training questions are
never evaluated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evals.io import progress as progress_bar
from evals.metrics import mean_ci, rate_ci
from evals.rundir import RunDir, code_version
from evals.truthfulqa import load_truthfulqa
from harness.config import ConfigError
from harness.directions import Direction, to_interventions
from harness.sweep.config import BASELINE, SweepConfig, config_to_dict
from harness.sweep.grid import Cell, QuestionPlan, expand_grid, plan_questions, shard_cells
from harness.sweep.resolve import DirectionResolver, Resolved



def run_identity(cfg: SweepConfig, data_sha256: str) -> dict[str, Any]:
    """What must match for a RUN_DIR to be resumed or shared: config (minus the data path,
    which may differ between machines) and the data's hash."""
    conf = config_to_dict(cfg)
    conf["data"] = {k: v for k, v in conf["data"].items() if k != "truthfulqa"}
    return json.loads(json.dumps({"config": conf, "data_sha256": data_sha256}))


def check_run_dir(out: Path, identity: dict[str, Any]) -> None:
    """Raise ConfigError when ``out`` holds a run made with another config or data."""
    run = RunDir(out)
    info = run.info()
    if not info:
        if run.finished_cells():
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


def _groups(by_fold: dict[int, list[Direction]]) -> list[tuple[list[Direction], list[int]]]:
    """Folds that share the same direction list, so fold-independent directions run once."""
    groups: dict[int, tuple[list[Direction], list[int]]] = {}
    for f, dirs in by_fold.items():
        groups.setdefault(id(dirs), (dirs, []))[1].append(f)
    return list(groups.values())


@dataclass
class _Part:
    """One steering configuration of a cell: the interventions of a group of folds, the
    questions it answers and the MC items it scores."""

    ivs: list
    folds: list[int]
    questions: list
    items: list
    labels: dict[str, Any]


@dataclass
class _CellPlan:
    cell: Cell
    dcfg: Any
    resolved: Resolved
    scale: str
    parts: list[_Part]


def _plan_cell(ctx, cell: Cell) -> _CellPlan:
    cfg, plan, fold_of = ctx.cfg, ctx.plan, ctx.plan.fold_of
    if cell.cell_id == BASELINE:
        resolved, dcfg = Resolved({f: [] for f in range(len(plan.folds))}), None
    else:
        dcfg = cfg.direction(cell.direction)
        resolved = ctx.resolver.get(cell.direction, cell.hook)
    scale, positions = (dcfg.scale if dcfg else "raw"), cfg.sweep.positions
    labels = {"cell_id": cell.cell_id, "model": cfg.model.name, "hook": cell.hook,
              "direction": cell.direction, "kind": dcfg.kind if dcfg else "none",
              "magnitude": cell.magnitude, "positions": positions, "scale": scale}
    parts = []
    for dirs, folds in _groups(resolved.by_fold):
        if dcfg is not None and not dirs:
            raise ConfigError(f"{cell.cell_id}: no direction resolved for folds {folds}")
        keep = [q for q in plan.answer_ids if fold_of[q] in folds and q not in resolved.excluded]
        items = [it for it in ctx.mc_items
                 if fold_of[it.question_id] in folds and it.question_id not in resolved.excluded]
        parts.append(_Part(to_interventions(dirs, cell.magnitude, positions, scale), folds,
                           ctx.tqa.by_id(keep) if keep else [], items, labels))
    return _CellPlan(cell, dcfg, resolved, scale, parts)


def run_cell(ctx, cell: Cell) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Compute one cell: (answer rows, description with metrics)."""
    return run_pack(ctx, [cell], packed=False)[0]


def run_pack(ctx, cells: list[Cell], packed: bool = True
             ) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Compute several cells: per cell (answer rows, description with metrics).

    ``packed``: the answers (and MC scores) of all the cells' steering configurations share
    batches (per-row steering), which gives each row what it gets alone; otherwise each
    configuration runs on its own. Side effects (CE/KL) run per configuration either way.
    """
    from harness.answers import answer_rows, packed_answer_rows
    from harness.multiple_choice import score_mc
    from harness.sideeffects import side_effects

    start = time.time()
    plans = [_plan_cell(ctx, c) for c in cells]
    parts = [part for pl in plans for part in pl.parts]
    answers, mc = {}, {}
    jobs = [(k, part) for k, part in enumerate(parts) if part.questions]
    if packed and jobs:
        got = packed_answer_rows(ctx.model, [(p.questions, p.ivs, p.labels) for _, p in jobs],
                                 ctx.cfg.generation, progress=ctx.progress,
                                 desc=f"answers of {len(cells)} cells")
        answers = {k: rows for (k, _), rows in zip(jobs, got)}
    else:
        answers = {k: answer_rows(ctx.model, p.questions, ctx.cfg.generation, p.ivs, p.labels)
                   for k, p in jobs}
    scored = [(k, part) for k, part in enumerate(parts) if part.items]
    if packed and scored:
        items = [it for _, p in scored for it in p.items]
        group_of = [j for j, (_, p) in enumerate(scored) for _ in p.items]
        # on a CPU, MC is compute-bound (matrix multiplies; docs/sweeps.md): stacking groups
        # was 10% slower there (benchmarks/sweep.py); one group per batch instead shares the
        # blocks below each group's first steered one (harness.trunk), bitwise as alone.
        # Stacking (more rows per weight read) is for accelerators.
        stack = ctx.cfg.generation.batch_size if ctx.model.device.type != "cpu" else 1
        flat = score_mc(ctx.model, items, groups=[p.ivs for _, p in scored], group_of=group_of,
                        packed_batch=stack, progress=ctx.progress)
        for j, (k, _) in enumerate(scored):
            sel = [i for i, g in enumerate(group_of) if g == j]
            mc[k] = {key: v[sel] for key, v in flat.items()}
    else:
        mc = {k: score_mc(ctx.model, p.items, p.ivs) for k, p in scored}
    side = {k: side_effects(ctx.model, ctx.reference, p.ivs) for k, p in enumerate(parts)
            } if ctx.reference is not None else {}
    seconds = round((time.time() - start) / len(cells), 2)
    out, k = [], 0
    for pl in plans:
        ks = range(k, k + len(pl.parts))
        k += len(pl.parts)
        out.append(_describe(ctx, pl, [(answers.get(i, []), mc.get(i), side.get(i))
                                       for i in ks], seconds, len(cells) if packed else 1))
    return out


def _describe(ctx, pl: _CellPlan, results: list, seconds: float, pack: int
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A cell's sorted answer rows and its description, from its parts' results."""
    cell, dcfg, resolved, scale = pl.cell, pl.dcfg, pl.resolved, pl.scale
    fold_of, positions = ctx.plan.fold_of, ctx.cfg.sweep.positions
    rows = [dict(r, fold=fold_of[r["question_id"]]) for part_rows, _, _ in results
            for r in part_rows]
    rows.sort(key=lambda r: r["question_id"])
    mc_parts = [m for _, m, _ in results if m is not None]
    side = [(s, len(part.folds)) for (_, _, s), part in zip(results, pl.parts) if s is not None]
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
            "seconds": seconds, "packed_cells": pack, "code": ctx.code}
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
    style: str = ""
    pack: int = 16  # cells whose answers and MC scores share batches (1: cell by cell)
    progress: bool = False  # inner bars (a pack's answers and MC) under the cells bar

    def pack_size(self) -> int:
        """Cells computed together: ``pack``. Sampled cells pack too: each question draws from
        its own seed (harness.generation.sample_seed), whatever shares its batch."""
        return self.pack


def run_sweep(cfg: SweepConfig, out: str | Path, truthfulqa: str | None = None,
              shard: tuple[int, int] | None = None, progress: bool = True,
              executor: Any = None, pack: int = 16) -> dict[str, Any]:
    """Run (or resume) the cells of ``cfg`` belonging to ``shard``; returns a small summary.
    The directions are fitted here, once; ``executor`` (harness/sweep/executors.py; default:
    this process) computes and writes the remaining cells. ``pack`` cells at a time share
    generation and MC batches (per-row steering; the same results as 1, cell by cell)."""
    if pack < 1:
        raise ConfigError(f"--pack {pack}: must be >= 1 (1 runs cell by cell)")
    out = Path(out)
    tqa = load_truthfulqa(truthfulqa or cfg.data.truthfulqa or None)
    plan = plan_questions(cfg, len(tqa))
    cells = expand_grid(cfg)
    identity = run_identity(cfg, tqa.sha256)
    check_run_dir(out, identity)
    mine = shard_cells(cells, shard)
    done = RunDir(out).finished_cells()
    todo = [c for c in mine if c.cell_id not in done]
    summary = {"cells": len(cells), "shard_cells": len(mine), "already_done": len(mine) - len(todo),
               "computed": 0}
    if not todo:
        return summary
    from harness.models import load_model
    from harness.sideeffects import load_reference_text

    model = load_model(cfg.model)
    ref_texts = load_reference_text(cfg.metrics.reference_text) if cfg.metrics.side_effects \
        else None
    code = code_version()
    ctx = build_context(cfg, tqa, out, model, ref_texts, code, progress)
    ctx.pack = pack
    resolver = ctx.resolver
    needed = {c.direction for c in todo if c.cell_id != BASELINE}
    needed |= {cfg.direction(n).match for n in needed if cfg.direction(n).match}
    fitted = {d.name for d in cfg.directions if d.kind in ("iti", "meandiff")}
    steered = [c for c in todo if c.cell_id != BASELINE]
    # resolve everything up front, so bad hooks/specs fail before any cell is written: first
    # what needs no fitting (fails fast), then one recording pass for the fitted families
    for c in steered:
        if c.direction not in fitted and cfg.direction(c.direction).match not in fitted:
            resolver.get(c.direction, c.hook)
    resolver.fitted([d for d in cfg.directions if d.name in needed and d.name in fitted])
    for c in steered:
        resolver.get(c.direction, c.hook)
    info = RunDir(out).info()
    if not info:
        RunDir(out).write_info({
            "identity": identity, "config": config_to_dict(cfg), "model": model.fingerprint(),
            "data": {"origin": tqa.origin, "sha256": tqa.sha256, "n_questions": len(tqa)},
            "code": code, "prompt_style": ctx.style, "cells": [c.cell_id for c in cells],
            "folds": [list(test) for _, test in plan.folds]})
    elif info.get("model") != model.fingerprint():
        raise ConfigError(f"--out {out}: made with model {info.get('model')}, "
                          f"not {model.fingerprint()}")
    (out / "cells").mkdir(parents=True, exist_ok=True)
    if executor is None:
        executor = LocalExecutor()
    summary["computed"] = executor.run(ctx, todo, out, progress)
    return summary


def build_context(cfg: SweepConfig, tqa, out: Path, model, ref_texts: list[str] | None,
                  code: dict[str, str], progress: bool = True) -> SweepContext:
    """Everything a process needs to compute cells with ``model``: the question plan, a
    direction resolver over ``out`` (fitted sets are read from ``out/directions``), the MC items
    and the side-effect reference. The driver and every executor worker build it the same way."""
    from harness.multiple_choice import mc_items
    from harness.prompts import prompt_token_ids, resolve_style
    from harness.sideeffects import reference_set

    plan = plan_questions(cfg, len(tqa))
    style = resolve_style(cfg.generation.prompt_style, model.tokenizer)
    calib = [prompt_token_ids(q.question, style, model.tokenizer)
             for q in tqa.by_id(list(plan.pool[:64]))]
    resolver = DirectionResolver(model, cfg, plan, tqa, out, calib, progress)
    items = mc_items(tqa.by_id(list(plan.pool)), model.tokenizer) if cfg.metrics.mc else []
    reference = reference_set(model, ref_texts) if ref_texts else None
    return SweepContext(cfg, plan, tqa, model, resolver, items, reference, code, style)


def compute_cells(ctx: SweepContext, cells: list[Cell]
                  ) -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """(cell_id, answer rows, description) of each of ``cells``, as each is finished (packs
    of ``ctx.pack_size()`` cells finish together). The one place executors
    (harness/sweep/executors.py) compute cells; nothing here writes."""
    size = ctx.pack_size()
    for start in range(0, len(cells), size):
        group = cells[start:start + size]
        results = run_pack(ctx, group) if len(group) > 1 else [run_cell(ctx, group[0])]
        for cell, (rows, desc) in zip(group, results):
            yield cell.cell_id, rows, desc


def run_cells(ctx: SweepContext, cells: list[Cell], out: Path, progress: bool = True) -> int:
    """The in-process loop: compute each unfinished cell and write it (atomically); returns
    how many were computed."""
    computed, size, run = 0, ctx.pack_size(), RunDir(out)
    ctx.progress = progress and size > 1  # a pack's cells finish together: show its rows
    bar = progress_bar(total=len(cells), desc="sweep cells", unit="cell",
                       disable=not progress)
    for start in range(0, len(cells), size):
        done = run.finished_cells()  # another shard/process may have finished some meanwhile
        group = [c for c in cells[start:start + size] if c.cell_id not in done]
        if group:
            bar.set_postfix_str(group[0].cell_id[-40:])
        for cell_id, rows, desc in compute_cells(ctx, group):  # each cell written on its own
            run.write_cell(cell_id, rows, desc)
            computed += 1
        bar.update(min(size, len(cells) - start))
    bar.close()
    return computed


class LocalExecutor:
    """Compute and write the cells in this process, one after another (the default executor;
    workers on a Ray cluster: harness/sweep/executors.py)."""

    def run(self, ctx, cells: list[Cell], out: Path, progress: bool = True) -> int:
        return run_cells(ctx, cells, out, progress)
