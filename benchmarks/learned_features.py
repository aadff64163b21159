"""Probe-feature extraction speed of the learned judge: ours vs the plain way, in one run.

    python benchmarks/learned_features.py [--questions 4] [--layers 12] [--repeats 2]

Both sides compute the same numbers (checked): the residual stream at the last token of
``<question + references> <answer> <"Is the answer true?">`` for every labelled answer of a
few TruthfulQA questions (the shared dev labels). The plain way runs one full forward of the
whole model per answer and reads ``output_hidden_states``; ours (evals.judges.features)
computes each question's prefix once, reuses its KV cache for a right-padded batch of all its
answers, and stops the forward right after the deepest layer read. Timings alternate the two
``--repeats`` times (the machine may be shared) and report medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    import numpy as np
    import torch

    from evals.judges.features import PROBE_SUFFIX, ProbePrompt, probe_features
    from evals.labels import match_questions, read_labels
    from evals.truthfulqa import load_csv
    from harness.config import ModelConfig
    from harness.models import load_model
    from tests.helpers import SHARED_TRUTHFULQA

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=4)
    ap.add_argument("--layers", default="8,12")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]

    tq = load_csv(SHARED_TRUTHFULQA / "TruthfulQA.csv")
    rows = read_labels(SHARED_TRUTHFULQA / "human_truth_dev.jsonl")
    pairs = sorted({(q.id, r.answer) for r, q in zip(rows, match_questions(rows, tq)) if q})
    chosen = sorted({q for q, _ in pairs})[:args.questions]
    pairs = [p for p in pairs if p[0] in chosen]
    prompt = ProbePrompt()
    prefixes = [prompt.prefix(tq.questions[q].question, tq.questions[q].correct_answers,
                              tq.questions[q].incorrect_answers) for q, _ in pairs]
    answers = [a for _, a in pairs]
    model = load_model(ModelConfig(device="cpu", dtype="float32"))
    hf, tok = model.hf_model, model.tokenizer
    suffix = tok(PROBE_SUFFIX, add_special_tokens=False)["input_ids"]

    def plain() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for p, a in zip(prefixes, answers):
                ids = (tok(p)["input_ids"] + tok(" " + a, add_special_tokens=False)["input_ids"]
                       [:prompt.max_answer_tokens] + suffix)
                hs = hf(torch.tensor([ids]), output_hidden_states=True).hidden_states
                out.append(torch.cat([hs[L + 1][0, -1] for L in layers]).numpy())
        return np.stack(out)

    def ours() -> np.ndarray:
        return probe_features(hf, tok, prefixes, answers, layers, 32, prompt.max_answer_tokens)

    times: dict[str, list[float]] = {"plain": [], "ours": []}
    results = {}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("ours", ours)):
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    err = float(np.abs(results["plain"] - results["ours"]).max())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "answers": len(answers), "questions": len(chosen), "layers": layers,
        "threads": args.threads, "max_abs_difference": err,
        "plain_s": round(med["plain"], 2), "ours_s": round(med["ours"], 2),
        "ms_per_answer_ours": round(1000 * med["ours"] / len(answers), 1),
        "speedup": round(med["plain"] / med["ours"], 2)}, indent=2))


if __name__ == "__main__":
    main()
