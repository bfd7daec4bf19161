"""The generator interface every family implements, and the loader that picks the family.

A generator is a causal language model that writes an image as a block of image tokens after a
prompt, plus a codec that turns the block's codes into pixels. A family (the built-in glyph
model, Emu3, Janus-Pro, any causal LM with a VQ codec) fits in one file by subclassing
``Generator`` and filling in a few methods; the sampler, the trainers and the evaluation only
talk to this interface.

On disk a generator is a folder that its family's ``from_pretrained`` loads, plus
``imagepref.json`` (``GeneratorConfig``): family, codec folder, image-token id range, grid,
image size and prompt template.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.policy.config import GENERATOR_CONFIG, GENERATOR_FAMILIES, check_generator_folder, unknown_family

if TYPE_CHECKING:
    # The sampler imports nothing of this module at run time, so the two never import each other.
    from imagepref.policy.sampler import Samples

CONFIG_NAME = GENERATOR_CONFIG


class GeneratorConfig(BaseModel):
    """The imagepref part of a generator folder (``imagepref.json``)."""

    model_config = ConfigDict(extra="forbid")

    family: str = Field(description="Generator family: glyph, emu3, janus, causal-vq.")
    codec: str = Field("codec", description="Codec folder, relative to the generator folder.")
    image_token_start: int = Field(ge=0, description="Vocabulary id of image code 0.")
    num_image_tokens: int = Field(
        ge=1, description="How many image codes the vocabulary holds (the codec's code count)."
    )
    tokens_per_image: int = Field(ge=1, description="Image codes the generator writes for one image.")
    grid: tuple[PositiveInt, PositiveInt] = Field(description="Rows and columns of spatial codes in one image.")
    image_size: tuple[PositiveInt, PositiveInt] = Field(description="Height and width of a decoded image in pixels.")
    prompt_template: str = Field("{prompt}", description="How a prompt is written before the image begins.")
    extra: dict = Field(default_factory=dict, description="Family-specific settings.")

    @property
    def image_token_range(self) -> tuple[int, int]:
        """[start, end) of the image-token ids in the vocabulary."""
        return self.image_token_start, self.image_token_start + self.num_image_tokens


class Generator(abc.ABC):
    """One family's adapter: the model, its tokenizer and codec, and the few family-specific steps."""

    family: ClassVar[str]
    config: GeneratorConfig
    model: torch.nn.Module  # the causal LM the trainers update
    codec: object

    # ----- loading and saving -------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def from_pretrained(
        cls,
        path: str | Path,
        dtype: torch.dtype | None = None,
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> Generator:
        """Load the generator from a local folder."""

    @abc.abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Save model, tokenizer, codec and ``imagepref.json`` into ``path`` (safetensors)."""

    # ----- prompts and tokens -------------------------------------------------------------
    @abc.abstractmethod
    def encode_prompts(self, prompts: list[str], unconditional: bool = False) -> list[list[int]]:
        """Prompts to the token ids that come before the first image token.

        With ``unconditional=True``, the family's unconditional context for guidance instead.
        """

    @property
    def num_codes(self) -> int:
        """Image codes per image."""
        return self.config.tokens_per_image

    def block_layout(self) -> list[int | None]:
        """The image block position by position: None where a code is sampled, a token id where
        the family forces a token (Emu3's end-of-row markers). Default: codes only."""
        return [None] * self.num_codes

    def codes_to_block(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (batch, num_codes) to the vocabulary ids of the whole image block."""
        layout = self.block_layout()
        block = torch.empty(codes.shape[0], len(layout), dtype=torch.long, device=codes.device)
        slots = torch.tensor([i for i, t in enumerate(layout) if t is None], device=codes.device)
        block[:, slots] = codes.long() + self.config.image_token_start
        for i, token in enumerate(layout):
            if token is not None:
                block[:, i] = token
        return block

    def block_to_codes(self, block: torch.Tensor) -> torch.Tensor:
        """The inverse of ``codes_to_block``; refuses ids outside the image-token range."""
        layout = self.block_layout()
        slots = [i for i, t in enumerate(layout) if t is None]
        codes = block[:, slots] - self.config.image_token_start
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.num_image_tokens):
            start, end = self.config.image_token_range
            raise BadInputError(
                f"image tokens must lie in the generator's image range [{start}, {end}); "
                "were these tokens made by another generator?"
            )
        return codes

    # ----- pixels ---------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Image codes (batch, num_codes) to pixels."""
        return self.codec.decode(codes.reshape(codes.shape[0], -1).cpu())

    def encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        """Pixels to image codes (batch, num_codes)."""
        return self.codec.encode(images).reshape(len(images), -1)

    # ----- the model's next-code distribution -------------------------------------------
    @property
    def pad_token_id(self) -> int:
        """The id used to left-pad prompts (always masked out)."""
        return self.tokenizer.pad_token_id

    def embed_block(self, block: torch.Tensor) -> torch.Tensor | None:
        """Input embeddings for block tokens, or None when ids go straight into the model."""
        return None

    def prompt_embeds(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """Input embeddings for (padded) prompt ids, or None when ids go straight into the model."""
        return None

    def sequence_embeds(self, input_ids: torch.Tensor, block_length: int) -> torch.Tensor | None:
        """Input embeddings for prompt-plus-block rows whose last ``block_length`` tokens are the
        image block, or None when ids go straight into the model (families with separate image
        embeddings, such as Janus, override this)."""
        return None

    @classmethod
    def overrides(cls, *names: str) -> bool:
        """Whether this family replaces any of the base adapter's methods ``names`` (code that
        reimplements those methods, such as ``policy.static_decoder``, asks before it runs)."""
        return any(getattr(cls, name) is not getattr(Generator, name) for name in names)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
    ):
        """One forward pass; returns (hidden-state logits source, cache). Families override
        ``code_logprobs`` to turn the output into log-probs over image codes."""
        if inputs_embeds is not None:
            out = self.model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
            )
        else:
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
            )
        return out.logits, out.cache

    def code_logprobs(self, logits: torch.Tensor) -> torch.Tensor:
        """Raw log-probs of every image code: a log-softmax over the image-token columns (no
        guidance, no temperature), the distribution the sampler draws an image code from at
        guidance 1. RL ratios and KL need exactly this.

        Normalised over the image codes, not the whole vocabulary: the sampler never draws a text
        token in an image, so mass on text tokens is no part of the policy. Over the whole
        vocabulary a trainer can move mass onto text tokens unseen: PPO's KL estimate on the
        micro model went negative (-156 summed over an image, impossible for a KL) and its
        rewards stopped rising, and DPO's margins grew while the sampled images did not follow."""
        start, end = self.config.image_token_range
        return torch.log_softmax(logits[..., start:end].float(), dim=-1)

    # ----- the policy ---------------------------------------------------------------------
    def image_logprobs(self, prompt_ids: list[list[int]], codes: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log-probs (batch, num_codes) of given image codes under the policy."""
        from imagepref.policy.sampler import teacher_forced_logprobs

        return teacher_forced_logprobs(self, prompt_ids, codes)

    def sample(self, prompts: list[str], **settings) -> Samples:
        """Sample one image per prompt with the shared sampler (see ``policy.sampler.sample``)."""
        from imagepref.policy.sampler import sample

        return sample(self, prompts, **settings)

    # ----- edits: multi-turn refinement (the turn format is in policy.editing) ------------------
    can_edit: ClassVar[bool] = False  # whether the family's tokenizer writes edit turns
    instruction_width: ClassVar[int | None] = None  # instructions padded to this many tokens, if set
    # An edit turn's context ends with this many of the source's first codes (policy.editing).
    edit_lead_codes: ClassVar[int] = 0

    def edit(
        self, source_codes: torch.Tensor, instructions: list[str], source_prompts: list[str] | None = None, **settings
    ) -> Samples:
        """Sample one edited image per source image and instruction with the shared sampler; returns
        what ``sample`` returns (see ``policy.editing.edit``). Families that cannot edit say so."""
        from imagepref.policy.editing import edit

        return edit(self, source_codes, instructions, source_prompts, **settings)

    @property
    def default_guidance_scale(self) -> float:
        """The guidance scale this generator samples best with (``extra.guidance_scale``, else 3)."""
        return float(self.config.extra.get("guidance_scale", 3.0))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ----- what trainers may ask of a family -----------------------------------------------
    def lora_target_modules(self, names: list[str]) -> list[str] | str:
        """peft ``target_modules`` for LoRA on the language model given module ``names``; families
        whose vision encoder or VQ model reuse those names (Emu3, Janus) narrow it to the LM."""
        return names

    def vocabulary_model(self) -> torch.nn.Module:
        """The causal LM whose vocabulary rows are the image codes, for code that needs a plain
        ``lm_head`` over text and image tokens (stock TRL paths). Families with a separate image
        head (Janus) raise; every family's log-probs come from ``teacher_forced_logprobs``."""
        return self.model


FAMILIES: dict[str, str] = GENERATOR_FAMILIES
# transformers checkpoints (``model_type`` in config.json) that load without an imagepref.json: the
# family derives the imagepref config from the checkpoint (``config_from_checkpoint``).
CHECKPOINT_FAMILIES: dict[str, str] = {"emu3": "emu3", "janus": "janus"}


def generator_class(family: str) -> type[Generator]:
    """The class that implements ``family``."""
    if family not in FAMILIES:
        raise unknown_family(family)
    module_name, class_name = FAMILIES[family].split(":")
    import importlib

    return getattr(importlib.import_module(module_name), class_name)


def read_config(path: str | Path) -> GeneratorConfig:
    """Read ``imagepref.json`` from a generator folder, with one-line errors for a wrong folder."""
    path = Path(path)
    check_generator_folder(path)
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        return _checkpoint_config(path)
    try:
        return GeneratorConfig.model_validate(json.loads(config_file.read_text()))
    except (ValueError, json.JSONDecodeError) as error:
        raise BadInputError(f"{config_file} is malformed: {str(error).splitlines()[0]}") from None


def _checkpoint_config(path: Path) -> GeneratorConfig:
    """The imagepref config of a plain transformers checkpoint of a known family, else one line saying
    which folders are known."""
    try:
        model_type = json.loads((path / "config.json").read_text()).get("model_type")
    except json.JSONDecodeError:
        model_type = None
    if model_type not in CHECKPOINT_FAMILIES:
        raise UnknownNameError(
            f"{path} holds a {model_type or 'unrecognised'!s} checkpoint, no known generator family "
            f"(plain folders load for model types {', '.join(sorted(CHECKPOINT_FAMILIES))}); "
            "for a causal LM with image tokens and a VQ codec write its imagepref.json with "
            "imagepref.policy.families.causal_vq.CausalVQGenerator"
        )
    return generator_class(CHECKPOINT_FAMILIES[model_type]).config_from_checkpoint(path)


def load_generator(
    path: str | Path, dtype: torch.dtype | None = None, device: str | None = None, trust_remote_code: bool = False
) -> Generator:
    """Load any generator folder; the family comes from its ``imagepref.json``."""
    config = read_config(path)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        generator = generator_class(config.family).from_pretrained(
            path, dtype=dtype, device=device, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError) as error:
        # What check_generator_folder cannot see (weights of another architecture, a damaged
        # tokenizer) fails inside transformers; it is still one line naming the folder.
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise BadInputError(f"the generator in {path} does not load ({first}); save it again or pass another") from None
    if generator.codec.num_codes != config.num_image_tokens:
        raise BadInputError(
            f"the codec has {generator.codec.num_codes} codes but the model's image-token range holds "
            f"{config.num_image_tokens}: pair the model with the codec it was trained with"
        )
    return generator
