"""Settings of the alignment trainers: one pydantic model per stage, every field documented.

A run writes its settings as ``align.json`` beside its adapter, so the folder is the record of the
run; ``imagepref align <method> --config FILE.yaml`` and ``key=value`` overrides fill these models.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from imagepref.errors import UnknownNameError

AXES = ("aesthetics", "prompt_fidelity", "safety")


class Strict(BaseModel):
    """Unknown keys are errors, so a typo in a config never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")


class PairPolicy(Strict):
    """How three per-axis verdicts become one chosen/rejected pair (see ``policy.align.pairs``)."""

    safety_first: bool = Field(True, description="A pair with a safety verdict is decided by safety alone.")
    weights: dict[str, float] = Field(default_factory=lambda: {"prompt_fidelity": 0.7, "aesthetics": 0.3},
                                      description="Weights of the other axes: +w when a wins the axis, -w when b does.")
    margin: float = Field(0.0, description="A weighted score with |score| <= margin is a tie.")
    ties: str = Field("drop", description="drop: ties leave the data; downweight: kept at tie_weight, chosen by score sign.")
    tie_weight: float = Field(0.25, description="Weight of a kept tie (ties=downweight).")


class CommonSettings(Strict):
    """What every trainer shares: LoRA, optimisation, checkpoints, monitoring."""

    seed: int = Field(0, description="Seed of the data order, the sampler and the LoRA init.")
    lora: bool = Field(True, description="Train a peft LoRA adapter (the reference is the model with it off); "
                       "false: full fine-tune with a frozen reference copy.")
    lora_r: int = Field(16, description="LoRA rank.")
    lora_alpha: int = Field(32, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, description="LoRA dropout (0 keeps ratios exact at step 1).")
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"],
                                    description="Module names LoRA wraps.")
    learning_rate: float = Field(5e-4, description="Peak learning rate (AdamW).")
    steps: int = Field(100, description="Optimizer steps.")
    batch_size: int = Field(8, description="Sequences (DPO: pairs) per optimizer step.")
    save_every: int = Field(25, description="Steps between resumable checkpoints (adapter, optimizer, RNG).")
    monitor_every: int = Field(25, description="Steps between held-out monitoring passes (0: off).")
    monitor_prompts: int = Field(16, description="Held-out glyph-world prompts in each monitoring pass.")
    report_to: list[str] = Field(default_factory=lambda: ["tensorboard"], description="transformers report_to targets.")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance of the sampler (rollouts, monitoring; default: the generator's own).")
    temperature: float = Field(1.0, description="Sampling temperature of rollouts.")


class RewardMix(Strict):
    """Rewards of GRPO/PPO and their weights; every name must be known (see ``policy.align.rewards``)."""

    weights: dict[str, float] = Field(default_factory=lambda: {"ocr": 1.0},
                                      description="Reward name -> weight. Names: ocr, rule_aesthetics, "
                                      "rule_prompt_fidelity, rule_safety, rule_ink_colour, reward_model (combined), "
                                      "reward_model:<head>.")
    reward_model: str | None = Field(None, description="Reward model folder (needed by reward_model names).")


class OnPolicyPairs(Strict):
    """Iterative DPO: sample fresh candidates, rank them by the rewards, keep best and worst."""

    prompts: int = Field(32, description="Training prompts sampled per round.")
    images_per_prompt: int = Field(4, description="Candidates per prompt; best vs worst becomes a pair.")
    min_gap: float = Field(0.05, description="Pairs whose best-worst reward gap is below this are dropped.")
    rewards: dict[str, float] = Field(default_factory=lambda: {"rule_prompt_fidelity": 1.0, "rule_safety": 1.0},
                                      description="Rewards that rank the candidates when no reward model is given "
                                      "(names as for GRPO; with --reward-model its combined reward ranks them).")


class DPOSettings(CommonSettings):
    """``imagepref align dpo``."""

    beta: float = Field(0.1, description="DPO beta.")
    loss_type: str = Field("sigmoid", description="TRL DPO loss type.")
    precompute_ref_log_probs: bool = Field(False, description="Compute reference log-probs once before training.")
    pairs: PairPolicy = Field(default_factory=PairPolicy)
    epochs: int = Field(0, description="Passes over the pairs; 0 uses ``steps``.")
    on_policy: OnPolicyPairs = Field(default_factory=OnPolicyPairs,
                                     description="Iterative DPO (no --preferences): how pairs are sampled and ranked.")


class GRPOSettings(CommonSettings):
    """``imagepref align grpo``."""

    beta: float = Field(0.04, description="KL weight to the reference (TRL defaults to 0, which lets the policy drift).")
    num_generations: int = Field(8, description="Images per prompt in a group.")
    epsilon: float = Field(0.2, description="Clipping range of the ratio.")
    loss_type: str = Field("dapo", description="TRL GRPO loss type.")
    rewards: RewardMix = Field(default_factory=RewardMix)


class PPOSettings(GRPOSettings):
    """``imagepref align ppo``: clipped surrogate, KL penalty, learned value baseline, GAE."""

    num_generations: int = Field(4, description="Images per prompt per rollout (no group baseline is used).")
    gamma: float = Field(1.0, description="GAE discount over image tokens.")
    lam: float = Field(1.0, description="GAE lambda. 1: Monte-Carlo returns with the value as a baseline only; the "
                       "reward arrives at the last of ~64 codes, and at 0.95 the first codes got 0.95**63 = 4 % of "
                       "its credit, the rest from a weak value head's differences.")
    value_coef: float = Field(0.5, description="Weight of the value loss.")
    value_clip: float = Field(0.2, description="Clip range of the value update.")
    value_lr: float = Field(1e-4, description="Learning rate of the value head (AdamW). At 1e-3 the linear head on "
                            "~unit-scale hidden states oscillated on the shipped base (mean value -4.9 to +4, returns ~0.9).")
    epochs_per_rollout: int = Field(1, description="Optimisation passes over each rollout batch (TRL num_iterations).")
    guidance_scale: float | None = Field(None, description="Guidance of the held-out monitoring sampler only: PPO's "
                                         "rollouts sample the raw policy (guidance 1), the distribution its ratio and KL use.")
    temperature: float = Field(1.0, description="Must be 1: PPO's rollouts sample the raw policy, the distribution "
                               "its ratio and KL use.")

    @field_validator("temperature")
    @classmethod
    def _raw_policy_temperature(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError("PPO samples its rollouts from the raw policy (the distribution its ratio and KL use); "
                             "leave temperature at 1")
        return value


def guidance_of(settings: CommonSettings, generator) -> float:
    """The guidance scale a run samples with: the setting, else the generator's own, else 3."""
    if settings.guidance_scale is not None:
        return settings.guidance_scale
    return float(generator.config.extra.get("guidance_scale", 3.0))


def check_reward_names(weights: dict[str, float]) -> None:
    """Refuse an unknown reward name with the list of known ones."""
    from imagepref.policy.align.rewards import REWARD_NAMES, known_reward

    for name in weights:
        if not known_reward(name):
            raise UnknownNameError(f"unknown reward {name!r} in the reward weights; use {REWARD_NAMES}")
