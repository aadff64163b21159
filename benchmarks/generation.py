"""Steered generation speed vs plain HF ``generate``, measured in one run.

Prints tokens/s for: plain transformers ``generate`` (no hooks) and truthsteer's steered
engine (ITI-like: 48 per-head interventions + one residual one, nonzero magnitudes) at batch 8 and
32, both as used (the prompts' shared prefix computed once) and with every prompt run whole (the
hooks' cost alone), and the steered engine at batch 1 (a one-question-at-a-time loop, as the ITI reference code
does). EOS may not end an answer early (``min_new_tokens``), so every configuration generates
``--tokens`` new tokens per question; with ``--prompt qa`` the QA stop strings still end answers
early, so tokens/s counts the tokens each answer really got (a finished row of a batch that is
still running counts nothing). Same prompts and batches; runs alternate, the median is kept.

Targets: steered/plain >= 0.9 at batch 8 and 32; steered batch 32 >= 4x the batch-1 loop.

    python benchmarks/generation.py [--questions 64] [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truthfulqa", default=os.environ.get(
        "TRUTHSTEER_TRUTHFULQA", "../shared/data/truthfulqa/TruthfulQA.csv"))
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompt", default="chat")
    args = parser.parse_args()

    from evals.truthfulqa import load_truthfulqa
    from harness.config import GenerationConfig, ModelConfig
    from harness.directions import random_direction
    from harness.generation import generate_answers, generate_kwargs, plan_batches
    from harness.kvcache import common_prefix_length, pad_left
    from harness.models import load_model
    from harness.prompts import prompt_token_ids
    from harness.steering import Intervention

    model = load_model(ModelConfig(device=args.device))
    tok = model.tokenizer
    questions = [q.question for q in load_truthfulqa(args.truthfulqa).questions[:args.questions]]
    d_head = model.d_model // model.hf_model.config.num_attention_heads
    heads = [(layer, h) for layer in range(6, model.n_layers) for h in range(2)][:48]
    ivs = [Intervention(f"blocks.{layer}.attn.hook_z", random_direction(layer * 100 + h, d_head),
                        2.0, head=h) for layer, h in heads]
    ivs.append(Intervention("blocks.8.hook_resid_post", random_direction(1, model.d_model), 4.0))
    prompts = [prompt_token_ids(q, args.prompt, tok) for q in questions]
    shared = common_prefix_length(prompts)

    def cfg(batch: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                batch_size=batch, prompt_style=args.prompt)

    def produced(row: list[int]) -> int:
        """Tokens an answer got: trailing padding (after a stop) does not count."""
        while row and row[-1] == tok.pad_token_id and tok.pad_token_id != tok.eos_token_id:
            row.pop()
        return len(row)

    @torch.inference_mode()
    def plain(batch: int) -> float:
        kwargs = generate_kwargs(cfg(batch), tok, args.prompt)
        start, tokens = time.perf_counter(), 0
        for idx in plan_batches([len(p) for p in prompts], batch):
            ids, mask = pad_left([prompts[i] for i in idx], tok.pad_token_id, model.device)
            out = model.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            tokens += sum(produced(r) for r in out[:, ids.shape[1]:].tolist())
        return tokens / (time.perf_counter() - start)

    def steered(batch: int, n: int | None = None, share_prefix: bool = True) -> float:
        qs = questions[:n] if n else questions
        start = time.perf_counter()
        answers = generate_answers(model, qs, cfg(batch), ivs, progress=False,
                                   share_prefix=share_prefix)
        return sum(len(a["generated_token_ids"]) for a in answers) / (time.perf_counter() - start)

    n_single = max(4, args.questions // 8)  # batch 1 is slow: fewer questions, same tokens/s
    steered(8, 8)  # warm-up
    results: dict[str, list[float]] = {}
    for r in range(args.repeats):
        for name, fn in [("plain b8", lambda: plain(8)), ("steered b8", lambda: steered(8)),
                         ("whole b8", lambda: steered(8, share_prefix=False)),
                         ("plain b32", lambda: plain(32)), ("steered b32", lambda: steered(32)),
                         ("whole b32", lambda: steered(32, share_prefix=False)),
                         ("steered b1", lambda: steered(1, n_single))]:
            results.setdefault(name, []).append(fn())
            print(f"  repeat {r + 1}: {name:12s} {results[name][-1]:8.1f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nmodel {model.name} on {model.device} ({torch.get_num_threads()} threads), "
          f"{len(questions)} questions x {args.tokens} new tokens, {len(ivs)} interventions, "
          f"median of {args.repeats}")
    for k, v in med.items():
        print(f"{k:12s} {v:8.1f} tokens/s")
    r8, r32 = med["steered b8"] / med["plain b8"], med["steered b32"] / med["plain b32"]
    r_batch = med["steered b32"] / med["steered b1"]
    print(f"steered/plain at batch 8:  {r8:.2f}  (target >= 0.90) {'OK' if r8 >= .9 else 'MISS'}")
    print(f"steered/plain at batch 32: {r32:.2f}  (target >= 0.90) {'OK' if r32 >= .9 else 'MISS'}")
    print(f"steered batch 32 / batch-1 loop: {r_batch:.2f}  (target >= 4) "
          f"{'OK' if r_batch >= 4 else 'MISS'}")
    w8, w32 = med["whole b8"] / med["plain b8"], med["whole b32"] / med["plain b32"]
    print(f"hooks alone (steered, every prompt run whole, / plain): batch 8 {w8:.2f}, "
          f"batch 32 {w32:.2f}")
    print(f"shared prefix ({shared} tokens) speed-up: batch 8 "
          f"{med['steered b8'] / med['whole b8']:.2f}x, batch 32 "
          f"{med['steered b32'] / med['whole b32']:.2f}x")


if __name__ == "__main__":
    main()
