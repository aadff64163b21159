"""Packed vs cell-by-cell sweeps: the same cells, the same batch size, timed in one run.

Two grids on the embedded model, chat prompts, 2 folds, greedy, MC scoring on:
  quick  the quickstart's shape: mean-difference directions at blocks.{8,15,22}.hook_resid_post
         x magnitudes 0/1/3 (std units) plus one more family (the quickstart's feature; here a
         mean-diff at layer 18) = 9 cells (8 steered + baseline)
  wide   mean-difference at 6 layers x 5 magnitudes = 31 cells (30 steered + baseline)
Directions are fitted once (not timed). Each repeat computes every cell with
``harness.sweep.run.compute_cells`` packed (``--pack`` cells share batches) and cell by cell
(pack 1), alternating which goes first; the median wall time of each is kept and the ratio
printed. Side effects (CE/KL, not packed) are off unless ``--side-effects``.

    OMP_NUM_THREADS=2 python benchmarks/sweep.py [--grid quick|wide|both] [--questions 40]
        [--tokens 32] [--batch 16] [--repeats 3] [--pack 16] [--no-mc | --no-answers]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

GRIDS = {"quick": ((8, 15, 18, 22), (0.0, 1.0, 3.0)),
         "wide": ((4, 8, 12, 15, 18, 22), (0.0, 0.5, 1.0, 2.0, 3.0, 4.0))}


def build(args, grid: str, out: Path):
    """A fitted sweep context and its cells for ``grid``."""
    from evals.truthfulqa import load_truthfulqa
    from harness.config import GenerationConfig, ModelConfig
    from harness.models import load_model
    from harness.sweep.config import (
        DataConfig,
        DirectionConfig,
        MetricsConfig,
        SweepConfig,
        SweepSettings,
    )
    from harness.sweep.grid import expand_grid
    from harness.sweep.run import build_context

    layers, magnitudes = GRIDS[grid]
    cfg = SweepConfig(
        model=ModelConfig(device=args.device, dtype="float32"),
        data=DataConfig(questions=args.questions, folds=2),
        generation=GenerationConfig(max_new_tokens=args.tokens, batch_size=args.batch,
                                    prompt_style="chat"),
        metrics=MetricsConfig(answers=not args.no_answers, mc=not args.no_mc,
                              side_effects=args.side_effects),
        sweep=SweepSettings(magnitudes=magnitudes, positions="all"),
        directions=(DirectionConfig(name="meandiff", kind="meandiff", hooks=tuple(
            f"blocks.{layer}.hook_resid_post" for layer in layers)),))
    tqa = load_truthfulqa(args.truthfulqa)
    model = build.model = getattr(build, "model", None) or load_model(cfg.model)
    ref = None
    if args.side_effects:
        from harness.sideeffects import load_reference_text
        ref = load_reference_text(None)
    ctx = build_context(cfg, tqa, out, model, ref, {}, progress=False)
    ctx.resolver.fitted(list(cfg.directions))
    cells = expand_grid(cfg)
    for c in cells:
        if c.direction != "none":
            ctx.resolver.get(c.direction, c.hook)
    return ctx, cells


def timed(ctx, cells, pack: int) -> tuple[float, list]:
    from harness.sweep.run import compute_cells

    ctx.pack = pack
    start = time.perf_counter()
    got = list(compute_cells(ctx, cells))
    return time.perf_counter() - start, got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truthfulqa", default=os.environ.get(
        "TRUTHSTEER_TRUTHFULQA", "../shared/data/truthfulqa/TruthfulQA.csv"))
    parser.add_argument("--grid", choices=("quick", "wide", "both"), default="both")
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pack", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-mc", action="store_true")
    parser.add_argument("--no-answers", action="store_true", help="MC only (time its packing)")
    parser.add_argument("--side-effects", action="store_true")
    args = parser.parse_args()

    import torch
    print(f"torch threads {torch.get_num_threads()}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for grid in (("quick", "wide") if args.grid == "both" else (args.grid,)):
        with tempfile.TemporaryDirectory() as tmp:
            ctx, cells = build(args, grid, Path(tmp))
            times: dict[int, list[float]] = {1: [], args.pack: []}
            results = {}
            for r in range(args.repeats):
                for pack in ((args.pack, 1) if r % 2 == 0 else (1, args.pack)):
                    seconds, results[pack] = timed(ctx, cells, pack)
                    times[pack].append(seconds)
            same = all(a[1] == b[1] and a[2]["mc_per_question"] == b[2]["mc_per_question"]
                       for a, b in zip(results[1], results[args.pack]))
            one, packed = statistics.median(times[1]), statistics.median(times[args.pack])
            print(f"{grid}: {len(cells)} cells x {args.questions} questions, batch {args.batch}, "
                  f"{args.tokens} tokens, answers {'off' if args.no_answers else 'on'}, "
                  f"MC {'off' if args.no_mc else 'on'}: cell-by-cell "
                  f"{one:.1f} s, packed ({args.pack}/pack) {packed:.1f} s -> {one / packed:.2f}x "
                  f"(runs: {[round(t, 1) for t in times[1]]} vs "
                  f"{[round(t, 1) for t in times[args.pack]]}); identical rows and MC: {same}; "
                  f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
