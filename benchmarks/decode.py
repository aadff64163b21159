"""Decoding against this machine's limit, in one run: the matmul limit at decode shapes, plain HF
``generate``, and truthsteer's decode loop (harness.decode) unsteered and steered.

The embedded model, chat prompts, ``--batch`` rows (default 32), ``--tokens`` new tokens each
(EOS held back by ``min_new_tokens``, so every row makes exactly that many):

  limit     the model's weight matmuls at decode shape, back to back: ``[batch, d_in] x W`` for
            every Linear (attention, MLP and the output head), the median of 10 passes.
            tok/s = batch / seconds per pass; GFLOP/s = 2 * weights * batch / seconds.
  generate  plain HF ``generate`` (no hooks), end to end (prefill included).
  loop      the decode loop with no interventions, and steered (ITI-like: 48 per-head + 1
            residual intervention, nonzero magnitudes): end to end, and its decode steps alone
            (prefill excluded: the phase the loop owns; the prefill is the same work as
            ``generate``'s).

Each round measures every side once, in an order that alternates between rounds, and the limit
between any two sides; the share of the limit pairs each side with the mean of the limits measured
right before and right after it, and the median over rounds is printed (this machine drifts by
+-30% within minutes). Each round also runs the steered loop once more with one limit pass right
after every decode step ("interleaved"): its share, (seconds of the passes) / (seconds of the
steps), pairs measurements a fraction of a second apart, so drift cancels (its rounds agree to
about +-2 points where the paired shares spread over +-6). fp32 always; bf16
too where the CPU has native bf16 (avx512_bf16 / AMX) or on CUDA. ``--compare-bf16 N`` also
answers the quickstart's N questions (greedy, 32 tokens) in fp32 and bf16 and counts answers
that differ.

Target (issue 19): the steered loop's decode steps >= 70% of the fp32 limit at batch 32.
The interleaved share is the figure docs/sweeps.md reports.

    OMP_NUM_THREADS=2 python benchmarks/decode.py [--batch 32] [--tokens 64] [--rounds 3]
        [--dtypes float32,bfloat16] [--compare-bf16 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MatmulPass:
    """One pass of the model's Linear weights at decode shape (``[batch, d_in] x W`` for each),
    back to back; calling it returns the pass's seconds."""

    def __init__(self, model, batch: int) -> None:
        self.device = model.device
        self.linears = [m for m in model.hf_model.modules() if isinstance(m, torch.nn.Linear)]
        self.inputs = {m.in_features: torch.randn(batch, m.in_features, dtype=model.dtype,
                                                  device=model.device) for m in self.linears}
        self.flops = sum(2 * m.in_features * m.out_features for m in self.linears) * batch

    def __call__(self) -> float:
        sync(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            for m in self.linears:
                torch.nn.functional.linear(self.inputs[m.in_features], m.weight)
        sync(self.device)
        return time.perf_counter() - start


def matmul_limit(model, batch: int) -> tuple[float, float]:
    """(tok/s, GFLOP/s) of the model's Linear weights at decode shape, back to back."""
    one_pass = MatmulPass(model, batch)
    for _ in range(3):
        one_pass()
    seconds = statistics.median(one_pass() for _ in range(10))
    return batch / seconds, one_pass.flops / seconds / 1e9


def interventions(model):
    from harness.directions import random_direction
    from harness.steering import Intervention

    d_head = model.d_model // model.hf_model.config.num_attention_heads
    heads = [(layer, h) for layer in range(6, model.n_layers) for h in range(2)][:48]
    ivs = [Intervention(f"blocks.{layer}.attn.hook_z", random_direction(layer * 100 + h, d_head),
                        2.0, head=h) for layer, h in heads]
    ivs.append(Intervention("blocks.8.hook_resid_post", random_direction(1, model.d_model), 4.0))
    return ivs


class Sides:
    """The timed sides for one model: each returns (end-to-end tok/s, decode-steps tok/s)."""

    def __init__(self, model, questions: list[str], batch: int, tokens: int) -> None:
        from harness.config import GenerationConfig
        from harness.generation import generate_kwargs
        from harness.kvcache import MIN_SHARED_PREFIX, common_prefix_length, pad_left
        from harness.prompts import prompt_token_ids

        self.model, self.batch, self.tokens = model, batch, tokens
        self.cfg = GenerationConfig(max_new_tokens=tokens, min_new_tokens=tokens,
                                    batch_size=batch, prompt_style="chat")
        tok = model.tokenizer
        self.prompts = [prompt_token_ids(q, "chat", tok) for q in questions[:batch]]
        shared = common_prefix_length(self.prompts)
        self.shared = shared if shared >= MIN_SHARED_PREFIX else 0
        self.ids, self.mask = pad_left(self.prompts, tok.pad_token_id, model.device)
        self.kwargs = generate_kwargs(self.cfg, tok, "chat")
        self.steering = interventions(model)

    def generate(self) -> tuple[float, float | None]:
        sync(self.model.device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.hf_model.generate(input_ids=self.ids, attention_mask=self.mask,
                                               **self.kwargs)
        sync(self.model.device)
        assert out.shape[1] - self.ids.shape[1] == self.tokens
        return self.batch * self.tokens / (time.perf_counter() - start), None

    def loop(self, steered: bool) -> tuple[float, float]:
        from harness.decode import DecodeLoop, Request
        from harness.steering import hooks

        requests = [Request(tuple(p)) for p in self.prompts]
        sync(self.model.device)
        start = time.perf_counter()
        with hooks(self.model, self.steering if steered else ()) as state:
            loop = DecodeLoop(self.model, requests, self.cfg, state, prefix_len=self.shared)
            got = loop.run()
        sync(self.model.device)
        total = time.perf_counter() - start
        assert all(len(g) == self.tokens for g in got)
        made = self.batch * self.tokens
        # The first token of each row comes from its prefill; decode steps make the rest.
        return made / total, (made - self.batch) / loop.stats["decode_s"]

    def interleaved(self, one_pass: MatmulPass) -> float:
        """The steered loop with one limit pass right after each decode step: the share of the
        limit as (seconds of the passes) / (seconds of the steps), both summed over the run.
        Each step and its pass are a fraction of a second apart, so the machine's drift, which
        moves both alike, cancels; every step makes ``batch`` tokens (all rows run to the
        token limit), as a pass does."""
        from harness.decode import DecodeLoop, Request
        from harness.steering import hooks

        steps, passes = [], []
        with hooks(self.model, self.steering) as state:
            loop = DecodeLoop(self.model, [Request(tuple(p)) for p in self.prompts], self.cfg,
                              state, prefix_len=self.shared)
            step = loop._step

            def step_then_pass() -> None:
                sync(self.model.device)
                start = time.perf_counter()
                step()
                sync(self.model.device)
                steps.append(time.perf_counter() - start)
                passes.append(one_pass())
            loop._step = step_then_pass
            got = loop.run()
        assert all(len(g) == self.tokens for g in got)
        return sum(passes) / sum(steps)


def measure(model, questions: list[str], args) -> dict[str, list]:
    sides = Sides(model, questions, args.batch, args.tokens)
    runs = {"generate": lambda: sides.generate(), "loop": lambda: sides.loop(False),
            "loop steered": lambda: sides.loop(True)}
    names = list(runs)
    shares: dict[str, list] = {n: [] for n in names}
    limits = []
    sides.loop(True)  # warm up (allocations, first-call costs)
    one_pass = MatmulPass(model, args.batch)
    interleaved = []
    before = matmul_limit(model, args.batch)
    for r in range(args.rounds):
        interleaved.append(sides.interleaved(one_pass))
        for name in (names if r % 2 == 0 else names[::-1]):
            e2e, steps = runs[name]()
            after = matmul_limit(model, args.batch)
            # the limit right before and right after this side: the machine's pace drifts
            limit = (before[0] + after[0]) / 2
            limits.append((limit, (before[1] + after[1]) / 2))
            shares[name].append((e2e, steps, limit))
            before = after
    return {"limit": limits, "interleaved": interleaved, **shares}


def report(dtype: str, res: dict[str, list], args) -> None:
    limit = statistics.median(x[0] for x in res["limit"])
    gflops = statistics.median(x[1] for x in res["limit"])
    print(f"\n{dtype}, batch {args.batch}, {args.tokens} new tokens, {args.rounds} rounds: "
          f"matmul limit {limit:.0f} tok/s ({gflops:.0f} GFLOP/s), paired limits "
          f"{[round(x[0]) for x in res['limit']]}")
    print("| side | end to end tok/s | share of limit | decode steps tok/s | share of limit |")
    print("| --- | --- | --- | --- | --- |")
    for name in ("generate", "loop", "loop steered"):
        rows = res[name]
        e2e = statistics.median(x[0] for x in rows)
        e2e_share = statistics.median(x[0] / x[2] for x in rows)
        if rows[0][1] is None:
            print(f"| {name} | {e2e:.0f} | {e2e_share:.0%} | – | – |")
            continue
        steps = statistics.median(x[1] for x in rows)
        steps_share = statistics.median(x[1] / x[2] for x in rows)
        print(f"| {name} | {e2e:.0f} | {e2e_share:.0%} | {steps:.0f} | {steps_share:.0%} |")
    rounds = res["interleaved"]
    print(f"loop steered, each decode step followed by one limit pass (interleaved): share of "
          f"the limit {statistics.median(rounds):.0%} (median of {len(rounds)} rounds: "
          f"{', '.join(f'{x:.0%}' for x in rounds)})")


def compare_bf16(args, questions: list[str]) -> None:
    """Answers to the quickstart's questions, greedy, fp32 vs bf16: how many differ."""
    from harness.config import GenerationConfig, ModelConfig
    from harness.generation import generate_answers
    from harness.models import load_model

    cfg = GenerationConfig(max_new_tokens=32, batch_size=args.batch, prompt_style="auto")
    got = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model(ModelConfig(device=args.device, dtype=dtype))
        start = time.perf_counter()
        got[dtype] = [a["answer"] for a in generate_answers(model, questions, cfg,
                                                            progress=False)]
        print(f"{dtype}: {len(questions)} answers in {time.perf_counter() - start:.1f} s")
    differ = sum(a != b for a, b in zip(got["float32"], got["bfloat16"]))
    print(f"bf16 vs fp32 on the quickstart's {len(questions)} questions (greedy, 32 tokens): "
          f"{differ} answers differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truthfulqa", default=os.environ.get(
        "TRUTHSTEER_TRUTHFULQA", "../shared/data/truthfulqa/TruthfulQA.csv"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default=None,
                        help="comma-separated (default: float32, plus bfloat16 where native)")
    parser.add_argument("--compare-bf16", type=int, default=0, metavar="N",
                        help="also count answers that differ in bf16 on the quickstart's N")
    args = parser.parse_args()

    from evals.truthfulqa import load_truthfulqa
    from harness.config import ModelConfig
    from harness.models import load_model
    from harness.quickstart.config import QuickstartConfig, partition_questions

    device = torch.device(args.device)
    native = device.type == "cuda" or cpu_has_bf16()
    dtypes = args.dtypes.split(",") if args.dtypes else ["float32"] + (["bfloat16"] if native
                                                                       else [])
    tqa = load_truthfulqa(args.truthfulqa)
    questions = [q.question for q in tqa.questions]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
          f"native bf16: {native}, load average {os.getloadavg()[0]:.1f}")
    for dtype in dtypes:
        model = load_model(ModelConfig(device=args.device, dtype=dtype))
        report(dtype, measure(model, questions, args), args)
        del model
    if args.compare_bf16:
        pool, _, _ = partition_questions(len(questions),
                                         QuickstartConfig(questions=args.compare_bf16))
        compare_bf16(args, [questions[i] for i in pool])


if __name__ == "__main__":
    main()
