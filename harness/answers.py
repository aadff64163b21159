"""Answer rows: the one row format (a sweep cell's rows, ``truthsteer generate``'s cell) and
the resumable one-cell run folder ``truthsteer generate`` writes (the run format of
:class:`evals.rundir.RunDir`, so ``judge``, ``report``, ``spotcheck`` and ``export`` read it as
they read a sweep's).

A row holds question_id, question, model, hook, direction, magnitude, positions, scale,
prompt_style, prompt_token_ids, answer_token_ids, answer, plus what the caller labels it with
(cell_id and kind; a sweep adds fold).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.rundir import RunDir
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


def answer_to_run(run: RunDir, cell_id: str, model, questions: Sequence[Any],
                  gen: GenerationConfig, interventions, labels: dict[str, Any],
                  info: dict[str, Any], description: dict[str, Any],
                  progress: bool = True) -> int:
    """Answer ``questions`` into the one cell ``cell_id`` of ``run``, resumably: rows go to the
    cell's partial file as each chunk finishes (``info`` in run.json, written first); a rerun
    with the same ``info["identity"]`` keeps them (a last line cut off mid-write is dropped)
    and the cell appears, atomically, when all are done. Returns the number of rows."""
    from evals.io import progress as progress_bar
    from evals.rundir import read_jsonl

    old = run.info()
    if old and old.get("identity") != info["identity"]:
        raise ConfigError(f"--out {run.path}: holds a run made with other settings; delete it "
                          "or choose another --out")
    if not old and run.path.exists() and any(run.path.iterdir()):
        raise ConfigError(f"--out {run.path}: exists and is not a run folder; choose another")
    partial = run.partial_cell_path(cell_id)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if not old:
        run.write_info(info)
    done: dict[int, dict] = {}
    if partial.exists():
        _drop_torn_line(partial)
        done = {r["question_id"]: r for r in read_jsonl(partial)}
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
    rows = [done[q.id] for q in questions]
    run.write_cell(cell_id, rows, {**description, "n_answers": len(rows)})
    partial.unlink()
    return len(rows)


def _drop_torn_line(path: Path) -> None:
    """Cut a last line left unfinished by an interrupted write."""
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        path.write_text(text[:text.rfind("\n") + 1], encoding="utf-8")


def generated_cell_id(spec: str | None, hook_label: str, magnitude: float) -> str:
    """The cell id of a ``truthsteer generate`` run: ``baseline`` when nothing is added, else
    ``<direction>__<hook>__m<magnitude>`` (as a sweep names cells), made file-name safe."""
    from evals.rundir import judge_slug
    from harness.sweep.grid import cell_id

    if not spec or magnitude == 0:
        return "baseline"
    return judge_slug(cell_id(spec, hook_label, magnitude))[:150]


def generate_run(out: Path, model_cfg, truthfulqa: str | None, n_questions: int | None,
                 gen: GenerationConfig, steering: Sequence[Any], spec: str | None,
                 magnitude: float = 0.0, positions: str = "all", scale: str = "raw",
                 progress: bool = True) -> tuple[int, str]:
    """``truthsteer generate``: answer the first ``n_questions`` TruthfulQA questions (None: all)
    with ``spec`` added at each hook (and head) of ``steering`` (InterventionConfigs), at
    ``magnitude`` on ``positions`` in ``scale`` units, into the one-cell run folder ``out``
    resumably (see :func:`answer_to_run`). Returns (rows, cell id)."""
    from evals.rundir import code_version
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
    settings = {"model_name": model_cfg.name, "generation": to_dict(gen),
                "interventions": [to_dict(c) for c in steering], "n_questions": n}
    hook_label = ",".join(c.hook + (f"[{c.head}]" if c.head is not None else "")
                          for c in steering) or "none"
    cell = generated_cell_id(spec, hook_label, magnitude)
    kind = "spec" if spec else "none"
    labels = {"cell_id": cell, "model": model_cfg.name, "hook": hook_label,
              "direction": spec or "none", "kind": kind, "magnitude": magnitude,
              "positions": positions, "scale": scale}
    info = {"identity": {"generate": settings, "model": model.fingerprint(),
                         "data_sha256": tqa.sha256},
            "generate": settings, "model": model.fingerprint(),
            "data": {"origin": tqa.origin, "sha256": tqa.sha256, "n_questions": len(tqa)},
            "code": code_version(), "prompt_style": style, "cells": [cell],
            "stds": [d.std for d in directions]}
    description = {k: v for k, v in labels.items() if k != "model"} | {
        "source": {"spec": spec} if spec else {}, "metrics": {},
        "n_interventions": {"0": len(interventions)},
        "coefficients": {"0": [float(iv.magnitude) for iv in interventions][:64]},
        "code": info["code"]}
    n_rows = answer_to_run(RunDir(out), cell, model, questions, gen, interventions, labels,
                           info, description, progress)
    return n_rows, cell
