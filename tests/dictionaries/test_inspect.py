"""Inspection views against hand-computed values on planted data and a tiny model."""

from __future__ import annotations

import pytest
import torch

from dictionaries import inspect as views
from dictionaries.config import DictionaryConfig
from dictionaries.saes import Dictionary
from tests.helpers import embedded_tokenizer, tiny_llama

HOOK = "blocks.0.hook_resid_post"


def test_top_examples__largest_first_with_positions():
    acts = torch.tensor([[0.0, 0.5, 3.0], [0.0, 7.0, 0.0]])
    top = views.top_examples(acts, k=5)
    assert [(e.context, e.position, e.activation) for e in top] == [
        (1, 1, 7.0), (0, 2, 3.0), (0, 1, 0.5)]  # zeros never count as examples


def test_uniform_examples__bins_by_activation_and_samples_each():
    values = [0.2, 0.7, 0.9, 1.1, 1.5, 1.9, 1.2, 3.5, 0.0, 0.0]
    acts = torch.tensor([values])
    bins = views.uniform_examples(acts, per_bin=2, bin_width=1.0, seed=0)
    assert sorted(bins) == [0.0, 1.0, 3.0]  # [2, 3) is empty
    for lo, examples in bins.items():
        assert all(lo <= e.activation < lo + 1 for e in examples)
        assert all(values[e.position] == pytest.approx(e.activation) for e in examples)
    assert [len(bins[b]) for b in (0.0, 1.0, 3.0)] == [2, 2, 1]
    half = views.uniform_examples(acts, per_bin=10, bin_width=0.5)
    assert [e.activation for e in half[0.5]] == pytest.approx([0.9, 0.7])


def test_logit_lens__projects_out_highest_norm_never_produced_token():
    # columns: token 0 (never produced, huge), 1, 2 (normal), 3 (never produced, small)
    w_u = torch.tensor([[10.0, 1.0, 1.5, 0.0],
                        [10.0, -1.0, 0.0, 0.0],
                        [0.0, 0.0, 0.0, 0.1]])
    direction = torch.tensor([1.0, 0.0, 0.0])
    plain = views.logit_lens(direction, w_u, k=2)
    assert plain.top == [(0, pytest.approx(10.0)), (2, pytest.approx(1.5))]
    assert plain.removed == []
    # d' = d - u (u.d) with u = (1, 1, 0)/sqrt(2) -> (0.5, -0.5, 0): logits 0, 1, 0.75, 0
    lens = views.logit_lens(direction, w_u, k=2, removable=[0, 3], n_remove=1)
    assert lens.removed == [0]
    assert lens.top == [(1, pytest.approx(1.0)), (2, pytest.approx(0.75))]
    scaled = views.logit_lens(direction, w_u, k=1, norm_weight=torch.tensor([2.0, 1.0, 1.0]))
    assert scaled.top == [(0, pytest.approx(20.0))]


def test_never_produced_tokens__specials_in_ordinary_words_out():
    tok = embedded_tokenizer()
    never = set(views.never_produced_tokens(tok))
    assert set(tok.all_special_ids) <= never
    for word in (" the", " Paris", "ing"):
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and ids[0] not in never
    assert len(never) < len(tok) // 2


def _planted_feature_dictionary(feature: int = 3) -> Dictionary:
    sae = Dictionary(DictionaryConfig(d_in=64, d_sae=16, hook_name=HOOK, seed=1))
    with torch.no_grad():
        sae.b_enc[feature] = 5.0  # keeps the feature in ReLU's linear range
        sae.b_dec.normal_(0, 0.1)
    return sae


def _reference_activation(model, tokens: list[int], position: int, sae: Dictionary, feature):
    """By hand: HF hidden state after layer 0, then relu((h - b_dec) . W_enc[:, f] + b_enc[f])."""
    with torch.no_grad():
        hidden = model.hf_model(torch.tensor([tokens]), output_hidden_states=True).hidden_states
        h = hidden[1][0, position]
        return float(torch.relu((h - sae.b_dec) @ sae.W_enc[:, feature] + sae.b_enc[feature]))


def test_ablated_text__matches_hand_computed_changes():
    model = tiny_llama()
    tok = model.tokenizer
    tokens = torch.tensor([tok.bos_token_id] + tok("Paris is the capital of France",
                                                   add_special_tokens=False)["input_ids"])
    sae, feature, position = _planted_feature_dictionary(), 3, 5
    base, changes = views.ablated_text(model.bridge, sae, tokens, position, feature)
    ids = tokens.tolist()
    assert base == pytest.approx(_reference_activation(model, ids[: position + 1], position,
                                                       sae, feature), abs=1e-4)
    assert [j for j, _ in changes] == list(range(1, position))
    for j, change in changes:
        dropped = ids[:j] + ids[j + 1: position + 1]
        expected = _reference_activation(model, dropped, position - 1, sae, feature) - base
        assert change == pytest.approx(expected, abs=1e-4)
    assert any(abs(c) > 1e-3 for _, c in changes)  # dropping context does move the feature


def test_feature_activations__bos_zero_and_matches_full_encode():
    model = tiny_llama()
    tok = model.tokenizer
    contexts = [torch.tensor([tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"][:6])
                for t in ("The cat sat on the mat today", "Water boils at one hundred degrees")]
    sae = _planted_feature_dictionary()
    acts = views.feature_activations(model.bridge, sae, contexts, 3)
    assert acts.shape == (2, 7) and (acts[:, 0] == 0).all()
    for c, ctx in enumerate(contexts):
        for p in range(1, 7):
            assert float(acts[c, p]) == pytest.approx(
                _reference_activation(model, ctx.tolist(), p, sae, 3), abs=1e-4)
