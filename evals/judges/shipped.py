"""The offline judges shipped inside the package, so that ``--judge default`` and ``--judge quick``
need no build and two labs' reports name the same judge.

    evals/judges/shipped/<name>-<content id>/
        cfg.json              the recipe, the training sources and the measured agreement
        weights.safetensors   the fitted models
        sample.jsonl          a fixed sample of items with the P(yes) the judge gave when built

The content id is the first 12 hex digits of the SHA-256 of ``cfg.json`` and
``weights.safetensors``: the same files, the same id, on every machine. A shipped judge is used
when its recipe is the current one for its name; otherwise the judge is built from the labels as
before (evals/judges/default.py). Rebuild (about 25 minutes on a 2-core CPU, most of it the
default judge's SmolLM2 probe features):

    truthsteer judge-ship --truthfulqa-dir ../shared/data/truthfulqa
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.judges.recipe import CFG_FILE, NAMED_RECIPES, WEIGHTS_FILE, LearnedJudgeConfig

SHIPPED_DIR = "judges/shipped"  # inside the evals package
SAMPLE_FILE = "sample.jsonl"


def content_id(folder: Path) -> str:
    """SHA-256 (first 12 hex digits) of a judge folder's cfg.json and weights.safetensors."""
    h = hashlib.sha256()
    for name in (CFG_FILE, WEIGHTS_FILE):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:12]


def shipped_folder(name: str) -> Path | None:
    """The shipped folder of the offline judge ``name`` whose recipe is the current one, or None
    (none shipped, or shipped with an older recipe)."""
    from evals.io import package_file

    root = package_file(SHIPPED_DIR)
    if not root.is_dir() or name not in NAMED_RECIPES:
        return None
    for folder in sorted(root.glob(f"{name}-*")):
        cfg = folder / CFG_FILE
        if not cfg.is_file() or not (folder / WEIGHTS_FILE).is_file():
            continue
        recipe = json.loads(cfg.read_text(encoding="utf-8")).get("recipe", {})
        if LearnedJudgeConfig.from_dict(recipe) == NAMED_RECIPES[name]:
            return folder
    return None


def load_shipped(name: str, model_loader: Callable | None = None,
                 feature_cache: Any = "auto") -> Any:
    """The shipped judge ``name`` (a LearnedJudge), or None when none of the current recipe is
    shipped."""
    from evals.judges.learned import LearnedJudge

    folder = shipped_folder(name)
    return None if folder is None else LearnedJudge.load(folder, model_loader, feature_cache)


def sample_items(truthfulqa: Any, n_per_set: int = 12) -> list[dict[str, Any]]:
    """A fixed sample for the rebuild check: answers from each development set's TEST split and
    TruthfulQA's reference answers, with their references (self-contained)."""
    from evals.io import package_file
    from evals.labels import parse_prompt

    items = []
    for path in ("steered_dev/steered_truth.jsonl", "longform_dev/longform_truth.jsonl"):
        lines = [json.loads(x) for x in package_file(path).read_text().splitlines() if x]
        test = [x for x in lines if x.get("split") == "test"]
        for row in test[:: max(1, len(test) // n_per_set)][:n_per_set]:
            _, a, _ = parse_prompt(row["prompt"], path)
            items.append({"question_id": row["question_id"], "answer": a})
    for q in truthfulqa.questions[:: max(1, len(truthfulqa) // n_per_set)][:n_per_set]:
        items.append({"question_id": q.id, "answer": q.best_answer})
    out = []
    for it in items:
        q = truthfulqa.questions[int(it["question_id"])]
        out.append({"question": q.question, "answer": it["answer"],
                    "correct_answers": list(q.correct_answers),
                    "incorrect_answers": list(q.incorrect_answers), "best_answer": q.best_answer})
    return out


def judge_sample(judge: Any, sample: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sample with the judge's P(yes) for each kind."""
    from evals.judges.base import JudgeItem

    items = [JudgeItem(s["question"], s["answer"], tuple(s["correct_answers"]),
                       tuple(s["incorrect_answers"]), s["best_answer"]) for s in sample]
    results = judge.judge(items, progress=False)
    return [{**s, "truthful": r.truthful.p_yes, "informative": r.informative.p_yes}
            for s, r in zip(sample, results)]
