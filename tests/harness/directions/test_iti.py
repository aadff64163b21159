import numpy as np
import pytest
import torch

from evals.truthfulqa import Question
from harness.config import ConfigError
from harness.directions import resolve_direction
from harness.directions.contrast import collect_last_token, contrast_set, head_hooks, stack_heads
from harness.directions.iti import (
    ITIConfig,
    default_top_k,
    fit_iti,
    fit_logistic,
    iti_direction_set,
)
from harness.directions.store import load_direction_set, save_direction_set
from harness.steering import Intervention
from tests.helpers import tiny_llama


def synthetic_questions(n: int) -> list[Question]:
    return [Question(i, f"What is fact number {i}?", f"Fact {i} is true.",
                     (f"Fact {i} is true.", f"It is fact {i}."),
                     (f"Fact {i} is false.", f"It is not fact {i}.", f"Nobody knows fact {i}."))
            for i in range(n)]


def planted_arrays(planted, n_q=40, per_q=6, shape=(4, 6, 8), strength=2.5, seed=0):
    rng = np.random.default_rng(seed)
    n = n_q * per_q
    acts = rng.normal(size=(n, *shape))
    labels = np.tile(np.arange(per_q) % 2, n_q)
    qids = np.repeat(np.arange(n_q), per_q)
    vecs = {}
    for layer, head in planted:
        v = rng.normal(size=shape[2])
        v /= np.linalg.norm(v)
        vecs[(layer, head)] = v
        acts[:, layer, head] += strength * np.where(labels == 1, 1.0, -1.0)[:, None] * v
    return acts, labels, qids, vecs


def test_fit_logistic__matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 200, 10))
    y = (x[0, :, 0] + 0.7 * rng.normal(size=200) > 0).astype(int)
    w, b = fit_logistic(torch.tensor(x), torch.tensor(y))
    for i in range(3):
        ref = LogisticRegression(max_iter=10_000, tol=1e-10).fit(x[i], y)
        np.testing.assert_allclose(w[i].numpy(), ref.coef_[0], atol=1e-5)
        assert b[i].item() == pytest.approx(ref.intercept_[0], abs=1e-5)


def test_fit_iti__finds_planted_heads_in_arrays():
    planted = [(1, 2), (3, 5)]
    acts, labels, qids, vecs = planted_arrays(planted)
    fit = fit_iti(acts, labels, qids, ITIConfig(top_k=2))
    assert set(fit.heads) == set(planted)
    for i, head in enumerate(fit.heads):
        assert fit.vectors[i] @ vecs[head] > 0.9  # mass-mean shift points along the plant
        assert fit.accuracy[head] > 0.9
        proj = acts[:, head[0], head[1]] @ fit.vectors[i]
        assert fit.stds[i] == pytest.approx(proj.std())
    others = np.delete(fit.accuracy.flatten(), [1 * 6 + 2, 3 * 6 + 5])
    assert np.nanmax(others) < 0.8
    # probe method finds the same heads; layers restricts the candidates
    assert set(fit_iti(acts, labels, qids, ITIConfig(top_k=2, method="probe")).heads) == \
        set(planted)
    fit = fit_iti(acts, labels, qids, ITIConfig(top_k=1, layers=(3,)))
    assert fit.heads == ((3, 5),) and np.isnan(fit.accuracy[1, 2])


def test_default_top_k__scales_with_model_and_caps():
    assert default_top_k(30, 9) == 27
    assert default_top_k(2, 2) == 1
    assert default_top_k(80, 64) == 48


def test_iti__finds_planted_heads_in_tiny_model():
    """The truth signal is planted into two heads' z during the recording pass: +v on correct
    answers, -v on incorrect ones. Selection must find exactly those heads."""
    model = tiny_llama(n_layers=3, n_heads=4, n_kv_heads=2)
    questions = synthetic_questions(16)
    contrast = contrast_set(questions, model.tokenizer)
    planted = {(1, 2): torch.randn(16), (2, 0): torch.randn(16)}
    parts = {}
    for label, sign in ((1, 1.0), (0, -1.0)):
        rows = np.flatnonzero(contrast.labels == label)
        ivs = [Intervention(f"blocks.{layer}.attn.hook_z", v / v.norm(), sign * 1.0, "all", head)
               for (layer, head), v in planted.items()]
        acts = collect_last_token(model, [contrast.token_ids[i] for i in rows],
                                  head_hooks(3), batch_size=16, interventions=ivs,
                                  progress=False)
        parts[label] = (rows, stack_heads(acts, 3))
    heads = torch.zeros(len(contrast), 3, 4, 16)
    for rows, acts in parts.values():
        heads[rows] = acts
    fit = fit_iti(heads, contrast.labels, contrast.question_ids, ITIConfig(top_k=2))
    assert set(fit.heads) == set(planted)
    for i, head in enumerate(fit.heads):
        v = planted[head] / planted[head].norm()
        assert float(torch.tensor(fit.vectors[i]).float() @ v) > 0.8


def test_iti_direction_set__saves_loads_and_resolves_as_spec(tmp_path):
    model = tiny_llama(n_layers=4, n_heads=6, d_model=48)  # d_head 8, like the arrays
    acts, labels, qids, _ = planted_arrays([(1, 2), (3, 5)])
    cfg = ITIConfig(top_k=2)
    dset = iti_direction_set(fit_iti(acts, labels, qids, cfg), cfg, {"note": "test"})
    path = tmp_path / "iti.safetensors"
    assert save_direction_set(path, dset)
    assert (tmp_path / "iti.json").exists()
    loaded = load_direction_set(path)
    assert loaded.kind == "iti" and loaded.train_question_ids == tuple(range(40))
    assert loaded.info["note"] == "test" and loaded.arrays["probe_accuracy"].shape == (4, 6)
    for a, b in zip(dset.directions, loaded.directions):
        assert (a.hook, a.head, a.std) == (b.hook, b.head, b.std)
        assert torch.equal(a.vector, b.vector)
    every = resolve_direction(f"{path}:all", model, "blocks.0.hook_resid_post")
    assert {(d.hook, d.head) for d in every} == {("blocks.1.attn.hook_z", 2),
                                                 ("blocks.3.attn.hook_z", 5)}
    layer3 = resolve_direction(str(path), model, "blocks.3.attn.hook_z")
    assert [(d.hook, d.head) for d in layer3] == [("blocks.3.attn.hook_z", 5)]
    with pytest.raises(ConfigError, match="no direction at blocks.0.hook_resid_post"):
        resolve_direction(str(path), model, "blocks.0.hook_resid_post")
    with pytest.raises(ConfigError, match="size"):  # another model's heads do not fit
        resolve_direction(f"{path}:all", tiny_llama(n_layers=4), "blocks.0.hook_resid_post")


def test_save_direction_set__exclusive_keeps_the_first_file(tmp_path):
    acts, labels, qids, _ = planted_arrays([(0, 0)])
    cfg = ITIConfig(top_k=1)
    first = iti_direction_set(fit_iti(acts, labels, qids, cfg), cfg)
    acts2, labels2, qids2, _ = planted_arrays([(2, 3)], seed=5)
    second = iti_direction_set(fit_iti(acts2, labels2, qids2, cfg), cfg)
    path = tmp_path / "d.safetensors"
    assert save_direction_set(path, first, exclusive=True)
    assert not save_direction_set(path, second, exclusive=True)
    assert load_direction_set(path).directions[0].head == first.directions[0].head
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_directions_cli__iti_fits_on_the_training_folds_only(tmp_path, capsys):
    from evals.truthfulqa import kfold
    from harness.cli import main
    from tests.helpers import tiny_llama_folder, mini_truthfulqa_csv

    folder = tiny_llama_folder(tmp_path / "tiny")
    out = tmp_path / "iti.safetensors"
    assert main(["directions", "iti", "--model", str(folder), "--truthfulqa",
                 str(mini_truthfulqa_csv()), "--questions", "10", "--offset", "5", "--folds", "2",
                 "--fold", "1", "--top-k", "3", "--out", str(out)]) == 0
    dset = load_direction_set(out)
    train = kfold(list(range(5, 15)), 2, 0)[1][0]
    assert dset.train_question_ids == tuple(train) and len(dset.directions) == 3
    assert "layer" in capsys.readouterr().out
    assert main(["directions", "iti", "--model", str(folder), "--truthfulqa",
                 str(mini_truthfulqa_csv()), "--fold", "1", "--out", str(out)]) == 2
    assert "--folds and --fold go together" in capsys.readouterr().err
