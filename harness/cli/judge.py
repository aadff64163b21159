"""``truthsteer judge RUN_DIR``: score a sweep's answers for truthful / informative.

Scores go to ``RUN_DIR/scores/<judge_slug>.jsonl`` as they complete (answers are never touched);
a rerun judges only answers with no score, a changed answer, or an unscored verdict. Each
invocation appends its usage (requests, tokens, cost when prices are given) to
``RUN_DIR/scores/<judge_slug>.runs.jsonl``.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from harness.cli.options import add_data_args, add_device_arg, add_judge_args, add_progress_arg


def register(sub) -> None:
    p = sub.add_parser("judge", help="score a run's answers with an LLM judge",
                       description="Judge every answer of a run for truthful and informative. "
                       "Resumable: rerun to judge only what is missing.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    add_judge_args(p)
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
    add_device_arg(p)
    add_progress_arg(p)
    add_data_args(p, of_run=True)
    p.set_defaults(func=run)


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


def outside_summary(outside: dict[str, tuple[int, int]] | None) -> str:
    """Where the judge's measured agreement does not reach: the share of answers, per cell, that
    lie outside the text it was validated on, and the spot check that would cover them."""
    from evals.judges.domain import spotcheck_size

    if outside is None:
        return ("validated text: this judge records none, so nothing says its agreement holds on "
                "these answers; spot-check them (truthsteer spotcheck sample RUN_DIR)")
    n_out, n = sum(o for o, _ in outside.values()), sum(t for _, t in outside.values())
    if not n_out:
        return (f"validated text: all {n} answers lie within the kinds of text this judge was "
                "measured on")
    cells = ", ".join(f"{c} {o}/{t}" for c, (o, t) in outside.items() if o)
    return (f"warning: {n_out} of {n} answers ({n_out / n:.0%}) lie outside the kinds of text this "
            f"judge was measured on (length, claims, lists), so its agreement does not cover "
            f"them ({cells}). Label about {spotcheck_size(n_out / n, n_out)} of them for a "
            "corrected rate within about +-10 points: truthsteer spotcheck sample RUN_DIR")


def run(args: argparse.Namespace) -> int:
    from evals.errors import InputError
    from evals.judges import make_judge
    from evals.judging import judge_run
    from evals.rundir import RunDir
    from harness.loaders import judge_model_loader

    for flag in ("concurrency", "batch_size"):
        if getattr(args, flag) < 1:
            raise InputError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    for flag in ("price_per_1k_input", "price_per_1k_output"):
        if (getattr(args, flag) or 0) < 0:
            raise InputError(f"--{flag.replace('_', '-')}: must not be negative")
    run_dir = RunDir.open(args.run_dir)
    tq = run_dir.load_truthfulqa(args.truthfulqa)
    options: dict[str, Any] = {}
    if args.judge.startswith("openai:"):
        options = {"timeout_s": args.timeout, "max_retries": args.max_retries}
    judge = make_judge(args.judge, model_loader=judge_model_loader(args.device), truthfulqa=tq,
                       base_url=args.judge_base_url, api_key_env=args.judge_api_key_env,
                       prompt=args.judge_prompt, info_model=args.judge_info_model,
                       concurrency=args.concurrency, batch_size=args.batch_size,
                       cache=False if args.no_cache else (args.cache or "auto"), **options)
    s = judge_run(run_dir, judge, truthfulqa=tq, progress=not args.no_progress,
                  prices=(args.price_per_1k_input, args.price_per_1k_output),
                  base_url=args.judge_base_url, log=lambda msg: print(msg, file=sys.stderr))
    print(format_summary(s["cells"]))
    if s["record"] is not None:
        from reports.fingerprint import agreement_summary

        print(f"judge agreement: {agreement_summary(judge.record())}")
    print(outside_summary(s["outside"]))
    usage, judged = s["usage"], f"judged {s['n_judged']} answers in {s['seconds']:.1f} s"
    if usage.get("requests") or usage.get("cache_hits"):  # a remote judge
        cost = s["cost_usd"]
        print(f"{judged}: {usage.get('requests', 0)} requests ({usage.get('retries', 0)} "
              f"retries), {usage.get('cache_hits', 0)} cached verdicts, "
              f"{usage.get('prompt_tokens', 0)} input + {usage.get('completion_tokens', 0)} "
              "output tokens" + (f", cost ${cost:.4f}" if cost is not None else
                                 " (cost: give --price-per-1k-input/--price-per-1k-output)"))
    else:
        print(judged)
    print(f"scores: {s['path']}")
    return 0
