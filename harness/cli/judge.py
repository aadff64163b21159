"""``truthsteer judge RUN_DIR``: score a sweep's answers for truthful / informative.

Scores go to ``RUN_DIR/scores/<judge_slug>.jsonl`` as they complete (answers are never touched);
a rerun judges only answers with no score, a changed answer, or an unscored verdict. Each
invocation appends its usage (requests, tokens, cost when prices are given) to
``RUN_DIR/scores/<judge_slug>.runs.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import math
import re
import sys
import time
from typing import Any

from harness.cli.generate import add_data_args

DEFAULT_JUDGE = "default"


def register(sub) -> None:
    p = sub.add_parser("judge", help="score a run's answers with an LLM judge",
                       description="Judge every answer of a run for truthful and informative. "
                       "Resumable: rerun to judge only what is missing.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--judge", default=DEFAULT_JUDGE, metavar="J",
                   help="openai:MODEL, hf:MODEL, learned:PATH or default (offline; the default)")
    p.add_argument("--judge-base-url", default=None, metavar="URL",
                   help="OpenAI-compatible endpoint for openai: judges (default: the OpenAI API)")
    p.add_argument("--judge-api-key-env", default=None, metavar="NAME",
                   help="environment variable holding the key (default OPENAI_API_KEY)")
    p.add_argument("--judge-prompt", choices=("ref-aware", "gpt-judge"), default=None,
                   help="ref-aware (references + yes/no question; default) or gpt-judge "
                   "('Q: ..\\nA: ..\\nTrue:' for fine-tuned judges; default for hf TruthfulQA "
                   "judges)")
    p.add_argument("--judge-info-model", default=None, metavar="MODEL",
                   help="a separate model for informative verdicts (e.g. a GPT-info-style judge)")
    p.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="requests in flight at once (openai judges)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N",
                   help="prompts per forward pass (hf judges)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds before a request is abandoned and retried")
    p.add_argument("--max-retries", type=int, default=6, metavar="N",
                   help="retries of a request after 429/5xx/timeouts")
    p.add_argument("--price-per-1k-input", type=float, default=None, metavar="USD",
                   help="price per 1,000 prompt tokens (for a cost estimate)")
    p.add_argument("--price-per-1k-output", type=float, default=None, metavar="USD",
                   help="price per 1,000 completion tokens")
    p.add_argument("--cache", default=None, metavar="FILE",
                   help="judge cache (default: $TRUTHSTEER_CACHE/judge_cache.sqlite for openai)")
    p.add_argument("--no-cache", action="store_true", help="use no judge cache")
    p.add_argument("--device", default="auto", help="device of local judge models")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(p)
    p.set_defaults(func=run)


@functools.lru_cache(maxsize=4)
def _load(name: str, device: str) -> tuple[Any, Any]:
    from harness.config import ModelConfig
    from harness.models import load_model

    loaded = load_model(ModelConfig(name=name, device=device))
    return loaded.hf_model, loaded.tokenizer


def model_loader(device: str = "auto"):
    """``model_loader(name) -> (hf_model, tokenizer)`` built on ``harness.models.load_model``
    (so hub ids, folders, .gguf files and the embedded model's name all work)."""
    return lambda name: _load(name, device)


def cost_usd(usage: dict[str, int], per_1k_in: float | None, per_1k_out: float | None
             ) -> float | None:
    if per_1k_in is None and per_1k_out is None:
        return None
    return (usage.get("prompt_tokens", 0) * (per_1k_in or 0.0)
            + usage.get("completion_tokens", 0) * (per_1k_out or 0.0)) / 1000.0


def _pct(x: float) -> str:
    return "   –  " if math.isnan(x) else f"{x:5.1f}%"


def format_summary(summary: dict[str, dict[str, Any]]) -> str:
    width = max([len("cell"), *map(len, summary)])
    lines = [f"{'cell':<{width}}  {'n':>5}  {'truthful':>8}  {'informative':>11}  "
             f"{'both':>6}  {'unscored t/i':>12}"]
    for cell_id, s in summary.items():
        lines.append(f"{cell_id:<{width}}  {s['n']:>5}  {_pct(s['pct_truthful']):>8}  "
                     f"{_pct(s['pct_informative']):>11}  {_pct(s['pct_truthful_informative']):>6}"
                     f"  {s['unscored_truthful']:>5}/{s['unscored_informative']:<6}")
    return "\n".join(lines)


def _public_url(url: str | None) -> str | None:
    """The endpoint without any user:password@ part."""
    return re.sub(r"//[^/@]*@", "//", url) if url else url


def run(args: argparse.Namespace) -> int:
    from evals.errors import InputError
    from evals.judges import JudgeItem, judge_incrementally, make_judge
    from evals.runs import check_run_dir, load_answers, scores_path
    from evals.scores import (
        ScoreWriter,
        append_scores,
        load_scores,
        missing,
        score_row,
        summarize,
        usage_totals,
        write_judge_record,
    )
    from evals.truthfulqa import load_truthfulqa

    run_dir = check_run_dir(args.run_dir)
    for flag in ("concurrency", "batch_size"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    for flag in ("price_per_1k_input", "price_per_1k_output"):
        if (getattr(args, flag) or 0) < 0:
            raise InputError(f"--{flag.replace('_', '-')}: must not be negative")
    answers = load_answers(run_dir)
    if not answers:
        raise InputError(f"{run_dir}: no finished cells with answers to judge")
    tq = load_truthfulqa(args.truthfulqa)
    questions = tq.by_id(sorted({int(r["question_id"]) for r in answers}))
    by_id = {q.id: q for q in questions}
    for r in answers:
        q = by_id[int(r["question_id"])]
        if r.get("question") is not None and r["question"].strip() != q.question.strip():
            raise InputError(f"{run_dir}: question {q.id} of cell {r['cell_id']} is "
                             f"{r['question'][:50]!r} but {tq.origin} has {q.question[:50]!r} "
                             "(pass the TruthfulQA file the run was generated from)")

    options: dict[str, Any] = {}
    if args.judge.startswith("openai:"):
        options = {"timeout_s": args.timeout, "max_retries": args.max_retries}
    cache: Any = False if args.no_cache else (args.cache or "auto")
    judge = make_judge(args.judge, model_loader=model_loader(args.device), truthfulqa=tq,
                       base_url=args.judge_base_url, api_key_env=args.judge_api_key_env,
                       prompt=args.judge_prompt, info_model=args.judge_info_model,
                       concurrency=args.concurrency, batch_size=args.batch_size, cache=cache,
                       **options)
    path = scores_path(run_dir, judge.judge_id)
    todo = missing(answers, load_scores(path, judge.prompt_version))
    print(f"{judge.judge_id} ({judge.prompt_version}): {len(answers)} answers in "
          f"{len({r['cell_id'] for r in answers})} cells; {len(answers) - len(todo)} already "
          f"scored, judging {len(todo)}", file=sys.stderr)

    items = []
    for r in todo:
        q = by_id[int(r["question_id"])]
        items.append(JudgeItem(q.question, r["answer"], q.correct_answers, q.incorrect_answers,
                               q.best_answer))
    usages: list[dict[str, int]] = []
    started = time.time()
    with ScoreWriter(path) as writer:
        def on_result(i: int, result) -> None:
            writer.write(score_row(todo[i], result))
            usages.append(dict(result.usage))

        if items:
            judge_incrementally(judge, items, on_result, progress=not args.no_progress)
    elapsed = time.time() - started

    usage = usage_totals(usages)
    cost = cost_usd(usage, args.price_per_1k_input, args.price_per_1k_output)
    record = {"judge_id": judge.judge_id, "prompt_version": judge.prompt_version,
              "base_url": _public_url(args.judge_base_url), "judged": len(items),
              "seconds": round(elapsed, 2), "usage": usage, "cost_usd": cost,
              "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    append_scores(path.with_name(f"{path.stem}.runs.jsonl"), [record])

    print(format_summary(summarize(answers, load_scores(path, judge.prompt_version))))
    if write_judge_record(path, judge) is not None:
        from reports.fingerprint import agreement_summary

        print(f"judge agreement with people: {agreement_summary(judge.info)}")
    if not usage.get("requests") and not usage.get("cache_hits"):  # a local judge
        print(f"judged {len(items)} answers in {elapsed:.1f} s")
        print(f"scores: {path}")
        return 0
    line = (f"judged {len(items)} answers in {elapsed:.1f} s: {usage.get('requests', 0)} requests "
            f"({usage.get('retries', 0)} retries), {usage.get('cache_hits', 0)} cached verdicts, "
            f"{usage.get('prompt_tokens', 0)} input + {usage.get('completion_tokens', 0)} output "
            "tokens")
    print(line + (f", cost ${cost:.4f}" if cost is not None else
                  " (cost: give --price-per-1k-input/--price-per-1k-output)"))
    print(f"scores: {path}")
    return 0
