import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from evals.errors import InputError
from evals.judges.base import JudgeItem
from evals.judges.claims import CLAIM_FEATURE_NAMES
from evals.judges.features import PROBE_SUFFIX, REF_FEATURE_NAMES, ProbePrompt, probe_features
from evals.judges.featurizer import Featurizer
from evals.judges.learned import LearnedJudge, LearnedJudgeConfig
from evals.judges.learned_fit import LinearModel, PolyExpansion, fit_block, group_folds
from evals.judges.learned_train import heldout_questions, train_learned_judge
from evals.labels import question_key, read_labels
from evals.scores import ScoreFile
from evals.truthfulqa import load_csv
from reports.fingerprint import agreement_summary
from reports.load import judge_info
from tests.helpers import SHARED_TRUTHFULQA, tiny_llama, truthfulqa_csv


def small_label_folder(root, n_questions=12):
    """The shared dev labels of the first ``n_questions`` questions (sorted), both kinds."""
    out = root / "labels"
    out.mkdir(exist_ok=True)
    keep = None
    for name in ("human_truth_dev.jsonl", "human_info_dev.jsonl"):
        src = SHARED_TRUTHFULQA / name
        if not src.exists():
            pytest.skip(f"shared human labels not found at {src}")
        lines = src.read_text().splitlines()
        if keep is None:
            keep = set(sorted({json.loads(x)["prompt"].split("\n")[0] for x in lines})[
                :n_questions])
        (out / name).write_text("\n".join(
            x for x in lines if json.loads(x)["prompt"].split("\n")[0] in keep) + "\n")
    return out


@pytest.mark.slow
def test_probe_features__prefix_cache_and_padding_match_full_forward():
    m = tiny_llama(n_layers=4)  # the last layer's HF hidden state is after the final norm
    prompt = ProbePrompt()
    prefixes = [prompt.prefix("Why is the sky blue?", ["Rayleigh"], ["It reflects the sea"]),
                prompt.prefix("Q2?", [], [])]
    long = ("Because sunlight is scattered by molecules more at short wavelengths, which is "
            "why it looks blue to us.")
    rows = [(0, "Scattering."), (1, "Nothing"), (0, ""), (0, long), (1, "Yes.")]
    feats = probe_features(m.hf_model, m.tokenizer, [prefixes[p] for p, _ in rows],
                           [a for _, a in rows], layers=[0, 2], batch_size=2)
    assert feats.shape == (5, 2 * 64)
    tok = m.tokenizer
    for i, (p, a) in enumerate(rows):
        ids = (tok(prefixes[p])["input_ids"] + tok(" " + a, add_special_tokens=False)["input_ids"]
               + tok(PROBE_SUFFIX, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            hs = m.hf_model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        expected = torch.cat([hs[1][0, -1], hs[3][0, -1]]).numpy()
        np.testing.assert_allclose(feats[i], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="out of range"):
        probe_features(m.hf_model, tok, prefixes[:1], ["a"], layers=[4])


def test_fit_block__recovers_planted_signal_with_grouped_folds():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    folds = group_folds(groups, 4)
    assert all(len(set(groups[f]) & set(groups[g])) == 0 for f in folds for g in folds
               if f is not g)
    fit = fit_block(x, y, folds, (0.01, 1.0))
    assert np.argmax(np.abs(fit.model.coef)) == 0
    assert ((fit.oof_logit > 0) == y).mean() > 0.85
    arrays = fit.model.to_arrays("m")
    again = LinearModel.from_arrays(arrays, "m")
    np.testing.assert_allclose(again.logit(x), fit.model.logit(x), rtol=1e-4, atol=1e-4)


def test_poly_expansion__lets_a_linear_model_learn_an_interaction():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)  # XOR: no linear signal at all
    folds = group_folds(np.arange(600), 3)
    linear = fit_block(x, y, folds, (1.0,))
    poly = PolyExpansion.fit(x)
    expanded = fit_block(poly(x), y, folds, (1.0,))
    assert poly(x).shape == (600, 3 + 6)
    assert ((linear.oof_logit > 0) == y).mean() < 0.6
    assert ((expanded.oof_logit > 0) == y).mean() > 0.85
    again = PolyExpansion.from_arrays(poly.to_arrays("p"), "p")
    np.testing.assert_allclose(again(x), poly(x), rtol=1e-5, atol=1e-5)


def test_heldout_questions__seeded_fraction():
    held = heldout_questions(list(range(100)) * 3, 0.2, seed=1)
    assert len(held) == 20 and held == heldout_questions(list(range(100)), 0.2, seed=1)
    assert heldout_questions(list(range(10)), 0.0, 0) == set()
    with pytest.raises(InputError):
        heldout_questions([1, 2], 1.0, 0)


def test_config__validation():
    with pytest.raises(InputError, match="folds"):
        LearnedJudgeConfig(folds=1)
    with pytest.raises(InputError, match="probe_layers"):
        LearnedJudgeConfig(probe_layers=())
    assert LearnedJudgeConfig(probe_model=None, nonanswer_block=False,
                              longform_block=False).blocks == ("ref",)
    assert LearnedJudgeConfig().blocks == ("ref", "probe", "nonanswer", "longform")
    with pytest.raises(InputError, match="longform_weight"):
        LearnedJudgeConfig(longform_weight=0)


@pytest.mark.slow
def test_learned_judge__trains_on_human_labels_saves_safetensors_and_reloads(tmp_path):
    tq = load_csv(truthfulqa_csv())
    folder = small_label_folder(tmp_path, n_questions=16)
    truth = read_labels(folder / "human_truth_dev.jsonl")
    info = read_labels(folder / "human_info_dev.jsonl")
    m = tiny_llama(n_layers=2)
    loader = lambda name: (m.hf_model, m.tokenizer)
    cfg = LearnedJudgeConfig(probe_model="tiny", probe_layers=(1,), folds=3,
                             c_grid=(0.01, 0.1), ref_c_grid=(0.03, 0.1, 1.0))
    cache = tmp_path / "features.sqlite"
    judge = train_learned_judge(truth, info, tq, cfg, loader, progress=False,
                                holdout_frac=0.25, name="t", feature_cache=cache)
    cv = judge.agreement["cv"]
    # MiniLM reference similarities carry real signal about human truth labels
    assert cv["truthful"]["all"]["kappa"] > 0.3 and cv["truthful"]["all"]["auc"] > 0.7
    assert set(judge.agreement["heldout"]) == {"truthful", "informative"}
    assert judge.agreement["heldout"]["truthful"]["all"]["n"] > 0
    held = set(judge.info["heldout_question_keys"])
    assert len(held) == 4 and not held & judge.training_questions

    path = judge.save(tmp_path / "judge")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "weights.safetensors"]
    loaded = LearnedJudge.load(path, model_loader=loader, feature_cache=cache)
    assert loaded.judge_id.startswith("learned:t@")
    # beside a run's scores, the judge's measured agreement travels with it (reports read it)
    scores = tmp_path / "run" / "scores" / "learned_t.jsonl"
    scores.parent.mkdir(parents=True)
    record = ScoreFile(scores).write_record(loaded)
    assert record == ScoreFile(scores).record_path and record.name == "learned_t.judge.json"
    shown = judge_info(loaded.judge_id, ScoreFile(scores))
    assert shown["judge_id"] == loaded.judge_id and shown["agreement"] == loaded.agreement
    assert "κ" in agreement_summary(shown)
    assert loaded.agreement["cv"]["truthful"]["all"]["kappa"] == pytest.approx(
        cv["truthful"]["all"]["kappa"])
    q = tq.questions[0]
    items = [JudgeItem(q.question, q.correct_answers[0], q.correct_answers, q.incorrect_answers,
                       q.best_answer),
             JudgeItem(q.question, q.incorrect_answers[0], q.correct_answers,
                       q.incorrect_answers, q.best_answer),
             JudgeItem("A question not in TruthfulQA?", "")]
    a, b = judge.judge(items, progress=False), loaded.judge(items, progress=False)
    for r1, r2 in zip(a, b):
        assert r1.truthful.p_yes == pytest.approx(r2.truthful.p_yes, abs=1e-5)
        assert r1.truthful.verdict in ("yes", "no") and 0 <= r1.informative.p_yes <= 1
    assert a[0].truthful.p_yes > a[1].truthful.p_yes  # a correct reference beats an incorrect one
    assert q.question in a[0].truthful.prompt
    assert loaded.featurize._embedder is None  # every feature came from the cache
    other = tiny_llama(n_layers=2, seed=1)  # same name, other weights: no stale features
    fresh = LearnedJudge.load(path, model_loader=lambda name: (other.hf_model, other.tokenizer),
                              feature_cache=cache)
    assert fresh.featurize.space("probe") != loaded.featurize.space("probe")
    assert fresh.featurize.space("ref") == loaded.featurize.space("ref")
    # interleaved questions (as a run's cells come): results stay in input order, stream out
    q2 = tq.questions[1]
    mixed = [items[0], JudgeItem(q2.question, q2.best_answer, q2.correct_answers,
                                 q2.incorrect_answers, q2.best_answer), items[1], items[2]]
    streamed = {}
    got = loaded.judge(mixed, progress=False, on_result=streamed.__setitem__)
    assert sorted(streamed) == [0, 1, 2, 3] and [streamed[i] for i in range(4)] == got
    assert got[0].truthful.p_yes == pytest.approx(a[0].truthful.p_yes, abs=1e-6)
    assert got[2].truthful.p_yes == pytest.approx(a[1].truthful.p_yes, abs=1e-6)


def test_learned_judge__load_rejects_a_non_judge_folder(tmp_path):
    with pytest.raises(InputError, match="not a learned judge folder"):
        LearnedJudge.load(tmp_path)


@pytest.mark.slow
def test_load_or_build__default_recipe_builds_once_with_the_embedded_model_then_loads(tmp_path):
    """What `--judge default` does when no judge of the current recipe is shipped (and what
    `truthsteer judge-ship` runs): build from the labels once, then load from the cache."""
    from evals.judges.default import load_or_build
    from evals.judges.recipe import DEFAULT_RECIPE
    from tests.helpers import embedded_model

    tq = load_csv(truthfulqa_csv())
    folder = small_label_folder(tmp_path, n_questions=10)
    calls = []

    def loader(name):
        calls.append(name)
        m = embedded_model()
        return m.hf_model, m.tokenizer

    judge = load_or_build("default", DEFAULT_RECIPE, loader, tq, folder, tmp_path / "cache",
                          progress=False)
    assert calls == ["smollm2-135m-instruct"]
    built = list((tmp_path / "cache" / "judges").iterdir())
    assert len(built) == 1 and (built[0] / "weights.safetensors").exists()
    cv = judge.agreement["cv"]["truthful"]
    assert {"all", "model_written"} <= set(cv)
    label_questions = {r.question for r in read_labels(folder / "human_truth_dev.jsonl")}
    # the default judge also trains on the packaged development sets' TRAIN splits
    from evals.judges.steered import (
        packaged_longform_files,
        packaged_steered_files,
        read_steered_train,
    )

    for files in (packaged_steered_files(), packaged_longform_files()):
        label_questions |= {r.question for r in read_steered_train(*files)[0]}
    assert judge.training_questions == {question_key(q) for q in label_questions}
    again = load_or_build("default", DEFAULT_RECIPE, loader, tq, folder, tmp_path / "cache",
                          progress=False)
    assert again.judge_id == judge.judge_id and calls == ["smollm2-135m-instruct"]
    q = tq.questions[0]
    res = again.judge([JudgeItem(q.question, q.best_answer, q.correct_answers,
                                 q.incorrect_answers, q.best_answer)], progress=False)
    assert res[0].truthful.scored and res[0].judge_id == judge.judge_id


@pytest.mark.slow
def test_sentence_embedder__same_vectors_whatever_the_hash_seed():
    """Texts are batched (and padded) in an order that does not depend on Python's string hash
    seed, so a judge built in another process has the same weights (and the same id)."""
    import subprocess
    import sys

    script = (
        "import hashlib, sys\n"
        "from evals.judges.features import SentenceEmbedder\n"
        "from evals.truthfulqa import load_csv\n"
        "qs = load_csv(sys.argv[1]).questions[:40]\n"
        "texts = [a for q in qs for a in (*q.correct_answers, *q.incorrect_answers)]\n"
        "print(hashlib.sha256(SentenceEmbedder().embed(texts).tobytes()).hexdigest())\n")
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, str(truthfulqa_csv())], env=env,
                             capture_output=True,
                             text=True, check=True, cwd=Path(__file__).resolve().parents[3])
        digests.add(out.stdout.strip().splitlines()[-1])
    assert len(digests) == 1


@pytest.mark.slow
def test_learned_judge__trains_on_steered_train_rows_weighted_and_reports_them(tmp_path):
    """Steered rows join training with the recipe's weight, held-out questions' steered rows
    are left out, and their out-of-fold agreement is its own subset ("steered")."""
    from evals.labels import LabelRow

    tq = load_csv(truthfulqa_csv())
    folder = small_label_folder(tmp_path, n_questions=16)
    truth = read_labels(folder / "human_truth_dev.jsonl")
    info = read_labels(folder / "human_info_dev.jsonl")
    qs = sorted({r.question for r in truth})
    evasions = ["I'm ready.", "I'll be happy to help you anytime.", "samesamesame Results",
                "from where do I stand yet to make"]
    steered = tuple([LabelRow(q, a, kind, kind == "truthful", 0) for q in qs for a in evasions]
                    for kind in ("truthful", "informative"))
    cfg = LearnedJudgeConfig(probe_model=None, folds=3, ref_c_grid=(1.0,), steered_weight=5.0,
                             longform_block=False)
    judge = train_learned_judge(truth, info, tq, cfg, progress=False, holdout_frac=0.25,
                                feature_cache=tmp_path / "f.sqlite", steered=steered)
    kinds = judge.info["kinds"]
    assert kinds["informative"]["n_steered_rows"] == 12 * len(evasions)  # 12 train questions
    assert kinds["informative"]["n_steered_rows_held_out"] == 4 * len(evasions)
    assert judge.info["n_steered_label_rows"] == {"truthful": 64, "informative": 64}
    assert judge.info["steered_weight"] == 5.0 and cfg.blocks == ("ref", "nonanswer")
    cv = judge.agreement["cv"]["informative"]
    assert cv["steered"]["n"] == 48 and cv["steered"]["human_rate"] == 0.0
    assert cv["all"]["n"] == kinds["informative"]["n_train_rows"] - 48  # TruthfulQA rows only
    assert cv["steered"]["judge_rate"] < 0.2  # it learned that these are not informative
    q = tq.questions[0]
    res = judge.judge([JudgeItem(q.question, "I'm ready.", q.correct_answers,
                                 q.incorrect_answers, q.best_answer),
                       JudgeItem(q.question, q.correct_answers[0], q.correct_answers,
                                 q.incorrect_answers, q.best_answer)], progress=False)
    assert res[0].nonanswer.flagged and not res[1].nonanswer.flagged
    assert res[0].informative.p_yes < res[1].informative.p_yes


def test_config__old_recipes_load_without_the_new_blocks():
    new = ("longform_block", "longform_weight")  # recipe v4's, absent from older recipes
    old = {k: v for k, v in LearnedJudgeConfig().to_dict().items()
           if k not in ("nonanswer_block", "steered_weight", "fluency", *new)}
    old["recipe_version"] = "1"
    assert LearnedJudgeConfig.from_dict(old).blocks == ("ref", "probe")
    v2 = {k: v for k, v in LearnedJudgeConfig().to_dict().items()
          if k not in ("claim_features", *new)}
    v2["recipe_version"] = "2"  # saved before claim features: its reference block has 19
    assert not LearnedJudgeConfig.from_dict(v2).claim_features
    assert Featurizer(LearnedJudgeConfig.from_dict(v2), None).width("ref") == len(
        REF_FEATURE_NAMES)
    assert Featurizer(LearnedJudgeConfig(), None).width("ref") == len(REF_FEATURE_NAMES) + len(
        CLAIM_FEATURE_NAMES)
    assert LearnedJudgeConfig(fluency=True).blocks == ("ref", "probe", "fluency", "nonanswer",
                                                       "longform")
    v3 = {k: v for k, v in LearnedJudgeConfig().to_dict().items() if k not in new}
    v3["recipe_version"] = "3"
    assert LearnedJudgeConfig.from_dict(v3).blocks == ("ref", "probe", "nonanswer")
    with pytest.raises(InputError, match="fluency needs a probe model"):
        LearnedJudgeConfig(probe_model=None, fluency=True)


def test_fluency_features__shared_prefix_batches_match_a_full_forward():
    from evals.judges.fluency import fluency_features, fluency_prefix

    m = tiny_llama(n_layers=2)
    tok = m.tokenizer
    qs = ["Why is the sky blue?", "Why is the sky blue?", "Q2?", "Why is the sky blue?"]
    answers = ["Scattering of sunlight by air.", "x", "Yes yes yes yes yes", "Because."]
    feats = fluency_features(m.hf_model, tok, qs, answers, batch_size=2)
    for q, a, row in zip(qs, answers, feats):
        p = tok(fluency_prefix(q))["input_ids"]
        t = tok(" " + a, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = m.hf_model(torch.tensor([p + t])).logits[0].float()
        lp = torch.log_softmax(logits, -1)[len(p) - 1:len(p) - 1 + len(t)].gather(
            -1, torch.tensor(t)[:, None])[:, 0].numpy()
        np.testing.assert_allclose(row, [lp.mean(), lp[:8].mean(), (lp < -10).mean(), lp.min()],
                                   atol=1e-4, rtol=1e-4)


def _blank_judge(cfg: LearnedJudgeConfig, ref_width: int) -> LearnedJudge:
    """A judge of ``cfg`` with all-zero coefficients whose reference block takes ``ref_width``
    raw features (P(yes) = 0.5 everywhere): enough to test saving and loading."""
    from evals.judges.nonanswer import FEATURE_NAMES

    zeros = lambda n: LinearModel(np.zeros(n), np.ones(n), np.zeros(n), 0.0)
    models = {"ref_poly": PolyExpansion(np.zeros(ref_width), np.ones(ref_width))}
    for kind in ("truthful", "informative"):
        models |= {f"{kind}.ref": zeros(ref_width + ref_width * (ref_width + 1) // 2),
                   f"{kind}.nonanswer": zeros(len(FEATURE_NAMES)), f"{kind}.combiner": zeros(2)}
    return LearnedJudge(cfg, models, {"name": "blank"}, feature_cache=None)


def test_learned_judge__a_judge_saved_before_claim_features_loads_and_judges(tmp_path):
    path = _blank_judge(LearnedJudgeConfig(probe_model=None, claim_features=False,
                                           longform_block=False),
                        len(REF_FEATURE_NAMES)).save(tmp_path / "v2")
    cfg = json.loads((path / "cfg.json").read_text())
    for key in ("claim_features", "longform_block", "longform_weight"):  # not in a v2 recipe
        del cfg["recipe"][key]
    cfg["recipe"]["recipe_version"] = "2"
    (path / "cfg.json").write_text(json.dumps(cfg))
    judge = LearnedJudge.load(path, feature_cache=None)
    assert not judge.cfg.claim_features
    [res] = judge.judge([JudgeItem("Are toads frogs?", "Yes.", ["Yes, toads are frogs"],
                                   ["No, toads are not frogs"], "Yes, toads are frogs")],
                        progress=False)
    assert res.truthful.p_yes == pytest.approx(0.5)

    # weights whose reference block does not match what the recipe computes: a clear error
    wide = _blank_judge(LearnedJudgeConfig(probe_model=None, claim_features=False,
                                           longform_block=False),
                        len(REF_FEATURE_NAMES) + len(CLAIM_FEATURE_NAMES)).save(tmp_path / "bad")
    with pytest.raises(InputError, match="reference block takes 30 features.*judge-train"):
        LearnedJudge.load(wide, feature_cache=None)
