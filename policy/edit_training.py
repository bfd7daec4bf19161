"""The edit skill: fine-tuning a glyph-world generator on edit turns (``imagepref train-edits``).

Starts from any glyph-world generator folder (the shipped base by default) and trains all its
weights on seeded edit turns (``policy.glyphworld.edits.training_edit``): the source sign's
codes, the instruction, and the target sign's codes, with the loss on the target block only
(``policy.editing.edit_row``). Mixed in, as ``EditTrainingConfig`` sets:

- turns without their instruction whose target is the source itself: the unconditional context
  of edit guidance ("keep the source");
- turns with an empty source prompt, as for a source that was itself an edit;
- plain text-to-image signs from the pretraining stream, so the first image does not fade.

Every step draws its turns from a seed derived from (seed, step), so the data is a function of
the step. Held-out words and phrasings never occur, by construction of ``training_edit``.
The output is a generator folder with ``edit_training.json`` (settings, base, losses, time, and
the base's own record when it was edit-trained too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from pathlib import Path

import torch

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.policy.config import EditTrainingConfig
from imagepref.policy.editing import edit_row
from imagepref.policy.generator import Generator, load_generator
from imagepref.policy.glyphworld.edits import training_edit
from imagepref.policy.glyphworld.world import BACKGROUNDS, pretraining_spec, render

RECORD_NAME = "edit_training.json"


def make_edit_batch(generator: Generator, config: EditTrainingConfig, step: int, with_kept: bool = False):
    """(input_ids, attention_mask, labels) of the turns of ``step``; the loss covers each target
    block and its end. With ``with_kept``, a fourth tensor marks the labelled codes that equal the
    source's code in the same place (what the edit keeps)."""
    rng = random.Random(config.seed * 1_000_003 + step)
    rows: list[tuple[list[int], int]] = []
    kept_places: list[list[bool]] = []
    edits, replays = [], []
    for _ in range(config.batch_size):
        if rng.random() < config.replay_share:
            replays.append(pretraining_spec(rng, 0.9))
        else:
            edits.append(training_edit(rng))
    images = [render(e.source) for e in edits] + [render(e.target) for e in edits] + [render(s) for s in replays]
    codes = generator.encode_images(images) if images else torch.empty(0, generator.num_codes, dtype=torch.long)
    sources, targets, replay_codes = codes[: len(edits)], codes[len(edits) : 2 * len(edits)], codes[2 * len(edits) :]
    for edit, source, target in zip(edits, sources, targets):
        keep = rng.random() < config.unconditional_rate
        prompt = "" if rng.random() < config.source_prompt_drop else edit.source.prompt
        new = source if keep else target
        rows.append(edit_row(generator, source, None if keep else edit.instruction, new, prompt))
        kept_places.append((source == new).tolist())
    for spec, spec_codes in zip(replays, replay_codes):
        row = generator.training_row(spec.prompt, spec_codes)
        rows.append((row, len(row) - spec_codes.numel() - 2))
        kept_places.append([])
    width = max(len(row) for row, _ in rows)
    pad = generator.pad_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (row, context) in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, context : len(row)] = torch.tensor(row[context:])
    if not with_kept:
        return input_ids, mask, labels
    kept = torch.zeros_like(input_ids, dtype=torch.bool)
    slots = [i for i, token in enumerate(generator.block_layout()) if token is None]
    for i, ((_, context), places) in enumerate(zip(rows, kept_places)):
        for slot, same in zip(slots, places):
            kept[i, context + slot] = same
    return input_ids, mask, labels, kept


def weighted_loss(
    model,
    input_ids: torch.Tensor,
    mask: torch.Tensor,
    labels: torch.Tensor,
    colour_weight: float,
    kept: torch.Tensor | None = None,
    kept_weight: float = 1.0,
) -> torch.Tensor:
    """Next-token cross-entropy over the labelled tokens, the first two of each row (the new
    image's colour codes) weighted ``colour_weight`` and the other codes that ``kept`` marks (as
    ``make_edit_batch(..., with_kept=True)`` returns) ``kept_weight``."""
    logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(targets.shape)
    valid = (targets != -100).float()
    colours = (valid.cumsum(1) <= 2) & (valid > 0)
    weights = valid * torch.where(colours, colour_weight, 1.0)
    if kept is not None and kept_weight != 1:
        weights = torch.where(kept[:, 1:] & ~colours, weights * kept_weight, weights)
    return (losses * weights).sum() / weights.sum()


def background_codes(generator: Generator) -> list[int]:
    """The codes an image's first code takes in the glyph world: one per background colour."""
    specs = [dataclasses.replace(pretraining_spec(random.Random(0), 0.9), background=b) for b in BACKGROUNDS]
    return sorted(set(generator.encode_images([render(s) for s in specs])[:, 0].tolist()))


def spread_background_rows(generator: Generator, factor: float) -> None:
    """Spread the output-layer rows of the background codes ``factor`` times from their mean.

    Pretraining draws the background without naming it, so those rows end nearly equal and the
    logits after ``<boi>`` a flat guess. Copying the source's background needs both a hidden
    state that carries it and rows that tell the backgrounds apart; each starts near zero and
    each one's gradient scales with the other, a plateau (the background's loss stayed at log 4
    for 100 steps of training on the colour codes alone). Spread 8 times, it learned the copy
    within 60 steps. The flat guess for a fresh image barely moves (its rows' logits differed by
    a few hundredths)."""
    if factor == 1:
        return
    rows = [generator.config.image_token_start + c for c in background_codes(generator)]
    with torch.no_grad():
        weight = generator.vocabulary_model().get_output_embeddings().weight
        mean = weight[rows].mean(0)
        weight[rows] = mean + factor * (weight[rows] - mean)


def learning_rate(config: EditTrainingConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_edits(base: str | Path, out: str | Path, config: EditTrainingConfig, progress=None, log=print) -> Generator:
    """Fine-tune the glyph generator in ``base`` on edit turns and save it into ``out``.

    ``progress(step, steps, loss)`` is called after every step. Returns the trained generator."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} exists and is not empty; choose another --out")
    generator = load_generator(base)
    if generator.family != "glyph":
        raise BadInputError(f"edit training draws glyph-world signs; {base} holds a {generator.family} generator")
    needed = 2 * generator.num_codes + generator.instruction_width + 128
    if generator.model.config.max_position_embeddings < needed:
        raise BadInputError(
            f"an edit turn needs about {needed} positions; this model has "
            f"{generator.model.config.max_position_embeddings}"
        )
    torch.manual_seed(config.seed)
    started = time.time()
    spread_background_rows(generator, config.first_code_spread)
    model = generator.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    losses: list[float] = []
    for step in range(config.steps):
        input_ids, mask, labels, kept = make_edit_batch(generator, config, step, with_kept=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = weighted_loss(model, input_ids, mask, labels, config.colour_loss_weight, kept, config.kept_code_weight)
        if not torch.isfinite(loss):
            raise BadInputError(f"loss became {loss.item()} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(round(loss.item(), 4))
        if progress:
            progress(step + 1, config.steps, losses[-1])
    model.eval()
    with staged_folder(out) as staging:
        generator.save_pretrained(staging)
        record = {
            "config": config.model_dump(mode="json"),
            "base": str(base),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seconds": round(time.time() - started),
            "losses": losses,
            # A base that was itself edit-trained passes its record on: the whole history in one file.
            "base_record": _record(Path(base)),
        }
        (staging / RECORD_NAME).write_text(json.dumps(record, indent=1))
    log(f"edit training: {config.steps} steps in {time.time() - started:.0f} s")
    return generator


def _record(folder: Path) -> dict | None:
    path = folder / RECORD_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def score_heldout_edits(
    generator: Generator,
    read_text,
    n: int = 200,
    seed: int = 0,
    guidance_scale: float | None = None,
    batch_size: int = 50,
) -> list[dict]:
    """Edit the first ``n`` held-out edits (``heldout_edits``) once each and judge them by the edit
    rules (``judge_edit``): one row per edit with its kind, held-out kind, instruction and scores.
    The source the generator sees is the source sign's codes; preservation compares the result
    with their decoded image, the source as the generator saw it."""
    from imagepref.policy.glyphworld.edits import edit_heldout_kind, heldout_edits, judge_edit

    edits = heldout_edits(n)
    codes = generator.encode_images([render(e.source) for e in edits])
    sources = generator.decode(codes)
    samples = generator.edit(
        codes,
        [e.instruction for e in edits],
        [e.source.prompt for e in edits],
        seed=seed,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
    )
    rows = []
    for edit, source, result in zip(edits, sources, samples.images):
        scores = judge_edit(edit, source, result, read_text)
        rows.append(
            {"kind": edit.kind, "heldout_kind": edit_heldout_kind(edit), "instruction": edit.instruction, **scores}
        )
    return rows
