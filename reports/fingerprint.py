"""A run's fingerprint: what identifies it (model, data, config, judge and its measured
agreement with people, code version, contents). Pure: computed from a RunData."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reports.tables import KINDS


def config_digest(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


def agreement_summary(judge_info: Mapping[str, Any]) -> str:
    """One line on a judge's measured agreement with people (held-out split preferred, and
    model-written answers, the ones that matter for steered answers)."""
    agreement_info = judge_info.get("agreement") or {}
    for split in ("heldout", "cv"):
        block = agreement_info.get(split)
        if not block:
            continue
        parts = []
        for kind in KINDS:
            rows = block.get(kind) or {}
            subset = "model_written" if "model_written" in rows else "all"
            a = rows.get(subset)
            if a:
                parts.append(f"{kind}: accuracy {a['accuracy']:.2f}, κ {a['kappa']:.2f} "
                             f"(n={a['n']}, {subset.replace('_', '-')} answers)")
        if parts:
            where = "held-out questions" if split == "heldout" else "cross-validation"
            return f"{'; '.join(parts)} — on {where} of TruthfulQA's human labels"
    return "not measured for this judge (spot-check its answers, or run `truthsteer calibrate`)"


def fingerprint(run) -> list[tuple[str, str]]:
    """(field, value) pairs identifying a run: model, data, config, judge, code, counts."""
    info = run.info or {}
    model = info.get("model") or {}
    data = info.get("data") or {}
    code = info.get("code") or {}
    config = info.get("config") or {}
    n_answers = sum(len(rows) for rows in run.answers.values())
    model_text = " · ".join(str(model[k]) for k in ("model", "source", "dtype") if k in model)
    if "n_params" in model:
        model_text += f" · {int(model['n_params']):,} params"
    gen, dat = config.get("generation") or {}, config.get("data") or {}
    directions = ", ".join(f"{d.get('name')} ({d.get('kind')})"
                           for d in config.get("directions") or [])
    questions = dat.get("questions")
    if isinstance(questions, list):
        shown = ", ".join(map(str, questions[:6])) + (", …" if len(questions) > 6 else "")
        questions = f"{len(questions)} ids ({shown})"
    cfg_text = (f"{config_digest(config)} — questions {questions}, folds "
                f"{dat.get('folds')}, max_new_tokens {gen.get('max_new_tokens')}, prompt "
                f"{info.get('prompt_style', gen.get('prompt_style'))}; directions: "
                f"{directions or 'none'}") if config else "unknown (no run.json)"
    judge = "none (run `truthsteer judge RUN_DIR`)" if run.judge_id is None else \
        f"{run.judge_id} (prompt {run.prompt_version})"
    if run.ignored_score_rows:
        judge += f"; {run.ignored_score_rows} score rows of other prompt versions ignored"
    commit = code.get("git_commit", "")
    return [
        ("run", str(run.path)),
        ("model", model_text or "unknown"),
        ("data", (f"sha256 {str(data.get('sha256', ''))[:12]} · {data.get('n_questions')} "
                  f"questions") if data else "unknown"),
        ("config", cfg_text),
        ("judge", judge),
        ("judge agreement", agreement_summary(run.judge_info) if run.judge_id else "–"),
        ("code", f"truthsteer {code.get('package', '?')}"
                 + (f" · git {commit[:10]}" if commit else "")),
        ("contents", f"{len(run.cells)} cells · {n_answers} answers · "
                     f"{len(run.scores)} judge scores · {len(run.labels)} human labels"),
    ]
