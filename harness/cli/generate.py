"""``truthsteer generate``: answer TruthfulQA questions with (optionally) steered generation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.config import (
    EMBEDDED_MODEL,
    POSITIONS,
    ConfigError,
    GenerationConfig,
    InterventionConfig,
    ModelConfig,
    to_dict,
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
    from evals.runs import read_jsonl, write_json_atomic, write_jsonl_atomic
    from evals.truthfulqa import load_truthfulqa
    from harness.directions import projection_std, resolve_direction, to_interventions
    from harness.generation import generate_answers
    from harness.models import load_model
    from harness.prompts import prompt_token_ids, resolve_style
    from harness.steering import validate

    out = Path(args.out)
    if out.suffix != ".jsonl":
        raise ConfigError(f"--out {out}: give a .jsonl file name")
    if args.direction and not args.hook:
        raise ConfigError("--direction needs at least one --hook")
    if args.head and len(args.head) != len(args.hook):
        raise ConfigError(f"--head given {len(args.head)} times for {len(args.hook)} --hook(s); "
                          "give one per hook")
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                           do_sample=args.sample, temperature=args.temperature, seed=args.seed,
                           prompt_style=args.prompt)
    direction = args.direction or "none"
    ivcfgs = [InterventionConfig(h, direction, args.magnitude, args.positions,
                                 args.head[i] if args.head else None, args.scale)
              for i, h in enumerate(args.hook)]
    tqa = load_truthfulqa(args.truthfulqa)
    n = args.questions if args.questions is not None else len(tqa)
    if not 1 <= n <= len(tqa):
        raise ConfigError(f"--questions {n}: must be between 1 and {len(tqa)}")
    questions = tqa.by_id(list(range(n)))
    model = load_model(ModelConfig(args.model, args.device, args.dtype))
    style = resolve_style(gen.prompt_style, model.tokenizer)

    directions = []
    for ivc in ivcfgs:
        if args.direction is None:
            raise ConfigError("--hook given without --direction")
        directions += resolve_direction(args.direction, model, ivc.hook, ivc.head)
    if args.scale == "std":
        prompts = [prompt_token_ids(q.question, style, model.tokenizer) for q in questions[:64]]
        directions = [type(d)(d.hook, d.vector, d.head, projection_std(model, d, prompts), d.label)
                      for d in directions]
    interventions = to_interventions(directions, args.magnitude, args.positions, args.scale)
    validate(model, interventions)

    settings = {"model": model.fingerprint(), "truthfulqa": {"origin": tqa.origin,
                "sha256": tqa.sha256}, "generation": to_dict(gen), "prompt_style": style,
                "interventions": [to_dict(c) for c in ivcfgs],
                "stds": [d.std for d in directions]}
    partial, cfg_path = out.with_suffix(".jsonl.partial"), out.with_suffix(".cfg.json")
    done: dict[int, dict] = {}
    if partial.exists():
        old = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
        if old != settings:
            raise ConfigError(f"--out {out}: an unfinished run with other settings is there "
                              f"({partial}); delete it or choose another --out")
        done = {r["question_id"]: r for r in _read_partial(partial, read_jsonl)}
    write_json_atomic(cfg_path, settings)
    todo = [q for q in questions if q.id not in done]
    hook_label = ",".join(f"{c.hook}" + (f"[{c.head}]" if c.head is not None else "")
                          for c in ivcfgs) or "none"
    chunk = max(gen.batch_size * 4, 32)
    from tqdm.auto import tqdm

    with open(partial, "a", encoding="utf-8") as fh, \
            tqdm(total=len(questions), initial=len(done), desc="answering", unit="q") as bar:
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            answers = generate_answers(model, [q.question for q in part], gen, interventions,
                                       progress=False)
            for q, a in zip(part, answers):
                row = {"question_id": q.id, "question": q.question, "model": args.model,
                       "hook": hook_label, "direction": direction, "magnitude": args.magnitude,
                       "positions": args.positions, "scale": args.scale,
                       "prompt_style": style, "prompt_token_ids": a["prompt_token_ids"],
                       "answer_token_ids": a["answer_token_ids"], "answer": a["answer"]}
                done[q.id] = row
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            bar.update(len(part))
    write_jsonl_atomic(out, [done[q.id] for q in questions])
    partial.unlink()
    print(f"wrote {len(questions)} answers to {out}")
    return 0


def _read_partial(path: Path, read_jsonl) -> list[dict]:
    """Rows of an interrupted run; a last line cut off mid-write is dropped."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        path.write_text("".join(lines[:-1]), encoding="utf-8")
    return read_jsonl(path)
