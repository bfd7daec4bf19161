"""One line per logged training step, in two lengths: every metric for the run log, a few for a person.

The aligners' trainers log every step. ``StepLines`` (a transformers ``TrainerCallback``) turns
each logged dict into a ``StepLine`` and hands it to the logger ``imagepref.policy.align.steps``
as the step happens, from the main process only. ``str(line)`` is the run log's line with every
key TRL logged (``step 40/120 loss=0.012 grad_norm=... reward=0.81 ...``); ``line.summary`` is
the console's (``step 40/120  loss 0.012  reward 0.810  kl 0.004``): the loss, the reward (for
DPO its margin and accuracy), the KL, and the held-out figures on the steps that measure them.
Keys that mean nothing for image tokens (TRL's ``mean_token_accuracy``, ``entropy``, token and
length counts) stay in the run log, ``metrics.jsonl`` and TensorBoard only.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from transformers import TrainerCallback

# (label on the console, the logged key), in console order; the first key present wins a label.
CONSOLE_FIGURES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss",)),
    ("reward", ("reward",)),  # GRPO and PPO: the mixed reward of the step's samples
    ("margin", ("rewards/margins",)),  # DPO: chosen minus rejected implicit reward
    ("accuracy", ("rewards/accuracies",)),  # DPO: share of pairs whose chosen side wins
    ("kl", ("kl", "ppo/kl")),
)
HELDOUT_FIGURES: tuple[tuple[str, str], ...] = (("ocr", "heldout/ocr_word_accuracy"), ("kl", "heldout/kl"))


def figure(value: float) -> str:
    """A metric for the console: three decimals, or two significant digits when smaller than that."""
    return f"{value:.3f}" if value == 0 or abs(value) >= 0.001 else f"{value:.1e}"


@dataclass(frozen=True)
class StepLine:
    """One logged step (``kind`` "step") or the run's closing totals (``kind`` "finished")."""

    kind: str
    step: int
    max_steps: int
    metrics: dict = field(default_factory=dict)
    prefix: str = ""  # who trained, e.g. "grpo"; leads both lines

    def __str__(self) -> str:
        details = " ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in self.metrics.items()
            if not _is_nan(value)
        )  # NaN: not measured this step
        return " ".join(part for part in (self.prefix, f"{self.kind} {self.step}/{self.max_steps}", details) if part)

    @property
    def measured(self) -> bool:
        """Whether this step carries held-out figures (the monitored steps)."""
        return any(self._number(key) is not None for _, key in HELDOUT_FIGURES)

    @property
    def summary(self) -> str:
        """The console's line: the step and a handful of figures, two spaces apart."""
        parts = [" ".join(part for part in (self.prefix, f"{self.kind} {self.step}/{self.max_steps}") if part)]
        if self.kind == "finished":
            runtime, loss = self._number("train_runtime"), self._number("train_loss")
            parts += [
                f"mean loss {figure(loss)}" if loss is not None else "",
                f"{runtime:.0f} s" if runtime is not None else "",
            ]
        else:
            for label, keys in CONSOLE_FIGURES:
                value = next((v for v in map(self._number, keys) if v is not None), None)
                if value is not None:
                    parts.append(f"{label} {figure(value)}")
            heldout = [f"{label} {figure(v)}" for label, key in HELDOUT_FIGURES if (v := self._number(key)) is not None]
            if heldout:
                parts.append("held-out " + " ".join(heldout))
        return "  ".join(part for part in parts if part)

    def _number(self, key: str) -> float | None:
        value = self.metrics.get(key)
        return float(value) if isinstance(value, (int, float)) and not _is_nan(value) else None


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


class StepLines(TrainerCallback):
    """Hands a ``StepLine`` per logged step to the logger ``imagepref.policy.align.steps`` (as the
    record's ``msg``; any plain handler writes ``str(line)``, the run log's line). Whoever runs
    the aligner routes that logger where it wants (the recipe runner: the run log, and every
    ``console_every``-th summary to the console)."""

    logger = logging.getLogger(__name__)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or not state.is_world_process_zero:
            return
        # transformers logs once more at the end, with the run's totals (train_runtime, train_loss).
        kind = "finished" if "train_runtime" in logs else "step"
        self.logger.info(StepLine(kind, state.global_step, state.max_steps, dict(logs)))


StepLines.logger.setLevel(logging.INFO)  # its lines are the point; the root logger's WARNING would drop them
