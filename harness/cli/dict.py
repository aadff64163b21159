"""``truthsteer dict``: train, cache activations for, inspect and compare dictionaries (SAEs)."""

from __future__ import annotations

import argparse
import json

from dictionaries.config import ARCHITECTURES, DictionaryConfigError
from harness.cli.options import add_device_arg, add_progress_arg


def _expansions(values: list[str] | None) -> list[float]:
    out = []
    for value in values or ["2"]:
        for part in value.split(","):
            try:
                out.append(float(part))
            except ValueError:
                raise DictionaryConfigError(f"--expansion {part!r} is not a number "
                                            "(e.g. --expansion 1,2,4,8)") from None
    return out


def _add_model_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--model", required=required,
                   help="model to run (hub id, HF folder, .gguf or smollm2-135m-instruct)")
    p.add_argument("--corpus", help="HF dataset id, saved dataset folder, .txt or .jsonl")
    p.add_argument("--text-column", default="text", help="text field of the corpus")
    p.add_argument("--context-size", type=int, default=128, help="tokens per context incl. BOS")
    add_device_arg(p, "auto (cuda if present), cpu, cuda")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, help="torch CPU threads for this run (on a shared "
                   "machine 1 can be much faster than the default)")


def register(subparsers) -> None:
    parser = subparsers.add_parser("dict", help="train, inspect and compare dictionaries (SAEs)")
    sub = parser.add_subparsers(dest="dict_command", required=True, metavar="SUBCOMMAND")

    tr = sub.add_parser("train", help="train dictionaries from a model+corpus or activations")
    tr.add_argument("--activations", help="safetensors file (tensor 'activations' [n, d_in]) "
                    "or a folder of shard_*.safetensors")
    tr.add_argument("--hook", help="hook to read, e.g. blocks.2.hook_resid_post (with "
                    "--activations: the hook to record, if the cache does not say)")
    _add_model_args(tr)
    tr.add_argument("--expansion", action="append",
                    help="d_sae / d_in; repeat or comma-list to train several (default 2)")
    tr.add_argument("--architecture", default="relu", choices=ARCHITECTURES)
    tr.add_argument("--l1", type=float, help="L1 coefficient (relu; default 2)")
    tr.add_argument("--k", type=int, help="active features per token (topk/batchtopk; default 32)")
    tr.add_argument("--tokens", type=int, help="training tokens (default 2,000,000)")
    tr.add_argument("--batch-size", type=int, help="tokens per step (default 4096)")
    tr.add_argument("--lr", type=float, help="Adam learning rate (default 0.05 / sqrt(d_in))")
    tr.add_argument("--eval-tokens", type=int, help="held-out tokens for metrics (default 65536)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="output folder: the dictionary itself (one "
                    "dictionary), or one subfolder per dictionary (several --expansion values)")
    add_progress_arg(tr)
    tr.set_defaults(func=run_train)

    ac = sub.add_parser("activations", help="cache a model's activations to safetensors shards")
    _add_model_args(ac, required=True)
    ac.add_argument("--hook", required=True)
    ac.add_argument("--tokens", type=int, required=True, help="how many activations to store")
    ac.add_argument("--out", required=True, help="folder for shard_*.safetensors")
    ac.set_defaults(func=run_activations)

    ins = sub.add_parser("inspect", help="top/uniform examples, logit lens, ablated text")
    ins.add_argument("dictionary", help="dictionary folder, or a hub REF: "
                     "hf://OWNER/REPO[@REV]/PATH or saelens://RELEASE/SAE_ID")
    ins.add_argument("--feature", type=int, required=True)
    _add_model_args(ins)
    ins.add_argument("--contexts", type=int, default=256, help="corpus contexts to scan")
    ins.add_argument("--top", type=int, default=10)
    ins.add_argument("--per-bin", type=int, default=3)
    ins.add_argument("--bin-width", type=float, default=1.0)
    ins.add_argument("--remove-unused", type=int, default=0,
                     help="project out this many highest-norm never-produced token directions")
    ins.add_argument("--ablate", metavar="RANK", type=int, default=0,
                     help="ablated text for the RANK-th top example (0 = the top one)")
    ins.add_argument("--json", action="store_true", help="print JSON instead of text")
    ins.set_defaults(func=run_inspect)

    ev = sub.add_parser("evaluate", help="FVU, L0, dead share and loss recovered on a corpus")
    ev.add_argument("dictionaries", nargs="+",
                    help="dictionary folders or hub REFs (hf://..., saelens://...; same hook)")
    _add_model_args(ev, required=True)
    ev.add_argument("--contexts", type=int, default=64, help="held-out contexts to use")
    ev.add_argument("--skip-contexts", type=int, default=0,
                    help="skip this many corpus contexts first (e.g. those trained on)")
    ev.set_defaults(func=run_evaluate)

    cmp_ = sub.add_parser("compare", help="mean max cosine similarity between two dictionaries")
    cmp_.add_argument("a")
    cmp_.add_argument("b")
    cmp_.set_defaults(func=run_compare)


def _apply_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        if args.threads < 1:
            raise DictionaryConfigError(f"--threads {args.threads} must be >= 1")
        torch.set_num_threads(args.threads)


def _load_bridge(args):
    from harness.loaders import load_args

    return load_args(args).bridge


def _activation_cfg(args, hook: str):
    from dictionaries.config import ActivationConfig

    return ActivationConfig(hook_name=hook, context_size=args.context_size,
                            text_column=args.text_column, seed=getattr(args, "seed", 0))


def run_train(args) -> int:
    _apply_threads(args)
    from dataclasses import replace

    from dictionaries.config import TrainConfig
    from dictionaries.pipeline import train_from_activations, train_from_corpus
    from harness.config import resolve_device

    overrides = {k: v for k, v in {"n_tokens": args.tokens, "batch_size": args.batch_size,
                                   "lr": args.lr, "eval_tokens": args.eval_tokens}.items()
                 if v is not None}
    train_cfg = replace(TrainConfig(seed=args.seed), **overrides,
                        device=str(resolve_device(args.device)))
    options = {"architecture": args.architecture, "seed": args.seed}
    if args.l1 is not None:
        options["l1_coefficient"] = args.l1
    if args.k is not None:
        options["k"] = args.k
    common = {"expansions": _expansions(args.expansion), "options": options, "seed": args.seed,
              "progress": not args.no_progress}
    if args.activations:
        if args.corpus:
            raise DictionaryConfigError("give either --activations or --corpus, not both")
        results = train_from_activations(args.activations, args.out, train_cfg, hook=args.hook,
                                         model_name=args.model, **common)
    else:
        if not (args.model and args.corpus and args.hook):
            raise DictionaryConfigError("dict train needs --activations FILE, or --model, "
                                        "--hook and --corpus")
        results = train_from_corpus(_load_bridge(args), args.corpus, args.out,
                                    _activation_cfg(args, args.hook), train_cfg,
                                    model_name=args.model, **common)
    for path, summary in results.items():
        ev = summary.get("eval", {})
        parts = [f"{k}={ev[k]:.4g}" for k in ("fvu", "mse", "l0", "dead_fraction",
                                               "loss_recovered") if k in ev]
        print(f"{path}: {' '.join(parts)}")
    return 0


def run_activations(args) -> int:
    _apply_threads(args)
    from dictionaries.pipeline import cache_corpus_activations

    if not args.corpus:
        raise DictionaryConfigError("dict activations needs --corpus")
    shards = cache_corpus_activations(_load_bridge(args), args.corpus,
                                      _activation_cfg(args, args.hook), args.out, args.tokens,
                                      model_name=args.model)
    print(f"{args.out}: {len(shards)} shard(s)")
    return 0


def run_inspect(args) -> int:
    _apply_threads(args)
    from dictionaries.hub import load_dictionary
    from dictionaries.report import inspect_feature

    sae = load_dictionary(args.dictionary)
    if not 0 <= args.feature < sae.d_sae:
        raise DictionaryConfigError(f"--feature {args.feature} is out of range "
                                    f"(0..{sae.d_sae - 1})")
    if args.model is None and sae.cfg.model_name:
        args.model = sae.cfg.model_name
    model = _load_bridge(args) if args.model else None
    contexts = None
    if model is not None and args.corpus:
        from dictionaries import activations as A
        contexts = A.corpus_contexts(args.corpus, model.tokenizer,
                                     _activation_cfg(args, sae.cfg.hook_name or "x"),
                                     args.contexts)
    report = inspect_feature(sae, args.feature, model=model, contexts=contexts, top=args.top,
                             per_bin=args.per_bin, bin_width=args.bin_width,
                             remove_unused=args.remove_unused, ablate_rank=args.ablate)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from dictionaries.report import format_report
        print(format_report(report))
    return 0


def run_evaluate(args) -> int:
    _apply_threads(args)
    from dictionaries.hub import load_dictionary
    from dictionaries.pipeline import evaluate_dictionaries

    if not args.corpus:
        raise DictionaryConfigError("dict evaluate needs --corpus")
    saes = [load_dictionary(d) for d in args.dictionaries]
    hooks = {s.cfg.hook_name for s in saes}
    if len(hooks) != 1 or not next(iter(hooks)):
        raise DictionaryConfigError(f"dictionaries must share one recorded hook (got {hooks})")
    reports = evaluate_dictionaries(_load_bridge(args), saes, args.dictionaries, args.corpus,
                                    _activation_cfg(args, hooks.pop()), args.contexts,
                                    args.skip_contexts)
    for folder, report in zip(args.dictionaries, reports):
        print(f"{folder}: " + " ".join(
            f"{k}={report[k]:.4g}" for k in ("fvu", "l0", "dead_fraction", "ce_clean",
                                             "ce_spliced", "ce_zero", "loss_recovered")))
    return 0


def run_compare(args) -> int:
    from dictionaries.hub import load_dictionary
    from dictionaries.metrics import mmcs_both_ways

    a, b = load_dictionary(args.a), load_dictionary(args.b)
    if a.d_in != b.d_in:
        raise DictionaryConfigError(f"{args.a} (d_in={a.d_in}) and {args.b} (d_in={b.d_in}) "
                                    "live in different spaces")
    res = mmcs_both_ways(a.feature_directions(), b.feature_directions())
    print(f"MMCS {args.a} -> {args.b} (each A feature's best match in B): {res['a_in_b']:.4f}")
    print(f"MMCS {args.b} -> {args.a} (each B feature's best match in A): {res['b_in_a']:.4f}")
    return 0
