"""Any causal LM whose vocabulary holds a contiguous block of image tokens, plus a VQ codec.

The folder is a transformers causal-LM checkpoint (``AutoModelForCausalLM``), its tokenizer, a
codec folder (a diffusers ``VQModel`` through ``policy.codec.VQModelCodec``, or the built-in
palette codec) and ``imagepref.json``, whose ``image_token_start`` and ``num_image_tokens`` say
which vocabulary rows are image codes. The prompt is ``prompt_template`` (default
``{bos}{prompt}<boi>``); the unconditional context for guidance is the same template around
``extra.unconditional_prompt`` (default: empty), the convention of the glyph family.

``from_text_model`` makes such a generator from a text-only LM: it adds ``<boi>``, ``<eoi>`` and
one ``<img_i>`` token per code, resizes the embeddings, and ``image_rows_peft_config`` makes the
new rows trainable with peft next to LoRA (``trainable_token_indices`` on the input
embedding is the small adapter that works with TRL; ``modules_to_save`` keeps full copies of the
embedding and ``lm_head`` but also trains the output rows of an untied head).
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from imagepref.errors import BadInputError
from imagepref.policy.codec import load_codec
from imagepref.policy.families.hf_checkpoint import check_remote_code, resolve_dtype, save_generator_folder, token_id
from imagepref.policy.generator import Generator, GeneratorConfig, read_config

IMAGE_START, IMAGE_END, IMAGE_TOKEN = "<boi>", "<eoi>", "<img_{}>"


class CausalVQGenerator(Generator):
    """A causal LM with an image-token range and a VQ codec (family ``causal-vq``)."""

    family = "causal-vq"
    can_edit = True  # edit turns: ... {source block}<eoi>{instruction}<boi> (policy.editing)

    def __init__(self, model, tokenizer, codec, config: GeneratorConfig):
        self.model = model
        self.tokenizer = tokenizer
        self.codec = codec
        self.config = config
        check_pairing(model, codec, config)

    @classmethod
    def from_text_model(
        cls,
        model,
        tokenizer,
        codec,
        prompt_template: str | None = None,
        unconditional_prompt: str = "",
        mean_resizing: bool = True,
    ) -> CausalVQGenerator:
        """Turn a text-only causal LM (a model and tokenizer, or a folder) into an image generator
        over ``codec``: new tokens for the image codes, embeddings resized. New rows are drawn around
        the mean of the old ones (transformers' ``mean_resizing``), or with ``mean_resizing=False``
        from the model's own initialisation (what a randomly initialised model needs: its rows
        are all near the mean, so the codes would start indistinguishable)."""
        if isinstance(model, (str, Path)):
            folder = Path(model)
            check_remote_code(folder, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True)
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(folder))
        images = [IMAGE_TOKEN.format(i) for i in range(codec.num_codes)]
        if images[0] in tokenizer.get_vocab():
            raise BadInputError(
                "this tokenizer already holds <img_0>...: the model has image tokens; load it with "
                "CausalVQGenerator.from_pretrained instead of making it again"
            )
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_START, IMAGE_END]})
        tokenizer.add_tokens(images, special_tokens=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.resize_token_embeddings(len(tokenizer), mean_resizing=mean_resizing)
        start = token_id(tokenizer, images[0])
        if token_id(tokenizer, images[-1]) != start + codec.num_codes - 1:
            raise BadInputError("the image tokens did not get contiguous ids in this tokenizer")
        template = prompt_template or f"{tokenizer.bos_token or ''}{{prompt}}{IMAGE_START}"
        config = GeneratorConfig(
            family=cls.family,
            image_token_start=start,
            num_image_tokens=codec.num_codes,
            tokens_per_image=codec.tokens_per_image,
            grid=codec.grid,
            image_size=codec.image_size,
            prompt_template=template,
            extra={"unconditional_prompt": unconditional_prompt},
        )
        return cls(model, tokenizer, codec, config)

    @classmethod
    def tiny(cls, seed: int = 0, num_codes: int = 64, hidden_size: int = 32, layers: int = 1) -> CausalVQGenerator:
        """A tiny random text-only Llama made into a generator over a tiny random diffusers
        ``VQModel`` (16x16 pixels to 4x4 codes), built in code: tests, benchmarks, examples."""
        from diffusers import VQModel
        from transformers import LlamaConfig, LlamaForCausalLM

        from imagepref.policy.codec import VQModelCodec
        from imagepref.policy.families.hf_checkpoint import character_tokenizer

        torch.manual_seed(seed)
        tokenizer = character_tokenizer(["<pad>", "<s>", "</s>"], [], bos="<s>", eos="</s>", pad="<pad>", unk="<unk>")
        text_model = LlamaForCausalLM(
            LlamaConfig(
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
                tie_word_embeddings=False,
            )
        )
        vq = VQModel(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(32, 32, 32),
            layers_per_block=1,
            latent_channels=4,
            num_vq_embeddings=num_codes,
            vq_embed_dim=4,
            norm_num_groups=32,
            sample_size=16,
            lookup_from_codebook=True,
        )
        return cls.from_text_model(text_model, tokenizer, VQModelCodec(vq, (16, 16)), mean_resizing=False)

    def image_rows_peft_config(
        self, lora_targets: list[str], r: int = 16, alpha: int = 32, full_copies: bool = False
    ) -> LoraConfig:
        """LoRA on ``lora_targets`` plus trainable image-token rows: ``trainable_token_indices`` on the
        input embedding (a small adapter), or with ``full_copies`` ``modules_to_save`` of the input
        embedding and the output head (large, but it also trains the head's rows when untied)."""
        embedding_name = module_name(self.model, self.model.get_input_embeddings())
        head_name = module_name(self.model, self.model.get_output_embeddings())
        markers = [self.tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_START, IMAGE_END)]
        rows = [i for i in markers if i is not None and i != self.tokenizer.unk_token_id]
        rows += list(range(*self.config.image_token_range))
        if full_copies:
            return LoraConfig(
                r=r,
                lora_alpha=alpha,
                lora_dropout=0.0,
                target_modules=lora_targets,
                modules_to_save=[embedding_name, head_name],
            )
        return LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=0.0,
            target_modules=lora_targets,
            trainable_token_indices={embedding_name: rows},
        )

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None, trust_remote_code=False) -> CausalVQGenerator:
        path = Path(path)
        config = read_config(path)
        if config.family != cls.family:
            raise BadInputError(f"{path} holds a {config.family!r} generator, not a causal-vq one")
        check_remote_code(path, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=resolve_dtype(dtype), use_safetensors=True, trust_remote_code=trust_remote_code
        )
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        codec = load_codec(path / config.codec, image_size=config.image_size)
        generator = cls(model.eval(), tokenizer, codec, config)
        if device:
            generator.model.to(device)
            if hasattr(codec, "model"):
                codec.model.to(device)
        return generator

    def save_pretrained(self, path) -> None:
        save_generator_folder(self, path, with_codec=True)

    def encode_prompts(self, prompts: list[str], unconditional: bool = False) -> list[list[int]]:
        blank = self.config.extra.get("unconditional_prompt", "")
        texts = [self.config.prompt_template.format(prompt=blank if unconditional else p) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=False).input_ids


def check_pairing(model, codec, config: GeneratorConfig) -> None:
    """One-line errors when the codec, the config and the model's vocabulary disagree."""
    if codec.num_codes != config.num_image_tokens:
        raise BadInputError(
            f"the codec has {codec.num_codes} codes but the model's image-token range holds "
            f"{config.num_image_tokens}: pair the model with the codec it was trained with"
        )
    if codec.tokens_per_image != config.tokens_per_image:
        raise BadInputError(
            f"the codec writes {codec.tokens_per_image} codes an image but imagepref.json says "
            f"{config.tokens_per_image}: pair the model with the codec it was trained with"
        )
    vocab = model.get_output_embeddings().weight.shape[0]
    start, end = config.image_token_range
    if start < 0 or end > vocab:
        raise BadInputError(
            f"the image-token range [{start}, {end}) lies outside the model's {vocab}-token "
            "vocabulary: resize the embeddings (CausalVQGenerator.from_text_model) or fix "
            "imagepref.json"
        )


def module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    """The last component of ``module``'s name inside ``model`` (what peft matches on)."""
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    raise BadInputError("the model's embedding is not one of its modules; pass the model itself")
