"""The stages of ``truthsteer quickstart`` that drive other components (harness/quickstart.py
runs them in order): the dictionary through ``truthsteer dict``, the feature choice through the
feature search, the sweep config, and judging through evals.judges / evals.scores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.quickstart.run import QuickstartConfig, corpus_text


def _cli(argv: list[str]) -> None:
    """Run a truthsteer sub-command in-process; a failure stops the quickstart."""
    from harness.cli import main

    if main(argv) != 0:
        raise ConfigError(f"quickstart: `truthsteer {' '.join(argv[:2])}` failed (see above)")


def train_dictionary(cfg: QuickstartConfig, tq, corpus_ids: list[int], out: Path) -> Path:
    """A 1x TopK dictionary at ``cfg.hook`` on TruthfulQA text, through ``truthsteer dict``;
    built in OUT/dictionary.partial and renamed when finished."""
    import shutil

    folder = out / "dictionary"
    found = sorted(p.parent for p in folder.glob("*/cfg.json"))
    if found:
        return found[0]
    tmp = out / "dictionary.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    corpus = tmp / "corpus.txt"
    corpus.write_text(corpus_text(tq, corpus_ids), encoding="utf-8")
    acts = tmp / "activations"
    _cli(["dict", "activations", "--model", cfg.model, "--corpus", str(corpus), "--hook",
          cfg.hook, "--tokens", str(cfg.dictionary_tokens), "--context-size", "64",
          "--device", cfg.device, "--out", str(acts)])
    _cli(["dict", "train", "--activations", str(acts), "--hook", cfg.hook, "--expansion", "1",
          "--architecture", "topk", "--k", "16", "--tokens", str(cfg.train_tokens),
          "--batch-size", "1024", "--eval-tokens", "2048", "--seed", str(cfg.seed),
          "--device", cfg.device, "--out", str(tmp)])
    shutil.rmtree(acts)  # ~50 MB; the corpus beside the dictionary says what it saw
    tmp.replace(folder)
    return min(p.parent for p in folder.glob("*/cfg.json"))


def choose_feature(model, dictionary: Path, questions, cfg: QuickstartConfig,
                   progress: bool) -> dict[str, Any]:
    """The feature whose activation best separates true from false answers: the feature
    search's effect-size ranking (confirmed on its held-out half when possible), or, where that
    module is absent, Cohen's d of the last-token activation over all the given questions."""
    from dictionaries.io import load_dictionary

    sae = load_dictionary(dictionary)
    hook = sae.cfg.hook_name or cfg.hook
    out = {"dictionary": str(dictionary.resolve()), "hook": hook,
           "question_ids": [q.id for q in questions]}
    try:
        from harness.directions.features import FeatureSearchConfig, search_features
    except ImportError:
        return out | _last_token_choice(model, sae, hook, questions, progress)
    result = search_features(model, sae, questions, FeatureSearchConfig(
        top=10, attribution=False, seed=cfg.seed), hook, progress=progress)
    rows = result["by_effect"]
    best = next((r for r in rows if r["confirmed"]), rows[0])
    return out | {"feature": best["feature"], "sign": 1 if best["d_search"] >= 0 else -1,
                  "effect_size": best["d_search"], "heldout_effect_size": best["d_heldout"],
                  "heldout_p": best["p_heldout"], "confirmed": best["confirmed"],
                  "method": "feature search: Cohen's d of the mean answer-token activation, "
                            "true vs false answers, re-tested on held-out questions"}


def _last_token_choice(model, sae, hook: str, questions, progress: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from harness.directions.contrast import collect_last_token, contrast_set

    contrast = contrast_set(questions, model.tokenizer)
    acts = collect_last_token(model, contrast.token_ids, [hook], progress=progress)[hook]
    with torch.no_grad():
        f = sae.encode(acts.reshape(len(acts), -1).to(sae.W_enc.device)).double().cpu().numpy()
    y = np.asarray(contrast.labels) == 1
    a, b = f[y], f[~y]
    pooled = np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / 2)
    d = np.divide(a.mean(0) - b.mean(0), pooled, out=np.zeros(f.shape[1]), where=pooled > 0)
    best = int(np.argmax(np.abs(d)))
    return {"feature": best, "sign": 1 if d[best] >= 0 else -1, "effect_size": float(d[best]),
            "heldout_effect_size": None, "heldout_p": None, "confirmed": False,
            "method": "Cohen's d of the last-token activation, true vs false answers "
                      "(no held-out check: the feature search module is absent)"}


def sweep_toml(cfg: QuickstartConfig, pool: list[int], feature: dict[str, Any]) -> str:
    """The sweep config of the quickstart (TOML; strings written as JSON strings)."""
    q = json.dumps
    mags = ", ".join(format(m, "g") for m in cfg.magnitudes)
    signed = ", ".join("0" if m == 0 else format(m * feature["sign"], "g")
                       for m in cfg.magnitudes)
    hooks = ", ".join(q(f"blocks.{layer}.hook_resid_post") for layer in cfg.layers)
    return f"""# Written by `truthsteer quickstart` (edit a copy and run `truthsteer sweep` for more).
[model]
name = {q(cfg.model)}
device = {q(cfg.device)}

[data]
questions = [{", ".join(map(str, pool))}]
folds = 2             # mean-diff directions for fold f are fitted on the other fold

[generation]
max_new_tokens = {cfg.max_new_tokens}
batch_size = 16
prompt_style = {q(cfg.prompt_style)}  # MC1/MC2 always use the QA primer

[metrics]
answers = true
mc = true
side_effects = true   # CE / KL on evals/reference_text.txt

[sweep]
magnitudes = [{mags}]  # in std units of each direction's projection; 0 = the baseline
positions = "all"

[[directions]]
name = "meandiff"
kind = "meandiff"
hooks = [{hooks}]

[[directions]]
name = "feature-{feature['feature']}"
kind = "spec"
spec = {q("feature:" + feature["dictionary"] + ":" + str(feature["feature"]))}
magnitudes = [{signed}]  # signed so that + favours the feature's true-answer side
"""


def judge_answers(run_dir: Path, spec: str, tq, cfg: QuickstartConfig, progress: bool
                  ) -> tuple[Any, int, int]:
    """Score every unscored answer of the run; returns (judge, answers judged now, answers)."""
    from evals.judges import JudgeItem, judge_incrementally
    from evals.runs import load_answers, scores_path
    from evals.scores import ScoreFile, ScoreWriter, load_scores, missing, score_row
    from harness.config import ModelConfig
    from harness.models import load_model

    loaded: dict[str, Any] = {}

    def model_loader(name: str):
        if name not in loaded:
            m = load_model(ModelConfig(name=name, device=cfg.device))
            loaded[name] = (m.hf_model, m.tokenizer)
        return loaded[name]

    judge = make_quickstart_judge(spec, model_loader, tq, cfg.human_labels, progress)
    answers = load_answers(run_dir)
    path = scores_path(run_dir, judge.judge_id)
    todo = missing(answers, load_scores(path, judge.prompt_version))
    by_id = {q.id: q for q in tq.by_id(sorted({int(r["question_id"]) for r in todo}))}
    items = [JudgeItem(by_id[int(r["question_id"])].question, r["answer"],
                       by_id[int(r["question_id"])].correct_answers,
                       by_id[int(r["question_id"])].incorrect_answers,
                       by_id[int(r["question_id"])].best_answer) for r in todo]
    with ScoreWriter(path) as writer:
        if items:
            judge_incrementally(judge, items, lambda i, res: writer.write(score_row(todo[i], res)),
                                progress=progress)
    ScoreFile(path).write_record(judge)  # its measured agreement travels with the scores
    return judge, len(items), len(answers)


def default_judge_built(tq, labels_dir: str | None) -> bool:
    """Whether the offline default judge is already in the cache."""
    from evals.errors import InputError
    from evals.judges.default import cached_judge_folder
    from evals.judges.recipe import CFG_FILE, DEFAULT_RECIPE

    try:
        folder, _ = cached_judge_folder("default", DEFAULT_RECIPE, tq, labels_dir)
    except (InputError, OSError):  # labels absent and not downloadable: it cannot be built
        return False
    return (folder / CFG_FILE).is_file()


QUICK_RECIPE = {"probe_model": None}  # MiniLM reference-similarity features only


def quick_judge(model_loader, tq, labels_dir: str | None, progress: bool):
    """The default judge's recipe without its LLM probe: trained on the same human labels in a
    minute or two instead of the probe's tens of minutes, and cached the same way."""
    from evals.judges.default import cached_judge_folder
    from evals.judges.learned import CFG_FILE, LearnedJudge, LearnedJudgeConfig
    from evals.judges.learned_train import train_learned_judge
    from evals.labels import read_labels

    recipe = LearnedJudgeConfig(**QUICK_RECIPE)
    folder, (truth, info) = cached_judge_folder("quickstart", recipe, tq, labels_dir)
    if not (folder / CFG_FILE).is_file():
        judge = train_learned_judge(read_labels(truth), read_labels(info), tq, recipe,
                                    model_loader, progress=progress, name="quickstart",
                                    sources=[str(truth), str(info)])
        judge.save(folder)
    return LearnedJudge.load(folder, model_loader)


def make_quickstart_judge(spec: str, model_loader, tq, labels_dir: str | None, progress: bool):
    """``auto``: the default judge when it is built, else the quick judge; ``quick``; ``default``
    (built on first use); or any judge spec evals.judges.make_judge knows."""
    from evals.judges import make_judge
    from evals.judges.default import load_or_build_default

    if spec == "auto":
        spec = "default" if default_judge_built(tq, labels_dir) else "quick"
    if spec == "quick":
        return quick_judge(model_loader, tq, labels_dir, progress)
    if spec == "default":
        return load_or_build_default(model_loader=model_loader, truthfulqa=tq,
                                     labels_dir=labels_dir, progress=progress)
    return make_judge(spec, model_loader=model_loader, truthfulqa=tq)
