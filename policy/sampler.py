"""The image-token sampler shared by every generator family.

What it does differently from ``transformers`` ``generate(guidance_scale=...)``:

- classifier-free guidance is *batched*: conditional and unconditional rows go through one forward
  pass per step (transformers runs the unconditional branch as a second, unbatched pass);
- logits are restricted to the image-token range, and forced tokens of the block layout (Emu3's
  end-of-row markers) are fed without sampling;
- it reports the policy's own **raw** log-probs of each sampled code: a log-softmax over the whole
  vocabulary of the conditional row, before guidance, masking, temperature and top-k/top-p.
  Those are the numbers RL ratios and KL terms must use;
- for Llama-shaped decoders (glyph, Emu3, causal LMs) it decodes over a preallocated key/value
  buffer without transformers' per-step machinery, and runs identical prompt rows (the
  unconditional ones, a prompt asked for several images) once in the prefill
  (``policy.static_decoder``); other families go through ``Generator.forward``.

Sampling is seeded through a ``torch.Generator``, so the same seed, prompts and settings give the
same tokens.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.policy.static_decoder import StaticDecoder

if TYPE_CHECKING:
    # Only for annotations: ``Generator.sample`` calls this module, so it must not import back.
    from imagepref.policy.generator import Generator


@dataclasses.dataclass
class Samples:
    """What the sampler returns for a batch of prompts."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    codes: torch.Tensor  # (batch, num_codes) image codes in [0, num_image_tokens)
    logprobs: torch.Tensor  # (batch, num_codes) raw policy log-probs of the sampled tokens
    images: list[Image.Image]
    completion_ids: torch.Tensor  # (batch, block length) vocabulary ids of the whole image block


class EncodedPrompt(str):
    """A prompt whose context is already token ids: the text labels the sample, ``ids`` come before
    the image block and ``unconditional_ids`` are its context for guidance. Edit turns
    (``policy.editing``) reach the sampler this way, so every decoding path samples them."""

    ids: list[int]
    unconditional_ids: list[int]

    def __new__(cls, text: str, ids: list[int], unconditional_ids: list[int]) -> EncodedPrompt:
        prompt = super().__new__(cls, text)
        prompt.ids, prompt.unconditional_ids = list(ids), list(unconditional_ids)
        return prompt


def context_rows(generator: Generator, prompts: list[str], guided: bool) -> tuple[list[list[int]], list[list[int]]]:
    """(conditional rows, all rows to prefill): the prompts' ids, then with ``guided`` their
    unconditional contexts. ``EncodedPrompt``s bring their own ids; the rest the generator encodes."""
    if all(isinstance(p, EncodedPrompt) for p in prompts):
        prompt_ids = [p.ids for p in prompts]
        return prompt_ids, prompt_ids + ([p.unconditional_ids for p in prompts] if guided else [])
    if any(isinstance(p, EncodedPrompt) for p in prompts):
        raise BadInputError("a batch mixes edit turns with plain prompts: sample them apart")
    prompt_ids = generator.encode_prompts(prompts)
    return prompt_ids, prompt_ids + (generator.encode_prompts(prompts, unconditional=True) if guided else [])


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows; returns (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on each row's first real token."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def filter_scores(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Apply temperature, top-k and top-p (nucleus) to guided log-scores; returns logits to sample."""
    scores = scores / max(temperature, 1e-6)
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_scores, dim=-1) > top_p  # keep the token that crosses p
        scores = scores.scatter(-1, order, sorted_scores.masked_fill(drop, float("-inf")))
    return scores


@torch.no_grad()
def sample(
    generator: Generator,
    prompts: list[str],
    guidance_scale: float | None = None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    decode: bool = True,
    batch_unconditional: bool | None = None,
    static_cache: bool = True,
) -> Samples:
    """Sample one image per prompt; see the module docstring for what is returned and why.

    ``batch_unconditional`` forces (True) or skips (False) the unconditional rows; by default they
    run only when ``guidance_scale != 1``. ``guidance_scale=None`` takes the generator's own
    default (``Generator.default_guidance_scale``). ``static_cache=False`` forces the generic
    path through ``Generator.forward`` even for models ``policy.static_decoder`` can run.
    """
    if guidance_scale is None:
        guidance_scale = generator.default_guidance_scale
    if not prompts:
        raise BadInputError("no prompts to sample from: give at least one prompt")
    parts = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        parts.append(
            _sample_batch(
                generator,
                chunk,
                guidance_scale,
                temperature,
                top_k,
                top_p,
                seed + start,
                batch_unconditional,
                static_cache,
            )
        )
    codes = torch.cat([p[1] for p in parts])
    logprobs = torch.cat([p[2] for p in parts])
    prompt_ids = [ids for p in parts for ids in p[0]]
    images = generator.decode(codes) if decode else []
    return Samples(
        prompts=list(prompts),
        prompt_ids=prompt_ids,
        codes=codes,
        logprobs=logprobs,
        images=images,
        completion_ids=generator.codes_to_block(codes),
    )


def _sample_batch(
    generator: Generator,
    prompts: list[str],
    guidance_scale: float,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    batch_unconditional: bool | None,
    static_cache: bool,
):
    device = generator.device
    batch = len(prompts)
    guided = guidance_scale != 1.0 if batch_unconditional is None else batch_unconditional
    prompt_ids, rows = context_rows(generator, prompts, guided)
    pad_id = generator.pad_token_id
    input_ids, mask = left_pad(rows, pad_id, device)
    pos = positions(mask)
    rng = torch.Generator(device=device).manual_seed(seed)
    start = generator.config.image_token_start

    layout = generator.block_layout()
    decoder = (
        StaticDecoder.for_generator(generator, len(rows), input_ids.shape[1], len(layout)) if static_cache else None
    )
    if decoder is not None:
        last = decoder.prefill(input_ids, mask, pos)
    else:
        logits, cache = generator.forward(input_ids, mask, pos, inputs_embeds=generator.prompt_embeds(input_ids))
        last = logits[:, -1]
    codes, logprobs = [], []
    for step, forced in enumerate(layout):
        if forced is None:
            code_lp = generator.code_logprobs(last)
            cond = code_lp[:batch]
            scores = cond + (guidance_scale - 1.0) * (cond - code_lp[batch:]) if guided else cond
            probs = torch.softmax(filter_scores(scores, temperature, top_k, top_p), dim=-1)
            code = torch.multinomial(probs, 1, generator=rng)
            codes.append(code[:, 0])
            logprobs.append(cond.gather(1, code)[:, 0])
            token = code[:, 0] + start
        else:
            token = torch.full((batch,), forced, dtype=torch.long, device=device)
        if step == len(layout) - 1:
            break
        token = token.repeat(2) if guided else token
        pos = pos[:, -1:] + 1
        if decoder is not None:
            last = decoder.step(token, pos)
            continue
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        logits, cache = generator.forward(
            token[:, None], mask, pos, cache=cache, inputs_embeds=generator.embed_block(token[:, None])
        )
        last = logits[:, -1]
    return prompt_ids, torch.stack(codes, 1).cpu(), torch.stack(logprobs, 1).float().cpu()


def teacher_forced_logprobs(
    generator: Generator, prompt_ids: list[list[int]], codes: torch.Tensor, grad: bool = False
) -> torch.Tensor:
    """Log-probs (batch, num_codes) of ``codes`` after ``prompt_ids`` in one forward pass.

    Uses the same left padding and positions as the sampler, so the figures match what it reported.
    """
    device = generator.device
    block = generator.codes_to_block(codes.to(device))
    rows = [list(p) + b.tolist() for p, b in zip(prompt_ids, block)]
    input_ids, mask = left_pad(rows, generator.pad_token_id, device)
    with torch.set_grad_enabled(grad):
        embeds = generator.sequence_embeds(input_ids, block.shape[1])
        logits, _ = generator.forward(input_ids, mask, positions(mask), inputs_embeds=embeds)
        # The logits at position t predict token t+1: the block's tokens are the last L.
        predicting = logits[:, -block.shape[1] - 1 : -1]
        slots = [i for i, t in enumerate(generator.block_layout()) if t is None]
        code_lp = generator.code_logprobs(predicting[:, slots])
        return code_lp.gather(-1, codes.to(device).long()[..., None])[..., 0]
