"""``truthsteer generate``: answer TruthfulQA questions with (optionally) steered generation."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.config import (
    EMBEDDED_MODEL,
    POSITIONS,
    ConfigError,
    GenerationConfig,
    InterventionConfig,
    ModelConfig,
)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=EMBEDDED_MODEL,
                   help=f"hub id, HF folder, .gguf file, or {EMBEDDED_MODEL} (default)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1")
    p.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on CUDA), "
                   "float32, bfloat16, float16")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--truthfulqa", default=None, metavar="PATH",
                   help="TruthfulQA.csv (default: $TRUTHSTEER_TRUTHFULQA, else the hub)")


def register(sub) -> None:
    p = sub.add_parser("generate", help="answer TruthfulQA questions, optionally steered",
                       description="Answer TruthfulQA questions with directions added to the "
                       "activations. Resumable: rerun the same command to continue.")
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
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--prompt", choices=("auto", "qa", "chat"), default="auto")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="FILE.jsonl")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.answers import generate_file

    out = Path(args.out)
    if out.suffix != ".jsonl":
        raise ConfigError(f"--out {out}: give a .jsonl file name")
    if args.direction and not args.hook:
        raise ConfigError("--direction needs at least one --hook")
    if args.hook and not args.direction:
        raise ConfigError("--hook given without --direction")
    if args.head and len(args.head) != len(args.hook):
        raise ConfigError(f"--head given {len(args.head)} times for {len(args.hook)} --hook(s); "
                          "give one per hook")
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                           do_sample=args.sample, temperature=args.temperature, seed=args.seed,
                           prompt_style=args.prompt)
    steering = [InterventionConfig(h, args.direction or "none", args.magnitude, args.positions,
                                   args.head[i] if args.head else None, args.scale)
                for i, h in enumerate(args.hook)]
    n = generate_file(out, ModelConfig(args.model, args.device, args.dtype), args.truthfulqa,
                      args.questions, gen, steering, args.direction, args.magnitude,
                      args.positions, args.scale)
    print(f"wrote {n} answers to {out}")
    return 0
