"""The shared sampler on the glyph family: image tokens only, seeded, raw log-probs, guidance."""

from __future__ import annotations

import pytest
import torch

from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import filter_scores
from imagepref.policy.static_decoder import StaticDecoder

PROMPTS = ['a red sign that says "OPEN"', 'the word "SALE" in blue', '"HI" written in green']


@pytest.fixture(scope="module")
def generator():
    return micro_generator(seed=0)


def test_only_image_tokens_are_sampled(generator):
    samples = generator.sample(PROMPTS, seed=1, guidance_scale=3.0)
    start, end = generator.config.image_token_range
    assert samples.codes.shape == (3, generator.num_codes)
    assert (samples.completion_ids >= start).all() and (samples.completion_ids < end).all()
    assert len(samples.images) == 3 and samples.images[0].size == (64, 64)


def test_same_seed_same_images_and_other_seed_differs(generator):
    a = generator.sample(PROMPTS, seed=7)
    b = generator.sample(PROMPTS, seed=7)
    c = generator.sample(PROMPTS, seed=8)
    assert torch.equal(a.codes, b.codes)
    assert [i.tobytes() for i in a.images] == [i.tobytes() for i in b.images]
    assert not torch.equal(a.codes, c.codes)


@pytest.mark.parametrize(
    "settings",
    [
        dict(guidance_scale=3.0),
        dict(guidance_scale=1.0),
        dict(guidance_scale=2.0, temperature=0.7, top_k=20, top_p=0.9),
    ],
)
def test_reported_logprobs_equal_teacher_forcing(generator, settings):
    samples = generator.sample(PROMPTS, seed=3, **settings)
    forced = generator.image_logprobs(samples.prompt_ids, samples.codes)
    torch.testing.assert_close(forced, samples.logprobs, atol=1e-4, rtol=0)
    # Raw log-probs are over the image codes: never above 0, and not renormalised by top-k/top-p.
    assert (samples.logprobs <= 0).all()


def test_guidance_scale_one_equals_the_unconditional_path_off(generator):
    plain = generator.sample(PROMPTS, seed=5, guidance_scale=1.0)
    batched = generator.sample(PROMPTS, seed=5, guidance_scale=1.0, batch_unconditional=True)
    assert torch.equal(plain.codes, batched.codes)
    torch.testing.assert_close(plain.logprobs, batched.logprobs, atol=1e-5, rtol=0)
    guided = generator.sample(PROMPTS, seed=5, guidance_scale=4.0)
    assert not torch.equal(plain.codes, guided.codes)


def test_filter_scores_top_k_and_top_p():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_scores(scores, 1.0, 2, 1.0)[0, 2:]).all()
    kept = ~torch.isinf(filter_scores(scores, 1.0, 0, 0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, the token crossing p is kept
    torch.testing.assert_close(filter_scores(scores, 2.0, 0, 1.0), scores / 2)


def test_static_cache_runs_lora_wrapped_models_like_the_generic_path():
    # Adapters on attention and MLP projections, so every fused weight carries a LoRA delta.
    from peft import LoraConfig, get_peft_model

    generator = micro_generator(seed=1)
    targets = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    generator.model = get_peft_model(generator.model, LoraConfig(r=4, lora_alpha=8, target_modules=targets))
    for name, parameter in generator.model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.3)  # adapters that change the output
    decoder = StaticDecoder.for_generator(generator, 2, 4, 4)
    assert decoder is not None
    # Adapters folded into the weights: the projections are plain functions, not the peft modules.
    assert not any(isinstance(p, torch.nn.Module) for projections in decoder.projections for p in projections)
    lean = generator.sample(PROMPTS, seed=2, guidance_scale=2.0, decode=False)
    plain = generator.sample(PROMPTS, seed=2, guidance_scale=2.0, decode=False, static_cache=False)
    assert torch.equal(lean.codes, plain.codes)
    torch.testing.assert_close(lean.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    with generator.model.disable_adapter():
        base = generator.sample(PROMPTS, seed=2, guidance_scale=2.0, decode=False)
        base_plain = generator.sample(PROMPTS, seed=2, guidance_scale=2.0, decode=False, static_cache=False)
    assert torch.equal(base.codes, base_plain.codes) and not torch.equal(base.codes, lean.codes)


def test_lora_dropout_in_training_mode_is_not_folded_into_weights():
    from peft import LoraConfig, get_peft_model

    from imagepref.policy.static_decoder import _effective_weight

    model = get_peft_model(micro_generator(seed=1).model, LoraConfig(r=4, lora_dropout=0.1, target_modules=["q_proj"]))
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    model.train()
    assert _effective_weight(q_proj) is None  # dropout draws per call: the module must run it
    model.eval()
    torch.testing.assert_close(_effective_weight(q_proj), q_proj.base_layer.weight + q_proj.get_delta_weight("default"))


def test_projections_it_cannot_fold_run_as_modules_with_the_same_results():
    from transformers import LlamaForCausalLM

    generator = micro_generator(seed=0)
    config = generator.model.config
    config.attention_bias = True  # biased q/k/v/o: not folded, the modules run
    torch.manual_seed(0)
    generator.model = LlamaForCausalLM(config).eval()
    decoder = StaticDecoder.for_generator(generator, 2, 4, 4)
    assert decoder is not None and isinstance(decoder.projections[0][1], torch.nn.Module)
    lean = generator.sample(PROMPTS, seed=1, guidance_scale=2.0, decode=False)
    plain = generator.sample(PROMPTS, seed=1, guidance_scale=2.0, decode=False, static_cache=False)
    assert torch.equal(lean.codes, plain.codes)
    torch.testing.assert_close(lean.logprobs, plain.logprobs, atol=1e-5, rtol=0)
