import numpy as np
import pytest
import torch

from harness.config import ConfigError
from harness.directions import resolve_direction
from harness.directions.meandiff import (
    fit_meandiff,
    fit_meandiff_for_questions,
    meandiff_direction_set,
)
from harness.directions.store import load_direction_set, save_direction_set
from tests.harness.directions.test_iti import synthetic_questions
from tests.helpers import tiny_llama


def test_fit_meandiff__recovers_planted_direction_and_std():
    rng = np.random.default_rng(0)
    d = 32
    v = rng.normal(size=d)
    v /= np.linalg.norm(v)
    labels = np.arange(400) % 2
    acts = rng.normal(size=(400, d)) + 3.0 * labels[:, None] * v
    direction, std = fit_meandiff(acts, labels)
    assert np.linalg.norm(direction) == pytest.approx(1.0)
    assert direction @ v > 0.97
    assert std == pytest.approx(float(np.std(acts @ direction)))
    # hand-computed: two points per class on a line
    direction, std = fit_meandiff(np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]),
                                  np.array([1, 1, 0, 0]))
    np.testing.assert_allclose(direction, [1.0, 0.0])
    assert std == pytest.approx(np.std([1.0, 3.0, 0.0, 0.0]))


def test_fit_meandiff__rejects_degenerate_input():
    with pytest.raises(ConfigError, match="zero"):
        fit_meandiff(np.ones((4, 3)), np.array([1, 0, 1, 0]))
    with pytest.raises(ConfigError, match="both"):
        fit_meandiff(np.ones((4, 3)), np.array([1, 1, 1, 1]))


def test_meandiff_direction_set__one_direction_per_hook_and_spec(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.arange(40) % 2
    acts = {f"blocks.{i}.hook_resid_post": torch.tensor(rng.normal(size=(40, 64)) + labels[:, None])
            for i in range(2)}
    dset = meandiff_direction_set(acts, labels, np.arange(40) // 4)
    assert dset.train_question_ids == tuple(range(10))
    path = tmp_path / "md.safetensors"
    save_direction_set(path, dset)
    model = tiny_llama()
    got = resolve_direction(str(path), model, "blocks.1.hook_resid_post")
    assert len(got) == 1 and got[0].hook == "blocks.1.hook_resid_post" and got[0].std > 0
    assert torch.equal(got[0].vector, load_direction_set(path).directions[1].vector)


def test_fit_meandiff_for_questions__tiny_model_records_train_ids():
    model = tiny_llama()
    questions = synthetic_questions(6)
    dset = fit_meandiff_for_questions(model, questions, ["blocks.0.hook_resid_post",
                                                         "blocks.1.hook_mlp_out"], progress=False)
    assert [d.hook for d in dset.directions] == ["blocks.0.hook_resid_post",
                                                 "blocks.1.hook_mlp_out"]
    assert dset.train_question_ids == tuple(range(6))
    assert all(abs(float(d.vector.norm()) - 1) < 1e-5 for d in dset.directions)
    with pytest.raises(ConfigError, match="ITI"):
        fit_meandiff_for_questions(model, questions, ["blocks.0.attn.hook_z"], progress=False)
