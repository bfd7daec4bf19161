"""Janus-Pro (``transformers.JanusForConditionalGeneration``): image codes have their own path.

A Janus image code never passes through the text vocabulary. It goes in through the generation
embeddings (``generation_embeddings`` then ``generation_aligner``), through the Llama language
model, and comes out of the generation head (``generation_head``) as a distribution over the VQ
codebook. The text ``lm_head`` never sees an image code. So this adapter overrides the sampler's
hooks:

- ``forward`` runs the language model and returns its hidden states, and ``code_logprobs`` applies
  the generation head: a log-softmax over the whole codebook, which is Janus's whole image
  vocabulary;
- ``embed_block`` and ``sequence_embeds`` embed block tokens through the generation path and
  prompt tokens through the text embeddings, so ``policy.sampler.teacher_forced_logprobs`` is
  the differentiable log-prob of image codes for DPO, GRPO and PPO alike.

Block ids are *virtual*: code ``i`` is id ``text vocab size + i``, past the end of the text
vocabulary, so a block can never be mistaken for text and ``block_to_codes`` refuses text ids.

The unconditional context follows Janus's convention (its ``generate`` and DeepSeek's release):
the same prompt row with every token but the first (BOS) and the last (begin-of-image) replaced
by the pad token, all of them attended.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer, JanusConfig, JanusForConditionalGeneration

from imagepref.errors import BadInputError
from imagepref.policy.families.hf_checkpoint import (
    UnsupportedByFamilyError,
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

BOS, EOS, PAD = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"
IMAGE_START, IMAGE_END, IMAGE_PLACEHOLDER = "<begin_of_image>", "<end_of_image>", "<image_placeholder>"
# DeepSeek's sft format for text-to-image: "<|User|>: {prompt}\n\n<|Assistant|>:" then <begin_of_image>.
PROMPT_TEMPLATE = BOS + "<|User|>: {prompt}\n\n<|Assistant|>:" + IMAGE_START


class JanusCodec:
    """Janus's VQ model (inside the checkpoint) as an ``ImageCodec``."""

    def __init__(self, vqmodel):
        self.vqmodel = vqmodel
        side = vqmodel.config.num_patches
        self.grid = (side, side)
        self.num_codes = vqmodel.config.num_embeddings
        self.tokens_per_image = side * side
        factor = 2 ** (len(vqmodel.config.channel_multiplier) - 1)
        self.image_size = (side * factor, side * factor)

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, rows*columns), pixels scaled to [-1, 1] like Janus's processor."""
        pixels = pixels_in_unit_range(images, self.image_size, self.vqmodel)
        return self.vqmodel.encode(pixels, return_dict=True).image_tokens.reshape(len(images), -1).long().cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes (batch, rows*columns) to images through the VQ decoder."""
        codes = checked_codes(codes, self.num_codes)
        return images_from_unit_range(self.vqmodel.decode(codes.to(self.vqmodel.device)))

    def save_pretrained(self, path) -> None:
        """Nothing to write: the VQ model is saved with the model's own weights."""


def unwrap(model: torch.nn.Module) -> JanusForConditionalGeneration:
    """The Janus model under a peft wrapper (LoRA layers are injected in place, so they still run)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class JanusGenerator(Generator):
    """Janus-Pro as a generator (family ``janus``)."""

    family = "janus"

    def __init__(self, model: JanusForConditionalGeneration, tokenizer, config: GeneratorConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.codec = JanusCodec(model.model.vqmodel)

    # ----- building and loading -----------------------------------------------------------
    @classmethod
    def tiny(
        cls, seed: int = 0, side: int = 4, num_codes: int = 48, hidden_size: int = 32, layers: int = 1
    ) -> JanusGenerator:
        """A tiny random Janus built in code (no download): tests, benchmarks, examples."""
        specials = [PAD, BOS, EOS, IMAGE_START, IMAGE_END, IMAGE_PLACEHOLDER, "<|User|>", "<|Assistant|>"]
        tokenizer = character_tokenizer(specials, [], bos=BOS, eos=EOS, pad=PAD, unk="<unk>")
        text = dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=hidden_size * 2,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        # num_image_tokens must equal (image_size // patch_size) ** 2 (the VQ grid).
        vision = dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=side * 8,
            patch_size=8,
            num_image_tokens=side * side,
            projection_dim=hidden_size,
            intermediate_size=32,
        )
        vq = dict(
            embed_dim=4,
            num_embeddings=num_codes,
            latent_channels=32,
            base_channels=32,
            channel_multiplier=[1, 1, 1, 1],
            num_res_blocks=1,
            projection_dim=hidden_size,
            image_token_embed_dim=hidden_size,
            num_hidden_layers=1,
        )
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(
            JanusConfig(
                text_config=text,
                vision_config=vision,
                vq_config=vq,
                image_token_id=token_id(tokenizer, IMAGE_PLACEHOLDER),
            )
        )
        return cls(model.eval(), tokenizer, cls.config_for(model.config))

    @staticmethod
    def config_for(model_config: JanusConfig) -> GeneratorConfig:
        """The imagepref config of a Janus checkpoint; checks that the generation head, the
        generation embeddings and the VQ codebook agree on the code count."""
        vq, vision = model_config.vq_config, model_config.vision_config
        side = vq.num_patches
        if vision.num_image_tokens != side * side:
            raise BadInputError(
                f"the Janus config generates {vision.num_image_tokens} image tokens but its VQ grid is "
                f"{side}x{side}: num_image_tokens must be (image_size // patch_size) ** 2"
            )
        factor = 2 ** (len(vq.channel_multiplier) - 1)
        return GeneratorConfig(
            family="janus",
            codec="",
            image_token_start=model_config.text_config.vocab_size,
            num_image_tokens=vq.num_embeddings,
            tokens_per_image=side * side,
            grid=(side, side),
            image_size=(side * factor, side * factor),
            prompt_template=PROMPT_TEMPLATE,
            extra={"guidance_scale": 5.0},
        )  # DeepSeek's cfg_weight for Janus-Pro

    @classmethod
    def config_from_checkpoint(cls, path: str | Path) -> GeneratorConfig:
        """imagepref config for a plain transformers Janus folder."""
        return cls.config_for(JanusConfig.from_pretrained(str(path)))

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None, trust_remote_code=False) -> JanusGenerator:
        path = Path(path)
        check_remote_code(path, trust_remote_code)
        model_type = read_model_config(path).get("model_type")
        if model_type == "multi_modality":
            raise BadInputError(
                f"{path} is DeepSeek's original Janus release (model_type multi_modality), which needs "
                "their own package; use the transformers conversion (deepseek-community/Janus-Pro-*)"
            )
        if model_type != "janus":
            raise BadInputError(f"{path} is not a transformers Janus checkpoint (model_type must be 'janus')")
        config_file = path / CONFIG_NAME
        model = JanusForConditionalGeneration.from_pretrained(
            str(path), dtype=resolve_dtype(dtype), use_safetensors=True
        )
        checked = cls.config_for(model.config)
        config = GeneratorConfig.model_validate_json(config_file.read_text()) if config_file.is_file() else checked
        if config.num_image_tokens != checked.num_image_tokens:
            raise BadInputError(
                f"imagepref.json says {config.num_image_tokens} image codes but the Janus generation "
                f"head has {checked.num_image_tokens}: rewrite imagepref.json with save_pretrained"
            )
        generator = cls(model.eval(), AutoTokenizer.from_pretrained(str(path)), config)
        if device:
            generator.model.to(device)
        return generator

    def save_pretrained(self, path) -> None:
        save_generator_folder(self, path)

    # ----- prompts ------------------------------------------------------------------------
    def encode_prompts(self, prompts: list[str], unconditional: bool = False) -> list[list[int]]:
        rows = self.tokenizer(
            [self.config.prompt_template.format(prompt=p) for p in prompts], add_special_tokens=False
        ).input_ids
        if unconditional:
            rows = [row[:1] + [self.pad_token_id] * (len(row) - 2) + row[-1:] for row in rows]
        return rows

    # ----- the generation path: embeddings, language model, generation head ----------------
    def _text_embeds(self, input_ids: torch.Tensor) -> torch.Tensor:
        return unwrap(self.model).get_input_embeddings()(input_ids)

    def embed_block(self, block: torch.Tensor) -> torch.Tensor:
        codes = block - self.config.image_token_start
        return unwrap(self.model).prepare_embeddings_for_image_generation(codes)

    def prompt_embeds(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self._text_embeds(input_ids)

    def sequence_embeds(self, input_ids: torch.Tensor, block_length: int) -> torch.Tensor:
        prompt = self._text_embeds(input_ids[:, :-block_length])
        return torch.cat([prompt, self.embed_block(input_ids[:, -block_length:]).to(prompt.dtype)], dim=1)

    def forward(self, input_ids, attention_mask, position_ids, cache=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self._text_embeds(input_ids)
        out = unwrap(self.model).model.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
        )
        return out.last_hidden_state, out.cache

    def code_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = unwrap(self.model).model.generation_head(hidden)
        return torch.log_softmax(scores.float(), dim=-1)

    # ----- what trainers may ask ----------------------------------------------------------
    def lora_target_modules(self, names: list[str]) -> str:
        return language_model_targets(r"model\.language_model", names)

    def vocabulary_model(self) -> torch.nn.Module:
        raise UnsupportedByFamilyError(
            "janus writes image codes through its own generation embeddings and head, not the text lm_head, so it "
            "has no plain causal-LM view; train it through teacher_forced_logprobs (imagepref align does), or use "
            "a family with one shared vocabulary: glyph, emu3, causal-vq"
        )
