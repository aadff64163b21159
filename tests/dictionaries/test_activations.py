"""Corpus reading, contexts with BOS, activations without BOS, shuffling, activation files."""

from __future__ import annotations

import json

import pytest
import torch

from dictionaries import activations as A
from dictionaries.config import ActivationConfig, DictionaryConfigError
from tests.helpers import embedded_tokenizer, tiny_llama

DOCS = ["The cat sat on the mat.", "Paris is the capital of France.", "2 + 2 = 4"]


def test_read_texts__txt_and_jsonl(tmp_path):
    (tmp_path / "c.txt").write_text("\n".join(DOCS[:2]) + "\n\n" + DOCS[2] + "\n")
    assert list(A.read_texts(tmp_path / "c.txt")) == DOCS
    (tmp_path / "c.jsonl").write_text("".join(json.dumps({"body": d}) + "\n" for d in DOCS))
    assert list(A.read_texts(str(tmp_path / "c.jsonl"), text_column="body")) == DOCS
    with pytest.raises(DictionaryConfigError, match="text-column"):
        list(A.read_texts(str(tmp_path / "c.jsonl")))


def test_read_texts__saved_dataset_folder_and_datasets_loader_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": DOCS, "n": [1, 2, 3]}).save_to_disk(tmp_path / "saved")
    assert list(A.read_texts(tmp_path / "saved")) == DOCS
    with pytest.raises(DictionaryConfigError, match="no column 'body'"):
        list(A.read_texts(tmp_path / "saved", text_column="body"))
    # A folder of data files goes through datasets.load_dataset, the loader used for hub ids.
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "train.jsonl").write_text(
        "".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    assert list(A.read_texts(tmp_path / "files")) == DOCS


def test_iter_contexts__bos_then_eos_joined_tokens():
    tok = embedded_tokenizer()
    contexts = list(A.iter_contexts(DOCS * 4, tok, context_size=9))
    stream = []
    for d in DOCS * 4:
        stream += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert all(len(c) == 9 and int(c[0]) == tok.bos_token_id for c in contexts)
    assert len(contexts) == len(stream) // 8
    assert torch.cat([c[1:] for c in contexts]).tolist() == stream[: 8 * len(contexts)]


def test_stream_activations__match_hf_hidden_states_without_bos():
    model = tiny_llama()
    tok = model.tokenizer
    contexts = list(A.iter_contexts(DOCS * 6, tok, context_size=12))[:5]
    cfg = ActivationConfig(hook_name="blocks.0.hook_resid_post", context_size=12,
                           contexts_per_batch=2)
    chunks = list(A.stream_activations(model.bridge, contexts, cfg))
    assert [len(c) for c in chunks] == [22, 22, 11]  # 2, 2, 1 contexts x 11 non-BOS tokens
    with torch.no_grad():
        hidden = model.hf_model(torch.stack(contexts), output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(torch.cat(chunks), hidden[:, 1:].reshape(-1, 64),
                               atol=1e-4, rtol=1e-4)
    # a plain callable works too
    plain = list(A.stream_activations(lambda t: t[..., None].float().repeat(1, 1, 3),
                                      contexts[:1], cfg))
    assert plain[0][:, 0].tolist() == contexts[0][1:].float().tolist()


def test_shuffle_batches__keeps_every_row_once_and_mixes():
    chunks = [torch.arange(i * 10, (i + 1) * 10).float()[:, None] for i in range(10)]
    batches = list(A.shuffle_batches(chunks, batch_size=8, buffer_tokens=32, seed=1))
    assert all(b.shape == (8, 1) for b in batches)
    seen = torch.cat(batches).flatten().long().tolist()
    assert len(seen) == len(set(seen)) == 96  # 100 rows, the partial last batch dropped
    assert seen[:8] != sorted(seen[:8])


def test_cache_and_load_activations__round_trip_and_errors(tmp_path):
    chunks = [torch.randn(30, 4) for _ in range(4)]
    shards = A.cache_activations(chunks, tmp_path / "cache", n_tokens=100, shard_tokens=40,
                                 progress=False)
    assert [p.name for p in shards] == ["shard_00000.safetensors", "shard_00001.safetensors",
                                        "shard_00002.safetensors"]
    torch.testing.assert_close(A.load_activations(tmp_path / "cache"), torch.cat(chunks)[:100])
    A.save_activations(tmp_path / "one.safetensors", chunks[0])
    torch.testing.assert_close(A.load_activations(tmp_path / "one.safetensors"), chunks[0])
    from safetensors.torch import save_file
    save_file({"acts": chunks[0]}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(DictionaryConfigError, match="no tensor named 'activations'"):
        A.load_activations(tmp_path / "wrong.safetensors")
