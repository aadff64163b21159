"""Packed vs cell-by-cell steered generation on a GPU: many steering configurations in one batch.

The same random-weight 7B-architecture Llama as ``benchmarks/gpu.py`` (``--tiny`` for a CPU
smoke run), synthetic prompts of ``--prompt-len`` random tokens. A sweep-shaped grid: ``--cells``
steering configurations (a residual direction at one of several layers x a magnitude, each
configuration its own), ``--rows`` prompts per configuration (the quickstart's cells answer 20
questions per fold), greedy, exactly ``--new-tokens`` new tokens (EOS cannot end a row early).

* **cell by cell**: per configuration, ``hooks(model, ivs)`` and its rows in batches of
  each of ``--batches`` (20 rows at batch 16: one batch of 16, one of 4).
* **packed**: ``hooks(model, groups=[ivs of every configuration])`` and all cells x rows in
  batches of the same size, ``state.select_rows`` telling each row's configuration — what
  ``harness.generation.generate_answers`` does for a packed sweep.

Timed with ``torch.cuda.synchronize``; one warm-up of each; alternating which goes first;
medians of ``--repeats``. Also prints the share of generated tokens that are identical between
the two (greedy; in bf16 a batch of another shape may round differently and flip near-ties —
the CPU fp32 equality is tested in tests/harness/test_packed.py).

    python benchmarks/gpu_packed.py [--cells 9] [--rows 20] [--batches 16,64] [--out FILE]
    python benchmarks/gpu_packed.py --tiny --device cpu --batches 4 --new-tokens 4 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain repo copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu import DTYPE_NAMES, attach_hook_resolution, build_model, sync  # noqa: E402


def grid(model, cells: int) -> list[list[Any]]:
    """``cells`` steering configurations: a random residual direction at one of four layers
    spread over the model, magnitudes 1, 2, 4, ... in turn (each configuration distinct)."""
    from harness.directions import random_direction
    from harness.steering import Intervention

    n_layers = model.hf_model.config.num_hidden_layers
    layers = sorted({max(0, round(f * (n_layers - 1))) for f in (0.25, 0.5, 0.75, 1.0)})
    out = []
    for c in range(cells):
        layer = layers[c % len(layers)]
        out.append([Intervention(f"blocks.{layer}.hook_resid_post",
                                 random_direction(100 + layer, model.d_model),
                                 float(2 ** (c // len(layers))), label=f"cell{c}")])
    return out


@torch.inference_mode()
def run(model, configs, prompts: torch.Tensor, batch: int, new_tokens: int, packed: bool
        ) -> tuple[float, torch.Tensor]:
    """Seconds and the generated tokens [cells * rows, new_tokens] (cell-major order)."""
    from harness.config import GenerationConfig
    from harness.generation import generate_kwargs
    from harness.steering import hooks

    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                           batch_size=batch, prompt_style="chat")
    kwargs = generate_kwargs(gen, model.tokenizer, "chat")
    rows = prompts.shape[0]
    outs = []
    sync(model.device)
    start = time.perf_counter()
    if packed:
        owner = [c for c in range(len(configs)) for _ in range(rows)]
        flat = prompts.repeat(len(configs), 1)
        with hooks(model, groups=configs) as state:
            for s in range(0, len(owner), batch):
                ids = flat[s:s + batch]
                state.select_rows(owner[s:s + batch], model.device)
                state.reset()
                out = model.hf_model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              **kwargs)
                outs.append(out[:, ids.shape[1]:])
    else:
        for ivs in configs:
            with hooks(model, ivs) as state:
                for s in range(0, rows, batch):
                    ids = prompts[s:s + batch]
                    state.reset()
                    out = model.hf_model.generate(input_ids=ids,
                                                  attention_mask=torch.ones_like(ids), **kwargs)
                    outs.append(out[:, ids.shape[1]:])
    sync(model.device)
    return time.perf_counter() - start, torch.cat(outs)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=9)
    p.add_argument("--rows", type=int, default=20)
    p.add_argument("--batches", default="16,64")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=sorted(DTYPE_NAMES))
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    if min([args.cells, args.rows, args.prompt_len, args.new_tokens, args.repeats, *batches]) < 1:
        p.error("--cells, --rows, --batches, --prompt-len, --new-tokens, --repeats must be >= 1")

    from evals.io import atomic_write_json
    from harness.config import dtype_name, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(DTYPE_NAMES[args.dtype], device)
    model = build_model(args.tiny, device, dtype)
    configs = grid(model, args.cells)
    how = attach_hook_resolution(model, "auto", sorted({iv.hook for c in configs for iv in c}))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    prompts = torch.randint(4, model.hf_model.config.vocab_size, (args.rows, args.prompt_len),
                            generator=torch.Generator().manual_seed(0)).to(device)
    print(f"device {name}, torch {torch.__version__}, dtype {dtype_name(dtype)}, model "
          f"{model.name}; {args.cells} cells x {args.rows} rows, prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens; hooks via {how}", flush=True)
    rows = []
    for batch in batches:
        run(model, configs, prompts, batch, 2, False)  # warm-up at these shapes
        run(model, configs, prompts, batch, 2, True)
        times: dict[str, list[float]] = {"cell": [], "packed": []}
        toks = {}
        for r in range(args.repeats):
            for mode in (("packed", "cell") if r % 2 == 0 else ("cell", "packed")):
                seconds, toks[mode] = run(model, configs, prompts, batch, args.new_tokens,
                                          mode == "packed")
                times[mode].append(seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        same = float((toks["cell"] == toks["packed"]).float().mean())
        row = {"batch": batch, "cell_s": med["cell"], "packed_s": med["packed"],
               "ratio": med["cell"] / med["packed"], "identical_tokens": same,
               "generate_calls": {"cell": args.cells * -(-args.rows // batch),
                                  "packed": -(-args.cells * args.rows // batch)},
               "all_seconds": times}
        rows.append(row)
        print(f"  batch {batch}: cell by cell {med['cell']:.2f} s "
              f"({row['generate_calls']['cell']} generate calls), packed {med['packed']:.2f} s "
              f"({row['generate_calls']['packed']}) -> {row['ratio']:.2f}x; identical tokens "
              f"{same:.1%}", flush=True)
    if args.out:
        atomic_write_json(args.out, {"device": name, "torch": torch.__version__,
                                     "dtype": dtype_name(dtype), "model": model.name,
                                     "cells": args.cells, "rows": args.rows,
                                     "prompt_len": args.prompt_len,
                                     "new_tokens": args.new_tokens, "repeats": args.repeats,
                                     "hooks_resolved_via": how, "results": rows})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
