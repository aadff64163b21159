"""The development sets' TEST splits, like with like: recipe v3 (the judges before the long-form
work) built on exactly the data the shipped v4 judges were built on, both scored on the same
TEST rows, with a question-clustered paired bootstrap of the difference.

The shipped judges' TEST figures came from ``truthsteer judge-ship`` (all of TruthfulQA's
labelled questions + the steered TRAIN rows, + the long-form TRAIN rows for v4); the v3
figures quoted beside them came from builds on 80% of TruthfulQA's questions. This script
builds v3 the way v4 was shipped (``evals.judges.default.load_or_build``: all questions, the
steered TRAIN rows; no long-form rows, no long-form block), scores both on the steered and
long-form TEST splits and prints, per kind, each κ and the v4 − v3 difference with a 95%
interval from resampling TEST questions (both judges on the same resample): on the whole split,
and on each batch of the steered TEST split (1: 24 questions, 19 configurations; 3: 48
questions, 13 configurations, added 2026-12-06). Nothing here is
chosen by these numbers: the v4 judges are the shipped ones, v3 is the recipe of record.

    OMP_NUM_THREADS=2 python benchmarks/judge_test_paired.py --truthfulqa-dir DIR \\
        [--work CACHE] [--boot 2000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def kappa_by_question(rows: list[dict], kind: str) -> dict[str, list[tuple[bool, bool]]]:
    out: dict[str, list[tuple[bool, bool]]] = {}
    for r in rows:
        if r["kind"] == kind and r["verdict"] is not None:
            out.setdefault(r["question"], []).append((r["verdict"] == "yes", r["human"] == "yes"))
    return out


def steered_test_batches() -> dict[str, list[int]]:
    """The steered TEST split's batches (question ids), from evals/steered_dev/split.json."""
    split = json.loads((Path(__file__).resolve().parents[1] / "evals" / "steered_dev"
                        / "split.json").read_text())
    return {k.removeprefix("test_batch"): v for k, v in split.items()
            if k.startswith("test_batch")}


def only(by_question: dict, keep: set[str] | None) -> dict:
    return by_question if keep is None else {q: v for q, v in by_question.items() if q in keep}


def paired(v3: dict, v4: dict, boot: int, seed: int = 0) -> dict[str, float]:
    from evals.agreement import cohen_kappa

    questions = sorted(set(v3) & set(v4))

    def kappa(d, qs):
        pairs = [p for q in qs for p in d[q]]
        return cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs])

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(boot):
        qs = [questions[i] for i in rng.integers(0, len(questions), len(questions))]
        diffs.append(kappa(v4, qs) - kappa(v3, qs))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return {"v3": kappa(v3, questions), "v4": kappa(v4, questions),
            "diff": kappa(v4, questions) - kappa(v3, questions), "lo": float(lo),
            "hi": float(hi), "questions": len(questions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truthfulqa-dir", required=True)
    parser.add_argument("--work", default=None, help="cache folder for the v3 builds")
    parser.add_argument("--boot", type=int, default=2000)
    args = parser.parse_args()

    from judge_recipes import RECIPES

    from evals.judges.calibration import calibrate, read_label_files
    from evals.judges.default import load_or_build
    from evals.judges.shipped import load_shipped
    from evals.judges.steered import packaged_longform_files, packaged_steered_files
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import judge_model_loader

    d = Path(args.truthfulqa_dir)
    tq = load_truthfulqa(d / "TruthfulQA.csv")
    loader = judge_model_loader("cpu")
    sets = {"steered": read_label_files(list(packaged_steered_files()), "test"),
            "longform": read_label_files(list(packaged_longform_files()), "test")}
    parts = {"longform": {"": None}, "steered": {"": None}}
    for batch, ids in steered_test_batches().items():  # each batch of the steered TEST split
        parts["steered"][f" batch {batch}"] = {tq.questions[i].question for i in ids}
    for name in ("quick", "default"):
        v3 = load_or_build(f"{name}-v3-allq", RECIPES[f"{name}-v3"], loader, tq, d, args.work,
                           progress=False)
        v4 = load_shipped(name, loader)
        for dev, (rows, meta) in sets.items():
            cal3 = calibrate(v3, rows, meta, tq, progress=False)
            cal4 = calibrate(v4, rows, meta, tq, progress=False)
            for part, keep in parts[dev].items():
                for kind in ("truthful", "informative"):
                    res = paired(only(kappa_by_question(cal3.rows, kind), keep),
                                 only(kappa_by_question(cal4.rows, kind), keep), args.boot)
                    print(json.dumps({"judge": name, "set": f"{dev} TEST{part}", "kind": kind,
                                      "v3_judge": v3.judge_id, "v4_judge": v4.judge_id,
                                      **{k: round(v, 3) if isinstance(v, float) else v
                                         for k, v in res.items()}}), flush=True)


if __name__ == "__main__":
    main()
