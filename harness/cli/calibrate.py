"""``truthsteer calibrate`` (measure a judge on human labels) and ``truthsteer judge-train``
(train a learned judge on human labels)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from harness.cli.options import add_data_args, add_device_arg, add_judge_args

SUBSETS = ("all", "model_written", "reference", "steered")


def register(sub) -> None:
    c = sub.add_parser("calibrate", help="measure a judge against human labels",
                       description="Judge TruthfulQA-format human-labelled answers and report "
                       "agreement (accuracy, Cohen's kappa, AUC, bias) on all rows and on "
                       "model-written rows (rows whose answer is not a reference answer).")
    add_judge_args(c)
    c.add_argument("--human", required=True, nargs="+", metavar="FILE.jsonl",
                   help='labels: {"prompt": "Q: …\\nA: …\\nTrue:" (or Helpful:), '
                   '"completion": " yes"|" no"} per line; extra fields are tolerated, and '
                   '"config" / "split" (the steered development set, evals/steered_dev/) give '
                   "agreement per configuration and --split. Give a truth and an info file "
                   "together for true x informative agreement")
    c.add_argument("--split", default="all", choices=("all", "train", "test"),
                   help="rows of this split only (files with a 'split' field; default: all)")
    add_data_args(c)
    c.add_argument("--limit", type=int, default=None, metavar="N", help="first N labels only")
    c.add_argument("--out", required=True, metavar="SCORES.jsonl",
                   help="one row per input line, in order")
    add_device_arg(c)
    c.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (on a shared machine 1 can be much faster)")
    c.add_argument("--no-baseline", action="store_true",
                   help="do not score the rows with the surface-only baseline judge too")
    c.set_defaults(func=run_calibrate)

    t = sub.add_parser("judge-train", help="train a learned judge on human labels",
                       description="Fit the learned judge (MiniLM reference features + a probe "
                       "on a local LLM's activations) on TruthfulQA-format human labels, with "
                       "question-grouped cross-validation for every choice.")
    t.add_argument("--human-truth", required=True, metavar="FILE.jsonl")
    t.add_argument("--human-info", required=True, metavar="FILE.jsonl")
    add_data_args(t)
    t.add_argument("--out", required=True, metavar="DIR", help="judge folder to write")
    t.add_argument("--holdout-frac", type=float, default=0.0, metavar="F",
                   help="hold out this fraction of questions entirely; their labels are "
                   "written to DIR/heldout_{truth,info}.jsonl and the judge's agreement on "
                   "them is stored (default 0: train on all)")
    t.add_argument("--probe-model", default=None, metavar="NAME",
                   help="LLM whose activations are probed (default: the embedded "
                   "smollm2-135m-instruct); 'none' for MiniLM features only")
    t.add_argument("--layers", default=None, metavar="L,L",
                   help="probe layers (default: the default recipe's)")
    t.add_argument("--max-answers", type=int, default=None, metavar="N",
                   help="train on a random subset of N distinct answers (a cheaper build)")
    t.add_argument("--steered", nargs=2, default=None, metavar=("TRUTH.jsonl", "INFO.jsonl"),
                   help="also train on the TRAIN rows of steered label files (the steered "
                   "development set, evals/steered_dev/steered_{truth,info}.jsonl; rows of "
                   "other splits are skipped), each weighted by --steered-weight")
    t.add_argument("--steered-weight", type=float, default=None, metavar="W",
                   help="sample weight of a steered row (default: the recipe's, chosen by "
                   "question-grouped CV)")
    t.add_argument("--no-nonanswer", action="store_true",
                   help="leave out the non-answer detector's feature block (the old recipe)")
    t.add_argument("--fluency", action="store_true",
                   help="add the probe model's log-probability of each answer as a feature "
                   "block (about 3x the probe's feature cost)")
    t.add_argument("--folds", type=int, default=None, metavar="K")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--limit", type=int, default=None, metavar="N",
                   help="first N lines of each label file (quick trials)")
    add_device_arg(t, "device of the probe model")
    t.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (on a shared machine 1 can be much faster)")
    t.set_defaults(func=run_train)
    register_ship(sub)


def register_ship(sub) -> None:
    s = sub.add_parser("judge-ship", help="rebuild the offline judges shipped in the package",
                       description="Train the quick and default judges from TruthfulQA's label "
                       "files (and the packaged development sets' TRAIN rows) and write them, "
                       "each with a judged fixed sample, to evals/judges/shipped/<name>-<content "
                       "id>/, replacing the old ones (evals/judges/shipped.py).")
    s.add_argument("--truthfulqa-dir", required=True, metavar="DIR",
                   help="folder with TruthfulQA.csv and human_{truth,info}_dev.jsonl")
    s.add_argument("--names", default="quick,default", help="which judges (default: both)")
    s.add_argument("--work", default=None, metavar="DIR",
                   help="build cache (default: a temporary folder)")
    add_device_arg(s, "device of the probe model")
    s.set_defaults(func=run_ship)


def run_ship(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from evals.io import package_file
    from evals.judges.default import ship
    from evals.judges.shipped import SHIPPED_DIR
    from harness.loaders import judge_model_loader

    out_root = package_file(SHIPPED_DIR)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="truthsteer-ship-"))
    for name in args.names.split(","):
        folder = ship(name, Path(args.truthfulqa_dir), out_root, judge_model_loader(args.device),
                      work)
        for old in out_root.glob(f"{name}-*"):
            if old != folder:
                shutil.rmtree(old)
        print(f"{name}: {folder}")
    return 0


def apply_threads(threads: int | None) -> None:
    from evals.errors import InputError

    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads}: must be at least 1")
        import torch

        torch.set_num_threads(threads)


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None or math.isnan(x):
        return "  –  "
    return f"{x:5.1%}" if pct else f"{x:5.3f}"


def agreement_table(report: dict[str, dict[str, dict]]) -> str:
    """Rows: kind x subset; columns: n, accuracy, kappa, AUC, judge/human rate, bias ± CI."""
    header = (f"{'kind':<12}{'rows':<15}{'n':>6}  {'acc':>5}  {'kappa':>5}  {'AUC':>5}  "
              f"{'judge':>6}  {'human':>6}  bias (95% CI)")
    lines = [header]
    order = ("truthful", "informative", "true_x_informative")
    kinds = sorted(report, key=lambda k: (order.index(k) if k in order else 9, k))
    for kind in kinds:
        subsets = report[kind]
        for subset in sorted(subsets, key=lambda s: (SUBSETS.index(s) if s in SUBSETS else 9, s)):
            a = subsets[subset]
            lines.append(
                f"{kind[:11]:<12}{subset:<15}{a['n']:>6}  {_fmt(a['accuracy'])}  "
                f"{_fmt(a['kappa'])}  "
                f"{_fmt(a['auc'])}  {_fmt(a['judge_rate'], True)}  {_fmt(a['human_rate'], True)}"
                f"  {_fmt(a['bias'])} ± {_fmt(a['bias_ci'])}"
                + (f"  ({a['n_unscored']} unscored)" if a.get("n_unscored") else ""))
    return "\n".join(lines)


def baseline_table(report: dict[str, dict[str, dict]], base: dict[str, dict[str, dict]],
                   judge_id: str) -> str:
    """Kappa and AUC of the judge under test beside the surface-only baseline's on the same rows,
    and the margin (the judge's kappa minus the baseline's)."""
    lines = [f"{'kind':<12}{'rows':<15}{'n':>6}  {'kappa':>5} {'base':>5} {'margin':>6}  "
             f"{'AUC':>5} {'base':>5}   ({judge_id} vs surface baseline)"]
    order = ("truthful", "informative", "true_x_informative")
    for kind in sorted(report, key=lambda k: (order.index(k) if k in order else 9, k)):
        for subset in sorted(report[kind], key=lambda s: (SUBSETS.index(s) if s in SUBSETS
                                                          else 9, s)):
            a, b = report[kind][subset], base.get(kind, {}).get(subset)
            if b is None:
                continue
            margin = a["kappa"] - b["kappa"]
            lines.append(f"{kind[:11]:<12}{subset:<15}{a['n']:>6}  {_fmt(a['kappa'])} "
                         f"{_fmt(b['kappa'])} {margin:+6.3f}  {_fmt(a['auc'])} {_fmt(b['auc'])}")
    return "\n".join(lines)


def config_table(by_config: dict[str, dict[str, dict]]) -> str:
    """Rows: configuration; columns: n, kappa, judge and human rate per kind."""
    kinds = [k for k in ("truthful", "informative", "true_x_informative")
             if any(k in d for d in by_config.values())]
    cell = lambda n, k, j, h: f"{n:>6} {k:>6} {j:>7} {h:>7}"
    lines = [f"{'':<28}" + "".join(f"  {k[:29]:^29}" for k in kinds),
             f"{'configuration':<28}" + "".join(f"  {cell('n', 'kappa', 'judge', 'human')}"
                                                 for _ in kinds)]
    for config, d in by_config.items():
        cells = [" " * 31 if (a := d.get(k)) is None else
                 "  " + cell(a["n"], _fmt(a["kappa"]), _fmt(a["judge_rate"], True),
                             _fmt(a["human_rate"], True)) for k in kinds]
        lines.append(f"{config[:27]:<28}" + "".join(cells))
    return "\n".join(lines)


def run_calibrate(args: argparse.Namespace) -> int:
    from evals.errors import InputError
    from evals.io import atomic_write_jsonl
    from evals.judges import make_judge
    from evals.judges.calibration import calibrate, read_label_files
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import judge_model_loader

    apply_threads(args.threads)
    out = Path(args.out)
    if out.suffix != ".jsonl":
        raise InputError(f"--out {out}: give a .jsonl file name")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit}: must be at least 1")
    rows, meta = read_label_files(args.human, args.split, args.limit)
    if not rows:
        raise InputError(f"--human {' '.join(args.human)}: no rows of split {args.split!r}")
    tq = load_truthfulqa(args.truthfulqa)
    judge = make_judge(args.judge, model_loader=judge_model_loader(args.device), truthfulqa=tq,
                       base_url=args.judge_base_url, api_key_env=args.judge_api_key_env)
    has_split = any(m.split for m in meta)
    result = calibrate(judge, rows, meta, tq, progress=True)
    print(f"{result.n_labels} labels"
          + (f" (split: {args.split})" if has_split else "")
          + f"; {result.n_matched} matched a TruthfulQA question by exact text "
          f"({result.n_questions} distinct questions)"
          + (f"; {result.n_labels - result.n_matched} have no references"
             if result.n_matched < result.n_labels else ""))
    if result.overlap_questions:
        print(f"warning: {result.overlap_questions} of {len({r.question for r in rows})} "
              f"calibration questions were used to train {judge.judge_id}: these numbers are "
              "optimistic. For honest numbers calibrate on held-out questions (judge-train "
              "--holdout-frac, or the steered set's --split test), and see the judge's stored "
              "cross-validated agreement below.", file=sys.stderr)
    atomic_write_jsonl(out, result.rows)
    print(f"\n{judge.judge_id} vs labels ({', '.join(args.human)}"
          + (f", split {args.split}" if has_split else "") + "):")
    print(agreement_table(result.report))
    if result.by_config:
        print("\nper configuration:")
        print(config_table(result.by_config))
    if args.judge != "surface" and not args.no_baseline:
        from evals.judges.surface import SurfaceJudge

        base = calibrate(SurfaceJudge(), rows, meta, tq, progress=False)
        print("\nthe same rows by the surface-only baseline (answer style alone: length, hedges, "
              "negation, refusal cues, list shape; no question, no references):")
        print(baseline_table(result.report, base.report, judge.judge_id))
    flagged = [r["nonanswer"]["flagged"] for r in result.rows if "nonanswer" in r]
    if flagged:
        print(f"\nnon-answer detector: {sum(flagged)} of {len(flagged)} label rows flagged")
    stored = judge.agreement
    if stored:
        for split, rep in stored.items():
            print(f"\n{judge.judge_id}: stored {split} agreement (question-grouped, "
                  "measured when it was trained):")
            print(agreement_table(rep))
    print(f"\nwrote {out}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from evals.errors import InputError
    from evals.judges.learned_train import train_learned_judge
    from evals.judges.recipe import DEFAULT_RECIPE, LearnedJudgeConfig
    from evals.labels import parse_prompt, question_key, read_labels
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import judge_model_loader

    apply_threads(args.threads)
    recipe = DEFAULT_RECIPE.to_dict()
    if args.probe_model is not None:
        recipe["probe_model"] = None if args.probe_model.lower() == "none" else args.probe_model
    if args.layers:
        try:
            recipe["probe_layers"] = tuple(int(x) for x in args.layers.split(","))
        except ValueError:
            raise InputError(f"--layers {args.layers!r}: give comma-separated integers, "
                             "e.g. 8,12") from None
    if args.max_answers is not None:
        recipe["max_train_answers"] = args.max_answers
    if args.folds is not None:
        recipe["folds"] = args.folds
    if args.steered_weight is not None:
        recipe["steered_weight"] = args.steered_weight
    if args.fluency:
        recipe["fluency"] = True
    if args.no_nonanswer:
        recipe["nonanswer_block"] = False
    recipe["seed"] = args.seed
    cfg = LearnedJudgeConfig.from_dict(recipe)
    truth = read_labels(args.human_truth, limit=args.limit)
    info = read_labels(args.human_info, limit=args.limit)
    steered, sources = None, [args.human_truth, args.human_info]
    if args.steered:
        from evals.judges.steered import read_steered_train

        s_truth, s_info, counts = read_steered_train(*args.steered)
        steered, sources = (s_truth, s_info), sources + list(args.steered)
        print(f"steered labels: {len(s_truth)} truth + {len(s_info)} info TRAIN rows"
              + (f" ({counts['skipped_non_train']} rows of other splits skipped)"
                 if counts["skipped_non_train"] else ""))
    tq = load_truthfulqa(args.truthfulqa)
    out = Path(args.out)
    judge = train_learned_judge(truth, info, tq, cfg, judge_model_loader(args.device),
                                name=out.name, sources=sources,
                                holdout_frac=args.holdout_frac, steered=steered)
    judge.save(out)
    held = set(judge.info["heldout_question_keys"])
    if held:
        for src, name in ((args.human_truth, "heldout_truth.jsonl"),
                          (args.human_info, "heldout_info.jsonl")):
            with open(src, encoding="utf-8") as fh:
                lines = [ln for ln in fh if ln.strip() and question_key(parse_prompt(
                    json.loads(ln)["prompt"], src)[0]) in held]
            (out / name).write_text("".join(lines), encoding="utf-8")
    i = judge.info
    print(f"trained on {i['n_train_answers']} distinct answers "
          f"({', '.join(f'{k}: {v} label rows' for k, v in i['n_label_rows'].items())}; "
          f"unmatched questions: {sum(i['n_unmatched_rows'].values())} rows); "
          f"features {i['seconds']['features']:.0f}s, fit {i['seconds']['fit']:.0f}s")
    print("\ncross-validated agreement (question-grouped, out-of-fold):")
    print(agreement_table(i["agreement"]["cv"]))
    if "heldout" in i["agreement"]:
        print(f"\nheld-out agreement ({len(held)} questions never seen in training; labels in "
              f"{out}/heldout_*.jsonl):")
        print(agreement_table(i["agreement"]["heldout"]))
    print(f"\nwrote {out} (use it with --judge learned:{out})")
    return 0
