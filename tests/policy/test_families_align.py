"""DPO, GRPO and PPO (``policy.align``, TRL 1.16 with LoRA) on every generator family: the same three
checks for glyph, Emu3, Janus-Pro and causal LM + VQModel, on tiny random models built in code."""

from __future__ import annotations

import math

import pytest
import torch

from imagepref.policy.align import (
    DPOSettings,
    GRPOSettings,
    PPOSettings,
    build_rewards,
    load_aligned,
    train_dpo,
    train_grpo,
    train_ppo,
)
from imagepref.policy.families import tiny_generator
from imagepref.policy.generator import load_generator
from imagepref.policy.sampler import teacher_forced_logprobs

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FAMILIES = ["glyph", "emu3", "janus", "causal-vq"]
PROMPTS = ['a sign that says "OPEN"', 'the word "HI" in blue']
QUICK = dict(report_to=[], save_every=1000, monitor_every=0, lora_r=4, lora_alpha=8, seed=0)


@pytest.fixture(scope="module", params=FAMILIES)
def base(request, tmp_path_factory):
    """A tiny generator of each family saved to a folder (the base the adapters name)."""
    path = tmp_path_factory.mktemp(request.param) / "base"
    tiny_generator(request.param).save_pretrained(path)
    return path


def margin(generator, examples) -> float:
    """Mean log-prob margin of chosen over rejected codes under ``generator``."""
    prompt_ids = [e["prompt_ids"] for e in examples]
    chosen = generator.block_to_codes(torch.tensor([e["chosen_ids"] for e in examples]))
    rejected = generator.block_to_codes(torch.tensor([e["rejected_ids"] for e in examples]))
    with torch.no_grad():
        return float(
            (
                teacher_forced_logprobs(generator, prompt_ids, chosen).sum(-1)
                - teacher_forced_logprobs(generator, prompt_ids, rejected).sum(-1)
            ).mean()
        )


def test_three_dpo_steps_move_the_margin(base, tmp_path):
    generator = load_generator(base)
    samples = generator.sample([p for p in PROMPTS for _ in range(2)], seed=7, decode=False)
    examples = [
        {
            "prompt_ids": samples.prompt_ids[2 * i],
            "chosen_ids": samples.completion_ids[2 * i].tolist(),
            "rejected_ids": samples.completion_ids[2 * i + 1].tolist(),
        }
        for i in range(len(PROMPTS))
    ]
    before = margin(generator, examples)
    settings = DPOSettings(steps=3, batch_size=2, learning_rate=1e-2, beta=0.1, **QUICK)
    result = train_dpo(generator, examples, settings, tmp_path / "dpo", base_path=str(base))
    assert result["steps"] == 3
    first = next(log for log in result["log_history"] if "rewards/margins" in log)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)  # step 1: adapters at zero = reference
    last = [log["rewards/margins"] for log in result["log_history"] if "rewards/margins" in log][-1]
    assert last > 0
    after = margin(load_aligned(tmp_path / "dpo", base=base), examples)
    assert after > before + 0.05, (before, after)  # the reloaded adapter carries the move


def test_two_grpo_steps_run_with_a_rule_reward(base, tmp_path):
    generator = load_generator(base)
    functions, weights = build_rewards({"rule_aesthetics": 1.0}, generator)
    settings = GRPOSettings(steps=2, batch_size=4, num_generations=4, learning_rate=1e-3, **QUICK)
    result = train_grpo(generator, PROMPTS, functions, weights, settings, tmp_path / "grpo", base_path=str(base))
    assert result["steps"] == 2
    logs = [log for log in result["log_history"] if "reward" in log]
    assert len(logs) == 2 and all(0.0 <= log["reward"] <= 1.0 for log in logs)
    assert logs[0]["kl"] == pytest.approx(0.0, abs=1e-5)  # the reference is the policy at step 1
    aligned = load_aligned(tmp_path / "grpo", base=base)
    assert aligned.sample(PROMPTS, decode=False).codes.shape == (2, aligned.num_codes)


def test_ppo_ratio_is_one_at_step_one(base, tmp_path):
    generator = load_generator(base)
    functions, weights = build_rewards({"rule_aesthetics": 1.0}, generator)
    settings = PPOSettings(steps=1, batch_size=4, num_generations=4, learning_rate=1e-3, **QUICK)
    result = train_ppo(generator, PROMPTS, functions, weights, settings, tmp_path / "ppo", base_path=str(base))
    log = next(log for log in result["log_history"] if "ppo/ratio_max_dev" in log)
    assert log["ppo/ratio_max_dev"] < 1e-4 and log["ppo/kl"] == pytest.approx(0.0, abs=1e-4)
    assert math.isfinite(log["ppo/value_loss"])
