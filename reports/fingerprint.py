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


STEERED_SET = "evals/steered_dev/"
MEASURE_STEERED = ("truthsteer calibrate --judge JUDGE --human "
                   "evals/steered_dev/steered_truth.jsonl evals/steered_dev/steered_info.jsonl "
                   "--split test --out steered_scores.jsonl")
LABELLED_BY = "labelled by AI assistant readers in two blind passes, adjudicated by the maintainers"
# Where a judge's record may keep its agreement on a development set ("steered", "longform"),
# most trusted first: (section of the record's "agreement", how the report names it)
_DEV_WHERE = (("{dev}_test", "the held-out test split"),
              ("{dev}", "the whole set"),
              ("heldout", "held-out questions"),
              ("cv", "cross-validation on its train split"))


def _stats(block: Any) -> Mapping[str, Any] | None:
    """Agreement stats (a mapping with kappa and n), or a {subset: stats} mapping's "all"."""
    if not isinstance(block, Mapping):
        return None
    if "kappa" in block and "n" in block:
        return block
    return _stats(block.get("all"))


def steered_agreement(judge_info: Mapping[str, Any]
                      ) -> tuple[str, dict[str, Mapping[str, Any]]] | None:
    """(where it was measured, {kind: stats}) of the judge's agreement on the steered
    development set's labels, as its record stores it: a section ``steered_test`` / ``steered``
    of ``agreement`` ({kind: stats} or {kind: {subset: stats}}), or the subset ``steered`` of
    the ``heldout`` / ``cv`` sections. None when the judge was not measured on steered text."""
    return dev_agreement(judge_info, "steered")


def longform_agreement(judge_info: Mapping[str, Any]
                       ) -> tuple[str, dict[str, Mapping[str, Any]]] | None:
    """As :func:`steered_agreement`, on the long-form development set (chat-model answers)."""
    return dev_agreement(judge_info, "longform")


def dev_agreement(judge_info: Mapping[str, Any], dev: str
                  ) -> tuple[str, dict[str, Mapping[str, Any]]] | None:
    agreement_info = judge_info.get("agreement") or {}
    for section_of, where in _DEV_WHERE:
        section = section_of.format(dev=dev)
        block = agreement_info.get(section)
        if not isinstance(block, Mapping):
            continue
        found = {}
        for kind in KINDS:
            rows = block.get(kind)
            stats = _stats(rows.get(dev)) if section in ("heldout", "cv") and \
                isinstance(rows, Mapping) else _stats(rows)
            if stats is not None:
                found[kind] = stats
        if found:
            return where, found
    return None


def steered_summary(judge_info: Mapping[str, Any]) -> str:
    """One line on the judge's agreement on steered answers, or that it was not measured."""
    found = steered_agreement(judge_info)
    if found is None:
        return ("NOT measured on steered text: its verdicts on steered answers (evasions, "
                "self-talk, repetition) are unchecked; measure it with `" + MEASURE_STEERED + "`")
    where, stats = found
    parts = [f"{kind}: accuracy {a['accuracy']:.2f}, κ {a['kappa']:.2f} (n={a['n']})"
             for kind, a in stats.items() if "accuracy" in a]
    parts = parts or [f"{kind}: κ {a['kappa']:.2f} (n={a['n']})" for kind, a in stats.items()]
    return (f"{'; '.join(parts)} — on steered answers of the embedded model ({STEERED_SET}, "
            f"{LABELLED_BY}; {where})")


def longform_summary(judge_info: Mapping[str, Any]) -> str:
    """One line on the judge's agreement on long-form chat answers, or that it was not measured."""
    found = longform_agreement(judge_info)
    if found is None:
        return ("NOT measured on long-form chat answers (several sentences, lists, caveats): "
                "on such answers its verdicts are unchecked")
    where, stats = found
    parts = [f"{kind}: κ {a['kappa']:.2f}"
             + (f", judge − labels {a['bias']:+.2f}" if "bias" in a else "") + f" (n={a['n']})"
             for kind, a in stats.items()]
    return (f"{'; '.join(parts)} — on long-form chat-style answers (evals/longform_dev/, written "
            f"and {LABELLED_BY}; {where})")


def agreement_summary(judge_info: Mapping[str, Any]) -> str:
    """A judge's measured agreement with people: on TruthfulQA's human labels (held-out split
    preferred, and model-written answers), then on steered answers (or that it was not
    measured there)."""
    return (f"{tqa_agreement_summary(judge_info)}. Steered: {steered_summary(judge_info)}. "
            f"Long-form: {longform_summary(judge_info)}")


def tqa_agreement(judge_info: Mapping[str, Any]
                  ) -> tuple[str, dict[str, tuple[str, Mapping[str, Any]]]] | None:
    """(where, {kind: (subset, stats)}) of a judge's measured agreement on TruthfulQA's human
    labels: the held-out split preferred over cross-validation, the model-written answers
    (the ones closest to steered answers) over all. None when not measured."""
    agreement_info = judge_info.get("agreement") or {}
    for split in ("heldout", "cv"):
        block = agreement_info.get(split)
        if not isinstance(block, Mapping) or not block:
            continue
        found = {}
        for kind in KINDS:
            rows = block.get(kind) or {}
            subset = "model_written" if "model_written" in rows else "all"
            a = rows.get(subset)
            if a:
                found[kind] = (subset, a)
        if found:
            return ("held-out questions" if split == "heldout" else "cross-validation"), found
    return None


def tqa_agreement_summary(judge_info: Mapping[str, Any]) -> str:
    """One line on a judge's measured agreement on TruthfulQA's human labels (held-out split
    preferred, and model-written answers, the ones closest to steered answers)."""
    found = tqa_agreement(judge_info)
    if found is None:
        return ("not measured on TruthfulQA's human labels for this judge (spot-check its "
                "answers, or run `truthsteer calibrate`)")
    where, stats = found
    parts = [f"{kind}: accuracy {a['accuracy']:.2f}, κ {a['kappa']:.2f} "
             f"(n={a['n']}, {subset.replace('_', '-')} answers)"
             for kind, (subset, a) in stats.items()]
    return f"{'; '.join(parts)} — on {where} of TruthfulQA's human labels"


def generate_text(info: Mapping[str, Any]) -> str:
    """The config line of a `truthsteer generate` run (run.json ``generate``)."""
    gen = info.get("generate")
    if not isinstance(gen, Mapping):
        return "unknown (no run.json)"
    ivs = ", ".join(f"{i.get('direction')} at {i.get('hook')} × {i.get('magnitude')}"
                    for i in gen.get("interventions") or []) or "none (unsteered)"
    return (f"truthsteer generate: {gen.get('n_questions')} questions, max_new_tokens "
            f"{(gen.get('generation') or {}).get('max_new_tokens')}, prompt "
            f"{info.get('prompt_style')}; steering: {ivs}")


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
                f"{directions or 'none'}") if config else generate_text(info)
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
        ("judge agreement", tqa_agreement_summary(run.judge_info) if run.judge_id else "–"),
        ("judge agreement on steered answers",
         steered_summary(run.judge_info) if run.judge_id else "–"),
        ("judge agreement on long-form answers",
         longform_summary(run.judge_info) if run.judge_id else "–"),
        ("code", f"truthsteer {code.get('package', '?')}"
                 + (f" · git {commit[:10]}" if commit else "")),
        ("contents", f"{len(run.cells)} cells · {n_answers} answers · "
                     f"{len(run.scores)} judge scores · {len(run.labels)} human labels"),
    ]
