"""The image-token sampler shared by every generator family.

What it does differently from ``transformers`` ``generate(guidance_scale=...)``:

- classifier-free guidance is *batched*: conditional and unconditional rows go through one forward
  pass per step (transformers runs the unconditional branch as a second, unbatched pass);
- logits are restricted to the image-token range, and forced tokens of the block layout (Emu3's
  end-of-row markers) are fed without sampling;
- it reports the policy's own **raw** log-probs of each sampled code: a log-softmax over the image
  codes of the conditional row (``Generator.code_logprobs``), before guidance, temperature and
  top-k/top-p. Those are the numbers RL ratios and KL terms must use;
- for Llama-shaped decoders (glyph, Emu3, causal LMs) it decodes over a preallocated key/value
  buffer without transformers' per-step machinery, and runs identical prompt rows (the
  unconditional ones, a prompt asked for several images) once in the prefill
  (``policy.static_decoder``); other families go through ``Generator.forward``;
- ``decoding="sjd"`` (speculative Jacobi decoding) verifies a window of draft codes per forward
  pass and keeps the accepted ones: the same distribution in fewer sequential passes, which pays
  where a pass costs about the same for one token as for a window (small batches).

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


# plain: one forward pass per block token; sjd: speculative Jacobi decoding (``_sample_batch_sjd``).
DECODINGS = ("plain", "sjd")


@dataclasses.dataclass
class Samples:
    """What the sampler returns for a batch of prompts."""

    prompts: list[str]
    prompt_ids: list[list[int]]
    codes: torch.Tensor  # (batch, num_codes) image codes in [0, num_image_tokens)
    logprobs: torch.Tensor  # (batch, num_codes) raw policy log-probs of the sampled tokens
    images: list[Image.Image]
    completion_ids: torch.Tensor  # (batch, block length) vocabulary ids of the whole image block
    forward_passes: int = 0  # sequential forward passes of the model, prefill included, over all batches


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
    decoding: str = "plain",
    window: int = 8,
) -> Samples:
    """Sample one image per prompt; see the module docstring for what is returned and why.

    ``batch_unconditional`` forces (True) or skips (False) the unconditional rows; by default they
    run only when ``guidance_scale != 1``. ``guidance_scale=None`` takes the generator's own
    default (``Generator.default_guidance_scale``). ``static_cache=False`` forces the generic
    path through ``Generator.forward`` even for models ``policy.static_decoder`` can run.
    ``decoding="sjd"`` decodes by speculative Jacobi decoding with ``window`` draft codes per
    forward pass (``_sample_batch_sjd``): the same distribution in fewer forward passes, other
    codes for the same seed.
    """
    if guidance_scale is None:
        guidance_scale = generator.default_guidance_scale
    if not prompts:
        raise BadInputError("no prompts to sample from: give at least one prompt")
    if decoding not in DECODINGS:
        raise BadInputError(f"unknown decoding {decoding!r}; use one of {', '.join(DECODINGS)}")
    if window < 1:
        raise BadInputError(f"the speculative window must hold at least one draft code, not {window}")
    sample_batch = _sample_batch_sjd if decoding == "sjd" else _sample_batch
    parts = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        settings = (guidance_scale, temperature, top_k, top_p, seed + start, batch_unconditional, static_cache)
        parts.append(sample_batch(generator, chunk, *settings, **({"window": window} if decoding == "sjd" else {})))
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
        forward_passes=sum(p[3] for p in parts),
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
    return prompt_ids, torch.stack(codes, 1).cpu(), torch.stack(logprobs, 1).float().cpu(), len(layout)


class _CacheWindows:
    """Windows of tokens through ``Generator.forward`` and the model's own cache (families the static
    decoder cannot run). Every window appends its columns to the cache; the columns past a row's
    accepted prefix stay there, masked out of every later query by the attention mask."""

    def __init__(self, generator: Generator):
        self.generator = generator
        self.cache = None
        self.mask: torch.Tensor | None = None
        self.width = 0

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        embeds = self.generator.prompt_embeds(input_ids)
        logits, self.cache = self.generator.forward(input_ids, mask, pos, inputs_embeds=embeds)
        self.mask = mask
        return logits[:, -1]

    def window(self, tokens: torch.Tensor, pos: torch.Tensor, columns: torch.Tensor, valid: torch.Tensor):
        """Every token runs (``valid`` is not used): ``keep`` masks what lies past the kept ones."""
        self.width = tokens.shape[1]
        self.mask = torch.cat([self.mask, self.mask.new_ones(tokens.shape)], dim=1)
        embeds = self.generator.embed_block(tokens)
        logits, self.cache = self.generator.forward(tokens, self.mask, pos, cache=self.cache, inputs_embeds=embeds)
        return logits

    def keep(self, kept: torch.Tensor) -> None:
        """Keep the first ``kept[row]`` columns of the last window of each row."""
        width = self.width
        self.mask[:, -width:] = (torch.arange(width, device=kept.device) < kept[:, None]).to(self.mask.dtype)


class _StaticWindows:
    """Windows of tokens through ``StaticDecoder.window``: each row writes its window at its own
    columns, so what lies past a row's accepted prefix is written over by its next window."""

    def __init__(self, decoder: StaticDecoder):
        self.decoder = decoder

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.decoder.prefill(input_ids, mask, pos)

    def window(self, tokens: torch.Tensor, pos: torch.Tensor, columns: torch.Tensor, valid: torch.Tensor):
        return self.decoder.window(tokens, pos, columns, valid)

    def keep(self, kept: torch.Tensor) -> None:
        """Nothing to do: queries never reach columns past their own."""


def accepts(uniform: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The speculative-sampling test: a draft drawn from q is kept with probability min(1, p / q)
    (``uniform`` in [0, 1); written without the division, so q = 0 is no special case)."""
    return uniform * q < p


def _neighbours(generator: Generator, length: int) -> torch.Tensor:
    """For each block position, the block position of the code above it in the image grid, or -1
    where there is none (the first grid row, codes outside the grid such as the glyph palette)."""
    rows, columns = generator.config.grid
    slots = [i for i, t in enumerate(generator.block_layout()) if t is None]
    outside = len(slots) - rows * columns  # codes before the grid
    above = torch.full((length,), -1, dtype=torch.long)
    for code, slot in enumerate(slots):
        if code - outside >= columns:
            above[slot] = slots[code - columns]
    return above


def draw(probs: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """One code per distribution of ``probs`` (..., codes), by inverting the cumulative sum with
    one uniform number each: (..., 1). The same distribution as ``torch.multinomial``, which draws
    an exponential number per code and so costs as much as a forward pass of this model for a
    window of drafts."""
    cumulative = probs.cumsum(-1)
    total = cumulative[..., -1:]
    uniform = torch.rand(total.shape, generator=rng, device=probs.device, dtype=probs.dtype) * total
    # Below the total, the first place the cumulative sum exceeds it is a code of positive mass.
    uniform = torch.minimum(uniform, total.nextafter(torch.zeros_like(total)))
    return torch.searchsorted(cumulative, uniform, right=True)


def _sample_batch_sjd(
    generator: Generator,
    prompts: list[str],
    guidance_scale: float,
    temperature: float,
    top_k: int,
    top_p: float,
    seed: int,
    batch_unconditional: bool | None,
    static_cache: bool,
    window: int,
):
    """Speculative Jacobi decoding of one batch: the plain sampler's distribution in fewer passes.

    Each forward pass feeds, per row, the last decided token and up to ``window`` draft tokens,
    and returns the guided, filtered distribution p at every one of those places, exactly the
    distribution plain sampling draws from wherever the drafts before it are accepted. Drafts are
    accepted left to right with probability min(1, p(d) / q(d)), q being the distribution the
    draft was drawn from (speculative sampling); the first rejected place is drawn from the
    normalised residual max(0, p - q), and when every draft is accepted one more token is drawn
    from p. That is an exact sample of the model's distribution whatever q is, so q may be
    anything fixed before the test: a draft is drawn from the distribution the last pass gave
    at its place (the Jacobi iteration), or, for places no pass has reached yet, is the code
    above it in the image grid (a point mass; background repeats down an image), else the last
    decided code. Forced block tokens are accepted as they are.

    Each row moves on by its own accepted count; the key/value cache keeps only the accepted
    prefix. A row feeds no drafts past the end of the block, and the static decoder runs only the
    tokens fed: rows that are done feed none (a batch takes as many passes as its slowest row).
    """
    device = generator.device
    batch = len(prompts)
    guided = guidance_scale != 1.0 if batch_unconditional is None else batch_unconditional
    prompt_ids, rows = context_rows(generator, prompts, guided)
    input_ids, mask = left_pad(rows, generator.pad_token_id, device)
    pos = positions(mask)
    rng = torch.Generator(device=device).manual_seed(seed)
    start, num_codes = generator.config.image_token_start, generator.config.num_image_tokens
    layout = generator.block_layout()
    length = len(layout)
    most = max(1, min(window, length - 1))  # drafts a row may feed in one pass
    padded = length + most + 1  # block positions plus room for a window reaching past the end

    decoder = StaticDecoder.for_generator(generator, len(rows), input_ids.shape[1], padded) if static_cache else None
    runner = _StaticWindows(decoder) if decoder is not None else _CacheWindows(generator)
    width = input_ids.shape[1]
    block_position = pos[:, -1:] + 1  # position id of block index 0, per row

    forced_ids = torch.tensor([-1 if t is None else t for t in layout] + [-1] * (most + 1), device=device)
    forced = forced_ids >= 0
    in_block = torch.arange(padded, device=device) < length
    above = torch.cat([_neighbours(generator, length), torch.full((most + 1,), -1, dtype=torch.long)]).to(device)
    offsets = torch.arange(most + 1, device=device)
    every = torch.arange(batch, device=device)
    columns_per_row = generator.config.grid[1]

    def distribution(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw conditional code log-probs, the filtered guided probabilities) of the logits."""
        code_lp = generator.code_logprobs(logits)
        cond = code_lp[:batch]
        scores = cond + (guidance_scale - 1.0) * (cond - code_lp[batch:]) if guided else cond
        return cond, torch.softmax(filter_scores(scores, temperature, top_k, top_p), dim=-1)

    canvas = torch.full((batch, padded), start, dtype=torch.long, device=device)  # decided tokens, then drafts
    logprobs = torch.zeros(batch, padded, device=device)
    cond, probs = distribution(runner.prefill(input_ids, mask, pos))
    if layout[0] is None:
        code = draw(probs, rng)
        canvas[:, 0] = code[:, 0] + start
        logprobs[:, 0] = cond.gather(1, code)[:, 0]
    else:
        canvas[:, 0] = layout[0]
    decided = torch.ones(batch, dtype=torch.long, device=device)  # block positions decided, per row
    drafts = torch.full((batch,), most, dtype=torch.long, device=device)  # drafts each row feeds next
    guided_rows = (lambda x: torch.cat([x, x])) if guided else (lambda x: x)  # conditional, then unconditional

    def redraft(count: int, jacobi: torch.Tensor, source: torch.Tensor | None) -> None:
        """Draft the ``count`` places after each row's decided prefix.

        Where ``jacobi`` holds, the draft is drawn from ``source`` (the last pass's p at that
        place); elsewhere it is the code above (or the last decided code), q a point mass."""
        places = decided[:, None] + offsets[:count]
        if source is not None:
            drawn = draw(source, rng)[..., 0] + start
            canvas.scatter_(1, places, torch.where(jacobi, drawn, canvas.gather(1, places)))
        neighbour = above[places]
        last = canvas.gather(1, decided[:, None] - 1).expand_as(places)
        # A code above may itself be a fresh draft of this window: a pass per grid row it can reach.
        rows_reached = 1 if columns_per_row >= count else -(-count // columns_per_row) + 1
        for _ in range(rows_reached):
            copied = torch.where(neighbour >= 0, canvas.gather(1, neighbour.clamp(min=0)), last)
            canvas.scatter_(1, places, torch.where(jacobi, canvas.gather(1, places), copied))
        canvas.scatter_(1, places, torch.where(forced[places], forced_ids[places], canvas.gather(1, places)))

    count = most
    jacobi = torch.zeros(batch, count, dtype=torch.bool, device=device)
    source = None
    redraft(count, jacobi, source)
    passes = 1
    active = decided < length
    while bool(active.any()):
        fed = decided[:, None] - 1 + offsets[: count + 1]  # block indices fed: the last decided token, the drafts
        valid = (offsets[: count + 1] <= drafts[:, None]) & active[:, None]
        tokens = canvas.gather(1, fed)
        fed_rows = guided_rows(fed)
        logits = runner.window(guided_rows(tokens), block_position + fed_rows, width + fed_rows, guided_rows(valid))
        passes += 1
        cond, probs = distribution(logits)  # place i predicts block position decided + i

        # Verify each row's drafts left to right: accept d with probability min(1, p(d) / q(d)).
        placed = fed[:, 1:]
        draft_codes = (canvas.gather(1, placed) - start).clamp(0, num_codes - 1)
        p_draft = probs[:, :count].gather(-1, draft_codes[..., None])[..., 0]
        q_draft = p_draft.new_ones(()) if source is None else source.gather(-1, draft_codes[..., None])[..., 0]
        q_draft = torch.where(jacobi, q_draft, 1.0)
        uniform = torch.rand(batch, count, generator=rng, device=device)
        passed = torch.where(forced[placed], True, accepts(uniform, p_draft, q_draft))
        passed &= in_block[placed] & (offsets[:count] < drafts[:, None])
        accepted = passed.long().cumprod(1).sum(1)

        # The place after the accepted drafts: the residual max(0, p - q) there, or p itself
        # past the row's last draft (q is zero there).
        target = decided + accepted
        p_next = probs[every, accepted]
        # A rejected point-mass draft leaves p without the draft's code.
        at = accepted.clamp(max=count - 1)
        residual = p_next.scatter(1, draft_codes[every, at][:, None], 0.0)
        if source is not None:
            residual = torch.where(jacobi[every, at][:, None], (p_next - source[every, at]).clamp(min=0), residual)
        residual = torch.where((accepted < drafts)[:, None], residual, p_next)
        residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_next)
        drawn = draw(residual, rng)[:, 0] + start
        target_place = target.clamp(max=padded - 1)
        token = torch.where(forced[target_place], forced_ids[target_place], drawn)
        write = active & (target < length)
        canvas.scatter_(1, target_place[:, None], torch.where(write, token, canvas[every, target_place])[:, None])

        # Raw conditional log-probs of every token decided in this pass.
        predicted = fed + 1
        codes = (canvas.gather(1, predicted) - start).clamp(0, num_codes - 1)
        kept = (offsets[: count + 1] <= accepted[:, None]) & active[:, None] & in_block[predicted]
        kept &= ~forced[predicted]
        logprobs.scatter_(
            1, predicted, torch.where(kept, cond.gather(-1, codes[..., None])[..., 0], logprobs.gather(1, predicted))
        )

        runner.keep(guided_rows(accepted + 1))
        decided = torch.where(active, (target + 1).clamp(max=length), decided)
        active = decided < length
        # Next pass: each row's draft count, then re-draft; places this pass reached keep its p
        # (computed up to the row's last draft) as their draft distribution.
        fed_drafts = drafts
        drafts = (length - 1 - decided).clamp(min=0, max=most)
        count = max(1, int(drafts.max()))
        source_index = accepted[:, None] + 1 + offsets[:count]
        jacobi = source_index <= fed_drafts[:, None]
        source = probs.gather(1, source_index.clamp(max=probs.shape[1] - 1)[..., None].expand(-1, -1, num_codes))
        redraft(count, jacobi, source)

    slots = torch.tensor([i for i, t in enumerate(layout) if t is None], device=device)
    codes = canvas[:, slots] - start
    return prompt_ids, codes.cpu(), logprobs[:, slots].float().cpu(), passes


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
