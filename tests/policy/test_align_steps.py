"""A training step's two lines: every metric for the run log, a handful for the console."""

from __future__ import annotations

import logging
from dataclasses import replace

from imagepref.policy.align.steps import StepLine, StepLines

GRPO = {
    "loss": 0.0123,
    "grad_norm": 0.5,
    "learning_rate": 0.0005,
    "num_tokens": 368,
    "completions/mean_length": 66,
    "rewards/ocr/mean": 0.81,
    "reward": 0.8125,
    "reward_std": 0.1,
    "kl": 0.0042,
    "entropy": None,
    "step_time": 0.26,
    "epoch": 0.25,
}
DPO = {
    "loss": 0.6931,
    "grad_norm": 0.29,
    "num_tokens": 788,
    "mean_token_accuracy": 0.0,
    "rewards/chosen": 0.01,
    "rewards/rejected": -0.02,
    "rewards/accuracies": 0.75,
    "rewards/margins": 0.0312,
    "epoch": 0.5,
}
HELDOUT = {
    "heldout/aesthetics": 0.2,
    "heldout/ocr_word_accuracy": 0.25,
    "heldout/safety_violation_rate": 1.0,
    "heldout/kl": 4.768e-07,
}


def test_the_run_log_line_keeps_every_metric_and_skips_unmeasured_ones():
    line = StepLine("step", 2, 3, {**DPO, "heldout/kl": float("nan")}, prefix="dpo")
    assert str(line) == (
        "dpo step 2/3 loss=0.6931 grad_norm=0.29 num_tokens=788 mean_token_accuracy=0 "
        "rewards/chosen=0.01 rewards/rejected=-0.02 rewards/accuracies=0.75 rewards/margins=0.0312 "
        "epoch=0.5"
    )


def test_the_console_line_holds_loss_reward_and_kl():
    assert (
        StepLine("step", 40, 120, GRPO, prefix="grpo").summary == "grpo step 40/120  loss 0.012  reward 0.812  kl 0.004"
    )
    ppo = {**GRPO, "kl": None, "ppo/kl": -0.004189}
    assert StepLine("step", 2, 3, ppo).summary == "step 2/3  loss 0.012  reward 0.812  kl -0.004"


def test_dpo_shows_its_margin_and_accuracy_and_never_token_accuracy():
    summary = StepLine("step", 3, 30, DPO, prefix="dpo").summary
    assert summary == "dpo step 3/30  loss 0.693  margin 0.031  accuracy 0.750"
    assert "token" not in summary


def test_held_out_figures_show_on_the_steps_that_measure_them():
    line = StepLine("step", 2, 3, {**GRPO, **HELDOUT})
    assert line.measured and not StepLine("step", 3, 3, GRPO).measured
    assert line.summary.endswith("kl 0.004  held-out ocr 0.250 kl 4.8e-07")
    assert not StepLine("step", 1, 3, {**GRPO, "heldout/kl": float("nan")}).measured


def test_the_closing_line_gives_the_mean_loss_and_the_time():
    totals = {
        "train_runtime": 12.6,
        "train_samples_per_second": 9.4,
        "total_flos": 0,
        "train_loss": 0.6917,
        "epoch": 1.5,
    }
    assert StepLine("finished", 3, 3, totals, prefix="dpo").summary == "dpo finished 3/3  mean loss 0.692  13 s"


def test_the_callback_hands_a_step_line_to_its_logger_from_the_main_process_only():
    class State:
        global_step, max_steps, is_world_process_zero = 4, 10, True

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    StepLines.logger.addHandler(handler)
    try:
        StepLines().on_log(None, State(), None, logs=dict(GRPO))
        StepLines().on_log(None, State(), None, logs={"train_runtime": 1.0, "train_loss": 0.1})
        State.is_world_process_zero = False
        StepLines().on_log(None, State(), None, logs=dict(GRPO))
    finally:
        StepLines.logger.removeHandler(handler)
    lines = [record.msg for record in records]
    assert lines == [
        StepLine("step", 4, 10, GRPO),
        StepLine("finished", 4, 10, {"train_runtime": 1.0, "train_loss": 0.1}),
    ]
    assert records[0].getMessage() == str(lines[0]) and str(replace(lines[0], prefix="grpo")).startswith(
        "grpo step 4/10 loss="
    )
