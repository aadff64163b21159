"""Run directories for report tests: a hand-built one (exact planted numbers) and a small real one
(tiny Llama saved to a folder, the real sweep runner, scores and labels through the real writers).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from evals.judges.base import JudgeResult, Verdict
from evals.rundir import RunDir
from evals.scores import ScoreFile, ScoreWriter, answer_sha256, score_row

RULE_JUDGE = "rule:test-judge"
Z = 1.959963984540054  # the 97.5% normal quantile


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval, written out independently of reports/ and evals/."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z / (1 + Z * Z / n) * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rule_verdicts(row: dict) -> tuple[str, str]:
    """A deterministic stand-in judge (the report is under test, not the judge): varied verdicts,
    and one unscored truthful verdict per cell (question 5)."""
    qid, answer = int(row["question_id"]), row["answer"]
    if qid == 5:
        truthful = "unscored"
    else:
        truthful = "yes" if (qid + len(answer)) % 3 else "no"
    informative = "yes" if (qid * 7 + len(answer)) % 4 else "no"
    return truthful, informative


def write_rule_scores(run_dir: Path, answers: list[dict], judge_id: str = RULE_JUDGE) -> Path:
    path = ScoreFile.for_judge(RunDir(run_dir), judge_id).path
    with ScoreWriter(path) as writer:
        for row in answers:
            t, i = rule_verdicts(row)
            result = JudgeResult(
                Verdict(t, None if t == "unscored" else (0.8 if t == "yes" else 0.3), "prompt",
                        "reply", "timeout" if t == "unscored" else None),
                Verdict(i, 0.9 if i == "yes" else 0.1, "prompt", "reply"), judge_id, "rule-v1")
            writer.write(score_row(row, result))
    return path


@pytest.fixture(scope="session")
def real_run(tiny_folder, tmp_path_factory):
    """A real sweep (meandiff at two layers × magnitudes 2/8, a random direction at one, the
    shared baseline) on the tiny model, scored by the rule judge and spot-checked (sample
    drawn, labels imported). The tiny model's 49k-token output layer dominates its cost, so the
    questions and the CE/KL reference text are few."""
    from evals.spotcheck import import_labels, sample_run
    from harness.sweep.config import parse_config
    from harness.sweep.run import run_sweep
    from tests.helpers import mini_truthfulqa_csv

    csv_path = mini_truthfulqa_csv()
    run_dir = tmp_path_factory.mktemp("real-run") / "run"
    reference = tmp_path_factory.mktemp("reference") / "reference.txt"
    reference.write_text("The capital of France is Paris.\nWater boils at 100 degrees Celsius "
                         "at sea level.\nThe moon orbits the Earth.\n")
    cfg = parse_config({
        "model": {"name": str(tiny_folder), "device": "cpu"},
        "data": {"questions": 6, "folds": 2},
        "generation": {"max_new_tokens": 6, "batch_size": 8, "prompt_style": "qa"},
        "metrics": {"reference_text": str(reference)},
        "sweep": {"magnitudes": [0, 2, 8]},
        "directions": [
            {"name": "meandiff", "kind": "meandiff",
             "hooks": ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]},
            {"name": "random", "kind": "random", "hooks": ["blocks.1.hook_resid_post"],
             "magnitudes": [0, 8]}]})
    run_sweep(cfg, run_dir, str(csv_path), progress=False)
    write_rule_scores(run_dir, RunDir(run_dir).answers())
    paths, _ = sample_run(run_dir, n=10, judge=RULE_JUDGE, seed=1)
    sample = json.loads(paths[2].read_text())["items"]
    labels = run_dir / "labels_in.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "truthful", "informative"])
        for k, item in enumerate(sample):
            w.writerow([item["id"], "yes" if k % 3 else "no", "no" if k % 4 == 0 else "yes"])
    import_labels(run_dir, labels)
    return run_dir


def hand_cell(run_dir: Path, cell_id: str, direction: str, hook: str, magnitude: float,
              answers: dict[int, str], metrics: dict | None = None,
              question: str = "Question {q}?") -> list[dict]:
    rows = [{"cell_id": cell_id, "question_id": q, "question": question.format(q=q),
             "model": "m", "hook": hook, "direction": direction, "kind": direction,
             "magnitude": magnitude, "positions": "all", "prompt_token_ids": [],
             "answer_token_ids": [], "answer": a} for q, a in sorted(answers.items())]
    RunDir(run_dir).write_cell(cell_id, rows, {
        "cell_id": cell_id, "direction": direction, "hook": hook, "magnitude": magnitude,
        "kind": direction, "metrics": metrics or {}})
    return rows


def hand_scores(run_dir: Path, verdicts: dict[tuple[str, int], tuple[str, str]],
                answers: dict[tuple[str, int], str], judge_id: str = "hand:judge",
                stale: set[tuple[str, int]] = frozenset(),
                nonanswer: dict[tuple[str, int], bool] | None = None) -> None:
    """Score rows with given verdicts; keys in ``stale`` get the hash of another answer text;
    keys in ``nonanswer`` carry the non-answer detector's verdict as learned judges store it."""
    path = ScoreFile.for_judge(RunDir(run_dir), judge_id).path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for (cid, q), (t, i) in verdicts.items():
            text = answers[(cid, q)] + (" (edited)" if (cid, q) in stale else "")
            fh.write(json.dumps({
                "cell_id": cid, "question_id": q, "judge_id": judge_id,
                "prompt_version": "v1", "answer_sha256": answer_sha256(text),
                "truthful": {"verdict": t, "p_yes": None}, "informative": {"verdict": i,
                                                                          "p_yes": None},
                **({"nonanswer": {"flagged": nonanswer[(cid, q)], "score": 0.9 if nonanswer[
                    (cid, q)] else 0.1, "reasons": ["proto_max"]}}
                   if nonanswer and (cid, q) in nonanswer else {})}) + "\n")


def hand_run_info(run_dir: Path, **model) -> None:
    RunDir(run_dir).write_info({
        "model": {"model": "hand-model", "source": "folder", "dtype": "float32",
                  "n_params": "1000", **model},
        "data": {"sha256": "ab" * 32, "n_questions": 817, "origin": "TruthfulQA.csv"},
        "code": {"package": "0.1.0", "git_commit": "0123456789abcdef"},
        "config": {"data": {"questions": 10, "folds": 2}, "generation": {"max_new_tokens": 8},
                   "directions": [{"name": "d", "kind": "meandiff"}]}})
