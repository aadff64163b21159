"""Judge throughput against a loopback OpenAI-compatible server with fixed latency, in one run.

The server (tests/evals/judges/servers.py) runs in its own process, as a real endpoint would.

Prints answers judged per second at concurrency 1 and at concurrency 16 against a server that
takes ``--latency`` seconds per request (each answer = 2 requests: truthful + informative), their
ratio (target >= 10x), and the number of requests a rerun with the judge cache makes (target 0,
counted at the server). With ``--hf N`` it also times the hf judge on the embedded model over N
TruthfulQA answers, reference-aware prompt, with and without reusing the template's prefix.

    python benchmarks/judge.py [--items 96] [--latency 0.2] [--repeats 1] [--hf 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.cache import JudgeCache
from evals.judges import JudgeItem, make_judge
from tests.evals.judges.servers import fault_server_process, request_count


def judged_per_second(base_url: str, items: list[JudgeItem], concurrency: int,
                      cache: JudgeCache | None = None) -> tuple[float, int]:
    """(answers per second, requests the server received) for one judging pass."""
    judge = make_judge("openai:bench-judge", base_url=base_url, concurrency=concurrency,
                       cache=cache)
    before = request_count(base_url)
    start = time.perf_counter()
    results = judge.judge(items, progress=False)
    elapsed = time.perf_counter() - start
    assert all(r.truthful.scored and r.informative.scored for r in results)
    return len(items) / elapsed, request_count(base_url) - before


def bench_openai(n_items: int, latency: float, repeats: int) -> None:
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    items = [JudgeItem(f"Question {i}?", f"answer {i}" + (" [T]" if i % 2 else ""),
                       (f"right {i}",), (f"wrong {i}",), f"right {i}") for i in range(n_items)]
    with fault_server_process(latency) as url, tempfile.TemporaryDirectory() as tmp:
        judged_per_second(url, items[:4], 4)  # warm-up: imports and first connections untimed
        serial = parallel = 0.0
        for _ in range(repeats):  # alternate, keep each setting's best (the machine is shared)
            rate, n1 = judged_per_second(url, items, 1)
            serial = max(serial, rate)
            rate, n16 = judged_per_second(url, items, 16)
            parallel = max(parallel, rate)
        cache = JudgeCache(Path(tmp) / "cache.sqlite")
        _, n_fill = judged_per_second(url, items, 16, cache)
        rerun, n_rerun = judged_per_second(url, items, 16, cache)
        cache.close()
    print(f"openai judge, {n_items} answers ({2 * n_items} requests), server latency "
          f"{latency * 1000:.0f} ms per request, best of {repeats}:")
    print(f"  concurrency  1: {serial:8.2f} answers/s  ({n1} requests)")
    print(f"  concurrency 16: {parallel:8.2f} answers/s  ({n16} requests)")
    print(f"  speed-up 16 vs 1: {parallel / serial:.1f}x (target >= 10x)")
    print(f"  cached rerun: {n_rerun} requests (first cached pass made {n_fill}); "
          f"{rerun:.0f} answers/s")


def bench_hf(n_items: int) -> None:
    import torch

    from evals.truthfulqa import load_truthfulqa
    from harness.config import ModelConfig
    from harness.models import load_model

    torch.set_num_threads(1)  # the shared 2-core machine: one thread is the stable choice
    lm = load_model(ModelConfig(device="cpu", dtype="float32"))
    tq = load_truthfulqa(os.environ.get("TRUTHSTEER_TRUTHFULQA",
                                        "../shared/data/truthfulqa/TruthfulQA.csv"))
    items = [JudgeItem(q.question, q.best_answer if q.id % 2 else q.incorrect_answers[0],
                       q.correct_answers, q.incorrect_answers, q.best_answer)
             for q in tq.questions[:n_items]]
    rates = {}
    for reuse in (False, True, False, True):  # alternate; keep the best of two
        judge = make_judge("hf:smollm2-135m-instruct", model_loader=lambda n: (lm.hf_model,
                           lm.tokenizer), batch_size=16, reuse_prefix=reuse)
        start = time.perf_counter()
        judge.judge(items, progress=False)
        rate = n_items / (time.perf_counter() - start)
        rates[reuse] = max(rates.get(reuse, 0.0), rate)
    print(f"hf judge on the embedded model (ref-aware, both kinds, batch 16, 1 CPU thread), "
          f"{n_items} answers:")
    print(f"  full prompts:        {rates[False]:6.2f} answers/s")
    ratio = rates[True] / rates[False]
    print(f"  shared prefix reused: {rates[True]:6.2f} answers/s ({ratio:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--hf", type=int, default=0, metavar="N",
                        help="also time the hf judge on N answers (0: skip)")
    args = parser.parse_args()
    bench_openai(args.items, args.latency, args.repeats)
    if args.hf:
        bench_hf(args.hf)


if __name__ == "__main__":
    main()
