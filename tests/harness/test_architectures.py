"""Every architecture the harness is tested on, with a tiny random model of each (tests/helpers):
magnitude 0 is plain HF ``generate`` (batched, left-padded, shared prefix on); each hook kind
records what the TransformerBridge's ``run_with_cache`` records; steering at a hook name equals
adding the same vector there in TransformerLens; per-head and residual steering change answers;
an architecture TransformerLens does not map is a one-line error; a user's .gguf boots offline."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from harness.config import ConfigError, GenerationConfig, ModelConfig
from harness.generation import generate_answers, generate_kwargs, plan_batches
from harness.kvcache import MIN_SHARED_PREFIX, common_prefix_length, pad_left
from harness.models import TESTED_ARCHITECTURES, LoadedModel, load_model
from harness.prompts import cut_answer, prompt_token_ids
from harness.steering import HOOK_KINDS, Intervention, hooks, resolve_hook, validate
from tests.helpers import (
    TINY_ARCHITECTURES,
    tiny_model_folder,
    tiny_model_of,
    write_tiny_llama_gguf,
)

QUESTIONS = ["Why is the sky blue?", "Who wrote Hamlet?",
             "What happens if you crack your knuckles?",
             "Is the Earth flat or round, and how do we know?", "Can pigs fly?"]
CFG = GenerationConfig(max_new_tokens=10, batch_size=len(QUESTIONS), prompt_style="qa")
NEAR_TIE_FACTOR = 20  # greedy top-1/top-2 logit gaps must exceed 20x the batching noise


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def arch_model(request, tmp_path_factory):
    """(LoadedModel through load_model from an HF folder, an independent plain HF copy)."""
    torch.set_num_threads(1)
    folder = tiny_model_folder(request.param, tmp_path_factory.mktemp(request.param))
    model = load_model(ModelConfig(str(folder), device="cpu", dtype="float32"))
    plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, plain


def _unit(seed: int, n: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _tokens(model, n: int = 12, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, n), generator=torch.Generator().manual_seed(seed))


def test_architectures__every_tiny_model_is_a_tested_architecture(arch_model):
    model, _ = arch_model
    assert type(model.hf_model).__name__ in TESTED_ARCHITECTURES
    assert model.hf_model.config.architectures == [type(model.hf_model).__name__]


def test_architectures__magnitude_zero_equals_plain_hf_generate_in_a_batch(arch_model):
    """A batch of prompts of different lengths, left-padded, the QA primer's cache shared:
    token for token what plain HF generate gives on an independent copy, with no near-ties on
    the greedy path (so the equality says something)."""
    model, plain = arch_model
    tok = model.tokenizer
    zero = [Intervention("blocks.1.hook_resid_post", _unit(0, model.d_model), 0.0),
            Intervention("blocks.0.attn.hook_z", _unit(1, resolve_hook(
                model, "blocks.0.attn.hook_z").width), 0.0, head=1)]
    got = generate_answers(model, QUESTIONS, CFG, zero, progress=False)

    prompts = [prompt_token_ids(q, "qa", tok) for q in QUESTIONS]
    assert common_prefix_length(prompts) >= MIN_SHARED_PREFIX  # the shared-prefix path ran
    assert len({len(p) for p in prompts}) == len(prompts)  # real left padding
    (batch,) = plan_batches([len(p) for p in prompts], CFG.batch_size)
    ids, mask = pad_left([prompts[i] for i in batch], tok.pad_token_id, torch.device("cpu"))
    with torch.inference_mode():
        ref = plain.generate(input_ids=ids, attention_mask=mask, output_logits=True,
                             return_dict_in_generate=True, **generate_kwargs(CFG, tok, "qa"))
    for row, i in enumerate(batch):
        generated = ref.sequences[row, ids.shape[1]:].tolist()
        while generated and generated[-1] == tok.pad_token_id:
            generated.pop()
        assert got[i]["generated_token_ids"] == generated
        assert (got[i]["answer_token_ids"], got[i]["answer"]) == cut_answer(generated, "qa", tok)
    assert sum(len(g["generated_token_ids"]) for g in got) >= 2 * len(QUESTIONS)

    # No near-ties: each greedy choice wins by far more than batching and padding move logits
    # (the batched reference's logits vs each prompt run alone, unpadded).
    gaps, noise = [], 0.0
    with torch.inference_mode():
        for row, i in enumerate(batch):
            p, g = prompts[i], got[i]["generated_token_ids"]
            alone = plain(torch.tensor([p + g])).logits[0, len(p) - 1:len(p) - 1 + len(g)]
            batched = torch.stack([step[row] for step in ref.logits[:len(g)]])
            noise = max(noise, (alone - batched).abs().max().item())
            top = alone.topk(2, dim=-1)
            assert top.indices[:, 0].tolist() == g
            gaps.append((top.values[:, 0] - top.values[:, 1]).min().item())
    assert noise < 1e-3 and min(gaps) > NEAR_TIE_FACTOR * noise, (min(gaps), noise)


def test_architectures__every_hook_kind_records_what_the_bridge_caches(arch_model):
    model, _ = arch_model
    ids = _tokens(model)
    names = [f"blocks.{layer}.{kind}" for layer in range(model.n_layers) for kind in HOOK_KINDS]
    with torch.inference_mode(), hooks(model, record=names) as state:
        model.hf_model(ids)
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(ids)
    for name in names:
        (ours,) = state.records[name]
        theirs = cache[name]
        assert ours.shape == theirs.shape, name
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kind", HOOK_KINDS)
def test_architectures__steering_at_a_hook_equals_adding_there_in_transformerlens(arch_model,
                                                                                   kind):
    """The same vector added at the same name: our hook on the HF model and a TransformerLens
    hook on the bridge give the same logits (and both differ from the unsteered ones)."""
    model, _ = arch_model
    name = f"blocks.0.{kind}"
    site = resolve_hook(model, name)
    vec, head, mag = _unit(3, site.width), (1 if kind == "attn.hook_z" else None), 8.0
    ids = _tokens(model, seed=1)

    def add_tl(act, hook):
        if head is None:
            return act + mag * vec
        act = act.clone()
        act[:, :, head] += mag * vec
        return act

    with torch.inference_mode():
        base = model.hf_model(ids).logits
        with hooks(model, [Intervention(name, vec, mag, head=head)]):
            ours = model.hf_model(ids).logits
        theirs = model.bridge.run_with_hooks(ids, fwd_hooks=[(name, add_tl)])
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=1e-4)
    assert (ours - base).abs().max() > 0.1


def test_architectures__per_head_steering_moves_only_that_head_and_changes_answers(arch_model):
    model, _ = arch_model
    name = "blocks.1.attn.hook_z"
    site = resolve_hook(model, name)
    vec, head = _unit(5, site.width), site.n_heads - 1
    iv = Intervention(name, vec, 16.0, head=head)
    ids = _tokens(model, seed=2)
    with torch.inference_mode():
        with hooks(model, record=[name]) as base:
            model.hf_model(ids)
        with hooks(model, [iv], record=[name]) as steered:
            model.hf_model(ids)
    z0, z1 = base.records[name][0], steered.records[name][0]
    assert z0.shape == (2, ids.shape[1], site.n_heads, site.width)
    others = [h for h in range(site.n_heads) if h != head]
    assert torch.equal(z1[:, :, others], z0[:, :, others])
    torch.testing.assert_close(z1[:, :, head] - z0[:, :, head], (16.0 * vec).expand(2, ids.shape[1],
                                                                                      -1))
    plain = generate_answers(model, QUESTIONS, CFG, progress=False)
    moved = generate_answers(model, QUESTIONS, CFG, [iv], progress=False)
    assert [a["generated_token_ids"] for a in moved] != [a["generated_token_ids"] for a in plain]


def test_architectures__residual_steering_changes_answers(arch_model):
    model, _ = arch_model
    iv = Intervention("blocks.1.hook_resid_post", _unit(6, model.d_model), 16.0)
    plain = generate_answers(model, QUESTIONS, CFG, progress=False)
    moved = generate_answers(model, QUESTIONS, CFG, [iv], progress=False)
    changed = sum(a["generated_token_ids"] != b["generated_token_ids"]
                  for a, b in zip(plain, moved))
    assert changed >= len(QUESTIONS) // 2


@pytest.mark.parametrize("arch", ["mistral", "gemma2", "gemma3"])
def test_architectures__sliding_window_shorter_than_the_prompts_keeps_answers_and_mc_scores(arch):
    """A sliding window (64 tokens) far shorter than the QA prompts (~600 byte tokens): batched
    answers equal each prompt generated alone, and multiple-choice log-probs equal a plain
    forward pass over prompt + answer (a cached prefix with padding after it would not)."""
    from harness.models import prepare_tokenizer
    from harness.multiple_choice import answer_logprobs

    hf, tok = tiny_model_of(arch, sliding_window=64)
    plain, _ = tiny_model_of(arch, sliding_window=64)
    model = LoadedModel(arch, hf, prepare_tokenizer(tok), torch.device("cpu"), torch.float32,
                        "random")
    assert model.attention_window == 64
    got = generate_answers(model, QUESTIONS, CFG, progress=False)
    prompts = [prompt_token_ids(q, "qa", tok) for q in QUESTIONS]
    with torch.inference_mode():
        for g, p in zip(got, prompts):
            ref = plain.generate(input_ids=torch.tensor([p]), **generate_kwargs(CFG, tok, "qa"))
            assert g["generated_token_ids"] == ref[0, len(p):].tolist()

        answers = [[tok(" Yes.")["input_ids"], tok(" I have no comment.")["input_ids"]]
                   for _ in prompts]
        scores = answer_logprobs(model, prompts, answers, batch_questions=3)
        for p, ans, row in zip(prompts, answers, scores):
            for a, score in zip(ans, row):
                logp = torch.log_softmax(plain(torch.tensor([p + a])).logits[0].float(), -1)
                expect = sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(a))
                assert score == pytest.approx(expect, abs=1e-3)


def test_architectures__unmapped_architecture_is_one_line_naming_the_tested_ones():
    from transformers import BioGptConfig, BioGptForCausalLM

    cfg = BioGptConfig(vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64)
    hf = BioGptForCausalLM(cfg).eval()
    hf.config.architectures = ["BioGptForCausalLM"]
    model = LoadedModel("tiny-biogpt", hf, None, torch.device("cpu"), torch.float32, "random")
    iv = Intervention("blocks.0.hook_resid_post", torch.ones(32), 1.0)
    with pytest.raises(ConfigError) as err:
        validate(model, [iv])
    message = str(err.value)
    assert "\n" not in message
    assert "tiny-biogpt" in message and "BioGptForCausalLM is not supported" in message
    assert all(arch in message for arch in TESTED_ARCHITECTURES)


def test_load_model__a_user_gguf_boots_the_bridge_offline_and_generates(tmp_path, monkeypatch):
    """A llama.cpp-layout GGUF (not the embedded one) is dequantized to the same weights, its
    bridge boots with the hub offline, hooks match the bridge, magnitude 0 is plain generate."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "my-tiny-llama.gguf"
    written = write_tiny_llama_gguf(path)
    model = load_model(ModelConfig(str(path), device="cpu", dtype="float32"))
    assert model.source.startswith(str(tmp_path / "cache" / "models"))
    theirs = model.hf_model.state_dict()
    for key, value in written.state_dict().items():
        assert torch.equal(theirs[key], value), key

    assert model.bridge.cfg.model_name == model.source  # booted from the converted folder
    ids = _tokens(model, seed=4)
    names = [f"blocks.1.{kind}" for kind in HOOK_KINDS]
    with torch.inference_mode(), hooks(model, record=names) as state:
        model.hf_model(ids)
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(ids)
    for name in names:
        torch.testing.assert_close(state.records[name][0], cache[name], atol=1e-4, rtol=1e-4)

    got = generate_answers(model, QUESTIONS[:3], CFG, progress=False)
    tok = model.tokenizer
    prompts = [prompt_token_ids(q, "qa", tok) for q in QUESTIONS[:3]]
    with torch.inference_mode():
        for g, p in zip(got, prompts):
            ref = written.generate(input_ids=torch.tensor([p]), **generate_kwargs(CFG, tok, "qa"))
            assert g["generated_token_ids"] == ref[0, len(p):].tolist()
