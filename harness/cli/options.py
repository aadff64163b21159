"""The command-line flags several commands share, each defined once, with defaults taken from the
configs that own them (``ModelConfig``, ``GenerationConfig``, ``evals.judges.DEFAULT_JUDGE``)."""

from __future__ import annotations

import argparse

from evals.judges import DEFAULT_JUDGE, SPEC_FORMS
from harness.config import EMBEDDED_MODEL, PROMPT_STYLES, GenerationConfig, ModelConfig

_MODEL, _GEN = ModelConfig(), GenerationConfig()


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype (a :class:`harness.config.ModelConfig`)."""
    p.add_argument("--model", default=_MODEL.name,
                   help=f"hub id, HF folder, .gguf file, or {EMBEDDED_MODEL} (default)")
    add_device_arg(p, "auto (cuda if present), cpu, cuda, cuda:1")
    p.add_argument("--dtype", default=_MODEL.dtype, help="auto (float32 on CPU, bfloat16 on "
                   "CUDA), float32, bfloat16, float16")


def add_device_arg(p: argparse.ArgumentParser, help: str = "device of local judge models") -> None:
    p.add_argument("--device", default=_MODEL.device, help=help)


def add_data_args(p: argparse.ArgumentParser, of_run: bool = False) -> None:
    """--truthfulqa: where TruthfulQA comes from (``of_run``: a command reading a run folder,
    which falls back to the file the run was made from)."""
    p.add_argument("--truthfulqa", default=None, metavar="PATH",
                   help="TruthfulQA.csv (default: $TRUTHSTEER_TRUTHFULQA, else "
                   + ("the file the run was made from, else " if of_run else "") + "the hub)")


def add_judge_args(p: argparse.ArgumentParser, default: str = DEFAULT_JUDGE,
                   help: str | None = None) -> None:
    """--judge and the flags of remote (OpenAI-compatible) judges."""
    p.add_argument("--judge", default=default, metavar="J",
                   help=help or f"{SPEC_FORMS} (default: {default}; offline)")
    p.add_argument("--judge-base-url", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint for openai: judges (default: the OpenAI API)")
    p.add_argument("--judge-api-key-env", default=None, metavar="NAME",
                   help="environment variable holding the key (default OPENAI_API_KEY)")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    """Decoding flags (a :class:`harness.config.GenerationConfig`)."""
    p.add_argument("--batch-size", type=int, default=_GEN.batch_size)
    p.add_argument("--max-new-tokens", type=int, default=_GEN.max_new_tokens)
    p.add_argument("--prompt", choices=PROMPT_STYLES, default=_GEN.prompt_style)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=_GEN.temperature)
    p.add_argument("--seed", type=int, default=_GEN.seed)


def generation_config(args: argparse.Namespace) -> GenerationConfig:
    """The :class:`GenerationConfig` of flags added by :func:`add_generation_args`."""
    return GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                            do_sample=args.sample, temperature=args.temperature, seed=args.seed,
                            prompt_style=args.prompt)


def add_progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
