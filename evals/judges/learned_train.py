"""Training a learned judge from TruthfulQA-format human labels (``truthsteer judge-train``).

Rows are matched to TruthfulQA questions by exact text (unmatched rows are counted and left
out: they have no references). Features are computed once per distinct (question, answer);
every choice (regularisation of each block, the combiner) is made by question-grouped
cross-validation, and the out-of-fold predictions give the agreement stored with the judge.
With ``holdout_frac`` > 0 a fraction of the questions is held out entirely (never seen by any
fit) and the judge's agreement on them is stored too.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evals.errors import InputError
from evals.judges.base import KINDS
from evals.judges.domain import fit_boxes
from evals.judges.featurizer import Answer, Featurizer
from evals.judges.learned import REF_POLY, LearnedJudge, block_inputs, predict
from evals.judges.learned_fit import (
    PolyExpansion,
    agreement_report,
    fit_block,
    fit_combiner,
    group_folds,
    sigmoid,
)
from evals.judges.recipe import LearnedJudgeConfig
from evals.labels import LabelRow, is_reference_answer, match_questions, question_key
from evals.truthfulqa import TruthfulQA


def heldout_questions(question_ids: Sequence[int], holdout_frac: float, seed: int) -> set[int]:
    """The questions a judge is not trained on: a seeded random ``holdout_frac`` of the distinct
    question ids (``judge-train --holdout-frac``)."""
    if not 0 <= holdout_frac < 1:
        raise InputError(f"--holdout-frac {holdout_frac}: must be in [0, 1)")
    uniq = sorted(set(question_ids))
    rng = np.random.default_rng(seed)
    n = round(holdout_frac * len(uniq))
    return {int(q) for q in rng.choice(uniq, size=n, replace=False)} if n else set()


def _file_info(path: str) -> dict[str, str]:
    p = Path(path)
    return {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}


def train_learned_judge(truth_rows: Sequence[LabelRow], info_rows: Sequence[LabelRow],
                        tq: TruthfulQA, cfg: LearnedJudgeConfig,
                        model_loader: Callable | None = None, progress: bool = True,
                        name: str = "learned", sources: Sequence[str] = (),
                        holdout_frac: float = 0.0,
                        feature_cache: str | os.PathLike | None = "auto",
                        steered: tuple[Sequence[LabelRow], Sequence[LabelRow]] | None = None,
                        longform: tuple[Sequence[LabelRow], Sequence[LabelRow]] | None = None
                        ) -> LearnedJudge:
    """Fit a judge on the labels; its ``info`` holds counts, choices and measured agreement.

    ``steered``: (truth rows, info rows) of the steered development set's TRAIN split
    (:func:`evals.judges.steered.read_steered_train`), trained on beside the human labels with
    sample weight ``cfg.steered_weight``; rows on held-out questions are left out (counted).
    Their out-of-fold agreement is reported as the subset "steered"; "all", "model_written"
    and "reference" stay TruthfulQA's rows only. ``longform``: the same for the long-form
    development set's TRAIN split (evals/longform_dev/), weight ``cfg.longform_weight``, subset
    "longform".
    """
    from evals.io import progress as progress_bar

    n_human = {"truthful": len(truth_rows), "informative": len(info_rows)}
    rows = {"truthful": list(truth_rows), "informative": list(info_rows)}
    for kind, kind_rows in rows.items():
        wrong = [r for r in kind_rows if r.kind != kind]
        if wrong:
            raise InputError(f"line {wrong[0].line}: a {wrong[0].kind} label where {kind} labels "
                             "were expected (check --human-truth / --human-info)")
    n_steered = {k: 0 for k in KINDS}
    for what, dev in (("steered", steered), ("long-form", longform)):
        for kind, extra in zip(KINDS, dev or ()):
            if any(r.kind != kind for r in extra):
                raise InputError(f"{what} labels: a row of the wrong kind among the {kind} "
                                 "rows (give TRUTH_FILE INFO_FILE)")
            rows[kind] += list(extra)
            if what == "steered":
                n_steered[kind] = len(extra)

    def source_of(kind: str, j: int) -> int:
        """Row j's source: 0 TruthfulQA's human labels, 1 steered TRAIN, 2 long-form TRAIN."""
        return 0 if j < n_human[kind] else 1 if j < n_human[kind] + n_steered[kind] else 2
    questions = {k: match_questions(v, tq) for k, v in rows.items()}
    pair_index: dict[tuple[int, str], int] = {}
    for kind in KINDS:
        for r, q in zip(rows[kind], questions[kind]):
            if q is not None:
                pair_index.setdefault((q.id, r.answer), len(pair_index))
    if not pair_index:
        raise InputError("no label row's question matches a TruthfulQA question (check the "
                         "label files and --truthfulqa)")
    pairs = list(pair_index)
    human_q = [q.id for k in KINDS for q in questions[k][:n_human[k]] if q is not None]
    held = heldout_questions(human_q, holdout_frac, cfg.seed)
    steered_pairs = {pair_index[(q.id, r.answer)] for k in KINDS
                     for r, q in zip(rows[k][n_human[k]:], questions[k][n_human[k]:])
                     if q is not None and q.id not in held}
    human_pairs = [i for i, (q, _) in enumerate(pairs) if q not in held and i not in steered_pairs]
    if cfg.max_train_answers is not None and len(human_pairs) > cfg.max_train_answers:
        rng = np.random.default_rng(cfg.seed)
        human_pairs = sorted(rng.choice(human_pairs, cfg.max_train_answers, replace=False).tolist())
    train_pairs = sorted(set(human_pairs) | steered_pairs)
    keep = sorted(set(train_pairs) | {i for i, (q, _) in enumerate(pairs) if q in held})
    position = {pair: j for j, pair in enumerate(keep)}
    train_set = set(train_pairs)

    started = time.perf_counter()
    answers = []
    for i in keep:
        q = tq.questions[pairs[i][0]]
        answers.append(Answer(q.question, pairs[i][1], q.correct_answers, q.incorrect_answers,
                              q.best_answer))
    featurizer = Featurizer(cfg, model_loader, feature_cache)
    feats = featurizer(answers, progress=progress, desc="training the learned judge")
    feature_s = time.perf_counter() - started

    started = time.perf_counter()
    models: dict[str, Any] = {}
    info_kinds, cv_report, held_report = {}, {}, {}
    if cfg.ref_degree == 2:
        train_rows = [position[i] for i in train_pairs]
        models[REF_POLY] = PolyExpansion.fit(feats["ref"][train_rows])
    n_fits = len(KINDS) * sum(cfg.folds * len(cfg.c_grid if b == "probe" else cfg.ref_c_grid) + 1
                              for b in cfg.blocks)
    with progress_bar(total=n_fits, desc="fitting (grouped CV)", unit="fit",
                      disable=not progress) as bar:
        for kind in KINDS:
            sel = {"train": [], "held": []}
            n_steered_held = 0
            for j, (r, q) in enumerate(zip(rows[kind], questions[kind])):
                if q is None:
                    continue
                i = pair_index[(q.id, r.answer)]
                source = source_of(kind, j)
                row = (position.get(i, -1), r.label, q.id, is_reference_answer(r.answer, q),
                       source)
                if q.id in held:
                    if source:
                        n_steered_held += 1
                    else:
                        sel["held"].append(row)
                elif i in train_set:
                    sel["train"].append(row)
            idx, y, groups, is_ref, source = (np.array(c) for c in zip(*sel["train"]))
            y, is_ref = y.astype(int), is_ref.astype(bool)
            is_st, is_lf = source == 1, source == 2
            weight = np.select([is_st, is_lf], [cfg.steered_weight, cfg.longform_weight], 1.0) \
                if source.any() else None
            folds = group_folds(groups, cfg.folds, cfg.seed)
            fits = {}
            for block in cfg.blocks:
                grid = cfg.c_grid if block == "probe" else cfg.ref_c_grid
                x = block_inputs(models, {block: feats[block][idx]}, block)
                fits[block] = fit_block(x, y, folds, grid, weight, tick=bar.update)
                models[f"{kind}.{block}"] = fits[block].model
            oof = np.stack([fits[b].oof_logit for b in cfg.blocks], axis=1)
            models[f"{kind}.combiner"], cv_logit = fit_combiner(oof, y, folds, weight)
            cv_report[kind] = agreement_report(sigmoid(cv_logit), y, is_ref, is_st, is_lf)
            info_kinds[kind] = {
                "n_train_rows": len(y), "n_train_questions": len(set(groups)),
                "n_steered_rows": int(is_st.sum()), "n_longform_rows": int(is_lf.sum()),
                "n_steered_rows_held_out": n_steered_held,  # dev rows (steered, long-form)
                "n_reference_rows": int(is_ref.sum()), "positive_rate": float(y.mean()),
                "chosen_c": {b: fits[b].c for b in cfg.blocks},
                "cv_log_loss": {b: {str(c): v for c, v in fits[b].cv_log_loss.items()}
                                for b in cfg.blocks}}
            if sel["held"]:
                h_idx, h_y, _, h_ref, _ = (np.array(c) for c in zip(*sel["held"]))
                sub = {b: feats[b][h_idx] for b in cfg.blocks}
                p = predict(models, sub, kind, cfg.blocks)
                held_report[kind] = agreement_report(p, h_y.astype(int), h_ref.astype(bool))
                info_kinds[kind]["n_heldout_rows"] = len(h_y)
    fit_s = time.perf_counter() - started

    validated: dict[str, list[str]] = {"truthfulqa": [], "steered": [], "longform": []}
    for j, r in enumerate(rows["truthful"]):  # the texts its agreement was measured on
        q = questions["truthful"][j]
        if q is None or pair_index[(q.id, r.answer)] not in train_set:
            continue
        source = source_of("truthful", j)
        if source or not is_reference_answer(r.answer, q):
            validated[("truthfulqa", "steered", "longform")[source]].append(r.answer)
    agreement: dict[str, Any] = {"cv": cv_report}
    if held_report:
        agreement["heldout"] = held_report
    train_q = sorted({pairs[i][0] for i in train_pairs})
    info = {
        "name": name,
        "sources": [_file_info(s) for s in sources],
        "truthfulqa": {"origin": tq.origin, "sha256": tq.sha256},
        "n_label_rows": n_human,
        "n_steered_label_rows": {k: len(v) - n_human[k] for k, v in rows.items()},
        "steered_weight": cfg.steered_weight if steered else None,
        "n_unmatched_rows": {k: sum(q is None for q in questions[k]) for k in KINDS},
        "n_distinct_answers": len(pairs), "n_train_answers": len(train_pairs),
        "holdout_frac": holdout_frac,
        "kinds": info_kinds, "agreement": agreement,
        "reference_rows": "a row whose answer equals one of its question's reference answers "
                          "(normalised) is a reference row; all others are model-written",
        "train_question_keys": [question_key(tq.questions[q].question) for q in train_q],
        "heldout_question_keys": sorted(question_key(tq.questions[q].question) for q in held),
        "seconds": {"features": round(feature_s, 1), "fit": round(fit_s, 1)},
        "validated_on": fit_boxes(validated),
    }
    judge = LearnedJudge(cfg, models, info, model_loader, name=name, feature_cache=feature_cache)
    judge.featurize = featurizer  # reuse the models already loaded
    return judge
