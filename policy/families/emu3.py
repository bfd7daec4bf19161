"""Emu3 (``transformers.Emu3ForConditionalGeneration``): one causal LM over one shared vocabulary.

Text tokens and the VQ-VAE's visual tokens (``<|visual token 000000|>`` ...) are rows of the same
vocabulary, so TRL sees a plain causal LM. What is Emu3's own:

- the prompt is ``<bos>{prompt}<|image start|>{H}*{W}<|image token|>``;
- the image block is ``H * (W + 1) + 3`` tokens: every row of ``W`` codes ends with the end-of-line
  token ``<|extra_200|>``, then ``<|extra_201|>`` (end of frame), ``<|image end|>`` and ``<eos>``
  follow. ``block_layout`` declares those forced tokens, so the shared sampler writes exactly that
  shape and reports log-probs only at code positions;
- classifier-free guidance conditions the second branch on a negative prompt in the same
  template (Emu3's release uses a fixed list of defects, kept in ``extra.negative_prompt``);
- attention dropout defaults to 0.1 and is *functional* dropout, which TRL's dropout switch does
  not reach, so it is set to 0 on load: alignment ratios and KL need a deterministic policy;
- pixels come from the VQ-VAE inside the same checkpoint (``Emu3Codec``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer, Emu3Config, Emu3ForConditionalGeneration

from imagepref.errors import BadInputError
from imagepref.policy.families.hf_checkpoint import (
    character_tokenizer,
    check_remote_code,
    checked_codes,
    images_from_unit_range,
    language_model_targets,
    pixels_in_unit_range,
    read_model_config,
    resolve_dtype,
    save_generator_folder,
    token_id,
)
from imagepref.policy.generator import CONFIG_NAME, Generator, GeneratorConfig

BOS, EOS, PAD = "<|extra_203|>", "<|extra_204|>", "<|endoftext|>"
IMAGE_START, IMAGE_END, IMAGE_WRAPPER = "<|image start|>", "<|image end|>", "<|image token|>"
END_OF_ROW, END_OF_FRAME = "<|extra_200|>", "<|extra_201|>"
VISUAL_TOKEN = "<|visual token {:06d}|>"
# The negative prompt of Emu3's own image-generation example (BAAI/Emu3, README).
NEGATIVE_PROMPT = (
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, "
    "worst quality, low quality, normal quality, jpeg artifacts, signature, watermark, username, "
    "blurry."
)


class Emu3Codec:
    """Emu3's VQ-VAE (inside the checkpoint) as an ``ImageCodec`` for one fixed grid."""

    def __init__(self, vqmodel, grid: tuple[int, int]):
        self.vqmodel = vqmodel
        self.grid = tuple(grid)
        self.num_codes = vqmodel.config.codebook_size
        self.tokens_per_image = grid[0] * grid[1]
        factor = vqmodel.spatial_scale_factor
        self.image_size = (grid[0] * factor, grid[1] * factor)

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, rows*columns); pixels are scaled to [-1, 1] like Emu3's processor."""
        pixels = pixels_in_unit_range(images, self.image_size, self.vqmodel)
        sizes = torch.tensor([self.image_size] * len(images))
        tokens = self.vqmodel.encode(pixels, sizes, return_dict=True).image_tokens
        return torch.stack(list(tokens)).reshape(len(images), -1).long().cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes (batch, rows*columns) to images through the VQ-VAE decoder."""
        codes = checked_codes(codes, self.num_codes)
        grid = codes.reshape(codes.shape[0], *self.grid).to(self.vqmodel.device)
        return images_from_unit_range(self.vqmodel.decode(grid))

    def save_pretrained(self, path) -> None:
        """Nothing to write: the VQ-VAE is saved with the model's own weights."""


class Emu3Generator(Generator):
    """Emu3 as a generator (family ``emu3``)."""

    family = "emu3"

    def __init__(self, model: Emu3ForConditionalGeneration, tokenizer, config: GeneratorConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.codec = Emu3Codec(model.model.vqmodel, config.grid)
        ids = lambda token: token_id(tokenizer, token)  # noqa: E731
        self.end_of_row, self.end_of_frame = ids(END_OF_ROW), ids(END_OF_FRAME)
        self.image_end = ids(IMAGE_END)
        self.eos = tokenizer.eos_token_id
        switch_off_attention_dropout(model)

    # ----- building and loading -----------------------------------------------------------
    @classmethod
    def tiny(
        cls, seed: int = 0, grid: tuple[int, int] = (4, 4), num_codes: int = 64, hidden_size: int = 32, layers: int = 1
    ) -> Emu3Generator:
        """A tiny random Emu3 built in code (no download): tests, benchmarks, examples."""
        specials = [PAD, BOS, EOS, IMAGE_START, IMAGE_END, IMAGE_WRAPPER, END_OF_ROW, END_OF_FRAME, "<image>"]
        tokenizer = character_tokenizer(
            specials, [VISUAL_TOKEN.format(i) for i in range(num_codes)], bos=BOS, eos=EOS, pad=PAD, unk="<unk>"
        )
        text = dict(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            attention_dropout=0.1,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        # GroupNorm in the VQ-VAE needs multiples of 32 channels; three down steps: 32x32 pixels to 4x4 codes.
        vq = dict(
            codebook_size=num_codes,
            embed_dim=4,
            latent_channels=4,
            base_channels=32,
            channel_multiplier=[1, 1, 1, 1],
            num_res_blocks=1,
            attn_resolutions=[],
            temporal_downsample_factor=1,
            hidden_size=32,
            num_attention_heads=1,
        )
        torch.manual_seed(seed)
        model = Emu3ForConditionalGeneration(
            Emu3Config(text_config=text, vq_config=vq, vocabulary_map=tokenizer.get_vocab())
        )
        return cls(model.eval(), tokenizer, cls.config_for(model.config, tokenizer, grid, negative_prompt=""))

    @staticmethod
    def config_for(
        model_config, tokenizer, grid: tuple[int, int], negative_prompt: str = NEGATIVE_PROMPT
    ) -> GeneratorConfig:
        """The imagepref config of an Emu3 checkpoint generating ``grid`` codes; checks that the
        visual tokens are one contiguous id range as large as the VQ codebook."""
        vocab = model_config.vocabulary_map or {}
        visual = sorted(v for k, v in vocab.items() if k.startswith("<|visual token"))
        codebook = model_config.vq_config.codebook_size
        if len(visual) != codebook:
            raise BadInputError(
                f"the VQ codebook has {codebook} codes but the vocabulary holds {len(visual)} visual "
                "tokens: pair the language model with the VQ-VAE it was trained with"
            )
        if visual and visual[-1] - visual[0] + 1 != len(visual):
            raise BadInputError(
                "the visual tokens of this Emu3 vocabulary are not one contiguous id range; "
                "imagepref needs code i at id start+i"
            )
        factor = 2 ** (len(model_config.vq_config.channel_multiplier) - 1)
        height, width = grid
        template = f"{tokenizer.bos_token}{{prompt}}{IMAGE_START}{height}*{width}{IMAGE_WRAPPER}"
        return GeneratorConfig(
            family="emu3",
            codec="",
            image_token_start=visual[0] if visual else 0,
            num_image_tokens=len(visual),
            tokens_per_image=height * width,
            grid=(height, width),
            image_size=(height * factor, width * factor),
            prompt_template=template,
            extra={"negative_prompt": negative_prompt, "guidance_scale": 3.0},
        )  # Emu3's example

    @classmethod
    def config_from_checkpoint(cls, path: str | Path) -> GeneratorConfig:
        """imagepref config for a plain transformers Emu3 folder: the processor's default image area
        (518,400 pixels, 1:1) unless its preprocessor config says otherwise."""
        path = Path(path)
        model_config = Emu3Config.from_pretrained(str(path))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        factor = 2 ** (len(model_config.vq_config.channel_multiplier) - 1)
        side = round(518400**0.5 / factor)
        return cls.config_for(model_config, tokenizer, (side, side))

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None, trust_remote_code=False) -> Emu3Generator:
        path = Path(path)
        check_remote_code(path, trust_remote_code)
        if read_model_config(path).get("model_type") != "emu3":
            raise BadInputError(
                f"{path} is not a transformers Emu3 checkpoint (model_type must be 'emu3'); "
                "for the original BAAI release use its -hf conversion"
            )
        config_file = path / CONFIG_NAME
        config = (
            GeneratorConfig.model_validate_json(config_file.read_text())
            if config_file.is_file()
            else cls.config_from_checkpoint(path)
        )
        model = Emu3ForConditionalGeneration.from_pretrained(
            str(path), dtype=resolve_dtype(dtype), use_safetensors=True
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        negative = config.extra.get("negative_prompt", NEGATIVE_PROMPT)
        checked = cls.config_for(model.config, tokenizer, config.grid, negative)
        generator = cls(model.eval(), tokenizer, config.model_copy(update={"extra": checked.extra | config.extra}))
        if device:
            generator.model.to(device)
        return generator

    def save_pretrained(self, path) -> None:
        save_generator_folder(self, path)

    # ----- the family's steps -------------------------------------------------------------
    def encode_prompts(self, prompts: list[str], unconditional: bool = False) -> list[list[int]]:
        negative = self.config.extra.get("negative_prompt", "")
        texts = [self.config.prompt_template.format(prompt=negative if unconditional else p) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=False).input_ids

    def block_layout(self) -> list[int | None]:
        rows, columns = self.config.grid
        return ([None] * columns + [self.end_of_row]) * rows + [self.end_of_frame, self.image_end, self.eos]

    def lora_target_modules(self, names: list[str]) -> str:
        return language_model_targets(r"model\.text_model", names)


def switch_off_attention_dropout(model: torch.nn.Module) -> None:
    """Set every attention module's functional dropout (and the config's) to 0."""
    for config in (getattr(model.config, "text_config", None), model.config):
        if config is not None and hasattr(config, "attention_dropout"):
            config.attention_dropout = 0.0
    for module in model.modules():
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
