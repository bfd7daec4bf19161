"""Training a multi-head reward model on preference data (``imagepref reward train``).

One readable loop: read and check the data, split it by prompt, prepare every candidate's
tensors once, then AdamW over batches of pairs with the multi-head preference loss (plus the
prompt-matching loss on the fidelity head, ``RewardConfig.prompt_matching_weight``). After each
epoch the validation loss decides: better, and the model is saved (with each head's
normalisation statistics on the training candidates); ``patience`` epochs without improvement,
and training stops. A loss that turns NaN or infinite stops the run at once, names the step, and
leaves the last good checkpoint in place. Progress shows as a rich bar; metrics go to TensorBoard
under ``<out>/tensorboard``. With ``checkpoint=DIR``, the whole training state (trainable weights,
optimizer, data order and RNG, counters) is saved there after each epoch, without pickle, and a
run killed midway resumes from it to the same result. An ensemble (``config.members`` > 1) runs
this loop once per member, seeds ``seed``, ``seed + 1``, ..., on the same split; the members are
then put into one folder and the ensemble's own validation figures and statistics recorded.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

import imagepref.reward.losses as losses
from imagepref.errors import BadInputError, ImagePrefError
from imagepref.files import write_text_atomically
from imagepref.formats import AXES, EDIT_AXES
from imagepref.reward.backbones import edit_quoted_letter
from imagepref.reward.config import (
    RewardConfig,
    default_prompt_matching_weight,
    refuse_edits_on,
    validated_config,
)
from imagepref.reward.data import PreferenceSet, check_axes, read_preferences, split_by_prompt
from imagepref.reward.model import RewardModel
from imagepref.tensor_state import load_newest_state, save_numbered_state


class TrainingDivergedError(ImagePrefError):
    """The loss became NaN or infinite; the message names the step and the checkpoint kept."""


@dataclasses.dataclass
class TrainResult:
    """What a training run produced."""

    model: RewardModel
    out: Path
    best_epochs: list[int]  # per member, 1-based
    validation: dict  # the saved model's validation loss and per-axis accuracy (the ensemble's own)
    history: list[list[dict]]  # per member, one record an epoch
    train_pairs: int
    val_pairs: int
    seconds: float

    @property
    def best_val_loss(self) -> float:
        return self.validation["val_loss"]


def prepared_candidates(model: RewardModel, prefs: PreferenceSet, ids: Sequence[str]) -> dict[str, torch.Tensor]:
    """The backbone's input tensors for every candidate in ``ids``, in that order (computed once)."""
    prompts = [str(prefs.candidates.at[c, "prompt"]) for c in ids]
    if model.config.edits:
        return model.prepare(None, prompts, prefs.tokens(ids), prefs.source_tokens(ids), prefs.instructions(ids))
    if model.config.backbone == "token":
        return model.prepare(None, prompts, prefs.tokens(ids))
    return model.prepare(prefs.load_images(ids), prompts)


def edit_config(config: RewardConfig, prefs: PreferenceSet) -> RewardConfig:
    """``config`` for the data: on preference data about edits, a model of edits (``edits``) whose
    heads are the edit axes unless ``axes`` names others than the image default; one line when
    its backbone cannot read a source image."""
    if not prefs.edits:
        return config.model_copy(update={"edits": False})
    refuse_edits_on(config.backbone)
    update = {"edits": True}
    if config.axes == list(AXES):  # the default heads, of images, become the edit axes
        update["axes"] = list(EDIT_AXES)
    return validated_config({**config.model_dump(), **update})


def head_statistics(scores: torch.Tensor, axes: Sequence[str]) -> dict[str, dict[str, float]]:
    """Mean and scale (standard deviation, floored) of each head's raw scores."""
    return {
        axis: {"mean": float(scores[:, i].mean()), "scale": max(float(scores[:, i].std()), 1e-3)}
        for i, axis in enumerate(axes)
    }


def two_mode_cut(values: torch.Tensor) -> float | None:
    """The value that best splits ``values`` into two groups (Otsu's criterion), or None if constant.

    Used on normalised safety scores, whose training distribution has a safe and an unsafe mode;
    a fixed threshold would depend on how common unsafe images were in the data."""
    ordered = np.sort(values.numpy().astype(np.float64))
    if len(ordered) < 2 or ordered[-1] - ordered[0] < 1e-9:
        return None
    n = len(ordered)
    prefix = np.cumsum(ordered)
    k = np.arange(1, n)
    mean_low, mean_high = prefix[:-1] / k, (prefix[-1] - prefix[:-1]) / (n - k)
    between = k * (n - k) * (mean_low - mean_high) ** 2
    best = int(np.argmax(between))
    return float((ordered[best] + ordered[best + 1]) / 2)


def _batch(prepared: dict[str, torch.Tensor], rows: torch.Tensor, device) -> dict[str, torch.Tensor]:
    return {k: v[rows].to(device) for k, v in prepared.items()}


def _with_other_prompts(model, inputs: dict[str, torch.Tensor], n: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``inputs`` plus its first ``n`` images again, each read against another prompt: the next
    row's prompt (other colour, other word), or for half the rows of a byte-reading backbone its
    own prompt with one quoted letter changed; and which rows really got a different prompt (two
    pairs of one prompt may sit side by side)."""
    keys = model.backbone.prompt_keys
    shift = torch.roll(torch.arange(n, device=inputs[keys[0]].device), 1)
    extra = {k: v[:n][shift] if k in keys else v[:n] for k, v in inputs.items()}
    if keys[0] == "text":  # prompt bytes (pixel and token backbones)
        edited = edit_quoted_letter(inputs["text"][:n])
        use = (torch.rand(n) < 0.5).to(edited.device)[:, None]
        extra["text"] = torch.where(use, edited, extra["text"])
        extra["text_mask"] = torch.where(use, inputs["text_mask"][:n], extra["text_mask"])
    valid = (extra[keys[0]] != inputs[keys[0]][:n]).flatten(1).any(1)
    return {k: torch.cat([v, extra[k]]) for k, v in inputs.items()}, valid


def _pair_loss(model, prepared, index_a, index_b, votes, weights, device, matching: bool = False):
    n = len(index_a)
    inputs = _batch(prepared, torch.cat([index_a, index_b]), device)
    axis = model.config.prompt_matching_axis
    matching = matching and model.config.prompt_matching_weight > 0 and axis in model.config.axes
    if matching:
        inputs, valid = _with_other_prompts(model, inputs, n)
    scores = model(**inputs)
    diff = scores[:n] - scores[n : 2 * n]
    total, per_head = losses.preference_loss(diff, votes.to(device), model.tie_param, model.config.ties, weights)
    if matching:
        column = model.config.axes.index(axis)
        total = total + model.config.prompt_matching_weight * losses.prompt_matching_loss(
            scores[:n, column], scores[2 * n :, column], valid
        )
    return (total, per_head), diff


@torch.no_grad()
def _evaluate(model, prepared, index_a, index_b, votes, weights, device, batch_size) -> tuple[float, list[float]]:
    model.eval()
    total, per_head, count = 0.0, torch.zeros(votes.shape[1]), 0
    correct = torch.zeros(votes.shape[1])
    decided = torch.zeros(votes.shape[1])
    for start in range(0, len(index_a), batch_size):
        sl = slice(start, start + batch_size)
        (loss, heads), diff = _pair_loss(model, prepared, index_a[sl], index_b[sl], votes[sl], weights, device)
        n = len(index_a[sl])
        total += float(loss) * n
        per_head += heads.cpu() * n
        count += n
        v = votes[sl]
        label = torch.sign(v[..., 0] - v[..., 1])
        decided += (label != 0).sum(0)
        correct += ((torch.sign(diff.cpu()) == label) & (label != 0)).sum(0)
    model.train()
    return total / max(count, 1), (correct / decided.clamp(min=1)).tolist()


def train_reward_model(
    prefs_dir: str | Path,
    candidates_dirs: Sequence[str | Path],
    out: str | Path,
    config: RewardConfig | None = None,
    generator=None,
    device: str | None = None,
    show_progress: bool = True,
    log=print,
    checkpoint: str | Path | None = None,
    on_epoch=None,
) -> TrainResult:
    """Train a reward model on ``prefs_dir`` (pairs.parquet) and save the best one into ``out``.

    ``candidates_dirs`` are the candidate sets the pairs were made from (default
    ``<prefs_dir>/candidates``); ``generator`` is needed for the token backbone (its embeddings
    are copied). With ``config.members`` > 1 each member trains in turn on the same split, with
    seeds ``seed``, ``seed + 1``, ... and its own early stopping, and the folder holds them all.
    ``checkpoint``: a folder for the per-epoch training state (``member-K/`` subfolders for an
    ensemble), resumed from when present. ``on_epoch(record)`` hears of each finished epoch
    (``record["member"]`` says whose). Raises ``BadInputError`` for bad data and
    ``TrainingDivergedError`` on a NaN loss.
    """
    config = config or RewardConfig()
    started = time.perf_counter()
    out = Path(out)
    prefs = read_preferences(prefs_dir, candidates_dirs, need_images=config.backbone != "token")
    config = edit_config(config, prefs)
    check_axes(prefs.axes, config.axes)
    if config.backbone == "token" and "image_tokens" not in prefs.candidates:
        prefs.tokens([])  # raises the one-line error
    train, val = split_by_prompt(prefs, config.val_fraction, config.seed)
    if len(train.pairs) == 0:
        raise BadInputError("no training pairs left after the validation split; lower val_fraction")
    chosen = config.prompt_matching_weight is None
    if chosen:
        config = config.model_copy(
            update={"prompt_matching_weight": default_prompt_matching_weight(config.backbone, len(train.pairs))}
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = RewardModel.create(config.model_copy(update={"members": 1}), generator=generator)
    if chosen:
        log(
            f"prompt matching {'on' if config.prompt_matching_weight else 'off'} ({config.backbone} backbone, "
            f"{len(train.pairs)} training pairs; set prompt_matching_weight to choose)"
        )
    config = model.config.model_copy(update={"members": config.members})  # with the token backbone's fields

    ids = list(dict.fromkeys([*prefs.pairs["candidate_a"], *prefs.pairs["candidate_b"]]))
    position = {c: i for i, c in enumerate(ids)}
    prepared = prepared_candidates(model, prefs, ids)

    def indices(part: PreferenceSet):
        return (
            torch.tensor([position[c] for c in part.pairs["candidate_a"]], dtype=torch.long),
            torch.tensor([position[c] for c in part.pairs["candidate_b"]], dtype=torch.long),
            part.votes(config.axes),
        )

    data = _Data(
        prepared,
        *indices(train),
        *(indices(val) if len(val.pairs) else indices(train)),
        torch.tensor([config.loss_weight(a) for a in config.axes], device=device),
        torch.tensor([position[c] for c in dict.fromkeys([*train.pairs["candidate_a"], *train.pairs["candidate_b"]])]),
    )
    out.mkdir(parents=True, exist_ok=True)
    if config.members == 1:
        fitted = [_fit(model, data, device, out, out / "tensorboard", checkpoint, show_progress, log, on_epoch, 0)]
        best = RewardModel.from_pretrained(out, device=device)
    else:
        # Each member trains into a staging folder of its own; the ensemble is assembled from them.
        staging = out / ".members"
        fitted = []
        for k in range(config.members):
            if k:
                model = RewardModel.create(config.model_copy(update={"members": 1, "seed": config.seed + k}), generator)
            log(f"ensemble member {k + 1} of {config.members} (seed {config.seed + k})")
            fitted.append(
                _fit(
                    model,
                    data,
                    device,
                    staging / str(k),
                    out / "tensorboard" / f"member-{k}",
                    Path(checkpoint) / f"member-{k}" if checkpoint is not None else None,
                    show_progress,
                    log,
                    on_epoch,
                    k,
                )
            )
        best = RewardModel(config)
        for k, member in enumerate(best.members):
            member.load_state_dict(RewardModel.from_pretrained(staging / str(k)).members[0].state_dict())
        best.to(device)
        val_loss, val_accuracy = _evaluate(
            best, data.prepared, data.val_a, data.val_b, data.val_votes, data.weights, device, 4 * config.batch_size
        )
        record = {
            "members": [f.record for f in fitted],
            "val_loss": val_loss,
            **{f"val_accuracy_{a}": v for a, v in zip(config.axes, val_accuracy)},
        }
        _save_checkpoint(best, data.prepared, data.train_rows, out, record)
        shutil.rmtree(staging)
        best = RewardModel.from_pretrained(out, device=device)
    saved = fitted[0].record if config.members == 1 else record
    return TrainResult(
        best,
        out,
        [f.best_epoch for f in fitted],
        {k: v for k, v in saved.items() if k.startswith("val_")},
        [f.history for f in fitted],
        len(train.pairs),
        len(val.pairs),
        time.perf_counter() - started,
    )


@dataclasses.dataclass
class _Data:
    """Every candidate's prepared tensors and the pair indices of both splits."""

    prepared: dict[str, torch.Tensor]
    train_a: torch.Tensor
    train_b: torch.Tensor
    train_votes: torch.Tensor
    val_a: torch.Tensor
    val_b: torch.Tensor
    val_votes: torch.Tensor
    weights: torch.Tensor
    train_rows: torch.Tensor  # the training candidates, for the normalisation statistics


@dataclasses.dataclass
class _Fitted:
    best_epoch: int  # 1-based
    history: list[dict]

    @property
    def record(self) -> dict:
        """The best epoch's record (the one saved)."""
        return self.history[self.best_epoch - 1]


def _fit(
    model: RewardModel,
    data: _Data,
    device,
    out: Path,
    tensorboard: Path,
    checkpoint: Path | None,
    show_progress: bool,
    log,
    on_epoch,
    member: int,
) -> _Fitted:
    """Train one single-member model, saving its best epoch into ``out``."""
    config = model.config
    model.to(device).train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    from torch.utils.tensorboard import SummaryWriter

    out.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(tensorboard))
    train_a, train_b, train_votes = data.train_a, data.train_b, data.train_votes
    steps_per_epoch = math.ceil(len(train_a) / config.batch_size)
    generator_rng = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best_loss, best_epoch, best_step, stale, step = float("inf"), -1, None, 0, 0
    start_epoch, stopped = 0, False
    resumed = load_newest_state(checkpoint, "training_state") if checkpoint is not None else None
    if resumed is not None:
        model.load_state_dict(resumed["model"], strict=False)  # the frozen parts were never saved
        optimizer.load_state_dict(resumed["optimizer"])
        generator_rng.set_state(resumed["data_rng"])
        torch.random.set_rng_state(resumed["torch_rng"])
        best_loss, best_epoch, best_step, stale, step = resumed["counters"]
        history, start_epoch, stopped = resumed["history"], resumed["epoch"], resumed["stopped"]
        log(f"resuming reward training after epoch {start_epoch} from {checkpoint}")
    progress = _progress(show_progress)
    task = progress.add_task("reward", total=config.epochs * steps_per_epoch) if progress else None
    try:
        if progress:
            progress.start()
        for epoch in range(start_epoch, config.epochs if not stopped else start_epoch):
            order = torch.randperm(len(train_a), generator=generator_rng)
            epoch_loss = 0.0
            for start in range(0, len(order), config.batch_size):
                rows = order[start : start + config.batch_size]
                (loss, per_head), _ = _pair_loss(
                    model,
                    data.prepared,
                    train_a[rows],
                    train_b[rows],
                    train_votes[rows],
                    data.weights,
                    device,
                    matching=True,
                )
                step += 1
                if not torch.isfinite(loss):
                    kept = (
                        f"the last good checkpoint (epoch {best_epoch + 1}, step {best_step}) is kept in {out}"
                        if best_step is not None
                        else "no checkpoint was saved yet"
                    )
                    raise TrainingDivergedError(
                        f"the loss became {float(loss.detach())} at step {step} (epoch {epoch + 1}); "
                        f"{kept}; lower lr (now {config.lr:g}) or check the data"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                epoch_loss += float(loss.detach()) * len(rows)
                writer.add_scalar("train/loss", float(loss.detach()), step)
                for axis, value in zip(config.axes, per_head.detach().tolist()):
                    writer.add_scalar(f"train/loss_{axis}", value, step)
                if progress:
                    progress.update(task, advance=1, description=f"epoch {epoch + 1} loss {float(loss.detach()):.3f}")
            val_loss, val_accuracy = _evaluate(
                model,
                data.prepared,
                data.val_a,
                data.val_b,
                data.val_votes,
                data.weights,
                device,
                4 * config.batch_size,
            )
            record = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": epoch_loss / len(order),
                "val_loss": val_loss,
                **{f"val_accuracy_{a}": v for a, v in zip(config.axes, val_accuracy)},
            }
            history.append(record)
            writer.add_scalar("val/loss", val_loss, step)
            for axis, value in zip(config.axes, val_accuracy):
                writer.add_scalar(f"val/accuracy_{axis}", value, step)
            if not math.isfinite(val_loss):
                raise TrainingDivergedError(
                    f"the validation loss became {val_loss} after step {step} (epoch "
                    f"{epoch + 1}); the last good checkpoint is kept in {out}; lower lr"
                )
            if val_loss < best_loss - 1e-4:
                best_loss, best_epoch, best_step, stale = val_loss, epoch, step, 0
                _save_checkpoint(model, data.prepared, data.train_rows, out, record)
            else:
                stale += 1
                stopped = stale >= config.patience
            # The epoch's line goes out before its state is saved: a kill between the two then
            # re-runs and re-reports the epoch on resume instead of leaving it out of the log.
            if on_epoch is not None:
                on_epoch({**record, "member": member})
            if checkpoint is not None:
                frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
                save_numbered_state(
                    checkpoint,
                    "training_state",
                    {
                        "model": {k: v for k, v in model.state_dict().items() if k not in frozen},
                        "optimizer": optimizer.state_dict(),
                        "data_rng": generator_rng.get_state(),
                        "torch_rng": torch.random.get_rng_state(),
                        "counters": [best_loss, best_epoch, best_step, stale, step],
                        "history": history,
                        "epoch": epoch + 1,
                        "stopped": stopped,
                    },
                    epoch + 1,
                )
            if stopped:
                log(f"early stop after epoch {epoch + 1}: no better validation loss for {config.patience} epochs")
                break
    finally:
        if progress:
            progress.stop()
        writer.close()
    return _Fitted(best_epoch + 1, history)


def _save_checkpoint(model: RewardModel, prepared, train_rows: torch.Tensor, out: Path, record: dict) -> None:
    """Save the model with each head's statistics on the training candidates, and the run's record."""
    device = model.device
    model.eval()
    with torch.no_grad():
        scores = torch.cat(
            [model(**_batch(prepared, train_rows[i : i + 512], device)).cpu() for i in range(0, len(train_rows), 512)]
        )
    model.train()
    stats = head_statistics(scores, model.config.axes)
    model.config = model.config.model_validate({**model.config.model_dump(), "normalisation": stats})
    cut = None
    safety = model.config.safety_axis
    if safety in model.config.axes:
        cut = two_mode_cut(model.normalise(scores)[:, model.config.axes.index(safety)])
    model.config = model.config.model_validate({**model.config.model_dump(), "safety_cut": cut})
    model.save_pretrained(out)
    write_text_atomically(out / "training.json", json.dumps(record, indent=1))


def _progress(show: bool):
    if not show:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
