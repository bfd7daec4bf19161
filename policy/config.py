"""The generator's settings that commands and recipes check before anything heavy loads.

``SamplingConfig`` is how the shared sampler (``policy.sampler.sample``) draws image tokens; the
generate command, the eval suite and the recipe's generate and eval sections all take it.
``PretrainConfig`` is ``imagepref pretrain``'s. This module imports pydantic only (no torch), so
a recipe or a command line is checked in a fraction of a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.settings import Seed

# The imagepref part of a generator folder (family, codec, image-token range; see
# ``policy.generator.GeneratorConfig``).
GENERATOR_CONFIG = "imagepref.json"
# The generator families by name, each the class that implements it (``policy.generator`` imports
# it when a folder of that family loads).
GENERATOR_FAMILIES: dict[str, str] = {
    "glyph": "imagepref.policy.families.glyph:GlyphGenerator",
    "emu3": "imagepref.policy.families.emu3:Emu3Generator",
    "janus": "imagepref.policy.families.janus:JanusGenerator",
    "causal-vq": "imagepref.policy.families.causal_vq:CausalVQGenerator",
}


def unknown_family(family: object) -> UnknownNameError:
    """The one-line error for a family name imagepref does not know."""
    return UnknownNameError(f"unknown generator family {family!r}; known: {', '.join(sorted(GENERATOR_FAMILIES))}")


# How the sampler walks the image block: plain (one forward pass per token) or sjd (speculative
# Jacobi decoding: a window of draft codes verified per pass; the same distribution, fewer passes).
Decoding = Literal["plain", "sjd"]
# Draft codes verified per pass; past about twice the mean accepted run the window only adds work.
SpeculativeWindow = Annotated[int, Field(ge=1, le=64)]


class SamplingConfig(BaseModel):
    """How image tokens are sampled: guidance, temperature, top-k, top-p, the decoding and the batch size."""

    model_config = ConfigDict(extra="forbid")

    # Guidance mixes the conditional and unconditional scores as cond + (g - 1) * (cond - uncond):
    # 1 is no guidance, 0 the unconditional model; a negative scale pushes away from the prompt.
    guidance_scale: float | None = Field(
        None, ge=0, description="Classifier-free guidance scale (1: none; default: the generator's own)."
    )
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_k: int = Field(0, ge=0, description="Keep the k most likely codes (0: all).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass (1: off).")
    batch_size: int = Field(32, ge=1, description="Images sampled per batch.")
    decoding: Decoding = Field(
        "plain",
        description="plain: one forward pass per image token; sjd: speculative Jacobi decoding, the same "
        "distribution in fewer passes (faster at small batches; other images for the same seed).",
    )
    window: SpeculativeWindow = Field(8, description="Draft codes verified per forward pass (decoding sjd).")

    def sampler(self) -> dict[str, Any]:
        """The settings ``Generator.sample`` takes besides the seed and batch size.

        The decoding and its window appear only for sjd: plain decoding keeps the settings (and so
        the image caches keyed by them) it always had, while sjd draws other images for a seed."""
        settings = {
            "guidance_scale": self.guidance_scale,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
        }
        if self.decoding != "plain":
            settings.update(decoding=self.decoding, window=self.window)
        return settings


class PretrainConfig(BaseModel):
    """Settings of ``imagepref pretrain``; the defaults are the shipped glyph-world generator."""

    model_config = ConfigDict(extra="forbid")

    seed: Seed = Field(0, description="Seed of the codec fit, the initial weights and the data stream.")
    num_shapes: int = Field(1024, ge=1, description="Shape codes of the palette codec.")
    codec_images: int = Field(4000, ge=1, description="Signs the codec's k-means sees.")
    codec_iterations: int = Field(8, ge=1, description="Lloyd iterations of the codec's k-means.")
    letter_init: bool = Field(
        True,
        description="Start each letter-piece code's embedding and output row from the "
        "embedding of the letter it depicts, so copying the quoted word is learned fast.",
    )
    hidden_size: int = Field(256, ge=2, description="Width of the Llama (a multiple of twice the heads).")
    layers: int = Field(4, ge=1, description="Transformer layers.")
    heads: int = Field(4, ge=1, description="Attention heads.")
    steps: int = Field(1200, ge=1, description="Optimizer steps (the default: about 30 minutes on 2 CPU cores).")
    batch_size: int = Field(32, ge=1, description="Signs per step.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW, linear warm-up, cosine decay).")
    warmup: int = Field(100, ge=0, description="Warm-up steps.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    random_share: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Share of signs that spell a fresh random string of 2-6 capitals instead of a training "
        "word, so the generator learns to copy letters (0: words only, the stream of the generator shipped "
        "before random strings).",
    )
    ink_loss_weight: float = Field(
        1.0,
        gt=0,
        description="Loss weight of image codes that show ink (letter pieces, shapes, marks) relative to "
        "blank background codes; above 1 the rare tokens that carry the letters count more.",
    )
    unconditional_rate: float = Field(
        0.1, ge=0, le=1, description="Share of signs shown without their prompt, for guidance."
    )
    lr_restarts: list[tuple[Annotated[int, Field(ge=1)], Annotated[float, Field(gt=0)]]] = Field(
        default_factory=lambda: [(500, 1e-3)],
        description="Warm restarts of the learning rate: (step, peak) pairs; from each step the rate jumps to "
        "its peak and decays by cosine to a tenth of it at the next restart or the end (restarts at or past "
        "steps are ignored).",
    )
    checkpoint_every: int = Field(100, ge=1, description="Steps between resumable checkpoints.")

    @model_validator(mode="after")
    def _width_suits_the_heads(self) -> PretrainConfig:
        # Each head gets hidden_size / heads dimensions, and rotary position embeddings rotate
        # them in pairs, so the split must be whole and even.
        if self.hidden_size % (2 * self.heads):
            raise ValueError(
                f"hidden_size {self.hidden_size} must be a multiple of 2 x heads "
                f"({2 * self.heads}), for example {2 * self.heads * max(1, self.hidden_size // (2 * self.heads))}"
            )
        return self


def check_generator_folder(path: str | Path) -> None:
    """Refuse a generator folder that cannot load, before torch is imported: missing, not a folder,
    without ``imagepref.json`` and ``config.json``, with an ``imagepref.json`` that is not JSON, or
    with a missing or damaged ``config.json`` or safetensors weights (its codec's too). Without
    ``config.json`` transformers would build a default-sized model (a 7B Llama) before failing."""
    from imagepref.weights import WEIGHTS_FILE, check_model_folder, check_safetensors

    path = Path(path)
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise BadInputError(
            f"model folder {path} {state}: pass a folder made by `imagepref pretrain` or a family's save"
        )
    config_file = path / GENERATOR_CONFIG
    if not config_file.is_file():
        if not (path / "config.json").is_file():
            raise BadInputError(
                f"{path} is not an imagepref generator folder (no {GENERATOR_CONFIG}); "
                "run `imagepref pretrain --out DIR` or convert a checkpoint with its family's adapter"
            )
        return  # a family's own checkpoint: policy.generator.read_config says which are known
    try:
        record = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInputError(f"{config_file} is malformed: {str(error).splitlines()[0]}") from None
    if isinstance(record, dict) and record.get("family") not in GENERATOR_FAMILIES:
        raise unknown_family(record.get("family"))
    check_model_folder(path, "generator folder")
    codec = path / str(record.get("codec", "codec")) if isinstance(record, dict) else None
    if codec is not None and (codec / WEIGHTS_FILE).exists():
        check_safetensors(codec / WEIGHTS_FILE, codec)


class EditTrainingConfig(BaseModel):
    """Settings of ``imagepref train-edits``: fine-tuning a glyph-world generator on edit turns."""

    model_config = ConfigDict(extra="forbid")

    seed: Seed = Field(0, description="Seed of the edit stream (the data order is a function of seed and step).")
    steps: int = Field(500, ge=1, description="Optimizer steps.")
    batch_size: int = Field(16, ge=1, description="Turns per step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW, linear warm-up, cosine decay to a tenth).")
    warmup: int = Field(20, ge=0, description="Warm-up steps.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    unconditional_rate: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Share of turns shown without their instruction and with the source as the target: "
        "the unconditional context of edit guidance means 'keep the source'.",
    )
    source_prompt_drop: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of turns whose source prompt is left empty, as for a source that was itself an edit.",
    )
    replay_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of plain text-to-image signs (the pretraining stream), so the base's first "
        "image does not fade while it learns to edit.",
    )
    first_code_spread: float = Field(
        8.0,
        ge=1,
        description="Before training, the output-layer rows of the background codes (what an image's first "
        "code takes) are spread this many times further from their mean. Pretraining never asked for a "
        "particular background, so those rows are nearly equal and learning to copy the source's background "
        "starts on a plateau (1: unchanged).",
    )
    colour_loss_weight: float = Field(
        8.0,
        gt=0,
        description="Loss weight of each new image's first two codes, the glyph codec's background and ink "
        "colours: one token each that paints most pixels, against 64 shape codes a sign (1: the plain loss).",
    )
    kept_code_weight: float = Field(
        1.0,
        gt=0,
        description="Loss weight of the new image's other codes that equal the source's code in the same "
        "place (what the edit keeps). A result meets preservation only when nearly every kept code is "
        "copied, so a weight above 1 asks for the copy more surely (1: the plain loss).",
    )
