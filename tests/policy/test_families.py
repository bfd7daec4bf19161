"""The same checks for every generator family (glyph, Emu3, Janus-Pro, causal LM + VQModel), on tiny
random models built in code, plus the checks against each family's own transformers generation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from imagepref.errors import ImagePrefError
from imagepref.policy.families import tiny_generator as tiny
from imagepref.policy.families.causal_vq import CausalVQGenerator
from imagepref.policy.families.emu3 import Emu3Generator
from imagepref.policy.families.janus import JanusGenerator
from imagepref.policy.generator import load_generator
from imagepref.policy.sampler import teacher_forced_logprobs
from imagepref.policy.static_decoder import StaticDecoder

FAMILIES = ["glyph", "emu3", "janus", "causal-vq"]
PROMPTS = ['a red sign that says "OPEN"', 'the word "HI"', "a plain sign"]
LORA_NAMES = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def saved(family, tmp_path_factory):
    """A tiny generator of each family saved to a folder, and the generator itself."""
    generator = tiny(family)
    path = tmp_path_factory.mktemp(family) / "model"
    generator.save_pretrained(path)
    return path, generator


def test_sample_then_decode(saved):
    _, generator = saved
    samples = generator.sample(PROMPTS, guidance_scale=3.0, temperature=0.9, top_k=20, seed=3)
    layout = generator.block_layout()
    assert samples.codes.shape == (3, generator.num_codes)
    assert samples.codes.min() >= 0 and samples.codes.max() < generator.config.num_image_tokens
    assert samples.completion_ids.shape == (3, len(layout))
    for position, forced in enumerate(layout):
        if forced is not None:
            assert (samples.completion_ids[:, position] == forced).all()
    assert torch.equal(generator.block_to_codes(samples.completion_ids), samples.codes)
    height, width = generator.config.image_size
    assert [image.size for image in samples.images] == [(width, height)] * 3
    pixels = np.stack([np.asarray(image) for image in samples.images])
    assert pixels.std() > 0  # a real decode, not a blank placeholder
    # Same seed, same codes; another seed, other codes.
    again = generator.sample(PROMPTS, guidance_scale=3.0, temperature=0.9, top_k=20, seed=3, decode=False)
    other = generator.sample(PROMPTS, guidance_scale=3.0, temperature=0.9, top_k=20, seed=4, decode=False)
    assert torch.equal(again.codes, samples.codes) and not torch.equal(other.codes, samples.codes)
    # The codec reads its own pictures back to codes of the same shape.
    assert generator.encode_images(samples.images).shape == samples.codes.shape


def test_reported_logprobs_equal_teacher_forcing(saved):
    _, generator = saved
    # Guidance, temperature and top-k change what is sampled, never the reported (raw) log-probs.
    samples = generator.sample(PROMPTS, guidance_scale=4.0, temperature=0.7, top_k=10, seed=1, decode=False)
    forced = teacher_forced_logprobs(generator, samples.prompt_ids, samples.codes)
    torch.testing.assert_close(forced.cpu(), samples.logprobs, atol=2e-5, rtol=0)
    assert (samples.logprobs < 0).all()
    with_grad = teacher_forced_logprobs(generator, samples.prompt_ids, samples.codes, grad=True)
    with_grad.sum().backward()
    grads = [p.grad for p in generator.model.parameters() if p.grad is not None]
    generator.model.zero_grad(set_to_none=True)
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_static_cache_path_equals_the_generic_path(saved, family):
    _, generator = saved
    # Every family whose decoder is Llama-shaped takes the lean path; Janus (own image embeddings
    # and head) samples through Generator.forward.
    assert (StaticDecoder.for_generator(generator, 1, 1, 1) is not None) == (family != "janus")
    prompts = PROMPTS + PROMPTS[:1]  # a repeated prompt: its prefill is shared
    for settings in (dict(guidance_scale=3.0, top_k=20), dict(guidance_scale=1.0)):
        lean = generator.sample(prompts, seed=4, decode=False, **settings)
        plain = generator.sample(prompts, seed=4, decode=False, static_cache=False, **settings)
        assert torch.equal(lean.codes, plain.codes)
        torch.testing.assert_close(lean.logprobs, plain.logprobs, atol=2e-5, rtol=0)


def test_block_shape_of_emu3_has_end_of_row_markers():
    generator = Emu3Generator.tiny()
    rows, columns = generator.config.grid
    layout = generator.block_layout()
    assert len(layout) == rows * (columns + 1) + 3
    assert layout[columns] == generator.end_of_row and layout[-3:] == [
        generator.end_of_frame,
        generator.image_end,
        generator.eos,
    ]
    assert sum(slot is None for slot in layout) == generator.num_codes


def test_emu3_matches_transformers_generation_with_forced_tokens_and_guidance():
    generator = Emu3Generator.tiny(layers=2)
    generator.config.extra["negative_prompt"] = "blurry"
    samples = generator.sample(PROMPTS[:1], guidance_scale=3.0, top_k=1, decode=False)
    ids = torch.tensor(generator.encode_prompts(PROMPTS[:1]))
    negative = torch.tensor(generator.encode_prompts(PROMPTS[:1], unconditional=True))
    layout, visual = generator.block_layout(), list(range(*generator.config.image_token_range))

    def allowed(batch_id, input_ids):  # Emu3's documented prefix_allowed_tokens_fn, from our layout
        step = input_ids.shape[0] - ids.shape[1]
        return visual if step >= len(layout) or layout[step] is None else [layout[step]]

    out = generator.model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=len(layout),
        do_sample=False,
        prefix_allowed_tokens_fn=allowed,
        guidance_scale=3.0,
        negative_prompt_ids=negative,
        negative_prompt_attention_mask=torch.ones_like(negative),
    )
    assert out[0, ids.shape[1] :].tolist() == samples.completion_ids[0].tolist()
    rows, columns = generator.config.grid
    theirs = generator.model.decode_image_tokens(image_tokens=samples.completion_ids, height=rows, width=columns)
    ours = torch.from_numpy(np.array(generator.decode(samples.codes)[0])).float()
    expected = ((theirs[0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2 * 255).round()
    assert (ours - expected).abs().max() <= 1


def test_janus_matches_transformers_generation_with_its_unconditional_convention():
    from imagepref.policy.families.janus import IMAGE_START

    generator = JanusGenerator.tiny(layers=2)
    uncond = generator.encode_prompts(PROMPTS[:1], unconditional=True)[0]
    cond = generator.encode_prompts(PROMPTS[:1])[0]
    assert len(uncond) == len(cond) and uncond[0] == cond[0] and uncond[-1] == cond[-1]
    assert set(uncond[1:-1]) == {generator.pad_token_id}
    samples = generator.sample(PROMPTS[:1], guidance_scale=4.0, top_k=1, decode=False)
    model = generator.model
    model.generation_config.generation_kwargs = {"boi_token_id": generator.tokenizer.convert_tokens_to_ids(IMAGE_START)}
    model.generation_config.pad_token_id = generator.pad_token_id
    model.generation_config.bos_token_id = generator.tokenizer.bos_token_id
    ids = torch.tensor([cond])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), generation_mode="image", do_sample=False, guidance_scale=4.0
    )
    assert out.tolist() == samples.codes.tolist()
    theirs = ((model.decode_image_tokens(samples.codes)[0].clamp(-1, 1) + 1) / 2 * 255).round()
    ours = torch.from_numpy(np.array(generator.decode(samples.codes)[0])).float()
    assert (ours - theirs).abs().max() <= 1


def test_save_and_reload_give_the_same_samples(saved):
    path, generator = saved
    reloaded = load_generator(path)
    assert reloaded.family == generator.family and reloaded.config == generator.config
    first = generator.sample(PROMPTS, seed=5, decode=False)
    second = reloaded.sample(PROMPTS, seed=5, decode=False)
    assert torch.equal(first.codes, second.codes)
    torch.testing.assert_close(first.logprobs, second.logprobs, atol=1e-5, rtol=0)
    assert not any(p.suffix in {".bin", ".pt", ".pkl"} for p in path.rglob("*"))


def test_dtype_option_loads_in_bfloat16(saved):
    path, _ = saved
    generator = load_generator(path, dtype=torch.bfloat16, device="cpu")
    assert generator.model.dtype == torch.bfloat16
    samples = generator.sample(PROMPTS[:2], seed=0, decode=False)
    torch.testing.assert_close(
        teacher_forced_logprobs(generator, samples.prompt_ids, samples.codes).cpu(), samples.logprobs, atol=0.05, rtol=0
    )


def _lora(generator, seed: int = 0):
    """Wrap the generator's model in LoRA on its language model, with non-zero B so it changes outputs."""
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=generator.lora_target_modules(LORA_NAMES))
    peft_model = get_peft_model(generator.model, config)
    torch.manual_seed(seed)
    for name, parameter in peft_model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.3)
    return peft_model


def test_adapter_save_reload_and_merge(saved, tmp_path):
    path, _ = saved
    base = load_generator(path)
    samples = base.sample(PROMPTS, seed=2, decode=False)
    before = teacher_forced_logprobs(base, samples.prompt_ids, samples.codes)

    tuned = load_generator(path)
    tuned.model = _lora(tuned)
    wrapped = [n for n, _ in tuned.model.named_modules() if n.endswith("lora_A")]
    assert wrapped and not any("vqmodel" in n or "vision_model" in n for n in wrapped)
    after = teacher_forced_logprobs(tuned, samples.prompt_ids, samples.codes)
    assert (after - before).abs().max() > 1e-3
    tuned.model.save_pretrained(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    reloaded = load_generator(path)
    reloaded.model = PeftModel.from_pretrained(reloaded.model, str(tmp_path / "adapter"))
    torch.testing.assert_close(
        teacher_forced_logprobs(reloaded, samples.prompt_ids, samples.codes), after, atol=1e-5, rtol=0
    )
    reloaded.model = reloaded.model.merge_and_unload()
    torch.testing.assert_close(
        teacher_forced_logprobs(reloaded, samples.prompt_ids, samples.codes), after, atol=1e-4, rtol=0
    )
    reloaded.save_pretrained(tmp_path / "merged")
    merged = load_generator(tmp_path / "merged")
    torch.testing.assert_close(
        teacher_forced_logprobs(merged, samples.prompt_ids, samples.codes), after, atol=1e-4, rtol=0
    )


def test_text_only_model_gets_trainable_image_rows(tmp_path):
    generator = CausalVQGenerator.tiny()
    start, end = generator.config.image_token_range
    assert generator.model.get_input_embeddings().weight.shape[0] == end
    generator.model = get_peft_model(generator.model, generator.image_rows_peft_config(["q_proj", "v_proj"], r=4))
    trainable = {n for n, p in generator.model.named_parameters() if p.requires_grad}
    assert any("trainable_tokens" in n for n in trainable) and any("lora_" in n for n in trainable)
    original = generator.model.get_base_model().get_input_embeddings().token_adapter.base_layer.weight.clone()
    for name, parameter in generator.model.named_parameters():
        if "trainable_tokens_delta" in name:
            parameter.data.normal_(0, 1.0)
    generator.model.save_pretrained(str(tmp_path / "adapter"))
    merged = generator.model.merge_and_unload().get_input_embeddings().weight
    changed = (merged - original).abs().sum(-1) > 0
    assert changed[start:end].all() and not changed[: start - 2].any()


def test_janus_cannot_offer_a_plain_vocabulary_model_and_says_which_can():
    with pytest.raises(ImagePrefError, match="glyph, emu3, causal-vq"):
        JanusGenerator.tiny().vocabulary_model()
    # Emu3 can: a plain causal LM whose lm_head rows cover the image codes and whose logits, fed
    # the prompt and the drawn block as ids, give the very log-probs the sampler reported.
    generator = Emu3Generator.tiny()
    model = generator.vocabulary_model()
    start, end = generator.config.image_token_range
    assert model.get_output_embeddings().weight.shape[0] >= end
    samples = generator.sample(PROMPTS[:1], guidance_scale=1.0, temperature=1.0, seed=0, decode=False)
    prompt = samples.prompt_ids[0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + samples.completion_ids[0].tolist()])).logits
    predicting = logits[0, len(prompt) - 1 : -1]  # the logits at position t score token t+1
    slots = [i for i, forced in enumerate(generator.block_layout()) if forced is None]
    drawn = torch.log_softmax(predicting[slots][:, start:end].float(), dim=-1).gather(-1, samples.codes[0, :, None])[
        :, 0
    ]
    assert torch.allclose(drawn, samples.logprobs[0], atol=1e-4)
