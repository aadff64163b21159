"""GPU readiness: steered vs plain generation speed of a 7B-architecture Llama, and how close
each gets to the HBM-bandwidth limit.

The model has Llama-2-7B's architecture (hidden 4096, 32 layers, 32 heads, no GQA, MLP 11008,
vocab 32000, untied head) with RANDOM weights (normal, std 0.02; norms 1), built directly on the
device in the benchmark dtype (no download, no fp32 copy). Prompts are random token ids, all of
``--prompt-len`` (no padding). For each batch size:

* **plain**: transformers ``generate`` on the HF model, no hooks; greedy, ``min_new_tokens =
  max_new_tokens = --new-tokens`` (EOS cannot end a row early), the model's default attention
  (SDPA) and KV cache.
* **steered**: the same ``generate`` call inside truthsteer's one hook context manager,
  ``harness.steering.hooks(model, interventions)``, with 48 per-head interventions
  (``blocks.L.attn.hook_z``, head h; distinct (L, h) pairs spread over the layers by a seeded
  permutation) and one residual one (``blocks.{n_layers//2}.hook_resid_post``), all non-zero,
  on all positions (HF ``generate`` with truthsteer's hooks, as releases before the decode loop
  ran it).
* **loop** / **loop steered**: truthsteer's decode loop (``harness.decode``: static KV cache,
  per-row steering table, continuous batching; what ``generate_answers`` runs), without and with
  the same interventions; its decode-step time is its own (host) timer over the steps, which
  synchronise every step (the chosen tokens come back to the host). Not CUDA-graph captured.

Hook names are resolved by ``harness.steering.resolve_hook``, which reads module paths from the
TransformerLens ``TransformerBridge``'s architecture adapter. Booting the bridge over the random
model is cheap (``LoadedModel.bridge`` deep-copies the module tree but shares every weight
tensor, and the adapter needs no hub access when given the model and a tokenizer; a synthetic
word-level tokenizer is built in memory). If ``transformer_lens`` is not importable on the GPU
machine, ``--hooks adapter`` (the default is ``auto``) falls back to a stand-in holding Llama's
own module paths (``model.layers.L``, ``self_attn``, ``self_attn.o_proj``, ``mlp``): the hooks
land on the same modules either way (checked against the bridge whenever both are available).

What is timed (``torch.cuda.synchronize`` around each call; one warm-up pair per batch size
first; medians of ``--repeats``; plain and steered alternate within each repeat, and the one
that goes first alternates between repeats):

* ``T_gen``: a whole ``generate`` of ``--new-tokens`` tokens (prefill + decode steps);
  tokens/s = batch * new_tokens / T_gen.
* ``T_prefill``: the same call with ``max_new_tokens=1`` (prefill and the first token).
* decode ms/step = (T_gen - T_prefill) / (new_tokens - 1).

Fraction of the HBM limit, per decode step: bytes that must be read at least once =
weight bytes (every parameter except the input embedding table, of which a gather reads only
``batch`` rows) + the KV cache read by attention, 2 * layers * kv_heads * head_dim * seq * batch
* dtype bytes, with seq averaged over the decode steps (prompt_len + new_tokens / 2). The
bandwidth-limited step time is bytes / ``--bandwidth-gbs`` (default 4800 GB/s, the H200's
HBM3e peak; use 3350 for an H100 SXM, 2039 for an A100 80GB), and the fraction is that time
divided by the measured decode ms/step (1.0 = at the bandwidth roofline). It ignores activation
traffic and HF's DynamicCache growing by concatenation (extra reads/writes), so it is an upper
bound on what is achievable, not a model of HF's real traffic. At large batches decoding
becomes compute-bound (about 2 * params FLOPs per token), so the fraction falls for that reason
too; the JSON records the FLOP rate per step for that comparison.

Defaults fit about 3-4 minutes on an H200 (estimated, not yet measured: HF decode is launch-bound
at ~25-35 ms/step for 32 layers at small batches; batch 256 adds prefill of 16k tokens).

    python benchmarks/gpu.py [--batches 1,16,64,256] [--out gpu.json]
    python benchmarks/gpu.py --tiny --device cpu --batches 1,4 --new-tokens 8 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain repo copy

LLAMA_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32)
TINY = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4)
DTYPE_NAMES = {"auto": "auto", "bf16": "bfloat16", "fp16": "float16", "fp32": "float32",
               "bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}
N_HEAD_INTERVENTIONS = 48


def synthetic_tokenizer(vocab_size: int):
    """A word-level tokenizer over ``t0 .. t{V-1}`` (pad t0, bos t1, eos t2, unk t3), in memory.

    It prepends BOS and names itself, so the bridge's tokenizer set-up never reaches for a hub."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    inner = Tokenizer(WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t3"))
    inner.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="t0", bos_token="t1",
                                   eos_token="t2", unk_token="t3", padding_side="left",
                                   add_bos_token=True, name_or_path="synthetic-word-level")


def build_model(tiny: bool, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A random-weight Llama as a truthsteer ``LoadedModel``, made on ``device`` in ``dtype``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.models import LoadedModel

    shape = TINY if tiny else LLAMA_7B
    cfg = LlamaConfig(**shape, max_position_embeddings=4096, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                      initializer_range=0.02)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are created in dtype: no fp32 copy of 7B params
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():  # explicit, so the scale does not depend on the transformers version
        for param in model.parameters():
            param.normal_(0.0, 0.02) if param.ndim >= 2 else param.fill_(1.0)
    model.eval()
    return LoadedModel("random-llama-tiny" if tiny else "random-llama-7b-arch", model,
                       synthetic_tokenizer(cfg.vocab_size), device, dtype, "random")


def llama_adapter_standin(cfg) -> SimpleNamespace:
    """What ``resolve_hook`` reads from ``model.bridge``, with Llama's HF module paths and the
    hook aliases TransformerLens 4's Llama bridge components carry (checked against the real
    bridge whenever transformer_lens is importable)."""
    def node(name: str, **subs) -> SimpleNamespace:
        return SimpleNamespace(name=name, submodules=subs)

    blocks = node("model.layers", attn=node("self_attn", o=node("o_proj")), mlp=node("mlp"))
    attn = SimpleNamespace(hook_aliases={"hook_z": "o.hook_in"})
    block = SimpleNamespace(attn=attn, hook_aliases={
        "hook_resid_pre": "hook_in", "hook_resid_post": "hook_out",
        "hook_attn_out": "attn.hook_out", "hook_mlp_out": "mlp.hook_out"})
    n_heads = cfg.num_attention_heads
    return SimpleNamespace(
        adapter=SimpleNamespace(component_mapping={"blocks": blocks}),
        blocks=[block] * cfg.num_hidden_layers,
        cfg=SimpleNamespace(n_heads=n_heads, d_head=cfg.hidden_size // n_heads))


def attach_hook_resolution(model, mode: str, hook_names: list[str]) -> str:
    """Make ``resolve_hook`` work on ``model``; returns how (bridge or adapter stand-in)."""
    from harness.steering import resolve_hook

    standin = llama_adapter_standin(model.hf_model.config)
    if mode == "adapter":
        model._bridge = standin
        return "Llama module-path stand-in (--hooks adapter)"
    try:
        import transformer_lens  # noqa: F401
    except ImportError:
        if mode == "bridge":
            raise SystemExit("--hooks bridge: transformer_lens is not installed "
                             "(pip install transformer-lens, or use --hooks adapter)") from None
        model._bridge = standin
        return "Llama module-path stand-in (transformer_lens not installed)"
    start = time.perf_counter()
    via_bridge = {n: resolve_hook(model, n).module for n in hook_names}
    boot_s = time.perf_counter() - start
    real = model._bridge
    model._bridge = standin
    same = all(resolve_hook(model, n).module is via_bridge[n] for n in hook_names)
    model._bridge = real
    if not same:
        raise SystemExit("the Llama stand-in resolves hooks to other modules than the bridge")
    return f"TransformerBridge adapter (booted in {boot_s:.1f} s; stand-in agrees)"


def make_interventions(model, n_heads_wanted: int, seed: int = 0):
    from harness.directions import random_direction
    from harness.steering import Intervention

    cfg = model.hf_model.config
    n_layers, n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
    d_head = model.d_model // n_heads
    count = min(n_heads_wanted, n_layers * n_heads)
    pairs = torch.randperm(n_layers * n_heads, generator=torch.Generator().manual_seed(seed))
    ivs = [Intervention(f"blocks.{int(p) // n_heads}.attn.hook_z",
                        random_direction(1000 + int(p), d_head), 2.0, head=int(p) % n_heads,
                        label=f"random:{1000 + int(p)}") for p in pairs[:count]]
    ivs.append(Intervention(f"blocks.{n_layers // 2}.hook_resid_post",
                            random_direction(1, model.d_model), 4.0, label="random:1"))
    return ivs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def timed_generate(model, ids: torch.Tensor, new_tokens: int, ivs) -> tuple[float, torch.Tensor]:
    """Seconds for one greedy ``generate`` of exactly ``new_tokens`` (hooks on when ``ivs``)."""
    from harness.config import GenerationConfig
    from harness.generation import generate_kwargs
    from harness.steering import hooks

    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           batch_size=ids.shape[0], prompt_style="chat")
    kwargs = generate_kwargs(gen, model.tokenizer, "chat")
    mask = torch.ones_like(ids)
    sync(model.device)
    start = time.perf_counter()
    if ivs:
        with hooks(model, ivs) as state:
            state.reset()
            out = model.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    else:
        out = model.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    sync(model.device)
    elapsed = time.perf_counter() - start
    if out.shape[1] != ids.shape[1] + new_tokens:
        raise RuntimeError(f"generate returned {out.shape[1] - ids.shape[1]} new tokens, "
                           f"expected {new_tokens}")
    return elapsed, out[:, ids.shape[1]:]


@torch.inference_mode()
def timed_loop(model, ids: torch.Tensor, new_tokens: int, ivs) -> tuple[float, float, torch.Tensor]:
    """(whole seconds, decode-step seconds, tokens) of truthsteer's decode loop
    (harness.decode: static cache, per-row steering, continuous batching) making exactly
    ``new_tokens`` per row under ``ivs``; the first token of each row comes from its prefill."""
    from harness.config import GenerationConfig
    from harness.decode import DecodeLoop, Request
    from harness.steering import hooks

    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           batch_size=ids.shape[0], prompt_style="chat")
    requests = [Request(tuple(row)) for row in ids.tolist()]
    sync(model.device)
    start = time.perf_counter()
    with hooks(model, ivs) as state:
        loop = DecodeLoop(model, requests, gen, state)
        got = loop.run()
    sync(model.device)
    elapsed = time.perf_counter() - start
    if any(len(g) != new_tokens for g in got):
        raise RuntimeError(f"the decode loop returned {sorted({len(g) for g in got})} new "
                           f"tokens, expected {new_tokens}")
    return elapsed, loop.stats["decode_s"], torch.tensor(got, device=ids.device)


def bytes_per_step(model, batch: int, prompt_len: int, new_tokens: int) -> dict[str, float]:
    cfg = model.hf_model.config
    item = torch.finfo(model.dtype).bits // 8
    embed = model.hf_model.get_input_embeddings().weight
    weights = sum(p.numel() * p.element_size() for p in model.hf_model.parameters())
    weights -= embed.numel() * embed.element_size()
    kv_heads = cfg.num_key_value_heads or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    mean_seq = prompt_len + new_tokens / 2
    kv = 2 * cfg.num_hidden_layers * kv_heads * head_dim * mean_seq * batch * item
    return {"weight_bytes": float(weights), "kv_bytes_mean": float(kv)}


def run_batch(model, ivs, batch: int, args) -> dict[str, Any]:
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(model.device)
    gen = torch.Generator().manual_seed(batch)
    ids = torch.randint(4, model.hf_model.config.vocab_size, (batch, args.prompt_len),
                        generator=gen).to(model.device)
    timed_generate(model, ids, 2, ())  # warm-up at this shape
    timed_generate(model, ids, 2, ivs)
    timed_loop(model, ids, 2, ivs)
    times: dict[str, list[float]] = {k: [] for k in ("plain", "steered", "plain_1", "steered_1",
                                                     "loop", "loop_steps", "loop_steered",
                                                     "loop_steered_steps")}
    outputs = {}
    for r in range(args.repeats):
        order = [("plain", ()), ("steered", ivs), ("loop", ()), ("loop_steered", ivs)]
        for name, these in order if r % 2 == 0 else order[::-1]:
            if name.startswith("loop"):
                seconds, steps, outputs[name] = timed_loop(model, ids, args.new_tokens, these)
                times[f"{name}_steps"].append(steps)
            else:
                seconds, outputs[name] = timed_generate(model, ids, args.new_tokens, these)
                times[f"{name}_1"].append(timed_generate(model, ids, 1, these)[0])
            times[name].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    moved = bytes_per_step(model, batch, args.prompt_len, args.new_tokens)
    limit_s = (moved["weight_bytes"] + moved["kv_bytes_mean"]) / (args.bandwidth_gbs * 1e9)
    embed = model.hf_model.get_input_embeddings().weight.numel()
    flops = 2 * (sum(p.numel() for p in model.hf_model.parameters()) - embed) * batch
    row: dict[str, Any] = {"batch": batch, **moved, "hbm_limit_ms_per_step": limit_s * 1e3,
                           "median_seconds": med, "all_seconds": times}
    for name in ("plain", "steered"):
        step = (med[name] - med[f"{name}_1"]) / max(args.new_tokens - 1, 1)
        row[f"{name}_tok_s"] = batch * args.new_tokens / med[name]
        row[f"{name}_ms_per_step"] = step * 1e3
        row[f"{name}_hbm_fraction"] = limit_s / step if step > 0 else float("nan")
        row[f"{name}_tflops_per_s"] = flops / step / 1e12 if step > 0 else float("nan")
    for name in ("loop", "loop_steered"):
        step = med[f"{name}_steps"] / max(args.new_tokens - 1, 1)
        row[f"{name}_tok_s"] = batch * args.new_tokens / med[name]
        row[f"{name}_ms_per_step"] = step * 1e3
        row[f"{name}_hbm_fraction"] = limit_s / step if step > 0 else float("nan")
    row["steered_over_plain"] = row["steered_tok_s"] / row["plain_tok_s"]
    row["loop_steered_over_loop"] = row["loop_steered_tok_s"] / row["loop_tok_s"]
    row["steered_tokens_differ"] = float((outputs["plain"] != outputs["steered"]).float().mean())
    # Greedy parity at this scale: the loop's tokens vs generate's under the same hooks.
    row["loop_tokens_differ_from_generate"] = float(
        (outputs["loop_steered"] != outputs["steered"]).float().mean())
    if model.device.type == "cuda":
        row["peak_memory_gb"] = torch.cuda.max_memory_allocated(model.device) / 1e9
    return row


OOM_ERROR = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError


def is_oom(err: BaseException) -> bool:
    return isinstance(err, OOM_ERROR) or "out of memory" in str(err).lower()


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| batch | plain tok/s | steered tok/s | steered/plain | loop steered tok/s | "
             "loop steered/unsteered | plain ms/step | steered ms/step | loop steered ms/step "
             "| HBM-limit ms/step | HBM fraction (plain, steered, loop steered) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "oom" in r:
            lines.append(f"| {r['batch']} | OOM | OOM | - | OOM | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {r['batch']} | {r['plain_tok_s']:.1f} | {r['steered_tok_s']:.1f} | "
            f"{r['steered_over_plain']:.2f} | {r['loop_steered_tok_s']:.1f} | "
            f"{r['loop_steered_over_loop']:.2f} | {r['plain_ms_per_step']:.2f} | "
            f"{r['steered_ms_per_step']:.2f} | {r['loop_steered_ms_per_step']:.2f} | "
            f"{r['hbm_limit_ms_per_step']:.3g} | {r['plain_hbm_fraction']:.3g}, "
            f"{r['steered_hbm_fraction']:.3g}, {r['loop_steered_hbm_fraction']:.3g} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16,64,256",
                        help="comma-separated batch sizes (default 1,16,64,256)")
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="median of this many (default 3)")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cuda, cpu")
    parser.add_argument("--dtype", default="auto", choices=sorted(DTYPE_NAMES),
                        help="auto = bf16 on cuda, fp32 on cpu")
    parser.add_argument("--bandwidth-gbs", type=float, default=4800.0,
                        help="HBM bandwidth in GB/s (default 4800, an H200's HBM3e peak)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny Llama (hidden 64, 2 layers, 4 heads, vocab 256): runs on CPU")
    parser.add_argument("--hooks", default="auto", choices=("auto", "bridge", "adapter"),
                        help="how hook names find modules (see the module docstring)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--batches {args.batches!r}: give comma-separated integers, e.g. 1,16,64")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        parser.error(f"--batches {args.batches!r}: give positive integers, e.g. 1,16,64")
    for name in ("prompt_len", "new_tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be >= 2 (decode steps are timed against a 1-token run)")
    if args.bandwidth_gbs <= 0:
        parser.error("--bandwidth-gbs must be positive, e.g. 4800 for an H200")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from evals.io import atomic_write_json
    from harness.config import ConfigError, dtype_name, resolve_device, resolve_dtype

    try:
        device = resolve_device(args.device)
        dtype = resolve_dtype(DTYPE_NAMES[args.dtype], device)
    except ConfigError as err:
        raise SystemExit(str(err)) from None
    start = time.perf_counter()
    model = build_model(args.tiny, device, dtype)
    build_s = time.perf_counter() - start
    ivs = make_interventions(model, N_HEAD_INTERVENTIONS)
    how = attach_hook_resolution(model, args.hooks, sorted({iv.hook for iv in ivs}))
    cfg = model.hf_model.config
    n_params = sum(p.numel() for p in model.hf_model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    with torch.inference_mode():
        probe = model.hf_model(torch.arange(4, 12, device=device)[None]).logits
    print(f"device {name}, torch {torch.__version__}, dtype {dtype_name(dtype)}, "
          f"{torch.get_num_threads()} CPU threads")
    print(f"model {model.name}: {n_params / 1e6:,.1f} M params, hidden {cfg.hidden_size}, "
          f"{cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads, vocab "
          f"{cfg.vocab_size}, attention {cfg._attn_implementation}; built in {build_s:.1f} s; "
          f"logits finite: {bool(torch.isfinite(probe).all())}")
    print(f"steering: {len(ivs) - 1} attn.hook_z heads over "
          f"{len({iv.hook for iv in ivs if iv.head is not None})} layers + 1 residual "
          f"({ivs[-1].hook}); hooks resolved via {how}")
    print(f"prompt {args.prompt_len} tokens, {args.new_tokens} new tokens (greedy, EOS cannot "
          f"stop early), median of {args.repeats}, bandwidth {args.bandwidth_gbs:.0f} GB/s",
          flush=True)
    rows: list[dict[str, Any]] = []
    for batch in args.batch_sizes:
        try:
            rows.append(run_batch(model, ivs, batch, args))
            r = rows[-1]
            peak = f", peak memory {r['peak_memory_gb']:.1f} GB" if "peak_memory_gb" in r else ""
            print(f"  batch {batch}: plain {r['plain_tok_s']:.1f} tok/s, steered "
                  f"{r['steered_tok_s']:.1f} tok/s, loop steered {r['loop_steered_tok_s']:.1f} "
                  f"tok/s; steered tokens differing from plain "
                  f"{r['steered_tokens_differ']:.0%}, loop's from generate's "
                  f"{r['loop_tokens_differ_from_generate']:.1%}{peak}", flush=True)
        except (RuntimeError, OOM_ERROR) as err:
            if not is_oom(err):
                raise
            rows.append({"batch": batch, "oom": str(err).splitlines()[0][:200]})
            print(f"  batch {batch}: OOM", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print()
    print(table(rows))
    print("\ntok/s = batch * new tokens / whole run (prefill included); ms/step = decode "
          "step time: generate's (whole - 1-token generate) / (new tokens - 1), the loop's own "
          "decode-step time / (new tokens - 1); HBM fraction = (weights + mean KV bytes) / "
          "bandwidth / measured decode step. The loop is not CUDA-graph captured (yet).")
    if args.out:
        result = {"device": name, "torch": torch.__version__, "dtype": dtype_name(dtype),
                  "model": model.name, "n_params": n_params, "tiny": args.tiny,
                  "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
                  "repeats": args.repeats, "bandwidth_gbs": args.bandwidth_gbs,
                  "n_head_interventions": len(ivs) - 1, "hooks_resolved_via": how,
                  "interventions": [{"hook": iv.hook, "head": iv.head, "magnitude": iv.magnitude,
                                     "direction": iv.label} for iv in ivs],
                  "rows": rows}
        atomic_write_json(args.out, result)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
