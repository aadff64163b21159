"""Compare learned-judge recipes on TRAIN rows only: question-grouped CV kappa on the steered and
long-form development sets' TRAIN splits and on TruthfulQA's model-written rows, plus kappa on
TruthfulQA's held-out questions (20%, seed 0: the constraint). Never reads a TEST split.

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

V3 = {"longform_block": False, "recipe_version": "3"}  # no long-form block, no long-form rows
RECIPES = {
    "quick-v2": dataclasses.replace(QUICK_RECIPE, claim_features=False,
                                    **V3 | {"recipe_version": "2"}),
    "quick-v3": dataclasses.replace(QUICK_RECIPE, **V3),
    "quick-v3+rows": dataclasses.replace(QUICK_RECIPE, longform_weight=1.0, **V3),  # + rows
    "quick-v4w1": dataclasses.replace(QUICK_RECIPE, longform_block=True, longform_weight=1.0),
    "quick-v4w3": dataclasses.replace(QUICK_RECIPE, longform_block=True, longform_weight=3.0),
    "default-v4w1": dataclasses.replace(DEFAULT_RECIPE, longform_block=True, longform_weight=1.0),
    "quick-v4w6": dataclasses.replace(QUICK_RECIPE, longform_block=True, longform_weight=6.0),
    "quick": QUICK_RECIPE,
    "default-v2": dataclasses.replace(DEFAULT_RECIPE, claim_features=False,
                                      **V3 | {"recipe_version": "2"}),
    "default-v3": dataclasses.replace(DEFAULT_RECIPE, **V3),
    "default": DEFAULT_RECIPE,
}
NO_LONGFORM_ROWS = ("quick-v2", "quick-v3", "default-v2", "default-v3")


def main() -> None:
    from evals.judges.base import KINDS
    from evals.judges.learned_train import train_learned_judge
    from evals.judges.steered import (
        packaged_longform_files,
        packaged_steered_files,
        read_steered_train,
    )
    from evals.labels import read_labels
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import judge_model_loader

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truthfulqa-dir", required=True,
                        help="folder with TruthfulQA.csv and human_{truth,info}_dev.jsonl")
    parser.add_argument("--recipes", default="quick-v2,quick",
                        help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="also save each judge to DIR/<recipe> (to calibrate it on the TEST "
                        "splits afterwards, once the recipe is chosen)")
    args = parser.parse_args()
    names = args.recipes.split(",")
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(unknown)} (choose from {', '.join(RECIPES)})")
    d = Path(args.truthfulqa_dir)
    truth, info = read_labels(d / "human_truth_dev.jsonl"), read_labels(d / "human_info_dev.jsonl")
    s_truth, s_info, _ = read_steered_train(*packaged_steered_files())
    l_truth, l_info, _ = read_steered_train(*packaged_longform_files())
    tq = load_truthfulqa(d / "TruthfulQA.csv")
    for name in names:
        started = time.perf_counter()
        longform = None if name in NO_LONGFORM_ROWS else (l_truth, l_info)
        judge = train_learned_judge(truth, info, tq, RECIPES[name],
                                    judge_model_loader("cpu"), progress=False, holdout_frac=0.2,
                                    steered=(s_truth, s_info), longform=longform)
        if args.save:
            judge.save(Path(args.save) / name)
        a = judge.info["agreement"]
        row = {"recipe": name, "seconds": round(time.perf_counter() - started)}
        for kind in KINDS:
            cv = a["cv"][kind]
            row[kind] = {"cv_steered": round(cv["steered"]["kappa"], 3),
                         "cv_model_written": round(cv["model_written"]["kappa"], 3),
                         "heldout_model_written":
                             round(a["heldout"][kind]["model_written"]["kappa"], 3)}
            if "longform" in cv:
                row[kind].update(cv_longform=round(cv["longform"]["kappa"], 3),
                                 cv_longform_bias=round(cv["longform"]["bias"], 3),
                                 cv_longform_auc=round(cv["longform"]["auc"], 3))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
