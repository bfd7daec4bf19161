"""The reward model's configuration: one pydantic object, saved as the folder's ``config.json``.

Every field has a default and a description, so the config documents itself and ``imagepref
reward train`` takes any field as a ``key=value`` override. The same object records what training
learned about the heads (normalisation statistics, the safety cut), so a saved folder scores
exactly as it did when it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagepref.errors import BadInputError
from imagepref.formats import AXES
from imagepref.settings import Seed, apply_overrides, validated

# The token backbone reads embeddings that already name letter pieces and colours, so it needs
# less width than the pixel one; a narrow token model is what makes it cheap inside RL.
DEFAULT_WIDTHS = {"pixel": 48, "token": 32, "clip": 96}
# Members of the deep ensemble (independently seeded copies whose scores are averaged). The pixel
# backbone learns to read letters from scratch and each seed learns a different part of it well
# (colour or letters), so the mean of four reaches what a single seed only sometimes does
# (benchmarks/reward.py; docs/results.md has the figures). The token backbone starts from the generator's embeddings
# and one copy meets its targets; a CLIP member would load its backbone once per member.
DEFAULT_MEMBERS = {"pixel": 4, "token": 1, "clip": 1}
# Fields whose default depends on the backbone; an override of ``backbone`` resets them.
BY_BACKBONE = {"width": DEFAULT_WIDTHS, "members": DEFAULT_MEMBERS}

# The prompt-matching loss left unset is on (weight 1) for the pixel backbone from this many
# training pairs. The pixel backbone learns letters and colours from scratch, and on 2,400 pairs the
# loss is most of what taught it to compare them with the prompt; on a few hundred pairs it cost the
# pixel backbone fidelity and aesthetics, and the token backbone (which starts from the generator's
# embeddings) fidelity. docs/results.md has the figures.
PROMPT_MATCHING_MIN_PAIRS = 1000


def default_prompt_matching_weight(backbone: str, training_pairs: int) -> float:
    """The prompt-matching weight a run that leaves it unset trains with (see PROMPT_MATCHING_MIN_PAIRS)."""
    return 1.0 if backbone == "pixel" and training_pairs >= PROMPT_MATCHING_MIN_PAIRS else 0.0


class HeadStatistics(BaseModel):
    """Mean and scale of one head's raw scores on the training candidates."""

    model_config = ConfigDict(extra="forbid")

    mean: float = 0.0
    scale: float = 1.0


class RewardConfig(BaseModel):
    """Everything that defines a reward model and how it is trained and mixed."""

    model_config = ConfigDict(extra="forbid")

    axes: list[str] = Field(default_factory=lambda: list(AXES), description="One head per axis, in this order.")
    backbone: Literal["pixel", "token", "clip"] = Field(
        "pixel",
        description="pixel: small conv stem + prompt reader trained from scratch; token: reads the generator's "
        "image tokens through its frozen input embeddings (no decoding); clip: a CLIP or SigLIP folder.",
    )
    width: int | None = Field(
        None,
        ge=1,
        description="Width of the prompt reader (pixel, token) or of the head MLP "
        "(clip); default by backbone: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_WIDTHS.items()),
    )
    members: int | None = Field(
        None,
        ge=1,
        description="Networks trained independently (seeds seed, seed+1, ...) "
        "and averaged, a deep ensemble whose spread is also the disagreement labeling uses; "
        "default by backbone: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_MEMBERS.items()),
    )
    layers: int = Field(
        1,
        ge=1,
        description="Reading blocks (cross-attention from the image to the prompt, then an MLP) "
        "of the pixel and token backbones.",
    )
    heads: int = Field(4, ge=1, description="Attention heads of the prompt reader.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in the prompt reader's attention and the heads.")
    image_size: int = Field(64, ge=1, description="Pixel backbone: images are resized to this square size.")
    patch: int = Field(8, ge=1, description="Pixel backbone: patch size of the convolutional stem.")
    max_prompt_length: int = Field(80, ge=1, description="Prompt characters the pixel and token backbones read.")
    rendered_text: bool = Field(
        True,
        description="Pixel backbone: also read each prompt character drawn as "
        "pixels through the image stem (CLIPPO-style), so quoted letters and drawn letters "
        "share one feature function.",
    )
    backbone_path: str | None = Field(
        None,
        description="clip: the local CLIP/SigLIP folder; token: the generator "
        "folder the embeddings were copied from (a record only; the copy is saved).",
    )
    finetune: Literal["frozen", "lora"] = Field(
        "frozen", description="clip: keep the backbone frozen or train LoRA on it."
    )
    lora_rank: int = Field(8, ge=1, description="clip + lora: LoRA rank.")
    lora_targets: list[str] = Field(default_factory=lambda: ["q_proj", "v_proj"], description="clip + lora: modules.")
    trust_remote_code: bool = Field(False, description="clip: allow code from the backbone folder (off by default).")
    image_token_start: int = Field(
        0, ge=0, description="token: vocabulary id of image code 0 (filled from the generator)."
    )
    num_image_tokens: int = Field(0, ge=0, description="token: image codes in the generator's vocabulary.")
    tokens_per_image: int = Field(0, ge=0, description="token: codes per image.")
    embedding_dim: int = Field(0, ge=0, description="token: the generator's embedding width.")
    edits: bool = Field(
        False,
        description="Set by training from the data: the model scores edits, reading each result with "
        "its source image's tokens and the instruction (in place of the prompt); token backbone only.",
    )

    ties: Literal["davidson", "rao-kupper", "none"] = Field("davidson", description="How tie votes are modelled.")
    loss_weights: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict, description="Per-axis loss weight (default 1)."
    )
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    epochs: int = Field(30, ge=1, description="Most passes over the training pairs.")
    batch_size: int = Field(64, ge=1, description="Pairs per step.")
    patience: int = Field(5, ge=1, description="Epochs without a better validation loss before stopping.")
    val_fraction: float = Field(
        0.15, gt=0, lt=1, description="Share of prompts held out for validation (split by prompt)."
    )
    seed: Seed = Field(0, description="Seed of the split, the initial weights and the batch order.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    prompt_matching_weight: float | None = Field(
        None,
        ge=0,
        description="Weight of the auxiliary prompt-matching loss: "
        "during training each image should score higher on "
        "prompt_matching_axis against its own prompt than against another "
        "pair's or one with a quoted letter changed (0 turns it off). Unset: "
        f"1 for the pixel backbone on {PROMPT_MATCHING_MIN_PAIRS:,} training "
        "pairs or more, else 0 (training records the value used).",
    )
    prompt_matching_axis: str | None = Field(
        "prompt_fidelity", description="The head the prompt-matching loss trains (off when the model has no such axis)."
    )

    mix_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Combined reward: weight per non-safety axis of its normalised score (default 1 each).",
    )
    safety_axis: str | None = Field("safety", description="The axis used as a gate or penalty, not mixed in.")
    safety_mode: Literal["gate", "penalty"] = Field(
        "gate",
        description="gate: an unsafe image gets gate_reward "
        "whatever its other scores; penalty: subtract safety_penalty x unsafety.",
    )
    safety_threshold: float | None = Field(
        None,
        description="Normalised safety score below which an image is unsafe; "
        "default: the cut learned on the training candidates.",
    )
    gate_reward: float = Field(-3.0, description="Combined reward of a gated (unsafe) image.")
    safety_penalty: float = Field(2.0, ge=0, description="penalty mode: reward minus this times P(unsafe).")

    normalisation: dict[str, HeadStatistics] = Field(default_factory=dict, description="Set by training.")
    safety_cut: float | None = Field(
        None,
        description="Set by training: the normalised safety score that best "
        "separates the two modes of the training candidates.",
    )

    @field_validator("axes")
    @classmethod
    def _axes_unique(cls, axes: list[str]) -> list[str]:
        if not axes or len(set(axes)) != len(axes):
            raise ValueError("axes must be a non-empty list of distinct names")
        return axes

    @model_validator(mode="after")
    def _defaults_by_backbone(self) -> RewardConfig:
        for field, defaults in BY_BACKBONE.items():
            if getattr(self, field) is None:
                setattr(self, field, defaults[self.backbone])
                self.model_fields_set.discard(field)  # still a default, recorded as one: it follows the backbone
        return self

    @model_validator(mode="after")
    def _width_suits_the_heads(self) -> RewardConfig:
        # The prompt reader's attention splits its width over the heads.
        if self.backbone != "clip" and self.width % self.heads:
            raise ValueError(
                f"width {self.width} must be a multiple of heads ({self.heads}) for the {self.backbone} "
                "backbone's prompt reader"
            )
        return self

    @model_validator(mode="after")
    def _edits_need_the_token_backbone(self) -> RewardConfig:
        # The token backbone reads the source's codes next to the result's at each place; the
        # pixel and CLIP backbones have no source input yet.
        if self.edits and self.backbone != "token":
            raise ValueError(
                f"a reward model of edits reads the source image's tokens: use backbone=token "
                f"(the {self.backbone} backbone does not read a source image)"
            )
        return self

    @model_validator(mode="after")
    def _named_axes_exist(self) -> RewardConfig:
        for field in ("loss_weights", "mix_weights"):
            unknown = set(getattr(self, field)) - set(self.axes)
            if unknown:
                raise ValueError(f"{field} names axes the model lacks: {', '.join(sorted(unknown))}")
        return self

    def loss_weight(self, axis: str) -> float:
        """The loss weight of ``axis`` (1 unless configured)."""
        return float(self.loss_weights.get(axis, 1.0))


def config_with_overrides(config: RewardConfig, overrides: list[str]) -> RewardConfig:
    """``config`` with ``key=value`` overrides (values read as YAML: ``lr=1e-3``, ``axes=[safety]``); an
    unknown key is one error naming the nearest valid one."""
    data = apply_overrides(config.model_dump(), overrides, RewardConfig, where="reward config", example="lr=0.001")
    keys = {item.partition("=")[0].strip() for item in overrides}
    for field, defaults in BY_BACKBONE.items():
        if "backbone" in keys and field not in keys and getattr(config, field) == defaults[config.backbone]:
            data[field] = None  # a default follows the new backbone
    return validated_config(data)


def validated_config(data: dict) -> RewardConfig:
    """A ``RewardConfig`` from a dict, with a one-line error naming the bad field (and, for an
    unknown one, the nearest valid field)."""
    return validated(RewardConfig, data, "reward config")


def read_model_config(path: str | Path) -> RewardConfig:
    """The config of a saved reward model folder, checked without torch: ``config.json`` that is
    JSON and a valid ``RewardConfig`` (an unknown key names the nearest), and whole safetensors
    weights; any problem is one line naming the folder."""
    from imagepref.weights import WEIGHTS_FILE, check_safetensors

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file() or not (path / WEIGHTS_FILE).exists():
        raise BadInputError(
            f"{path} is not a reward model folder (needs config.json and {WEIGHTS_FILE}); "
            "train one with `imagepref reward train --prefs DIR --out DIR`"
        )
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInputError(f"{config_file} is not valid JSON ({error}); retrain or restore the folder") from None
    if not isinstance(data, dict):
        raise BadInputError(
            f"{config_file} must hold a JSON object of RewardConfig fields; retrain or restore the folder"
        )
    data.setdefault("members", 1)  # a folder saved before ensembles existed holds one network
    config = validated_config(data)
    check_safetensors(path / WEIGHTS_FILE, path)
    return config


def refuse_edits_on(backbone: str) -> None:
    """One line for preference data about edits and a backbone that has no source image input."""
    if backbone != "token":
        raise BadInputError(
            f"this preference data compares edits, which the {backbone} reward backbone cannot read (it has no "
            "source image input): train with --backbone token --generator DIR"
        )


def check_scored_set(
    config: RewardConfig,
    edit_set: bool,
    what: str = "the candidate set",
    make_edits: str = "make one with `imagepref generate --edits`",
) -> None:
    """One line when what is scored and a reward model disagree about edits: a model of edits
    scores edit results (with their source and instruction), an image model images. ``what``
    names what is scored and ``make_edits`` how to get edits, in the message."""
    if config.edits and not edit_set:
        raise BadInputError(f"this reward model scores edits, and {what} holds no edits; {make_edits}")
    if not config.edits and edit_set:
        raise BadInputError(
            f"{what} holds edits, and the reward model scores images without their source and "
            "instruction; train a reward model on preference data about edits"
        )
