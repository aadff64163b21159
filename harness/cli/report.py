"""``truthsteer report RUN_DIR [RUN_DIR ...] --out DIR``: a self-contained comparison report."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write an HTML + Markdown report comparing one or more runs",
        description="Write DIR/index.html (self-contained: figures embedded, opens from disk, "
        "loads nothing) and DIR/report.md (figures in DIR/figures/): per configuration % true, "
        "% informative and % true×informative with 95% Wilson intervals, the share of "
        "non-answers (when the judge runs the detector; mostly non-answers is flagged and never "
        "marked best), human-corrected rates where spot-check labels exist, MC1/MC2, CE/KL, "
        "plots, example answers and each run's fingerprint with the judge's measured agreement "
        "(TruthfulQA labels; steered answers). The best configuration is chosen on one fold of "
        "questions and rated on the other, and marked only when both folds choose it.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--judge", default=None, metavar="J",
                   help="whose scores to report (a judge id or its scores file name); needed "
                   "when several judges scored a run")
    p.add_argument("--examples", type=int, default=5, metavar="N",
                   help="example questions to show per run (default 5; 0 for none)")
    p.add_argument("--out", required=True, metavar="DIR", help="report folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reports.build import write_report

    html, md = write_report(args.run_dirs, args.out, judge=args.judge, n_examples=args.examples)
    print(f"report: {html}")
    print(f"markdown: {md}")
    return 0
