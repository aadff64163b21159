"""``truthsteer directions iti|meandiff|features``: fit steering directions, search features."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.options import add_data_args, add_model_args
from harness.config import ConfigError


def _add_question_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--questions", type=int, default=None, metavar="N",
                   help="use N questions (default: all from --offset on)")
    p.add_argument("--offset", type=int, default=0, metavar="M",
                   help="start at question id M (keep the questions you will evaluate on out)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="with --fold: fit on the other K-1 folds of the selected questions")
    p.add_argument("--fold", type=int, default=None, metavar="F",
                   help="the held-out fold (0-based); its questions are not used for fitting")
    p.add_argument("--fold-seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)


def register(sub) -> None:
    p = sub.add_parser("directions", help="fit ITI / mean-difference directions; search features",
                       description="Fit steering directions on TruthfulQA's reference answers, "
                       "or rank a dictionary's features by how they separate true from false "
                       "answers.")
    dsub = p.add_subparsers(dest="directions_command", required=True, metavar="KIND")

    iti = dsub.add_parser("iti", help="Inference-Time Intervention heads and directions",
                          description="Record every head's output at the answer's last token, "
                          "probe each head, keep the top-K, save directions + probe accuracies.")
    add_model_args(iti)
    add_data_args(iti)
    _add_question_args(iti)
    iti.add_argument("--top-k", type=int, default=None, metavar="K",
                     help="heads to keep (default round(0.1 * layers * heads), at most 48)")
    iti.add_argument("--method", choices=("mass_mean", "probe"), default="mass_mean")
    iti.add_argument("--layers", default=None, metavar="L1,L2",
                     help="only consider heads in these layers")
    iti.add_argument("--val-fraction", type=float, default=0.2)
    iti.add_argument("--seed", type=int, default=0)
    iti.add_argument("--out", required=True, metavar="FILE.safetensors")
    iti.set_defaults(func=run_iti)

    md = dsub.add_parser("meandiff", help="residual mean difference (true minus false) per hook")
    add_model_args(md)
    add_data_args(md)
    _add_question_args(md)
    md.add_argument("--hook", action="append", required=True, metavar="H",
                    help="e.g. blocks.12.hook_resid_post; repeatable")
    md.add_argument("--out", required=True, metavar="FILE.safetensors")
    md.set_defaults(func=run_meandiff)

    ft = dsub.add_parser("features", help="rank a dictionary's features for truthfulness",
                         description="Rank features by effect size (true vs false answers) and "
                         "by attribution, confirmed on held-out questions; print summaries.")
    add_model_args(ft)
    add_data_args(ft)
    _add_question_args(ft)
    ft.add_argument("--dictionary", required=True, metavar="DIR|REF",
                    help="a dictionary folder, or a hub REF (hf://OWNER/REPO[@REV]/PATH, "
                    "saelens://RELEASE/ID; cached, offline once cached)")
    ft.add_argument("--hook", default=None, help="default: the dictionary's hook_name")
    ft.add_argument("--top", type=int, default=20)
    ft.add_argument("--heldout-fraction", type=float, default=0.5)
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--no-attribution", action="store_true", help="skip the gradient ranking")
    ft.add_argument("--out", default=None, metavar="FILE.json", help="also write the result")
    ft.set_defaults(func=run_features)


def _questions(args: argparse.Namespace):
    from evals.truthfulqa import kfold, load_truthfulqa

    tqa = load_truthfulqa(args.truthfulqa)
    n = len(tqa)
    if not 0 <= args.offset < n:
        raise ConfigError(f"--offset {args.offset}: must be in 0..{n - 1}")
    stop = n if args.questions is None else args.offset + args.questions
    if args.questions is not None and (args.questions < 2 or stop > n):
        raise ConfigError(f"--questions {args.questions}: need 2..{n - args.offset} from "
                          f"--offset {args.offset}")
    ids = list(range(args.offset, stop))
    if (args.folds is None) != (args.fold is None):
        raise ConfigError("--folds and --fold go together")
    if args.folds is not None:
        if not 0 <= args.fold < args.folds:
            raise ConfigError(f"--fold {args.fold}: must be in 0..{args.folds - 1}")
        ids = kfold(ids, args.folds, args.fold_seed)[args.fold][0]
    return tqa.by_id(ids)


def _model(args: argparse.Namespace):
    from harness.loaders import load_args

    return load_args(args)


def _out(path: str) -> Path:
    out = Path(path)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out}: give a .safetensors file name")
    return out


def run_iti(args: argparse.Namespace) -> int:
    from harness.directions.iti import ITIConfig, fit_iti_for_questions
    from harness.directions.store import save_direction_set

    out = _out(args.out)
    try:
        layers = tuple(int(x) for x in args.layers.split(",")) if args.layers else None
    except ValueError:
        raise ConfigError(f"--layers {args.layers!r}: give comma-separated integers") from None
    cfg = ITIConfig(top_k=args.top_k, method=args.method, val_fraction=args.val_fraction,
                    seed=args.seed, layers=layers)
    questions = _questions(args)
    model = _model(args)
    dset = fit_iti_for_questions(model, questions, cfg, args.batch_size)
    save_direction_set(out, dset)
    acc = dset.info["head_accuracy"]
    print(f"fitted on {len(dset.train_question_ids)} questions; {len(dset.directions)} heads, "
          f"held-out probe accuracy {min(acc):.3f}..{max(acc):.3f}")
    for (layer, head), a, d in zip(dset.info["heads"], acc, dset.directions):
        print(f"  layer {layer:>2} head {head:>2}  accuracy {a:.3f}  std {d.std:.3f}")
    print(f"wrote {out} (+ .json). Use as --direction {out}:all, or in a sweep: kind = \"spec\", "
          f"spec = \"{out}\"; its training questions are never evaluated by the sweep.")
    return 0


def run_meandiff(args: argparse.Namespace) -> int:
    from harness.directions.meandiff import fit_meandiff_for_questions
    from harness.directions.store import save_direction_set

    out = _out(args.out)
    questions = _questions(args)
    model = _model(args)
    dset = fit_meandiff_for_questions(model, questions, args.hook, args.batch_size)
    save_direction_set(out, dset)
    for d in dset.directions:
        print(f"  {d.hook}: std along the direction {d.std:.3f}")
    print(f"wrote {out} (+ .json), fitted on {len(dset.train_question_ids)} questions")
    return 0


def run_features(args: argparse.Namespace) -> int:
    from dictionaries.hub import load_dictionary
    from harness.directions.features import FeatureSearchConfig, format_search, search_features

    cfg = FeatureSearchConfig(top=args.top, heldout_fraction=args.heldout_fraction,
                              seed=args.seed, attribution=not args.no_attribution,
                              batch_size=min(args.batch_size, 16))
    questions = _questions(args)
    sae = load_dictionary(args.dictionary)
    model = _model(args)
    result = search_features(model, sae, questions, cfg, args.hook)
    result["dictionary"] = str(args.dictionary)
    print(format_search(result, str(args.dictionary)))
    if args.out:
        from evals.io import atomic_write_json

        atomic_write_json(Path(args.out), result)
        print(f"wrote {args.out}")
    return 0
