import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from evals.truthfulqa import Question
from harness.directions.contrast import contrast_set, qa_pair_ids
from harness.directions.features import (
    FeatureSearchConfig,
    effect_sizes,
    format_search,
    question_attributions,
    search_features,
    welch_pvalues,
)
from harness.steering import Intervention, hooks


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model

HOOK = "blocks.0.hook_resid_pre"  # the token embeddings: features can be planted exactly
BLUE, RED = 4461, 2382            # " blue" and " red" in the embedded tokenizer


def color_questions(n: int) -> list[Question]:
    things = ["sky", "sea", "car", "door", "ball", "cup", "hat", "pen", "box", "bag", "kite",
              "boat", "lamp", "rug"]
    return [Question(i, f"What colour is the {things[i]}?", f"The {things[i]} is blue.",
                     (f"The {things[i]} is blue.", f"It is blue, like the {things[i]}."),
                     (f"The {things[i]} is red.", f"It is red, like the {things[i]}.",
                      f"Every {things[i]} is red."))
            for i in range(n)]


def write_dictionary(folder, model, d_sae: int = 8, seed: int = 0):
    """A hand-made SAELens-layout dictionary at HOOK: feature 0 fires on " blue", feature 1 on
    " red", feature 7 is always 1 (bias only), the rest are random and mostly silent."""
    gen = torch.Generator().manual_seed(seed)
    emb = model.hf_model.get_input_embeddings().weight.detach()
    d = emb.shape[1]
    w_enc = torch.randn(d, d_sae, generator=gen) * 0.01
    b_enc = torch.full((d_sae,), -1.0)
    for f, tok in ((0, BLUE), (1, RED)):
        e = emb[tok]
        w_enc[:, f] = e / e.norm() ** 2          # activation 1 on the token itself
        b_enc[f] = -0.5
    w_enc[:, 7] = 0.0
    b_enc[7] = 1.0
    w_dec = torch.randn(d_sae, d, generator=gen)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    folder.mkdir()
    save_file({"W_enc": w_enc.contiguous(), "W_dec": w_dec, "b_enc": b_enc,
               "b_dec": torch.zeros(d)}, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({
        "d_in": d, "d_sae": d_sae, "architecture": "standard", "apply_b_dec_to_input": True,
        "normalize_activations": "none", "hook_name": HOOK, "model_name": "tiny-llama"}))
    return folder


def test_effect_sizes__hand_computed_and_welch():
    acts = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [0.0, 5.0], [0.0, 5.0], [1.0, 5.0]])
    labels = np.array([1, 1, 1, 0, 0, 0])
    d = effect_sizes(acts, labels)
    # (2 - 1/3) / sqrt((2 * 1 + 2 * 1/3) / 4)
    assert d[0] == pytest.approx(2.041241, abs=1e-6)
    assert d[1] == 0.0  # constant feature: no effect, no division by zero
    p = welch_pvalues(acts, labels)
    assert 0 < p[0] < 0.2 and p[1] == 1.0


def test_search_features__finds_planted_true_and_false_features(model, tmp_path):
    from dictionaries.hub import load_dictionary

    sae = load_dictionary(write_dictionary(tmp_path / "dict", model))
    result = search_features(model, sae, color_questions(14),
                             FeatureSearchConfig(top=3, seed=0), progress=False)
    assert result["hook"] == HOOK
    assert not set(result["search_question_ids"]) & set(result["heldout_question_ids"])
    top = {r["feature"]: r for r in result["by_effect"][:2]}
    assert set(top) == {0, 1}
    assert top[0]["d_search"] > 1 and top[0]["d_heldout"] > 1 and top[0]["confirmed"]
    assert top[1]["d_search"] < -1 and top[1]["d_heldout"] < -1 and top[1]["confirmed"]
    assert top[0]["mean_false"] == 0.0
    # inspection: top examples of the "blue" feature are true answers marking " blue"
    assert top[0]["examples"][0]["label"] == 1 and "[[ blue]]" in top[0]["examples"][0]["text"]
    assert len(top[0]["logit_lens"]["promotes"]) == 8
    assert len(result["by_attribution"]) == 3
    text = format_search(result, str(tmp_path / "dict"))
    assert "feature:" in text and "effect size" in text


def test_question_attributions__match_finite_differences(model, tmp_path):
    """Feature 7 is 1 at every position, so its attribution is the derivative of the metric
    when its decoder vector is added everywhere, which an Intervention can do exactly."""
    from dictionaries.hub import load_dictionary

    sae = load_dictionary(write_dictionary(tmp_path / "dict", model))
    questions = color_questions(2)
    contrast = contrast_set(questions, model.tokenizer)
    qids, attr = question_attributions(model, sae, contrast, HOOK, batch_size=3,
                                       progress=False)
    vec = sae.W_dec[7].detach()

    def metric(q: Question, eps: float) -> float:
        out = {}
        with torch.no_grad(), hooks(model, [Intervention(HOOK, vec, eps)]):
            for label, answers in ((1, q.correct_answers), (0, q.incorrect_answers)):
                vals = []
                for a in answers:
                    ids, start = qa_pair_ids(q.question, a, model.tokenizer)
                    logp = torch.log_softmax(model.hf_model(
                        input_ids=torch.tensor([ids])).logits[0].double(), -1)
                    vals.append(sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids))))
                out[label] = np.mean(vals)
        return out[1] - out[0]

    eps = 2e-3  # the embeddings have norm ~0.16: stay in the linear regime
    for i, q in enumerate(questions):
        assert qids[i] == q.id
        fd = (metric(q, eps) - metric(q, -eps)) / (2 * eps)
        assert attr[i, 7] == pytest.approx(fd, rel=0.03, abs=1e-3)


def test_directions_cli__features_prints_and_writes_rankings(model, tmp_path, capsys):
    from harness.cli import main
    from tests.helpers import tiny_llama_folder, mini_truthfulqa_csv

    folder = tiny_llama_folder(tmp_path / "tiny")  # same seed: same weights as ``model``
    dictionary = write_dictionary(tmp_path / "dict", model)
    out = tmp_path / "features.json"
    assert main(["directions", "features", "--model", str(folder), "--truthfulqa",
                 str(mini_truthfulqa_csv()), "--questions", "8", "--dictionary", str(dictionary),
                 "--top", "4", "--no-attribution", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "top features by effect size" in printed and f"feature:{dictionary}:" in printed
    result = json.loads(out.read_text())
    assert len(result["by_effect"]) == 4 and result["by_attribution"] == []


@pytest.mark.slow  # ~6 s: writes a hub cache and runs the feature search through the CLI
def test_directions_cli__features_takes_a_hub_ref_offline(model, tmp_path, monkeypatch, capsys):
    """A dictionary in a local hub cache (laid out as huggingface_hub lays it out), named by an
    hf:// REF, ranks the same features as its folder, offline; the REF is what it prints."""
    from dictionaries.io import CFG_FILE, WEIGHTS_FILE
    from harness.cli import main
    from tests.dictionaries.hubcache import write_hub_repo
    from tests.helpers import tiny_llama_folder, mini_truthfulqa_csv

    folder = tiny_llama_folder(tmp_path / "tiny")
    dictionary = write_dictionary(tmp_path / "dict", model)
    cache = tmp_path / "hub"
    write_hub_repo(cache, "someone/tiny-saes", {f"saes/{HOOK}/{CFG_FILE}": dictionary / CFG_FILE,
                                                f"saes/{HOOK}/{WEIGHTS_FILE}": dictionary /
                                                WEIGHTS_FILE})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = f"hf://someone/tiny-saes/saes/{HOOK}"
    results = {}
    for name, source in (("ref", ref), ("folder", str(dictionary))):
        out = tmp_path / f"{name}.json"
        assert main(["directions", "features", "--model", str(folder), "--truthfulqa",
                     str(mini_truthfulqa_csv()), "--questions", "8", "--dictionary", source,
                     "--top", "4", "--no-attribution", "--out", str(out)]) == 0
        results[name] = json.loads(out.read_text())
    assert f"feature:{ref}:" in capsys.readouterr().out
    assert results["ref"]["dictionary"] == ref
    assert results["ref"]["by_effect"] == results["folder"]["by_effect"]
