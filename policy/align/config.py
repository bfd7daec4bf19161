"""Settings of the alignment trainers: TRL's own configs, plus what image tokens need.

``DPOSettings`` carries every field of TRL's ``DPOConfig``, ``GRPOSettings`` and ``PPOSettings``
every field of its ``GRPOConfig`` (transformers' ``TrainingArguments`` included), under TRL's
names, help texts and defaults: ``lr_scheduler_type=cosine warmup_steps=0.1
gradient_accumulation_steps=2 bf16=true`` reach the trainer as they are. Declared here are only

- our own fields (LoRA, held-out monitoring, guidance, the pair policy, rewards, PPO's value head);
- the TRL fields whose default we change, each with the reason beside it;
- the names the recipes and the docs use for three TRL fields: ``steps`` (``max_steps``),
  ``batch_size`` (``per_device_train_batch_size``), ``save_every`` (``save_steps``), and PPO's
  ``epochs_per_rollout`` (``num_iterations``).

Unknown keys are errors. This module imports pydantic only; the three settings classes are built
from TRL's dataclasses on first use (``settings_class``, or importing the names), which imports
TRL, transformers and torch (about 4 s on two cores). A run writes its settings as ``align.json``
beside its adapter, so the folder is the record of the run.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from imagepref.errors import UnknownNameError
from imagepref.policy.config import Decoding, SpeculativeWindow

METHODS = ("dpo", "grpo", "ppo")


class Strict(BaseModel):
    """Unknown keys are errors, so a typo in a config never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")


# The pair policy's default weights, for images and for edits (where what was asked outweighs
# what was kept, as prompt fidelity outweighs aesthetics for images).
IMAGE_PAIR_WEIGHTS = {"prompt_fidelity": 0.7, "aesthetics": 0.3}
EDIT_PAIR_WEIGHTS = {"instruction_fidelity": 0.6, "preservation": 0.4}


class PairPolicy(Strict):
    """How three per-axis verdicts become one chosen/rejected pair (see ``policy.align.pairs``)."""

    safety_first: bool = Field(True, description="A pair with a safety verdict is decided by safety alone.")
    weights: dict[str, float] = Field(
        default_factory=lambda: dict(IMAGE_PAIR_WEIGHTS),
        description="Weights of the other axes: +w when a wins the axis, -w when b does "
        f"(on preference data about edits the image default becomes {EDIT_PAIR_WEIGHTS}).",
    )
    margin: float = Field(0.0, description="A weighted score with |score| <= margin is a tie.")
    ties: str = Field(
        "drop", description="drop: ties leave the data; downweight: kept at tie_weight, chosen by score sign."
    )
    tie_weight: float = Field(0.25, description="Weight of a kept tie (ties=downweight).")

    def for_edits(self) -> PairPolicy:
        """The policy for preference data about edits: the image default weights (axes that data
        has none of) become the edit default; weights set to anything else stay."""
        if self.weights == IMAGE_PAIR_WEIGHTS:
            return self.model_copy(update={"weights": dict(EDIT_PAIR_WEIGHTS)})
        return self


class RewardMix(Strict):
    """Rewards of GRPO/PPO and their weights; every name must be known (see ``policy.align.rewards``)."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {"ocr": 1.0},
        description="Reward name -> weight. Names: ocr, rule_aesthetics, "
        "rule_prompt_fidelity, rule_safety, rule_ink_colour, reward_model (combined), "
        "reward_model:<head>.",
    )
    reward_model: str | None = Field(None, description="Reward model folder (needed by reward_model names).")


# On-policy DPO's default ranking rewards, for images and for edit turns (the edit mix of the
# documented GRPO run on edit turns).
IMAGE_RANKING_REWARDS = {"rule_prompt_fidelity": 1.0, "rule_safety": 1.0}
EDIT_RANKING_REWARDS = {"edit_rules": 1.0, "edit_success": 0.5, "rule_safety": 0.25}


class OnPolicyPairs(Strict):
    """Iterative DPO: sample fresh candidates, rank them by the rewards, keep best and worst."""

    prompts: int = Field(32, description="Training prompts sampled per round.")
    images_per_prompt: int = Field(4, description="Candidates per prompt; best vs worst becomes a pair.")
    min_gap: float = Field(0.05, description="Pairs whose best-worst reward gap is below this are dropped.")
    rewards: dict[str, float] = Field(
        default_factory=lambda: dict(IMAGE_RANKING_REWARDS),
        description="Rewards that rank the candidates when no reward model is given "
        "(names as for GRPO; with --reward-model its combined reward ranks them; on edit turns "
        f"the default becomes {EDIT_RANKING_REWARDS}).",
    )

    def reward_weights(self, edits: bool) -> dict[str, float]:
        """The rewards that rank the candidates: on edit turns (``--prompts glyphworld-edits``) the
        image default, which cannot score an edit, becomes the edit rules' default."""
        if edits and self.rewards == IMAGE_RANKING_REWARDS:
            return dict(EDIT_RANKING_REWARDS)
        return dict(self.rewards)


class AlignFields(Strict):
    """What every trainer shares: our fields and our defaults for some of TRL's.

    The settings classes add every other field of TRL's config to these (``settings_class``)."""

    # TRL's configs hold parallelism and accelerator objects as well as plain values.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # Other names for TRL fields: {our name: TRL's}. They are accepted as input and stored under
    # TRL's name, so a run's record and the trainer see one field.
    ALIASES: ClassVar[dict[str, str]] = {
        "steps": "max_steps",
        "batch_size": "per_device_train_batch_size",
        "save_every": "save_steps",
    }
    # TRL fields the trainer sets itself (not settings): the run folder is --out.
    TRAINER_SETS: ClassVar[tuple[str, ...]] = ("output_dir",)
    # Filled when the settings class is built: TRL's config class and its fields' defaults.
    trl_config: ClassVar[type | None] = None
    trl_defaults: ClassVar[dict[str, Any]] = {}

    # ----- TRL fields with our default, and why ---------------------------------------------
    max_steps: int = Field(
        100,
        gt=0,
        description="Optimizer steps (also: steps). TRL's -1 means 3 epochs; our runs "
        "are sized in steps (30 for the quickstart's DPO, 120 for its GRPO).",
    )
    save_steps: int = Field(
        25,
        gt=0,
        description="Steps between resumable checkpoints: adapter, optimizer, RNG "
        "(also: save_every). TRL's 500 is longer than most glyph-world runs, so a killed run "
        "would restart from step 0.",
    )
    learning_rate: float = Field(
        5e-4,
        gt=0,
        description="Peak learning rate (AdamW). TRL's 1e-6 is a full fine-tune's "
        "rate; for LoRA on the glyph world GRPO at 5e-4 lifted held-out OCR word accuracy "
        "from 42.2 to 50.0 %, 1e-3 reached 37.5 % on the monitor at step 50 and 5e-3 "
        "collapsed.",
    )
    lr_scheduler_type: str = Field(
        "constant",
        description="Learning-rate schedule (transformers SchedulerType: "
        "linear, cosine, constant_with_warmup, ...). TRL's default decays linearly to 0; "
        "every measured glyph-world run and the quickstart's figures used a constant rate.",
    )
    logging_steps: float = Field(
        1,
        gt=0,
        description="Steps between logged steps. TRL logs every 10; the run log, "
        "the console line and metrics.jsonl here follow every step of these short runs.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Seed of the data order (unless data_seed is set), the "
        "sampler and the LoRA init. TRL's is 42; the quickstart's and the measured runs' figures were "
        "drawn with 0.",
    )
    bf16: bool = Field(
        False,
        description="bfloat16 autocast in training. TRL turns it on; off here because the "
        "sampler reports float32 log-probs: with bf16, PPO's step-1 ratio on the micro model was off "
        "by 1.0e-3 (4.8e-7 without), and on two CPU cores 3 steps took 27.3 s instead of 10.7 s.",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass "
        "(transformers 5 also reads activation_checkpointing, which wins when set). "
        "TRL turns it on; off here: the glyph world's model is small, and with it "
        "3 PPO steps on the micro model took 25.5 s instead of 10.7 s. Set it for "
        "a large generator on a small GPU.",
    )
    report_to: str | list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="transformers "
        "report_to targets. TRL reports nowhere; the run folder keeps TensorBoard "
        "events in runs/.",
    )
    disable_tqdm: bool = Field(
        True, description="No progress bar: each logged step is one line in the run log instead."
    )

    # ----- our fields -------------------------------------------------------------------------
    lora: bool = Field(
        True,
        description="Train a peft LoRA adapter (the reference is the model with it off); "
        "false: full fine-tune with a frozen reference copy.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (0 keeps ratios exact at step 1).")
    lora_targets: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names LoRA wraps.",
    )
    monitor_every: int = Field(25, ge=0, description="Steps between held-out monitoring passes (0: off).")
    monitor_prompts: int = Field(16, ge=1, description="Held-out glyph-world prompts in each monitoring pass.")
    guidance_scale: float | None = Field(
        None,
        ge=0,
        description="Classifier-free guidance of the sampler (rollouts, monitoring; default: the generator's own).",
    )

    # ----- other names (folded into TRL's field as the settings are read) --------------------
    steps: int | None = Field(None, exclude=True, description="Same as max_steps.")
    batch_size: int | None = Field(
        None,
        exclude=True,
        description="Same as per_device_train_batch_size: sequences (DPO: pairs) per device per micro-step.",
    )
    save_every: int | None = Field(None, exclude=True, description="Same as save_steps.")

    @model_validator(mode="before")
    @classmethod
    def _fold_other_names(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for ours, theirs in cls.ALIASES.items():
            if ours in data:
                if theirs in data:
                    raise ValueError(f"give {ours} or {theirs}, not both (they are one setting)")
                data[theirs] = data.pop(ours)
        return data

    @field_validator("lr_scheduler_type")
    @classmethod
    def _known_schedule(cls, value: str) -> str:
        from transformers.trainer_utils import SchedulerType

        names = [kind.value for kind in SchedulerType]
        if value not in names:
            raise ValueError(f"unknown schedule {value!r}; use one of {', '.join(names)}")
        return value

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False):
        """A copy with ``update`` applied; our other names (steps, save_every, ...) update TRL's field."""
        if update:
            update = {self.ALIASES.get(key, key): value for key, value in update.items()}
        return super().model_copy(update=update, deep=deep)

    def trl_arguments(self) -> dict[str, Any]:
        """The TRL config fields whose value differs from TRL's own default, by TRL's names."""
        values = {
            name: getattr(self, name) for name, default in self.trl_defaults.items() if getattr(self, name) != default
        }
        # TRL 1.16 names the switch gradient_checkpointing, transformers 5.24 activation_checkpointing
        # (the old name deprecated): the trainer gets the new name only, so no deprecation warning.
        values.pop("gradient_checkpointing", None)
        checkpointing = getattr(self, "activation_checkpointing", None)
        values["activation_checkpointing"] = self.gradient_checkpointing if checkpointing is None else checkpointing
        if getattr(self, "data_seed", None) is None:
            # Unset, accelerate's seedable sampler takes torch's last seed, which the LoRA
            # initialisation and the sampler also set: the data order follows the run's seed instead.
            values["data_seed"] = self.seed
        return values


class DPOFields(AlignFields):
    """``imagepref align dpo``: our fields besides TRL's ``DPOConfig``."""

    # The examples are token ids already; TRL would otherwise truncate rows to 1024 tokens and cut
    # image blocks (an Emu3 block alone is longer).
    TRAINER_SETS: ClassVar[tuple[str, ...]] = ("output_dir", "max_length")

    pairs: PairPolicy = Field(default_factory=PairPolicy, description="How per-axis verdicts become pairs.")
    epochs: int = Field(0, ge=0, description="Passes over the pairs (sets num_train_epochs); 0 uses max_steps.")
    on_policy: OnPolicyPairs = Field(
        default_factory=OnPolicyPairs, description="Iterative DPO (no --preferences): how pairs are sampled and ranked."
    )

    def trl_arguments(self) -> dict[str, Any]:
        values = super().trl_arguments()
        values["max_length"] = None
        if self.epochs:
            values.update(max_steps=-1, num_train_epochs=self.epochs)
        return values


class GRPOFields(AlignFields):
    """``imagepref align grpo``: our fields besides TRL's ``GRPOConfig``."""

    # The completion is one image block (its length is the generator's) and the weights come from rewards.weights.
    TRAINER_SETS: ClassVar[tuple[str, ...]] = ("output_dir", "max_completion_length", "reward_weights")

    beta: float = Field(
        0.04,
        ge=0,
        description="KL weight to the reference. TRL's 0 drops the KL term and lets the "
        "policy drift from the base unchecked; every measured GRPO run here used 0.04.",
    )
    num_generations: int = Field(
        8,
        ge=2,
        description="Images per prompt per step (TRL's default). GRPO's advantage is an image's reward "
        "against its group's, so a group needs at least 2.",
    )
    rewards: RewardMix = Field(default_factory=RewardMix, description="The rewards and their weights.")
    decoding: Decoding = Field(
        "plain",
        description="How rollouts are sampled: plain, or sjd (speculative Jacobi decoding: the same "
        "distribution and raw log-probs in fewer forward passes).",
    )
    window: SpeculativeWindow = Field(8, description="Draft codes verified per forward pass (decoding sjd).")


class PPOFields(GRPOFields):
    """``imagepref align ppo``: clipped surrogate, KL penalty, learned value baseline, GAE."""

    ALIASES: ClassVar[dict[str, str]] = {**AlignFields.ALIASES, "epochs_per_rollout": "num_iterations"}

    num_generations: int = Field(
        4,
        ge=1,
        description="Images per prompt per rollout. TRL's 8 sizes GRPO's groups; "
        "PPO uses no group baseline, and its measured runs drew 4.",
    )
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount over image tokens.")
    lam: float = Field(
        1.0,
        ge=0,
        le=1,
        description="GAE lambda. 1: Monte-Carlo returns with the value as a baseline "
        "only; the reward arrives at the last of ~64 codes, and at 0.95 the first codes got 0.95**63 = "
        "4 % of its credit, the rest from a weak value head's differences.",
    )
    value_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")
    value_clip: float = Field(
        0.2, gt=0, description="Clip range of the value update, in units of the returns' running standard deviation."
    )
    value_lr: float = Field(
        1e-3,
        gt=0,
        description="Learning rate of the critic (its own copy of the trunk and a value head, "
        "AdamW, on returns standardised by their running spread). On the micro generator over 400 "
        "steps, 1e-3 took the explained variance to 0.4; at 1e-4 it stayed at 0.",
    )
    guidance_scale: float | None = Field(
        None,
        ge=0,
        description="Guidance of the held-out monitoring sampler only: "
        "PPO's rollouts sample the raw policy (guidance 1), the distribution its "
        "ratio and KL use.",
    )
    temperature: float = Field(
        1.0, description="Must be 1: PPO's rollouts sample the raw policy, the distribution its ratio and KL use."
    )
    epochs_per_rollout: int | None = Field(
        None, exclude=True, description="Same as num_iterations: optimisation passes over each rollout batch."
    )

    @field_validator("temperature")
    @classmethod
    def _raw_policy_temperature(cls, value: float) -> float:
        if value != 1.0:
            raise ValueError(
                "PPO samples its rollouts from the raw policy (the distribution its ratio and KL use); "
                "leave temperature at 1"
            )
        return value


# ----- the settings classes: our fields plus every field of TRL's config ---------------------
_FIELDS = {
    "dpo": (DPOFields, "trl.trainer.dpo_config", "DPOConfig", "DPOSettings"),
    "grpo": (GRPOFields, "trl.trainer.grpo_config", "GRPOConfig", "GRPOSettings"),
    "ppo": (PPOFields, "trl.trainer.grpo_config", "GRPOConfig", "PPOSettings"),
}
_BUILT: dict[str, type[AlignFields]] = {}


def settings_class(method: str) -> type[AlignFields]:
    """The settings model of ``method`` (dpo, grpo or ppo): ours plus every field of TRL's config."""
    if method not in _FIELDS:
        raise UnknownNameError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method not in _BUILT:
        _BUILT[method] = _build(*_FIELDS[method])
    return _BUILT[method]


def _build(ours: type[AlignFields], module: str, config_name: str, name: str) -> type[AlignFields]:
    import importlib

    config = getattr(importlib.import_module(module), config_name)
    hints = typing.get_type_hints(config)
    trl_fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for spec in dataclasses.fields(config):
        if not spec.init or spec.name in ours.TRAINER_SETS:
            continue
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        defaults[spec.name] = default
        if spec.name in ours.model_fields:
            continue  # ours: our default, with its reason
        # A hub token never lands in a run's record.
        common = {"description": spec.metadata.get("help", ""), "exclude": spec.name.endswith("_token") or None}
        if spec.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=spec.default_factory, **common)
        else:
            info = Field(spec.default, **common)
        trl_fields[spec.name] = (hints.get(spec.name, Any), info)
    doc = (
        f"{ours.__doc__}\n\nEvery field of TRL's ``{config_name}`` is a setting too, with TRL's default unless "
        "declared in this module."
    )
    settings = create_model(name, __base__=ours, __module__=__name__, __doc__=doc, **trl_fields)
    settings.trl_config = config
    settings.trl_defaults = defaults
    return settings


def __getattr__(name: str):
    # DPOSettings, GRPOSettings and PPOSettings are built on first use: building them imports TRL.
    for method, (_, _, _, class_name) in _FIELDS.items():
        if name == class_name:
            return settings_class(method)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def settings_from_mapping(method: str, data: dict[str, Any] | None, where: str | None = None) -> AlignFields:
    """``method``'s settings from a mapping (a recipe's ``align.<method>`` section, a ``--config``
    file with overrides applied); the first problem is one line naming ``where.<key>`` and, for an
    unknown key, the nearest known one."""
    from imagepref import settings as checked

    return checked.validated(
        settings_class(method),
        dict(data or {}),
        where or "align settings",
        prefix=f"align.{method}.",
        listing=f"`imagepref align {method} --help` lists every key",
    )


def settings_help(method: str) -> str:
    """Every setting of ``method``, one a line: ``name = default (bounds): help``; ours and our
    defaults for TRL's fields first, then TRL's other fields (for ``imagepref align <method> --help``)."""
    from imagepref.settings import settings_listing

    return settings_listing(settings_class(method), first=_FIELDS[method][0].model_fields)


def guidance_of(settings: AlignFields, generator) -> float:
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


__all__ = [
    "AlignFields",
    "DPOFields",
    "GRPOFields",
    "METHODS",
    "OnPolicyPairs",
    "PPOFields",
    "PairPolicy",
    "RewardMix",
    "Strict",
    "check_reward_names",
    "guidance_of",
    "settings_class",
    "settings_from_mapping",
    "settings_help",
]
