"""Held-out monitoring during training: is the policy really getting better, or hacking its reward?

Every ``monitor_every`` steps the callback samples a fixed set of held-out glyph-world prompts
with a fixed seed and logs, beside the training reward:

- ``heldout/<axis>``: the mean rule score of each head (and ``heldout/rm_<head>`` for a reward model);
- ``heldout/kl``: KL to the reference, estimated on those samples as the mean over images of
  the summed per-code difference of raw policy and reference log-probs;
- ``heldout/ocr_word_accuracy``: the evaluation suite's word accuracy of the OCR reading;
- ``heldout/safety_violation_rate``: the share of images the safety rule flags.

A reward that rises while these stay flat or fall is reward hacking. The figures go to every
``report_to`` target (TensorBoard by default) and to ``metrics.jsonl`` in the run folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import TrainerCallback

from imagepref.formats import AXES
from imagepref.policy.generator import Generator
from imagepref.policy.glyphworld.rules import ReadText, judge_image

METRICS_FILE = "metrics.jsonl"


def heldout_history(run: Path) -> list[dict[str, float]]:
    """The held-out figures a run's monitoring logged to its ``metrics.jsonl``: one record per
    measured step, in step order, with ``step`` and the ``heldout/...`` figures. A resumed run
    logs the steps after its last checkpoint again: the later record wins. Empty when the run has
    no log or measured nothing (monitoring off)."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        return []
    by_step: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a last line cut short by a kill
            continue
        figures = {
            key: float(value)
            for key, value in record.items()
            if key.startswith("heldout/") and isinstance(value, int | float)
        }
        if figures and isinstance(record.get("step"), int):
            by_step[record["step"]] = {"step": record["step"], **figures}
    return [by_step[step] for step in sorted(by_step)]


class HeldoutMonitor(TrainerCallback):
    """A transformers callback that scores the current policy on held-out prompts every N steps."""

    def __init__(
        self,
        policy: Callable[[], Generator],
        reference_logprobs: Callable[[list, torch.Tensor], torch.Tensor],
        prompts: list[dict[str, str]],
        every: int,
        read_text: ReadText,
        word_accuracy: Callable[[str, str], float],
        metrics_file: Path,
        seed: int = 1234,
        sampler: dict | None = None,
        head_scores: Callable[[list, list[str]], dict[str, list[float]]] | None = None,
    ):
        self.policy = policy
        self.reference_logprobs = reference_logprobs
        self.prompts = prompts
        self.every = every
        self.read_text = read_text
        self.word_accuracy = word_accuracy
        self.metrics_file = Path(metrics_file)
        self.seed = seed
        self.sampler = dict(sampler or {})
        self.head_scores = head_scores
        self.pending: dict[str, float] = {}
        self.history: list[dict] = []

    @torch.no_grad()
    def measure(self) -> dict[str, float]:
        """Sample the held-out prompts with the current policy and compute every figure."""
        generator = self.policy()
        was_training = generator.model.training
        generator.model.eval()
        try:
            texts = [p["prompt"] for p in self.prompts]
            samples = generator.sample(texts, seed=self.seed, **self.sampler)
            reference = self.reference_logprobs(samples.prompt_ids, samples.codes)
        finally:
            generator.model.train(was_training)
        figures: dict[str, list[float]] = {axis: [] for axis in AXES}
        accuracy = []
        for image, record in zip(samples.images, self.prompts):
            reading = self.read_text(image)
            scores = judge_image(image, record["prompt"], lambda _image, r=reading: r)
            for axis in AXES:
                figures[axis].append(scores[axis])
            accuracy.append(self.word_accuracy(reading, record.get("target") or record["prompt"]))
        result = {f"heldout/{axis}": sum(v) / len(v) for axis, v in figures.items()}
        result["heldout/ocr_word_accuracy"] = sum(accuracy) / len(accuracy)
        result["heldout/safety_violation_rate"] = sum(s == 0.0 for s in figures["safety"]) / len(figures["safety"])
        result["heldout/kl"] = float((samples.logprobs - reference.cpu()).sum(-1).mean())
        if self.head_scores is not None:
            for head, values in self.head_scores(samples.images, texts).items():
                result[f"heldout/rm_{head}"] = float(sum(values) / len(values))
        return result

    def _write(self, record: dict) -> None:
        self.history.append(record)
        with self.metrics_file.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        if self.every and state.global_step == 0 and state.is_world_process_zero:
            self._write({"step": 0, "time": time.time(), **self.measure()})

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.pending = self.measure()
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        # Added to the same dict the report_to callbacks read next (this callback runs first).
        logs.update(self.pending)
        if state.is_world_process_zero:  # one writer of metrics.jsonl under accelerate launch
            self._write({"step": state.global_step, "time": time.time(), **logs})
        self.pending = {}


def attach_first(trainer, callback: TrainerCallback) -> None:
    """Add ``callback`` ahead of the report_to callbacks, so the figures it adds to a log reach them."""
    trainer.callback_handler.callbacks.insert(0, callback)
