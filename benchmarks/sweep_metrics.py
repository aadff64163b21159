"""Speed of the sweep's two hot spots, as ratios measured in one run.

1. MC scoring on the embedded model: the QA primer's KV cache computed once and shared, versus
   each prompt run whole (forced by a zero-magnitude intervention on ``prompt`` positions, which
   changes nothing numerically). Both give the same scores (asserted).
2. ITI head probes: one batched Newton fit of all heads (run to the exact optimum) versus
   scikit-learn's ``LogisticRegression()`` fitted head by head (the same objective, lbfgs
   stopping at tol 1e-4; weights asserted close).

    python benchmarks/sweep_metrics.py [--questions 12] [--heads 60]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def bench_mc(n_questions: int) -> None:
    from evals.truthfulqa import load_truthfulqa
    from harness.config import ModelConfig
    from harness.models import load_model
    from harness.multiple_choice import answer_logprobs, mc_items
    from harness.steering import Intervention

    model = load_model(ModelConfig(device="cpu", dtype="float32"))
    items = mc_items(load_truthfulqa().by_id(list(range(n_questions))), model.tokenizer)
    prompts = [it.prompt_ids for it in items]
    answers = [list(it.true_ids) + list(it.false_ids) for it in items]
    noop = [Intervention("blocks.0.hook_resid_post", torch.ones(model.d_model), 0.0, "prompt")]
    answer_logprobs(model, prompts[:1], answers[:1])  # warm-up
    t0 = time.perf_counter()
    shared = answer_logprobs(model, prompts, answers)
    t1 = time.perf_counter()
    whole = answer_logprobs(model, prompts, answers, noop)
    t2 = time.perf_counter()
    worst = max(abs(a - b) for s, w in zip(shared, whole) for a, b in zip(s, w))
    assert worst < 1e-2, worst
    print(f"MC scoring, {n_questions} questions: shared primer {t1 - t0:.1f} s, whole prompts "
          f"{t2 - t1:.1f} s -> {(t2 - t1) / (t1 - t0):.2f}x faster (max |diff| {worst:.1e})")


def bench_probes(n_heads: int) -> None:
    from sklearn.linear_model import LogisticRegression

    from harness.directions.iti import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_heads, 600, 64))
    y = (x[0, :, 0] + rng.normal(size=600) > 0).astype(int)
    t0 = time.perf_counter()
    w, _ = fit_logistic(torch.tensor(x), torch.tensor(y))
    t1 = time.perf_counter()
    ref = np.stack([LogisticRegression(max_iter=1000).fit(x[i], y).coef_[0]
                    for i in range(n_heads)])
    t2 = time.perf_counter()
    assert np.abs(ref - w.numpy()).max() < 1e-3
    print(f"ITI probes, {n_heads} heads x 600 texts x 64 dims: batched Newton {t1 - t0:.2f} s, "
          f"sklearn one by one {t2 - t1:.2f} s -> Newton takes {(t1 - t0) / (t2 - t1):.2f}x "
          "sklearn's time")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--questions", type=int, default=12)
    p.add_argument("--heads", type=int, default=270)
    args = p.parse_args()
    torch.set_num_threads(1)
    bench_probes(args.heads)
    bench_mc(args.questions)


if __name__ == "__main__":
    main()
