"""Alignment trainers on TRL with LoRA: DPO, GRPO and PPO for any ``Generator``.

- ``train_dpo`` (``policy.align.dpo``): TRL's DPOTrainer over token-id pairs;
- ``train_grpo`` (``policy.align.grpo``): TRL's GRPOTrainer with our sampler as rollout;
- ``train_ppo`` (``policy.align.ppo``): PPO with a separate value model and GAE on GRPOTrainer machinery;
- settings (``policy.align.config``), pairs (``policy.align.pairs``), rewards
  (``policy.align.rewards``), run folders, resume and merge (``policy.align.checkpoints``),
  held-out monitoring (``policy.align.monitoring``).

The names below are imported on first use, so ``policy.align.config`` (pydantic only) can be
imported to check settings without importing torch and TRL.
"""

from imagepref.lazy import lazy_attributes

_HOMES = {
    "load_aligned": "checkpoints",
    "merge_run": "checkpoints",
    "DPOSettings": "config",
    "GRPOSettings": "config",
    "PPOSettings": "config",
    "OnPolicyPairs": "config",
    "PairPolicy": "config",
    "RewardMix": "config",
    "settings_class": "config",
    "settings_from_mapping": "config",
    "train_dpo": "dpo",
    "train_grpo": "grpo",
    "train_ppo": "ppo",
    "collapse_verdicts": "pairs",
    "on_policy_examples": "pairs",
    "preference_examples": "pairs",
    "build_rewards": "rewards",
    "Monitoring": "training",
}

__all__ = sorted(_HOMES)

__getattr__ = lazy_attributes(__name__, _HOMES)
