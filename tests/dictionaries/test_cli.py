"""``truthsteer dict`` end to end on a tiny saved model, and its one-line input errors."""

from __future__ import annotations

import json

import pytest
import torch

from dictionaries.activations import save_activations
from harness.cli import main
from tests.helpers import tiny_llama

TEXT = ["The cat sat on the mat and looked at the moon.",
        "Paris is the capital of France; Berlin is the capital of Germany.",
        "Water boils at one hundred degrees Celsius at sea level.",
        "Two plus two is four, and four plus four is eight."]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-model")
    model = tiny_llama()
    model.hf_model.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    corpus = folder.parent / "corpus.txt"
    corpus.write_text("\n".join(TEXT * 30) + "\n")
    return folder, corpus


@pytest.mark.slow
def test_cli_dict__train_from_model_then_inspect_and_compare(tiny_folder, tmp_path, capsys):
    folder, corpus = tiny_folder
    out = tmp_path / "dicts"
    code = main(["dict", "train", "--model", str(folder), "--device", "cpu",
                 "--hook", "blocks.0.hook_resid_post", "--corpus", str(corpus),
                 "--context-size", "16", "--expansion", "1,2", "--tokens", "6000",
                 "--batch-size", "256", "--eval-tokens", "600", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary) == ["relu-1x", "relu-2x"]
    for name in summary:
        ev = summary[name]["eval"]
        assert {"fvu", "l0", "dead_fraction", "ce_clean", "ce_spliced", "ce_zero",
                "loss_recovered"} <= set(ev)
        gap = ev["ce_zero"] - ev["ce_clean"]  # a random tiny model: only the arithmetic
        assert ev["loss_recovered"] == pytest.approx((ev["ce_zero"] - ev["ce_spliced"]) / gap)
        rows = [json.loads(r) for r in (out / name / "log.jsonl").read_text().splitlines()]
        assert rows[0]["step"] == 0 and rows[-1]["step"] == 23  # 6000 / 256 -> 24 steps
        cfg = json.loads((out / name / "cfg.json").read_text())
        assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    capsys.readouterr()

    assert main(["dict", "inspect", str(out / "relu-2x"), "--feature", "0", "--model",
                 str(folder), "--device", "cpu", "--corpus", str(corpus), "--context-size",
                 "16", "--contexts", "20", "--remove-unused", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["logit_lens"]["top"]) == 10 and len(report["logit_lens"]["removed"]) == 2
    assert report["stats"]["n_contexts"] == 20
    if report["top_examples"]:
        assert "[[" in report["top_examples"][0]["text"]
        assert "changes" in report["ablated_text"]

    assert main(["dict", "compare", str(out / "relu-1x"), str(out / "relu-1x")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("1.0000") == 2


def test_cli_dict__one_dictionary_is_written_at_out_and_works_as_a_feature_spec(tmp_path,
                                                                                capsys):
    """--out DIR with one dictionary: DIR is the dictionary (feature:DIR:ID names it); a second
    run into the same DIR is refused."""
    from harness.directions import resolve_direction

    gen = torch.Generator().manual_seed(0)
    acts = tmp_path / "acts.safetensors"
    save_activations(acts, torch.randn(3000, 64, generator=gen))
    out = tmp_path / "mine"
    argv = ["dict", "train", "--activations", str(acts), "--hook", "blocks.1.hook_resid_post",
            "--expansion", "1", "--tokens", "2048",
            "--batch-size", "256", "--eval-tokens", "256", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"{out}: fvu=")
    assert {"cfg.json", "metrics.json", "log.jsonl"} <= {p.name for p in out.iterdir()}
    assert not (out / "summary.json").exists() and not (out / "relu-1x").exists()
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    (d,) = resolve_direction(f"feature:{out}:3", tiny_llama(), "blocks.1.hook_resid_post")
    assert d.vector.numel() == 64 and abs(float(d.vector.norm()) - 1) < 1e-5
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{out} already holds a dictionary" in err


def test_cli_dict__bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    acts = tmp_path / "a.safetensors"
    save_activations(acts, torch.randn(300, 8))
    cases = [
        ["dict", "train", "--activations", str(tmp_path / "missing.safetensors"), "--out",
         str(tmp_path / "o1")],
        ["dict", "train", "--activations", str(acts), "--expansion", "two", "--out",
         str(tmp_path / "o2")],
        ["dict", "train", "--activations", str(acts), "--architecture", "topk", "--k", "99",
         "--expansion", "1", "--out", str(tmp_path / "o3")],
        ["dict", "train", "--out", str(tmp_path / "o4")],
        ["dict", "compare", str(tmp_path), str(tmp_path)],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("truthsteer dict: error:") and "\n" not in err, err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_cli_dict__inspect_takes_hub_refs_offline(tiny_folder, tmp_path, monkeypatch, capsys):
    """A SAELens folder and a Gemma Scope params.npz from a local hub cache, offline."""
    import numpy as np

    from dictionaries.config import DictionaryConfig
    from dictionaries.saes import Dictionary
    from tests.dictionaries.hubcache import gemma_scope_repo, random_gemma_arrays, saelens_repo

    folder, corpus = tiny_folder
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sae = Dictionary(DictionaryConfig(d_in=64, d_sae=96, hook_name="blocks.1.hook_resid_post"))
    saelens_repo(cache, sae, "someone/tiny-saes", "l1", tmp_path)
    arrays = random_gemma_arrays(64, 80)
    gemma_scope_repo(cache, arrays, "google/gemma-scope-2b-pt-res", "layer_1/width_16k/l0_9",
                     tmp_path)
    for ref, arch, w_dec in (("hf://someone/tiny-saes/l1", "relu", sae.W_dec.detach().numpy()),
                             ("hf://google/gemma-scope-2b-pt-res/layer_1/width_16k/l0_9",
                              "jumprelu", arrays["W_dec"])):
        argv = ["dict", "inspect", ref, "--feature", "5", "--model", str(folder), "--corpus",
                str(corpus), "--contexts", "4", "--top", "2", "--per-bin", "1", "--json"]
        assert main(argv) == 0
        report = json.loads(capsys.readouterr().out)
        info = report["dictionary"]
        assert info["architecture"] == arch and info["hook_name"] == "blocks.1.hook_resid_post"
        assert (info["d_in"], info["d_sae"]) == w_dec.shape[::-1]
        np.testing.assert_allclose(report["decoder_norm"], np.linalg.norm(w_dec[5]), rtol=1e-5)
        assert report["logit_lens"]["top"] and report["stats"]["n_contexts"] == 4
    assert main(["dict", "inspect", "hf://someone/absent/l1", "--feature", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "hf://someone/absent/l1" in err and "hf download" in err
