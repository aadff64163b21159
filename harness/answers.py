"""Answer rows: the one row format (a sweep cell's rows, ``truthsteer generate``'s file) and
the resumable answer file ``truthsteer generate`` writes.

A row holds question_id, question, model, hook, direction, magnitude, positions, scale,
prompt_style, prompt_token_ids, answer_token_ids, answer, plus what the caller labels it with
(a sweep adds cell_id, kind and fold).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.config import ConfigError, GenerationConfig


def answer_rows(model, questions: Sequence[Any], gen: GenerationConfig, interventions,
                labels: dict[str, Any], progress: bool = False) -> list[dict[str, Any]]:
    """Generate an answer to each question under ``interventions``; one row per question with
    ``labels`` (model, hook, direction, magnitude, ...) in the one row format."""
    from harness.generation import generate_answers

    answers = generate_answers(model, [q.question for q in questions], gen, interventions,
                               progress=progress)
    return [_row(q, a, labels) for q, a in zip(questions, answers)]


def packed_answer_rows(model, jobs: Sequence[tuple[Sequence[Any], Any, dict[str, Any]]],
                       gen: GenerationConfig, progress: bool = False,
                       desc: str = "generating") -> list[list[dict]]:
    """``answer_rows`` for several (questions, interventions, labels) jobs at once: their
    questions share batches (per-row steering); one row list per job, as ``answer_rows``."""
    from harness.generation import generate_answers

    flat = [q for qs, _, _ in jobs for q in qs]
    group_of = [j for j, (qs, _, _) in enumerate(jobs) for _ in qs]
    answers = generate_answers(model, [q.question for q in flat], gen, progress=progress,
                               desc=desc, groups=[list(ivs) for _, ivs, _ in jobs],
                               group_of=group_of)
    out: list[list[dict]] = [[] for _ in jobs]
    for j, q, a in zip(group_of, flat, answers):
        out[j].append(_row(q, a, jobs[j][2]))
    return out


def _row(q, a: dict[str, Any], labels: dict[str, Any]) -> dict[str, Any]:
    return {"question_id": q.id, "question": q.question, **labels,
            "prompt_style": a["prompt_style"], "prompt_token_ids": a["prompt_token_ids"],
            "answer_token_ids": a["answer_token_ids"], "answer": a["answer"]}


def answer_to_file(out: Path, model, questions: Sequence[Any], gen: GenerationConfig,
                   interventions, labels: dict[str, Any], settings: dict[str, Any],
                   progress: bool = True) -> int:
    """Answer ``questions`` into ``out`` (.jsonl), resumably: rows go to OUT.partial as each
    chunk finishes (settings in OUT.cfg.json); a rerun with the same settings keeps them (a
    last line cut off mid-write is dropped) and OUT appears, atomically, when all are done.
    Returns the number of rows written."""
    from evals.io import atomic_write_json, atomic_write_jsonl
    from evals.io import progress as progress_bar
    from evals.rundir import read_jsonl

    partial, cfg_path = out.with_suffix(".jsonl.partial"), out.with_suffix(".cfg.json")
    done: dict[int, dict] = {}
    if partial.exists():
        old = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
        if old != settings:
            raise ConfigError(f"--out {out}: an unfinished run with other settings is there "
                              f"({partial}); delete it or choose another --out")
        _drop_torn_line(partial)
        done = {r["question_id"]: r for r in read_jsonl(partial)}
    atomic_write_json(cfg_path, settings)
    todo = [q for q in questions if q.id not in done]
    chunk = max(gen.batch_size * 4, 32)
    with open(partial, "a", encoding="utf-8") as fh, \
            progress_bar(total=len(questions), initial=len(done), desc="answering", unit="q",
                         disable=not progress) as bar:
        for start in range(0, len(todo), chunk):
            rows = answer_rows(model, todo[start:start + chunk], gen, interventions, labels)
            for row in rows:
                done[row["question_id"]] = row
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            bar.update(len(rows))
    atomic_write_jsonl(out, [done[q.id] for q in questions])
    partial.unlink()
    return len(questions)


def _drop_torn_line(path: Path) -> None:
    """Cut a last line left unfinished by an interrupted write."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        path.write_text(text[:text.rfind("\n") + 1], encoding="utf-8")


def generate_file(out: Path, model_cfg, truthfulqa: str | None, n_questions: int | None,
                  gen: GenerationConfig, steering: Sequence[Any], spec: str | None,
                  magnitude: float = 0.0, positions: str = "all", scale: str = "raw",
                  progress: bool = True) -> int:
    """``truthsteer generate``: answer the first ``n_questions`` TruthfulQA questions (None: all)
    with ``spec`` added at each hook (and head) of ``steering`` (InterventionConfigs), at
    ``magnitude`` on ``positions`` in ``scale`` units, into ``out`` resumably (see
    :func:`answer_to_file`)."""
    from evals.truthfulqa import load_truthfulqa
    from harness.config import to_dict
    from harness.directions import projection_std, resolve_direction, to_interventions
    from harness.directions.spec import parse_spec
    from harness.loaders import load
    from harness.prompts import prompt_token_ids, resolve_style
    from harness.steering import validate

    parsed = parse_spec(spec) if spec else None
    tqa = load_truthfulqa(truthfulqa)
    n = n_questions if n_questions is not None else len(tqa)
    if not 1 <= n <= len(tqa):
        raise ConfigError(f"--questions {n}: must be between 1 and {len(tqa)}")
    questions = tqa.by_id(list(range(n)))
    model = load(model_cfg.name, model_cfg.device, model_cfg.dtype)
    style = resolve_style(gen.prompt_style, model.tokenizer)
    directions = [d for ivc in steering
                  for d in resolve_direction(parsed, model, ivc.hook, ivc.head)]
    if scale == "std":
        prompts = [prompt_token_ids(q.question, style, model.tokenizer) for q in questions[:64]]
        directions = [type(d)(d.hook, d.vector, d.head, projection_std(model, d, prompts),
                              d.label) for d in directions]
    interventions = to_interventions(directions, magnitude, positions, scale)
    validate(model, interventions)
    settings = {"model": model.fingerprint(), "truthfulqa": {"origin": tqa.origin,
                "sha256": tqa.sha256}, "generation": to_dict(gen), "prompt_style": style,
                "interventions": [to_dict(c) for c in steering],
                "stds": [d.std for d in directions]}
    hook_label = ",".join(c.hook + (f"[{c.head}]" if c.head is not None else "")
                          for c in steering) or "none"
    labels = {"model": model_cfg.name, "hook": hook_label, "direction": spec or "none",
              "magnitude": magnitude, "positions": positions, "scale": scale}
    return answer_to_file(out, model, questions, gen, interventions, labels, settings, progress)
