"""The paragraphs the quickstart's report opens with: what was run and what it is not."""

from __future__ import annotations

from typing import Any

from harness.quickstart.config import QuickstartConfig

QUICK_JUDGE_NOTE = (
    "Judge: the quick judge (the offline default judge's recipe without its language-model "
    "probe: logistic regressions on all-MiniLM-L6-v2 similarities of each answer to the "
    "reference answers, whether its yes/no, negation and wording side with the correct or the "
    "incorrect references, and the non-answer detector's features; trained on TruthfulQA's "
    "human labels and the steered development set's TRAIN split). It was used because the default "
    "judge is not built on this machine yet and building it takes far longer than this "
    "quickstart. Its measured agreement is in the report's 'Runs' table. For the "
    "default judge: `truthsteer judge OUT/run --judge default`, then `truthsteer report OUT/run "
    "--judge <its id> --out OUT/report` (or rerun the quickstart with --judge default).")


def _d(x: Any) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) and x == x else "n/a"


def report_notes(cfg: QuickstartConfig, meta: dict[str, Any]) -> list[str]:
    """The paragraphs the quickstart's report opens with: what was run and what it is not."""
    f = meta.get("feature", {})
    held = ("confirmed" if f.get("confirmed") else "not confirmed") + " on held-out questions"
    return [
        f"Made by `truthsteer quickstart` on {cfg.model}: {cfg.questions} TruthfulQA questions "
        "(a seeded random subset) answered under every configuration, so intervals are wide; "
        "this demonstrates the pipeline, it is not a result. Run `truthsteer sweep` on all 817 "
        "questions for one.",
        f"The dictionary feature {f.get('feature')} at {f.get('hook')} was chosen on "
        f"{len(f.get('question_ids', []))} other questions (effect size d = "
        f"{_d(f.get('effect_size'))}, held-out d = {_d(f.get('heldout_effect_size'))}, {held}; "
        f"method: {f.get('method')}). "
        + ("The dictionary is the one given with --dictionary." if cfg.dictionary else
           f"The dictionary is a 1x TopK trained on only {cfg.dictionary_tokens:,} tokens of "
           "TruthfulQA text (from questions outside the answered subset), so expect a weak, "
           "noisy feature."),
        *([QUICK_JUDGE_NOTE] if meta.get("judge_name") == "quick" else []),
        "No human labels exist for this run yet: nothing here is corrected by people. Open "
        f"{meta.get('spotcheck_page', 'the spot-check page')} to label the drawn sample, import "
        "it with `truthsteer spotcheck import`, and rerun the report.",
    ]
