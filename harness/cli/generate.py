"""``truthsteer generate``: answer TruthfulQA questions with (optionally) steered generation, into
a one-cell run folder that ``judge``, ``report``, ``spotcheck`` and ``export`` read."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import (
    add_data_args,
    add_generation_args,
    add_model_args,
    add_progress_arg,
    generation_config,
)
from harness.config import POSITIONS, ConfigError, InterventionConfig, ModelConfig


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer TruthfulQA questions, optionally steered",
                       description="Answer TruthfulQA questions with directions added to the "
                       "activations, into a run folder (one cell) that judge, report, "
                       "spotcheck and export read. Resumable: rerun the same command to "
                       "continue.")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--questions", type=int, default=None, metavar="N",
                   help="answer the first N questions (default: all)")
    p.add_argument("--hook", action="append", default=[], metavar="H",
                   help="TransformerLens hook name, e.g. blocks.2.hook_resid_post; repeatable")
    p.add_argument("--head", action="append", type=int, default=[], metavar="I",
                   help="head index for blocks.L.attn.hook_z hooks, one per --hook")
    p.add_argument("--direction", default=None, metavar="SPEC",
                   help="random:SEED, FILE.safetensors[:NAME] or feature:DIR:ID")
    p.add_argument("--magnitude", type=float, default=0.0, metavar="X")
    p.add_argument("--positions", choices=POSITIONS, default="all")
    p.add_argument("--scale", choices=("raw", "std"), default="raw",
                   help="raw: magnitude is the added vector's norm; std: in units of the "
                   "activations' std along the direction (measured on the prompts)")
    add_generation_args(p)
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder to write (run.json, cells/<cell>.jsonl)")
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.answers import generate_run

    out = Path(args.out)
    if out.suffix in (".jsonl", ".json", ".csv"):
        raise ConfigError(f"--out {out}: give a folder name (a run folder), not a file")
    if args.direction and not args.hook:
        raise ConfigError("--direction needs at least one --hook")
    if args.hook and not args.direction:
        raise ConfigError("--hook given without --direction")
    if args.head and len(args.head) != len(args.hook):
        raise ConfigError(f"--head given {len(args.head)} times for {len(args.hook)} --hook(s); "
                          "give one per hook")
    steering = [InterventionConfig(h, args.direction or "none", args.magnitude, args.positions,
                                   args.head[i] if args.head else None, args.scale)
                for i, h in enumerate(args.hook)]
    n, cell = generate_run(out, ModelConfig(args.model, args.device, args.dtype),
                           args.truthfulqa, args.questions, generation_config(args), steering,
                           args.direction, args.magnitude, args.positions, args.scale,
                           progress=not args.no_progress)
    print(f"wrote {n} answers to {out} (cell {cell}); judge them with "
          f"`truthsteer judge {out}`")
    return 0
