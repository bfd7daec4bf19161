"""Edit turns for token-predicting generators: the turn format, and sampling an edit.

A turn continues the sequence that made the source image with an instruction, then a new image:

    {prompt template around the source prompt}{source image block}<eoi>{instruction}<boi>{lead}

that is, for the glyph family ``<bos>{prompt}<boi>{codes}<eoi>{instruction}<boi>{background}``,
and the new image's codes follow. ``{lead}`` is the source's first ``Generator.edit_lead_codes``
codes (none for most families; the glyph family's source background code), written as context
and not part of the new image. Why the glyph family needs it: its first code is the background,
which no prompt names, so pretraining taught the position after ``<boi>`` a fixed uniform guess
over the backgrounds that no context moves; trained to copy the source's background from there,
the loss stayed at log 4 for hundreds of steps. Read at the source's own background code, the
new background is "this code, unless the instruction changes it", learned within a hundred
steps. The source prompt is the prompt that made the source, or empty when it is
not known (an image that was itself an edit: the chat passes its first prompt on the first turn
only). The glyph family pads the instruction with spaces to a fixed ``instruction_width``
characters, so every code of the new image sits at the same distance from the source code at its
place, whatever the instruction: copying what is kept is one fixed attention offset.

The unconditional context for guidance on an edit keeps the source and drops the instruction:
``{source prompt}{source block}<eoi><boi>{lead}`` (the glyph family's padded blank instruction). Edit
training shows it with the source as the target, so it means "the source, unchanged", and
guidance ``cond + (g - 1) * (cond - uncond)`` pushes the new image towards what the instruction
changes while the source holds everything else (the image-conditioned guidance of instruction
editing models).

Families whose token format cannot carry a source image block (``Generator.can_edit`` False:
Emu3, Janus) raise ``EditingUnsupportedError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from imagepref.errors import BadInputError, ImagePrefError

if TYPE_CHECKING:
    from imagepref.policy.generator import Generator
    from imagepref.policy.sampler import Samples

EDIT_TEMPLATE = "<eoi>{instruction}<boi>"


class EditingUnsupportedError(ImagePrefError):
    """The generator's family has no edit-turn format."""


def check_can_edit(generator: Generator) -> None:
    """One line when ``generator``'s family cannot edit."""
    if not generator.can_edit:
        raise EditingUnsupportedError(
            f"the {generator.family} family cannot edit images (no edit-turn format); "
            "use a glyph or causal-vq generator"
        )


def source_codes_tensor(generator: Generator, source_codes) -> torch.Tensor:
    """Source image codes as a (batch, num_codes) long tensor, with one-line errors for a missing
    source and for codes another codec made."""
    if source_codes is None or (hasattr(source_codes, "__len__") and len(source_codes) == 0):
        raise BadInputError("an instruction needs a source image: generate one from a prompt first")
    codes = torch.as_tensor(source_codes)
    if codes.dim() == 1:
        codes = codes[None]
    if codes.dim() != 2 or codes.shape[1] != generator.num_codes:
        raise BadInputError(
            f"a source image for this generator is {generator.num_codes} codes, not {list(codes.shape[1:])}: "
            "was it made by another codec?"
        )
    if codes.dtype.is_floating_point or codes.min() < 0 or codes.max() >= generator.config.num_image_tokens:
        raise BadInputError(
            f"source codes must be whole numbers in [0, {generator.config.num_image_tokens}): "
            "was the source made by another codec?"
        )
    return codes.long()


def instruction_text(generator: Generator, instruction: str) -> str:
    """The instruction as written into the turn (padded to the family's ``instruction_width``)."""
    instruction = " ".join(instruction.split())
    width = generator.instruction_width
    if width is None:
        return instruction
    if len(instruction) > width:
        raise BadInputError(
            f"an instruction for this generator is at most {width} characters; "
            f"{instruction[:20]!r}... has {len(instruction)}"
        )
    return instruction.ljust(width)


def encode_edit_turns(
    generator: Generator,
    source_codes,
    instructions: list[str],
    source_prompts: list[str] | None = None,
    unconditional: bool = False,
) -> list[list[int]]:
    """Edit turns to the token ids before the new image's first code (see the module docstring).
    With ``unconditional=True``, the turns' unconditional contexts for guidance (no instruction)."""
    check_can_edit(generator)
    codes = source_codes_tensor(generator, source_codes)
    if len(instructions) != codes.shape[0]:
        raise BadInputError(f"{len(instructions)} instructions for {codes.shape[0]} source images: give one each")
    source_prompts = list(source_prompts) if source_prompts is not None else [""] * len(instructions)
    if len(source_prompts) != len(instructions):
        raise BadInputError(f"{len(source_prompts)} source prompts for {len(instructions)} instructions")
    template = generator.config.extra.get("edit_template", EDIT_TEMPLATE)
    heads = [generator.encode_prompts([p])[0] for p in source_prompts]
    blocks = generator.codes_to_block(codes).tolist()
    texts = [template.format(instruction=instruction_text(generator, "" if unconditional else i)) for i in instructions]
    tails = generator.tokenizer(texts, add_special_tokens=False).input_ids
    lead = generator.edit_lead_codes
    return [head + block + tail + block[:lead] for head, block, tail in zip(heads, blocks, tails)]


def edit_prompts(generator: Generator, source_codes, instructions: list[str], source_prompts: list[str] | None = None):
    """The turns as the sampler's ``EncodedPrompt``s: each labelled by its instruction."""
    from imagepref.policy.sampler import EncodedPrompt

    instructions = list(instructions)
    for instruction in instructions:
        if not isinstance(instruction, str) or not instruction.strip():
            raise BadInputError("an edit needs an instruction: say what to change")
    conditional = encode_edit_turns(generator, source_codes, instructions, source_prompts)
    blank = encode_edit_turns(generator, source_codes, instructions, source_prompts, unconditional=True)
    return [EncodedPrompt(i, ids, u) for i, ids, u in zip(instructions, conditional, blank)]


def edit(
    generator: Generator,
    source_codes,
    instructions: list[str],
    source_prompts: list[str] | None = None,
    **settings,
) -> Samples:
    """Sample one edited image per (source codes, instruction) through the shared sampler
    (``policy.sampler.sample``, any of its settings: guidance, temperature, seed, decoding...).

    Returns ``Samples`` like ``Generator.sample``: the new codes, images and raw log-probs, with
    ``prompts`` the instructions and ``prompt_ids`` the whole turn contexts (what
    ``teacher_forced_logprobs`` needs to score the edit again)."""
    from imagepref.policy.sampler import sample

    return sample(generator, edit_prompts(generator, source_codes, instructions, source_prompts), **settings)


def edit_row(
    generator: Generator,
    source_codes: torch.Tensor,
    instruction: str | None,
    target_codes: torch.Tensor,
    source_prompt: str = "",
) -> tuple[list[int], int]:
    """A training sequence for one edit turn: the turn context (with ``instruction`` None, the
    unconditional context), the target's image block, then ``<eoi><eos>``. Returns the ids and
    the length of the context (the loss covers what follows it)."""
    context = encode_edit_turns(
        generator, source_codes[None], [instruction or ""], [source_prompt], unconditional=instruction is None
    )[0]
    end = [generator.tokenizer.convert_tokens_to_ids("<eoi>"), generator.tokenizer.eos_token_id]
    return context + generator.codes_to_block(target_codes[None].long())[0].tolist() + end, len(context)
