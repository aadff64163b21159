"""Compare learned-judge recipes on TRAIN rows only: question-grouped CV kappa on the steered
development set's TRAIN split and on TruthfulQA's model-written rows, plus kappa on TruthfulQA's
held-out questions (20%, seed 0: the constraint). Never reads the steered TEST split.

    OMP_NUM_THREADS=2 python benchmarks/judge_recipes.py --truthfulqa-dir ../shared/data/truthfulqa
    # default: quick v2 vs v3 (claim features off / on); --recipes quick-v2,quick,default-v2,default

Each recipe is one `train_learned_judge(..., holdout_frac=0.2, steered=TRAIN rows)`; features come
from $TRUTHSTEER_CACHE/learned_features.sqlite when cached (the probe's take ~20 min cold).
This is how docs/calibration.md's recipe-v3 table was chosen (its other rows were variants tried
in a scratch script on the same folds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from evals.judges.recipe import DEFAULT_RECIPE, QUICK_RECIPE

RECIPES = {
    "quick-v2": dataclasses.replace(QUICK_RECIPE, claim_features=False),
    "quick": QUICK_RECIPE,
    "default-v2": dataclasses.replace(DEFAULT_RECIPE, claim_features=False),
    "default": DEFAULT_RECIPE,
}


def main() -> None:
    from evals.judges.learned_train import train_learned_judge
    from evals.judges.base import KINDS
    from evals.judges.steered import packaged_steered_files, read_steered_train
    from evals.labels import read_labels
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import judge_model_loader

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truthfulqa-dir", required=True,
                        help="folder with TruthfulQA.csv and human_{truth,info}_dev.jsonl")
    parser.add_argument("--recipes", default="quick-v2,quick",
                        help=f"comma-separated, of {', '.join(RECIPES)}")
    args = parser.parse_args()
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(unknown)} (choose from {', '.join(RECIPES)})")
    d = Path(args.truthfulqa_dir)
    truth, info = read_labels(d / "human_truth_dev.jsonl"), read_labels(d / "human_info_dev.jsonl")
    s_truth, s_info, _ = read_steered_train(*packaged_steered_files())
    tq = load_truthfulqa(d / "TruthfulQA.csv")
    for name in names:
        started = time.perf_counter()
        judge = train_learned_judge(truth, info, tq, RECIPES[name],
                                    judge_model_loader("cpu"), progress=False, holdout_frac=0.2,
                                    steered=(s_truth, s_info))
        a = judge.info["agreement"]
        row = {"recipe": name, "seconds": round(time.perf_counter() - started)}
        for kind in KINDS:
            row[kind] = {"cv_steered": round(a["cv"][kind]["steered"]["kappa"], 3),
                         "cv_model_written": round(a["cv"][kind]["model_written"]["kappa"], 3),
                         "heldout_model_written":
                             round(a["heldout"][kind]["model_written"]["kappa"], 3)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
