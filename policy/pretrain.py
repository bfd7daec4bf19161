"""Pretraining the glyph-world generator: fit the codec, then train the Llama on fresh signs.

Every step draws a new batch of signs from a seed derived from (run seed, step), renders and
encodes them, and trains on the image tokens. So the data order is a pure function of the step:
a run killed at any point resumes from its last checkpoint and ends bit-for-bit where an
uninterrupted run ends.

Pretraining runs on one torch thread (``PRETRAIN_THREADS``): the weights then depend only on the
seed and the settings, not on the machine's cores. At two threads the float sums run in another
order and the run ends elsewhere (a regeneration of the shipped base at 2 threads followed its loss
curve within 0.01 but spelled 30.1 % instead of 38.5 % of the first 64 held-out training-word
prompts); a model this small gains little from a second thread on a shared 2-core machine.

A checkpoint is a folder ``checkpoint/`` in the output: the generator (safetensors), the optimizer
state flattened into ``optimizer.safetensors``, and ``state.json`` (step, config). No pickle.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.policy.codec import PaletteCodec
from imagepref.policy.config import PretrainConfig
from imagepref.policy.families.glyph import GlyphGenerator
from imagepref.policy.glyphworld import BACKGROUNDS, FORBIDDEN_COLOUR, TEXT_COLOURS, render
from imagepref.policy.glyphworld.world import CELL, SIZES, pretraining_spec, pretraining_specs
from imagepref.tensor_state import load_state, save_state

PRETRAIN_THREADS = 1


def _batch_specs(config: PretrainConfig, step: int):
    rng = random.Random(config.seed * 1_000_003 + step)
    return [pretraining_spec(rng, config.random_share) for _ in range(config.batch_size)], rng


def make_batch(generator: GlyphGenerator, config: PretrainConfig, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of the signs of ``step``; loss only on the image block and its end."""
    specs, rng = _batch_specs(config, step)
    codes = generator.codec.encode([render(s) for s in specs]).reshape(len(specs), -1)
    rows, targets = [], []
    for spec, spec_codes in zip(specs, codes):
        prompt = None if rng.random() < config.unconditional_rate else spec.prompt
        row = generator.training_row(prompt, spec_codes)
        prefix = len(row) - spec_codes.numel() - 2
        rows.append(row)
        targets.append([-100] * prefix + row[prefix:])
    width = max(len(r) for r in rows)
    pad = generator.tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    labels = torch.tensor([t + [-100] * (width - len(t)) for t in targets])
    return input_ids, labels


def blank_codes(generator: GlyphGenerator) -> torch.Tensor:
    """Vocabulary ids of the shape codes of plain background patches (no ink), for ``ink_loss_weight``."""
    from PIL import Image

    images = [Image.new("RGB", (64, 64), colour) for colour in BACKGROUNDS.values()]
    codes = generator.codec.encode(images)[:, 2:].unique()
    return codes + generator.config.image_token_start


def weighted_loss(
    model, input_ids: torch.Tensor, labels: torch.Tensor, blank: torch.Tensor, ink_weight: float
) -> torch.Tensor:
    """Next-token cross-entropy with image codes that show ink weighted ``ink_weight`` against the rest."""
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="none"
    ).reshape(targets.shape)
    valid = (targets != -100).float()
    is_blank = torch.isin(targets, blank)
    weights = valid * torch.where(is_blank, 1.0, ink_weight)
    return (losses * weights).sum() / weights.sum()


def learning_rate(config: PretrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak; with ``lr_restarts``, each restart
    starts a new cosine from its own peak (the first cycle ends at the first restart)."""
    restarts = sorted(r for r in config.lr_restarts if r[0] < config.steps)  # a restart past the end is none
    ends = [at for at, _ in restarts] + [config.steps]
    for index, (at, peak) in enumerate(restarts):
        if at <= step < ends[index + 1]:
            floor = peak / 10
            return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * (step - at) / (ends[index + 1] - at)))
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, ends[0] - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _save_checkpoint(
    folder: Path, generator, optimizer, step: int, config: PretrainConfig, losses: list[float], seconds: float = 0.0
) -> None:
    with staged_folder(folder, existing="replace") as staging:
        generator.save_pretrained(staging)
        save_state(staging, "optimizer", optimizer.state_dict())
        state = {"step": step, "config": config.model_dump(mode="json"), "losses": losses, "seconds": round(seconds, 1)}
        (staging / "state.json").write_text(json.dumps(state))


def _load_checkpoint(folder: Path, optimizer) -> tuple[int, list[float], float]:
    state = json.loads((folder / "state.json").read_text())
    optimizer.load_state_dict(load_state(folder, "optimizer"))
    return state["step"], state["losses"], float(state.get("seconds", 0.0))


def fit_codec(config: PretrainConfig, progress=None) -> PaletteCodec:
    """Fit the glyph world's palette codec on ``codec_images`` seeded signs."""
    images = [render(s) for s in pretraining_specs(config.codec_images, config.seed + 7, config.random_share)]
    palette = list(BACKGROUNDS.values()) + list(TEXT_COLOURS.values())
    return PaletteCodec.fit(
        images,
        palette,
        FORBIDDEN_COLOUR,
        num_shapes=config.num_shapes,
        iterations=config.codec_iterations,
        seed=config.seed,
        progress=progress,
    )


def letter_pieces(
    codec: PaletteCodec, samples: int = 2000, seed: int = 99, random_share: float = 0.5
) -> dict[int, tuple[str, int]]:
    """For each shape code that mostly shows one piece of one letter: (letter, piece row)."""
    from collections import Counter, defaultdict

    specs = pretraining_specs(samples, seed, random_share, flaw_rate=0.0, forbidden_rate=0.0, shape_rate=0.0)
    codes = codec.encode([render(s) for s in specs])[:, 2:] - codec.num_palette
    columns = codec.grid[1]
    seen: dict[int, Counter] = defaultdict(Counter)
    for spec, spec_codes in zip(specs, codes.tolist()):
        height = SIZES[spec.size][1] // CELL
        for k, letter in enumerate(spec.text):
            for piece in range(height):
                row, column = spec.row + piece, spec.column + k
                if 0 <= column < columns:
                    seen[spec_codes[row * columns + column]][(letter, piece + (2 if height == 3 else 0))] += 1
    pieces = {}
    for code, counter in seen.items():
        label, count = counter.most_common(1)[0]
        if count >= 0.6 * sum(counter.values()):
            pieces[code] = label
    return pieces


@torch.no_grad()
def init_letter_embeddings(generator: GlyphGenerator, seed: int, random_share: float = 0.5) -> int:
    """Give each letter-piece code the embedding of its letter plus a piece vector (returns how many).

    The generator must copy the quoted word cell by cell; when a piece of "P" already resembles the
    character "P" on both the input and the output side, attention finds the next letter to draw
    from the start instead of after thousands of steps."""
    model, codec = generator.model, generator.codec
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    torch.manual_seed(seed)
    piece_vectors = torch.randn(5, embed.shape[1]) * embed.std()
    start = generator.config.image_token_start + codec.num_palette
    pieces = letter_pieces(codec, random_share=random_share)
    for code, (letter, piece) in pieces.items():
        char_id = generator.tokenizer.convert_tokens_to_ids(letter)
        embed[start + code] = embed[char_id] + piece_vectors[piece]
        head[start + code] = (embed[char_id] + piece_vectors[piece]) * (head.std() / embed.std())
    return len(pieces)


def pretrain(out: str | Path, config: PretrainConfig, progress=None, log=print) -> GlyphGenerator:
    """Train the glyph generator into ``out`` (resuming from ``out/checkpoint`` when present).

    ``progress(stage, done, total, info)`` is called as work proceeds. Returns the trained
    generator, also saved in ``out`` with ``pretrain.json`` recording config and loss curve.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)
    try:
        return _pretrain(Path(out), config, progress, log)
    finally:
        torch.set_num_threads(threads)


def _pretrain(out: Path, config: PretrainConfig, progress, log) -> GlyphGenerator:
    checkpoint = out / "checkpoint"
    started_at = time.time()
    torch.manual_seed(config.seed)
    if checkpoint.is_dir():
        saved = json.loads((checkpoint / "state.json").read_text())["config"]
        if saved != config.model_dump(mode="json"):
            raise BadInputError(
                f"{checkpoint} was made with other settings; use a fresh --out or the same settings to resume"
            )
        generator = GlyphGenerator.from_pretrained(checkpoint)
        log(f"resuming from {checkpoint}")
    else:
        started = time.time()
        codec = fit_codec(
            config, progress=(lambda: progress("codec", None, config.codec_iterations, {})) if progress else None
        )
        log(
            f"codec: {codec.num_codes} codes ({codec.num_palette} colours, {config.num_shapes} shapes) in {time.time() - started:.0f} s"
        )
        generator = GlyphGenerator.create(codec, config.hidden_size, config.layers, config.heads, seed=config.seed)
        if config.letter_init:
            pieces = init_letter_embeddings(generator, config.seed, config.random_share)
            log(f"letter init: {pieces} letter-piece codes")
    model = generator.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    # Seconds spent before this session (up to its last checkpoint), so a resumed run reports its whole time.
    blank = blank_codes(generator)
    step, losses, seconds_before = _load_checkpoint(checkpoint, optimizer) if checkpoint.is_dir() else (0, [], 0.0)
    while step < config.steps:
        input_ids, labels = make_batch(generator, config, step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        if config.ink_loss_weight == 1.0:
            loss = model(input_ids=input_ids, labels=labels).loss
        else:
            loss = weighted_loss(model, input_ids, labels, blank, config.ink_loss_weight)
        if not torch.isfinite(loss):
            raise BadInputError(f"loss became {loss.item()} at step {step}; the last good checkpoint is {checkpoint}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        losses.append(round(loss.item(), 4))
        if progress:
            progress("train", step, config.steps, {"loss": losses[-1]})
        if step % config.checkpoint_every == 0 or step == config.steps:
            _save_checkpoint(
                checkpoint, generator, optimizer, step, config, losses, seconds_before + time.time() - started_at
            )
    model.eval()
    # Merged into ``out``, which keeps its resumable checkpoint/ beside the finished model.
    with staged_folder(out, existing="merge") as staging:
        generator.save_pretrained(staging)
        record = {
            "config": config.model_dump(mode="json"),
            "seed": config.seed,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "seconds": round(seconds_before + time.time() - started_at),
            "losses": losses,
        }
        (staging / "pretrain.json").write_text(json.dumps(record, indent=1))
    return generator


def micro_generator(
    seed: int = 0, num_shapes: int = 48, hidden_size: int = 32, layers: int = 1, model_seed: int | None = None
) -> GlyphGenerator:
    """A tiny, untrained glyph generator (a second to build) for tests of every package.

    ``seed`` fixes the codec, ``model_seed`` (default: ``seed``) the weights."""
    config = PretrainConfig(seed=seed, num_shapes=num_shapes, codec_images=120, codec_iterations=2)
    return GlyphGenerator.create(
        fit_codec(config),
        hidden_size=hidden_size,
        layers=layers,
        heads=2,
        seed=seed if model_seed is None else model_seed,
    )
