"""Edit turns: the turn format, Generator.edit through the shared sampler, and the families that
cannot edit."""

from __future__ import annotations

import pytest
import torch

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.policy.editing import EditingUnsupportedError, edit_prompts, encode_edit_turns
from imagepref.policy.families import tiny_generator
from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import EncodedPrompt, sample, teacher_forced_logprobs

PROMPT = 'a red sign that says "OPEN"'


@pytest.fixture(scope="module")
def glyph():
    return micro_generator(seed=0)


@pytest.fixture(scope="module")
def source(glyph):
    return glyph.sample([PROMPT, PROMPT], seed=1, guidance_scale=1.0)


def test_glyph_turn_is_prompt_source_block_padded_instruction_boi_then_source_background(glyph, source):
    (turn,) = encode_edit_turns(glyph, source.codes[:1], ["make the ink blue"], [PROMPT])
    block = glyph.codes_to_block(source.codes[:1])[0].tolist()
    head = glyph.encode_prompts([PROMPT])[0]
    assert turn[: len(head)] == head and turn[len(head) : len(head) + len(block)] == block
    assert turn[-1] == block[0]  # the source's background code: the new background is read there
    tail = glyph.tokenizer.decode(turn[len(head) + len(block) : -1])
    assert tail == "<eoi>" + "make the ink blue".ljust(glyph.instruction_width) + "<boi>"
    assert glyph.tokenizer.decode(head) == f"<bos>{PROMPT}<boi>"


def test_the_unconditional_turn_keeps_the_source_and_drops_the_instruction(glyph, source):
    conditional = encode_edit_turns(glyph, source.codes[:1], ["make the ink blue"], [PROMPT])[0]
    blank = encode_edit_turns(glyph, source.codes[:1], ["make the ink blue"], [PROMPT], unconditional=True)[0]
    assert len(blank) == len(conditional)  # the padded instruction keeps every offset
    context = len(glyph.encode_prompts([PROMPT])[0]) + glyph.num_codes
    assert blank[:context] == conditional[:context]
    assert glyph.tokenizer.decode(blank[context:-1]) == "<eoi>" + " " * glyph.instruction_width + "<boi>"
    assert blank[-1] == conditional[-1] == conditional[len(glyph.encode_prompts([PROMPT])[0])]


def test_instruction_longer_than_the_width_is_one_line(glyph, source):
    with pytest.raises(BadInputError, match="at most 48 characters"):
        encode_edit_turns(glyph, source.codes[:1], ["x" * 49])


def test_edit_returns_what_sample_returns_with_the_raw_logprobs(glyph, source):
    edited = glyph.edit(source.codes, ["make the ink blue", "add a frame"], [PROMPT, ""], seed=3)
    assert edited.codes.shape == (2, glyph.num_codes) and len(edited.images) == 2
    assert edited.prompts == ["make the ink blue", "add a frame"]
    again = teacher_forced_logprobs(glyph, edited.prompt_ids, edited.codes)
    assert torch.allclose(again, edited.logprobs, atol=1e-4)
    generic = glyph.edit(source.codes, ["make the ink blue", "add a frame"], [PROMPT, ""], seed=3, static_cache=False)
    assert torch.equal(generic.codes, edited.codes)


def test_edit_guidance_contrasts_with_the_unconditional_turn(glyph, source):
    """Guidance 0 samples the unconditional context alone: exactly the turn without instruction."""
    instructions = ["make the ink blue", "remove the box"]
    guided = glyph.edit(source.codes, instructions, seed=5, guidance_scale=0.0)
    blank = encode_edit_turns(glyph, source.codes, instructions, unconditional=True)
    plain = sample(glyph, [EncodedPrompt(i, b, b) for i, b in zip(instructions, blank)], seed=5, guidance_scale=1.0)
    assert torch.equal(guided.codes, plain.codes)


def test_causal_vq_family_edits_in_the_same_format():
    generator = tiny_generator("causal-vq")
    first = generator.sample(["ab"], seed=0)
    edited = generator.edit(first.codes, ["make it red"], ["ab"], seed=0)
    assert edited.codes.shape == (1, generator.num_codes)
    text = generator.tokenizer.decode(edited.prompt_ids[0])
    assert text.startswith(generator.tokenizer.decode(generator.encode_prompts(["ab"])[0]))
    assert text.endswith("<eoi>make it red<boi>")
    again = teacher_forced_logprobs(generator, edited.prompt_ids, edited.codes)
    assert torch.allclose(again, edited.logprobs, atol=1e-4)


@pytest.mark.parametrize("family", ["emu3", "janus"])
def test_families_that_cannot_edit_say_so_in_one_line(family):
    generator = tiny_generator(family)
    codes = torch.zeros(1, generator.num_codes, dtype=torch.long)
    with pytest.raises(EditingUnsupportedError) as raised:
        generator.edit(codes, ["make it red"])
    assert isinstance(raised.value, ImagePrefError)
    assert f"the {family} family cannot edit" in str(raised.value) and "\n" not in str(raised.value)


def test_bad_sources_and_instructions_are_one_line(glyph, source):
    with pytest.raises(BadInputError, match="needs a source image"):
        glyph.edit(None, ["make the ink blue"])
    with pytest.raises(BadInputError, match="another codec"):
        glyph.edit(torch.zeros(1, 16, dtype=torch.long), ["make the ink blue"])
    with pytest.raises(BadInputError, match="another codec"):
        glyph.edit(torch.full((1, glyph.num_codes), 10_000), ["make the ink blue"])
    with pytest.raises(BadInputError, match="one each"):
        glyph.edit(source.codes, ["make the ink blue"])
    with pytest.raises(BadInputError, match="needs an instruction"):
        edit_prompts(glyph, source.codes[:1], ["  "])
    with pytest.raises(BadInputError, match="mixes edit turns"):
        turn = edit_prompts(glyph, source.codes[:1], ["add a frame"])[0]
        sample(glyph, [turn, PROMPT])
