"""The built-in glyph-world generator: a small Llama over characters and image codes.

The vocabulary is six special tokens, the 95 printable ASCII characters (one token each, so a
held-out word is spelled from letters the model has seen), then one token per image code. A
prompt is written ``<bos>{prompt}<boi>`` and the image block follows; the unconditional context
for guidance is ``<bos><boi>``, which pretraining shows for a share of the images. An edit turn
continues with ``<eoi>{instruction}<boi>`` and the new image (``policy.editing``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from imagepref.errors import BadInputError
from imagepref.policy.codec import PaletteCodec, load_codec
from imagepref.policy.generator import CONFIG_NAME, Generator, GeneratorConfig, read_config

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>", "<boi>", "<eoi>"]
CHARACTERS = [chr(c) for c in range(32, 127)]
PROMPT_TEMPLATE = "<bos>{prompt}<boi>"


def build_tokenizer(num_image_tokens: int) -> PreTrainedTokenizerFast:
    """A character-level tokenizer with ``<img_i>`` tokens after the text vocabulary."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True) for t in SPECIAL_TOKENS])
    backend.add_tokens([AddedToken(f"<img_{i}>", special=True) for i in range(num_image_tokens)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )


def model_config(
    vocab_size: int, hidden_size: int = 256, layers: int = 4, heads: int = 4, max_positions: int = 512
) -> LlamaConfig:
    """The Llama shape of the glyph generator (defaults: about 4 M parameters)."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )


class GlyphGenerator(Generator):
    """The glyph world's generator (family ``glyph``)."""

    family = "glyph"
    can_edit = True
    # Instructions are padded to 48 characters (policy.editing): a fixed distance from each source
    # code to the new code at its place. The longest built-in edit instruction has 34.
    instruction_width = 48
    # The turn's context ends with the source's background code, so the new background is
    # predicted at an image code (see policy.editing for why).
    edit_lead_codes = 1

    def __init__(
        self, model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, codec: PaletteCodec, config: GeneratorConfig
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.codec = codec
        self.config = config

    @classmethod
    def create(
        cls, codec: PaletteCodec, hidden_size: int = 256, layers: int = 4, heads: int = 4, seed: int = 0
    ) -> GlyphGenerator:
        """A freshly initialised (untrained) generator around ``codec``."""
        tokenizer = build_tokenizer(codec.num_codes)
        start = len(SPECIAL_TOKENS) + len(CHARACTERS)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(
            model_config(
                len(tokenizer), hidden_size, layers, heads, max_positions=max(512, codec.tokens_per_image + 128)
            )
        )
        config = GeneratorConfig(
            family=cls.family,
            image_token_start=start,
            num_image_tokens=codec.num_codes,
            tokens_per_image=codec.tokens_per_image,
            grid=codec.grid,
            image_size=codec.image_size,
            prompt_template=PROMPT_TEMPLATE,
            # Measured on held-out prompts: 1.5 spells best; 3 and more
            # over-sharpen a model this small into broken letters and specks.
            extra={"guidance_scale": 1.5},
        )
        return cls(model, tokenizer, codec, config)

    @classmethod
    def from_pretrained(cls, path, dtype=None, device=None, trust_remote_code=False) -> GlyphGenerator:
        path = Path(path)
        config = read_config(path)
        if config.family != cls.family:
            raise BadInputError(f"{path} holds a {config.family!r} generator, not a glyph one")
        model = LlamaForCausalLM.from_pretrained(str(path), dtype=dtype or torch.float32, use_safetensors=True)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        codec = load_codec(path / config.codec)
        generator = cls(model.eval(), tokenizer, codec, config)
        if device:
            generator.model.to(device)
        return generator

    def save_pretrained(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path), safe_serialization=True)
        self.tokenizer.save_pretrained(str(path))
        self.codec.save_pretrained(path / self.config.codec)
        (path / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2))

    def encode_prompts(self, prompts: list[str], unconditional: bool = False) -> list[list[int]]:
        texts = [PROMPT_TEMPLATE.format(prompt="" if unconditional else p) for p in prompts]
        return self.tokenizer(texts, add_special_tokens=False).input_ids

    def training_row(self, prompt: str | None, codes: torch.Tensor) -> list[int]:
        """Pretraining sequence: prompt (or the unconditional context), the codes, ``<eoi><eos>``."""
        ids = self.encode_prompts([prompt or ""], unconditional=prompt is None)[0]
        end = [self.tokenizer.convert_tokens_to_ids("<eoi>"), self.tokenizer.eos_token_id]
        return ids + (codes.long() + self.config.image_token_start).tolist() + end
