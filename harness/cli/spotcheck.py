"""``truthsteer spotcheck sample|import``: human spot checks of a run's answers."""

from __future__ import annotations

import argparse

from harness.cli.options import add_data_args


def register(sub) -> None:
    p = sub.add_parser("spotcheck", help="label a sample of a run's answers by hand",
                       description="Draw a stratified sample of a run's answers to label by "
                       "hand (a CSV and a self-contained HTML page), then import the labels.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("sample", help="draw a sample; write RUN_DIR/spotcheck/",
                           description="Stratified across configurations (cell_id) and, when "
                           "the run has scores, across the judge's truthful verdicts; the "
                           "baseline and the configurations the report marks best (or each "
                           "cross-fitting fold chose) are drawn 3 times as often as the others.")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--n", type=int, default=100, help="items to draw (default 100)")
    s.add_argument("--judge", default=None, metavar="J",
                   help="stratify by this judge's verdicts (its id or scores file name); needed "
                   "when several judges scored the run")
    s.add_argument("--seed", type=int, default=0)
    add_data_args(s, of_run=True)
    s.set_defaults(func=run_sample)
    i = actions.add_parser("import", help="validate and store labels with the run",
                           description="Validate a labels CSV (id, truthful, informative) and "
                           "merge it into RUN_DIR/labels/human.csv; nothing is written on error.")
    i.add_argument("run_dir", metavar="RUN_DIR")
    i.add_argument("labels", metavar="LABELS.csv")
    i.set_defaults(func=run_import)


def run_sample(args: argparse.Namespace) -> int:
    from evals.rundir import RunDir
    from reports.spotcheck import sample_for_report

    run = RunDir.open(args.run_dir)
    paths, summary = sample_for_report(run.path, n=args.n, judge=args.judge, seed=args.seed,
                                       truthfulqa=run.load_truthfulqa(args.truthfulqa))
    by = f", stratified by {summary['judge_id']}'s verdicts" if summary["judge_id"] else ""
    print(f"Sampled {summary['n']} answers from {summary['cells']} configuration(s){by}.")
    if summary.get("oversampled"):
        print(f"  oversampled (baseline and the report's best): "
              f"{', '.join(summary['oversampled'])}")
    print(f"  label in a browser:  {paths[1]}")
    print(f"  or in a spreadsheet: {paths[0]}")
    print(f"then: truthsteer spotcheck import {args.run_dir} labels.csv")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from evals.rundir import RunDir
    from evals.spotcheck import import_labels

    summary = import_labels(args.run_dir, args.labels)
    print(f"Imported {summary['imported']} labelled answer(s) ({summary['updated']} replaced "
          f"earlier labels); {summary['total']} in {RunDir(args.run_dir).human_labels_path}.")
    return 0
