"""Dictionary training speed: ours vs SAELens on the same activations, and vs the matmul limit.

    python benchmarks/dictionary_training.py [--activations FILE] [--expansion 4] [--steps 8]

Both sides train a ReLU + L1 ("standard") dictionary of the same width with Adam on the same
[n, d_in] activation tensor (a safetensors file holding ``activations``), same batch size, same
learning rate and L1 coefficient, same thread count, in separate processes, alternating
``--repeats`` times; each process times ``--steps`` training steps of its own loop after
``--warm-steps`` untimed ones (imports, file loading and the input-scale estimate excluded).
From initialisation (``--warm-steps 0``) both run dense; once training has made the feature
activations sparse, ours switches to sparse products (see dictionaries/steps.py), so the
ratio after warm-up steps is the one that matters for a whole run. ``--init DIR`` starts
both sides from the same trained ReLU dictionary (its weights put back in training units, the
same input scale for both), which measures such steady-state steps directly.

The matmul limit is this machine's measured fp32 GEMM rate divided by the
``10 * d_in * d_sae`` FLOPs a training token needs (forward 2 and backward 3 matmuls of
``2 * d_in * d_sae`` each), measured between the runs too, because the machine may be shared.

SAELens 6 needs transformer-lens < 4, so it cannot live in the project's environment: the
first run creates ``benchmarks/.venv-saelens`` (ignored by git through its own .gitignore),
installing torch==2.13.0 first (the local CPU build) and then sae-lens.

Without ``--activations``, the script caches activations of the embedded model at
``blocks.2.hook_resid_post`` over TruthfulQA text (``--tokens``, BOS excluded) first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv-saelens"
VENV_PYTHON = VENV / "bin" / "python"


# ----------------------------------------------------------------------------- workers
def _batches(path: str, batch_size: int, seed: int):
    import torch
    from safetensors.torch import load_file

    acts = load_file(path)["activations"].float()
    gen = torch.Generator().manual_seed(seed)

    def stream():
        while True:
            perm = torch.randperm(len(acts), generator=gen)
            for i in range(0, len(acts) - batch_size + 1, batch_size):
                yield acts[perm[i:i + batch_size]]
    return acts.shape[1], stream()


def _init_weights(args) -> tuple[dict, float] | tuple[None, None]:
    """``--init DIR``: a trained dictionary's weights back in its training units (unit-norm
    decoder rows) and the input scale it was trained with, so both sides start warm."""
    if not args.init:
        return None, None
    from safetensors.torch import load_file

    cfg = json.loads((Path(args.init) / "cfg.json").read_text())
    scale = float(cfg["metadata"]["activation_scale"])
    w = load_file(str(Path(args.init) / "sae_weights.safetensors"))
    return {"W_enc": w["W_enc"] / scale, "W_dec": w["W_dec"] * scale,
            "b_enc": w["b_enc"], "b_dec": w["b_dec"] * scale}, scale


def worker_saelens(args) -> dict:
    """SAELens' SAETrainer, driven by the body of its own ``fit`` loop (so warm-up steps can
    run untimed): scaling-factor estimate, then ``maybe_reset_sparsity`` + ``step`` per batch."""
    import torch
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    d_in, stream = _batches(args.activations, args.batch_size, args.seed)
    total = args.warm_steps + args.steps
    weights, scale = _init_weights(args)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=d_in, d_sae=int(d_in * args.expansion), l1_coefficient=args.l1,
        normalize_activations="none" if weights else "expected_average_only_in"))
    if weights:
        sae.load_state_dict(weights)
        stream = (batch.mul_(scale) for batch in stream)
    cfg = SAETrainerConfig(total_training_samples=total * args.batch_size,
                           train_batch_size_samples=args.batch_size, lr=args.lr,
                           lr_end=args.lr, n_batches_for_norm_estimate=4)
    trainer = SAETrainer(cfg, sae, stream)
    trainer.sae.to(cfg.device)
    if not weights:
        trainer.activation_scaler.estimate_scaling_factor(
            d_in=d_in, data_provider=stream, n_batches_for_norm_estimate=4)

    def one_step() -> None:
        trainer.maybe_reset_sparsity()
        trainer.step(next(stream))
        trainer.n_training_steps += 1

    for _ in range(args.warm_steps):
        one_step()
    start = time.perf_counter()
    for _ in range(args.steps):
        one_step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        feats = trainer.sae.encode(trainer.activation_scaler(next(stream)))
    l0 = float((feats > 0).sum(-1).float().mean())
    return {"tokens": args.steps * args.batch_size, "seconds": seconds, "l0": l0,
            "torch_threads": torch.get_num_threads()}


def worker_ours(args) -> dict:
    """Our DictionaryTrainer.update loop on batches scaled as ``dictionaries.trainer.train``
    scales them (scale from the first 4 batches, b_dec initialised to their mean)."""
    import torch

    sys.path.insert(0, str(REPO))
    from dictionaries.config import DictionaryConfig, TrainConfig
    from dictionaries.trainer import DictionaryTrainer, estimate_scale

    d_in, stream = _batches(args.activations, args.batch_size, args.seed)
    total = args.warm_steps + args.steps
    cfg = DictionaryConfig.from_expansion(d_in, args.expansion, l1_coefficient=args.l1)
    tcfg = TrainConfig(n_tokens=total * args.batch_size, batch_size=args.batch_size, lr=args.lr)
    trainer = DictionaryTrainer(cfg, tcfg)
    weights, scale = _init_weights(args)
    if weights:
        with torch.no_grad():
            for name, value in weights.items():
                getattr(trainer.sae, name).copy_(value)
    else:
        sample = torch.cat([next(stream) for _ in range(4)])
        scale = estimate_scale(sample)
        trainer.initialize(sample * scale)
    for step in range(args.warm_steps):
        trainer.update(step, next(stream).mul_(scale))
    start = time.perf_counter()
    for step in range(args.warm_steps, total):
        row = trainer.update(step, next(stream).mul_(scale))
    seconds = time.perf_counter() - start
    return {"tokens": args.steps * args.batch_size, "seconds": seconds, "l0": row["l0"],
            "torch_threads": torch.get_num_threads()}


def worker_matmul(args) -> dict:
    """fp32 GEMM rate on the training shapes: [batch, d_in] @ [d_in, d_sae]."""
    import torch

    d_in = args.d_in
    d_sae = int(d_in * args.expansion)
    a, w = torch.randn(args.batch_size, d_in), torch.randn(d_in, d_sae)
    a @ w
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ w
        times.append(time.perf_counter() - start)
    flops = 2 * args.batch_size * d_in * d_sae / statistics.median(times)
    return {"gflops": flops / 1e9, "limit_tokens_per_s": flops / (10 * d_in * d_sae)}


# ----------------------------------------------------------------------------- driver
def ensure_saelens_venv() -> None:
    if VENV_PYTHON.exists():
        probe = subprocess.run([str(VENV_PYTHON), "-c", "import sae_lens"], capture_output=True,
                               check=False)
        if probe.returncode == 0:
            return
    print(f"creating {VENV} (torch==2.13.0 first, then sae-lens) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    (VENV / ".gitignore").write_text("*\n")
    pip = [str(VENV_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "sae-lens"], check=True)


def default_activations(n_tokens: int) -> Path:
    """Embedded-model activations at blocks.2.hook_resid_post over TruthfulQA text (cached)."""
    cache = Path(tempfile.gettempdir()) / f"truthsteer-bench-acts-{n_tokens}.safetensors"
    if cache.exists():
        return cache
    sys.path.insert(0, str(REPO))
    import csv

    import torch

    from dictionaries import activations as A
    from dictionaries.config import ActivationConfig
    from harness.config import ModelConfig
    from harness.models import load_model
    from tests.helpers import SHARED_TRUTHFULQA

    with open(SHARED_TRUTHFULQA / "TruthfulQA.csv", newline="") as fh:
        texts = [f"Q: {r['Question']}\nA: {r['Best Answer']}\n{r['Correct Answers']}\n"
                 f"{r['Incorrect Answers']}" for r in csv.DictReader(fh)]
    model = load_model(ModelConfig(device="cpu", dtype="float32")).bridge
    cfg = ActivationConfig(hook_name="blocks.2.hook_resid_post")
    chunks, n = [], 0
    for chunk in A.stream_activations(model, A.iter_contexts(texts * 20, model.tokenizer, 128),
                                      cfg):
        chunks.append(chunk)
        n += len(chunk)
        if n >= n_tokens:
            break
    A.save_activations(cache, torch.cat(chunks)[:n_tokens])
    return cache


def run_worker(python: str, kind: str, args, extra: list[str]) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO),
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--activations", help="safetensors file with tensor 'activations' [n, d_in]")
    p.add_argument("--tokens", type=int, default=131_072, help="tokens to cache if no file")
    p.add_argument("--expansion", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=8, help="timed training steps per run")
    p.add_argument("--warm-steps", type=int, default=0,
                   help="untimed steps first (0: time from initialisation)")
    p.add_argument("--repeats", type=int, default=3, help="alternating runs per side")
    p.add_argument("--init", help="start both sides from this trained relu dictionary folder "
                   "(its width overrides --expansion): measures steady-state steps")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--l1", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-in", type=int, default=576, help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=["ours", "saelens", "matmul"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import torch
        torch.set_num_threads(args.threads)
        fn = {"ours": worker_ours, "saelens": worker_saelens, "matmul": worker_matmul}
        print(json.dumps(fn[args.worker](args)))
        return 0

    ensure_saelens_venv()
    acts = Path(args.activations) if args.activations else default_activations(args.tokens)
    from safetensors import safe_open
    with safe_open(str(acts), framework="pt") as fh:
        n, d_in = fh.get_slice("activations").get_shape()
    if args.init:
        args.expansion = json.loads((Path(args.init) / "cfg.json").read_text())["d_sae"] / d_in
    d_sae = int(d_in * args.expansion)
    common = [*(["--init", str(args.init)] if args.init else []),
              "--activations", str(acts), "--expansion", str(args.expansion), "--batch-size",
              str(args.batch_size), "--steps", str(args.steps), "--warm-steps",
              str(args.warm_steps), "--lr", str(args.lr), "--l1",
              str(args.l1), "--threads", str(args.threads), "--d-in", str(d_in)]
    print(f"activations {acts} [{n} x {d_in}], d_sae {d_sae}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warm_steps} untimed"
          f"{' from ' + str(args.init) if args.init else ' from initialisation'}, "
          f"{args.threads} threads, "
          f"{args.repeats} alternating runs")
    rows = []
    for rep in range(args.repeats):
        ours = run_worker(sys.executable, "ours", args, common)
        theirs = run_worker(str(VENV_PYTHON), "saelens", args, common)
        mm = run_worker(sys.executable, "matmul", args, common)
        row = {"ours": ours["tokens"] / ours["seconds"],
               "saelens": theirs["tokens"] / theirs["seconds"],
               "limit": mm["limit_tokens_per_s"], "gflops": mm["gflops"]}
        rows.append(row)
        print(f"run {rep + 1}: ours {row['ours']:8.0f} tok/s | SAELens {row['saelens']:8.0f} "
              f"tok/s | ratio {row['ours'] / row['saelens']:.2f}x | matmul limit "
              f"{row['limit']:8.0f} tok/s ({row['gflops']:.1f} GFLOP/s): ours "
              f"{100 * row['ours'] / row['limit']:.0f}%, SAELens "
              f"{100 * row['saelens'] / row['limit']:.0f}% | L0 after: ours {ours['l0']:.0f}, "
              f"SAELens {theirs['l0']:.0f}")
    ratio = statistics.median(r["ours"] / r["saelens"] for r in rows)
    frac_ours = statistics.median(r["ours"] / r["limit"] for r in rows)
    frac_theirs = statistics.median(r["saelens"] / r["limit"] for r in rows)
    print(f"median: ours / SAELens = {ratio:.2f}x; of the fp32 matmul limit: ours "
          f"{100 * frac_ours:.0f}%, SAELens {100 * frac_theirs:.0f}% (target >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
