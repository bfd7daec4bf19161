"""Alignment trainers on TRL with LoRA: DPO, GRPO and PPO for any ``Generator``.

- ``train_dpo`` (``policy.align.dpo``): TRL's DPOTrainer over token-id pairs;
- ``train_grpo`` (``policy.align.grpo``): TRL's GRPOTrainer with our sampler as rollout;
- ``train_ppo`` (``policy.align.ppo``): PPO with a value head and GAE on GRPOTrainer machinery;
- pairs (``policy.align.pairs``), rewards (``policy.align.rewards``), run folders, resume and
  merge (``policy.align.checkpoints``), held-out monitoring (``policy.align.monitoring``).
"""

from imagepref.policy.align.checkpoints import load_aligned, merge_run
from imagepref.policy.align.config import DPOSettings, GRPOSettings, OnPolicyPairs, PairPolicy, PPOSettings, RewardMix
from imagepref.policy.align.dpo import train_dpo
from imagepref.policy.align.grpo import train_grpo
from imagepref.policy.align.pairs import collapse_verdicts, on_policy_examples, preference_examples
from imagepref.policy.align.ppo import train_ppo
from imagepref.policy.align.rewards import build_rewards
from imagepref.policy.align.training import Monitoring

__all__ = [
    "DPOSettings", "GRPOSettings", "Monitoring", "OnPolicyPairs", "PPOSettings", "PairPolicy", "RewardMix",
    "build_rewards", "collapse_verdicts", "load_aligned", "merge_run", "on_policy_examples", "preference_examples",
    "train_dpo", "train_grpo", "train_ppo",
]
