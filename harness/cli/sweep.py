"""``truthsteer sweep`` (run / resume / shard / merge a sweep) and ``truthsteer export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.options import add_data_args, add_progress_arg
from harness.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="run a grid of directions x hooks x magnitudes (resumable, shardable)",
        description="Run the sweep a TOML config describes into RUN_DIR. Rerun the same command "
        "to resume: finished cells are kept. --shard i/n runs one slice; shards may share "
        "RUN_DIR. --merge copies finished cells of run dirs made on other machines into --out.")
    p.add_argument("config", nargs="?", metavar="CONFIG.toml",
                   help="sweep config (see evals/smoke.toml and docs/sweeps.md)")
    add_data_args(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    p.add_argument("--shard", default=None, metavar="i/n",
                   help="run only shard i of n (0-based): cells whose sorted-id rank is i mod n")
    p.add_argument("--merge", nargs="+", default=None, metavar="SRC_RUN_DIR",
                   help="instead of running: copy finished cells of these run dirs into --out")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="who computes the cells: this process (default) or workers on a Ray "
                   "cluster, one model per worker, a GPU each on CUDA (pip install "
                   "'truthsteer[ray]'; see docs/sweeps.md)")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="with --executor ray: the cluster to join (e.g. auto, or HEAD_IP:6379 "
                   "from `ray start --head`); default: start a local Ray instance")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with --executor ray: how many workers (default: one per GPU on CUDA, "
                   "one per CPU otherwise)")
    p.add_argument("--pack", type=int, default=16, metavar="N",
                   help="cells whose answers and MC scores share batches (default 16; 1: cell "
                   "by cell; same results, each cell still written on its own)")
    add_progress_arg(p)
    p.set_defaults(func=run)

    e = sub.add_parser("export", help="write a run's answers (and judge scores) as CSV",
                       description="Write the answer table of RUN_DIR as CSV: question_id, "
                       "question, direction, hook, magnitude, answer, ..., plus truthful / "
                       "informative verdict and p_yes columns per judge found in RUN_DIR/scores.")
    e.add_argument("run_dir", metavar="RUN_DIR")
    e.add_argument("--out", required=True, metavar="FILE.csv")
    e.set_defaults(func=export)


def run(args: argparse.Namespace) -> int:
    from harness.sweep.config import load_config
    from harness.sweep.grid import parse_shard

    if args.merge:
        if args.config or args.shard or args.executor != "local" or args.address or args.workers:
            raise ConfigError("--merge takes run dirs only (no CONFIG, --shard, --executor, "
                              "--address or --workers)")
        from harness.sweep.merge import merge_runs

        n = merge_runs(args.merge, args.out)
        print(f"merged {n} cell(s) into {args.out}")
        return 0
    if not args.config:
        raise ConfigError("give a CONFIG.toml (or --merge SRC_RUN_DIR ...)")
    cfg = load_config(args.config)
    shard = parse_shard(args.shard) if args.shard else None
    from harness.sweep.executors import WorkersDied, make_executor
    from harness.sweep.export import summary_markdown
    from harness.sweep.run import run_sweep

    executor = make_executor(args.executor, args.address, args.workers)
    try:
        summary = run_sweep(cfg, args.out, args.truthfulqa, shard,
                            progress=not args.no_progress, executor=executor,
                            pack=args.pack)
    except WorkersDied as err:
        print(f"truthsteer sweep: {err}", file=sys.stderr)
        return 1
    print(f"{summary['computed']} cell(s) computed, {summary['already_done']} already done, "
          f"{summary['shard_cells']} in this shard of {summary['cells']}; run dir: {args.out}")
    print(summary_markdown(args.out))
    return 0


def export(args: argparse.Namespace) -> int:
    from harness.sweep.export import export_csv

    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ConfigError(f"--out {out}: give a .csv file name")
    n = export_csv(args.run_dir, out)
    print(f"wrote {n} rows to {out}")
    return 0
