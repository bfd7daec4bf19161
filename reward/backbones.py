"""The reward model's backbones: each turns (images or image tokens, prompts) into one vector.

- ``PixelBackbone``: a convolutional stem cuts the image into patch features on the codec's grid;
  prompt characters get byte embeddings plus their own drawing through the same stem; each patch
  reads the prompt (``PromptReader``); trained from scratch in minutes on CPU (the glyph-world
  default).
- ``TokenBackbone``: the same reader, but the image arrives as the generator's image tokens,
  embedded through a frozen copy of the generator's own input embedding rows. No pixel decoding,
  so it is cheap inside online RL. Prompt characters start from the generator's own character
  embeddings when its tokenizer has one token per character (the glyph family).
- ``ClipBackbone``: a CLIP or SigLIP model from a local folder (frozen, or LoRA through peft); the
  image and text embeddings and their product feed the heads.

Each backbone has ``prepare(images, prompts, tokens) -> dict of tensors`` (done once per batch, so
training can cache it) and ``forward(**prepared) -> (batch, width)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from imagepref.errors import BadInputError
from imagepref.reward.config import RewardConfig

PAD_BYTE = 256


def prompt_bytes(prompts: list[str], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as UTF-8 byte ids padded to ``length``: (ids, mask of real bytes)."""
    ids = torch.full((len(prompts), length), PAD_BYTE, dtype=torch.long)
    for i, prompt in enumerate(prompts):
        data = list(prompt.encode("utf-8"))[:length]
        ids[i, : len(data)] = torch.tensor(data, dtype=torch.long)
    return ids, ids != PAD_BYTE


QUOTE_BYTE = ord('"')


def edit_quoted_letter(ids: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Byte prompts (from ``prompt_bytes``) with one letter of their first quoted text replaced by
    another letter of the same case; rows without a quoted letter come back unchanged.

    A hard negative for the prompt-matching loss of a text-rendering reward model: the prompt
    still names the same colour and the same word length, so only reading the drawn letters tells
    the two prompts apart."""
    quotes = (ids == QUOTE_BYTE).cumsum(1)
    upper, lower = (ids >= 65) & (ids <= 90), (ids >= 97) & (ids <= 122)
    letters = (quotes == 1) & (ids != QUOTE_BYTE) & (upper | lower)
    pick = torch.rand(ids.shape, generator=generator).to(ids.device).masked_fill(~letters, -1.0).argmax(1)
    rows = torch.arange(len(ids), device=ids.device)
    original = ids[rows, pick]
    base = torch.where(original >= 97, 97, 65)
    shift = torch.randint(1, 26, (len(ids),), generator=generator).to(ids.device)
    edited = ids.clone()
    edited[rows, pick] = torch.where(letters.any(1), (original - base + shift) % 26 + base, original)
    return edited


class ReadingBlock(nn.Module):
    """Each image position asks the prompt's characters what belongs here (one cross-attention),
    then an MLP compares the answer with what the position shows."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.query_norm = nn.LayerNorm(width)
        self.cross = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        attended, _ = self.cross(self.query_norm(x), prompt, prompt, key_padding_mask=padding, need_weights=False)
        x = x + attended
        return x + self.mlp(self.mlp_norm(x))


class PromptReader(nn.Module):
    """Image features (pixel patches or image tokens) read against the prompt: ``layers`` reading
    blocks, then mean and max pooling over the image positions.

    Fidelity is an equality test between the two sides at each place in the image ("this cell
    shows the quoted letter that belongs here", "this ink is the named colour"), which a
    cross-attention from each image position followed by a per-position MLP learns directly. A
    transformer over [CLS, prompt, patches] had to route both sides through the CLS token and kept
    the pixel model's fidelity head near chance even on pairs that differ only in ink colour. Max
    pooling sees "some position shows a mark / ink at the border", mean pooling "how speckled"."""

    def __init__(self, width: int, layers: int, heads: int, dropout: float, text_length: int, image_length: int):
        super().__init__()
        self.image_position = nn.Parameter(torch.randn(1, image_length, width) * 0.02)
        self.text_position = nn.Parameter(torch.randn(1, text_length, width) * 0.02)
        self.blocks = nn.ModuleList(ReadingBlock(width, heads, dropout) for _ in range(layers))
        self.pool = nn.Sequential(nn.LayerNorm(2 * width), nn.Linear(2 * width, width))

    def forward(self, image: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        # Prompts are padded to max_prompt_length; drop the columns that are padding in every row.
        length = max(1, int(text_mask.sum(1).max()))
        prompt = text[:, :length] + self.text_position[:, :length]
        x = image + self.image_position
        for block in self.blocks:
            x = block(x, prompt, ~text_mask[:, :length])
        return self.pool(torch.cat([x.mean(1), x.amax(1)], dim=-1))


class GridNeighbourhood(nn.Module):
    """A residual 3x3 convolution over the patch grid: each patch feature sees its neighbours, so a
    letter two or three patches tall reaches the reader as one readable column."""

    def __init__(self, width: int):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(nn.functional.gelu(x))


class ByteText(nn.Module):
    """Prompt byte embeddings plus a residual 5-wide convolution, so each byte knows its word
    ("red", a quoted letter next to the quote) before the image reads it; one attention layer
    could not both compose bytes and match them."""

    def __init__(self, width: int):
        super().__init__()
        self.embedding = nn.Embedding(PAD_BYTE + 1, width)
        self.conv = nn.Conv1d(width, width, 5, padding=2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        return x + self.conv(nn.functional.gelu(x).transpose(1, 2)).transpose(1, 2)


def rendered_bytes(cell_width: int, cell_height: int, font: str = "DejaVuSans-Bold.ttf") -> torch.Tensor:
    """Every byte drawn as a dark character on white in a ``cell_height`` x ``cell_width`` cell:
    (PAD_BYTE + 1, 3, cell_height, cell_width) uint8; bytes without a printable ASCII character
    stay blank.

    The pixel backbone reads each prompt byte through its own image stem too (CLIPPO-style: the
    text seen as pixels), so a quoted letter and the same letter drawn in the image start out as
    features of one function; learning letter identity on one side teaches it to the other. The
    font is DejaVu (matplotlib ships it), so the table is the same on every machine. PIL draws and
    sizes the letters; no library turns a font into per-character cells at a given cap height, and
    the glyph world's ``glyph_mask`` draws only its own two cell sizes and cuts descenders off,
    while this table needs every printable byte at the model's patch size."""
    from PIL import ImageDraw, ImageFont

    from imagepref.policy.glyphworld.world import font_path

    face = ImageFont.truetype(str(font_path(font)), 64)
    _, cap_top, _, baseline = face.getbbox("H")
    table = np.full((PAD_BYTE + 1, cell_height, cell_width), 255, dtype=np.uint8)
    inner_height = max(1, cell_height - 3)
    for byte in range(33, 127):
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((8, 0), chr(byte), font=face, fill=255)
        box = canvas.getbbox()
        if box is None:
            continue
        # Scale by the cap height, so capitals fill the cell and lower case and punctuation keep
        # their size relative to them; squeeze only characters wider than the cell.
        top, bottom = min(box[1], cap_top), max(box[3], baseline)
        letter = canvas.crop((box[0], top, box[2], bottom))
        scale = inner_height / max(1, baseline - cap_top)
        height = min(cell_height - 1, max(1, round(letter.height * scale)))
        width = min(cell_width - 2, max(1, round(letter.width * scale)))
        ink = np.asarray(letter.resize((width, height), Image.LANCZOS), dtype=np.float32)
        left, row = (cell_width - width) // 2, max(0, min(2 + round((top - cap_top) * scale), cell_height - height))
        table[byte, row : row + height, left : left + width] = np.round(255 - ink).astype(np.uint8)
    return torch.from_numpy(table)[:, None].expand(-1, 3, -1, -1).contiguous()


class PixelBackbone(nn.Module):
    """Conv stem on pixels; prompt bytes (embedded, and drawn through the same stem) read by each
    patch through ``PromptReader`` (trained from scratch)."""

    prompt_keys = ("text", "text_mask")  # the prepared tensors that carry the prompt

    def __init__(self, config: RewardConfig):
        super().__init__()
        if config.patch % 4 or config.image_size % config.patch:
            raise BadInputError(
                f"pixel backbone: patch ({config.patch}) must be a multiple of 4 that divides "
                f"image_size ({config.image_size})"
            )
        self.config = config
        width, grid = config.width, config.image_size // config.patch
        # One feature per codec cell, in three strided steps. The first convolution overlaps (3x3,
        # stride 2) so that an isolated speck of noise looks unlike a letter stroke; a
        # non-overlapping 4x4 first step left aesthetics near chance on speckled signs, and a
        # full-resolution first layer cost 20x more on CPU.
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(32, 64, 2, stride=2),
            nn.GELU(),
            nn.Conv2d(64, width, config.patch // 4, stride=config.patch // 4),
            GridNeighbourhood(width),
        )
        self.text = ByteText(width)
        if config.rendered_text:
            # Each byte as a two-patch-tall character through the same stem; the two patch
            # features become one vector added to the byte's embedding.
            self.register_buffer("glyphs", rendered_bytes(config.patch, 2 * config.patch), persistent=False)
            self.glyph_project = nn.Linear(2 * width, width)
        # Byte embeddings and stem features differ in scale; the reader's keys need one.
        self.prompt_norm = nn.LayerNorm(width)
        self.reader = PromptReader(
            width, config.layers, config.heads, config.dropout, config.max_prompt_length, grid * grid
        )

    def prepare(self, images: list[Image.Image] | None, prompts: list[str], tokens=None) -> dict[str, torch.Tensor]:
        if images is None:
            raise BadInputError("the pixel reward model scores images; pass images (tokens are for the token backbone)")
        size = (self.config.image_size, self.config.image_size)
        pixels = np.stack([np.asarray(im.convert("RGB").resize(size, Image.BILINEAR), dtype=np.uint8) for im in images])
        ids, mask = prompt_bytes(prompts, self.config.max_prompt_length)
        # uint8 keeps the cached training tensors small; forward scales them.
        return {"pixels": torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous(), "text": ids, "text_mask": mask}

    def forward(self, pixels: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        dtype = self.stem[0].weight.dtype
        image = self.stem(pixels.to(dtype) / 127.5 - 1.0).flatten(2).transpose(1, 2)
        prompt = self.text(text)
        if self.config.rendered_text:
            # The whole byte table through the stem once per call (257 small cells), then looked
            # up: cheaper than drawing each prompt's characters.
            glyphs = self.stem(self.glyphs.to(dtype) / 127.5 - 1.0).flatten(1)
            prompt = prompt + nn.functional.embedding(text, self.glyph_project(glyphs))
        return self.reader(image, self.prompt_norm(prompt), text_mask)


class TokenBackbone(nn.Module):
    """The generator's image tokens through its frozen input embeddings, read against the prompt.

    Lighter than the pixel backbone: a code already names a letter piece, a colour or a mark, so
    the tokens need no stem before they read the prompt (which piece of which quoted letter am
    I?), and nothing is decoded; that is where the speed comes from."""

    prompt_keys = ("text", "text_mask")  # the prepared tensors that carry the prompt

    def __init__(self, config: RewardConfig):
        super().__init__()
        if config.num_image_tokens <= 0 or config.embedding_dim <= 0 or config.tokens_per_image <= 0:
            raise BadInputError(
                "the token backbone needs the generator's image-token range: build it with "
                "RewardModel.create(config, generator=...) or `imagepref reward train --generator DIR`"
            )
        self.config = config
        width = config.width
        self.image_embeddings = nn.Embedding(config.num_image_tokens, config.embedding_dim)
        self.image_embeddings.weight.requires_grad_(False)
        self.text = nn.Embedding(PAD_BYTE + 1, config.embedding_dim)
        self.project = nn.Sequential(nn.LayerNorm(config.embedding_dim), nn.Linear(config.embedding_dim, width))
        self.reader = PromptReader(
            width, config.layers, config.heads, config.dropout, config.max_prompt_length, config.tokens_per_image
        )
        if config.edits:
            # An edit model sees at each place the source's code next to the result's, and whether
            # they are the same code: preservation is "the same where the instruction asks for no
            # change", which the result alone cannot show.
            self.source_project = nn.Sequential(
                nn.LayerNorm(config.embedding_dim), nn.Linear(config.embedding_dim, width)
            )
            self.kept = nn.Embedding(2, width)

    @torch.no_grad()
    def copy_generator_embeddings(self, generator) -> None:
        """Copy the generator's image-token embedding rows (frozen) and, where its tokenizer has a
        single token for a printable character, that row as the start of the prompt byte embedding
        (for the glyph family, whose letter pieces start from their letter's embedding, this lets
        attention match a piece to its quoted letter from the first step)."""
        table = generator.model.get_input_embeddings().weight.detach().float().cpu()
        start = generator.config.image_token_start
        self.image_embeddings.weight.copy_(table[start : start + self.config.num_image_tokens])
        tokenizer = getattr(generator, "tokenizer", None)
        if tokenizer is None:
            return
        unknown = tokenizer.unk_token_id
        for byte in range(32, 127):
            token = tokenizer.convert_tokens_to_ids(chr(byte))
            if isinstance(token, int) and token != unknown and 0 <= token < table.shape[0]:
                self.text.weight[byte] = table[token]

    def prepare(
        self, images=None, prompts: list[str] = (), tokens=None, source_tokens=None, instructions=None
    ) -> dict[str, torch.Tensor]:
        """Prepared tensors; an edit model (``config.edits``) reads ``source_tokens`` and
        ``instructions`` too, the instruction in place of the prompt."""
        if tokens is None:
            raise BadInputError(
                "the token reward model reads image tokens; pass tokens (the candidate set's "
                "image_tokens), or use a pixel reward model for images"
            )
        codes = self._codes(tokens)
        if not self.config.edits:
            ids, mask = prompt_bytes(list(prompts), self.config.max_prompt_length)
            return {"codes": codes, "text": ids, "text_mask": mask}
        source = self._codes(source_tokens)
        if len(source) != len(codes) or len(instructions) != len(codes):
            raise BadInputError(
                f"got {len(codes)} results but {len(source)} sources and {len(instructions)} instructions; "
                "pass one source and one instruction per result"
            )
        ids, mask = prompt_bytes(list(instructions), self.config.max_prompt_length)
        return {"codes": codes, "source_codes": source, "text": ids, "text_mask": mask}

    def _codes(self, tokens) -> torch.Tensor:
        """Image tokens as a checked (images, tokens_per_image) long tensor."""
        codes = (
            tokens.long().cpu()
            if torch.is_tensor(tokens)
            else torch.as_tensor(np.asarray([list(t) for t in tokens], dtype=np.int64))
        )
        if codes.ndim != 2 or codes.shape[1] != self.config.tokens_per_image:
            raise BadInputError(
                f"each image must be {self.config.tokens_per_image} image tokens; got shape "
                f"{tuple(codes.shape)}: were they made by the generator this model was trained for?"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.num_image_tokens):
            raise BadInputError(
                f"image tokens must lie in [0, {self.config.num_image_tokens}); got "
                f"{int(codes.min())}..{int(codes.max())}: were they made by another generator?"
            )
        return codes

    def forward(
        self, codes: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor, source_codes: torch.Tensor | None = None
    ) -> torch.Tensor:
        # Project the two small tables once, then look rows up: cheaper than projecting every token.
        image = nn.functional.embedding(codes, self.project(self.image_embeddings.weight))
        if self.config.edits:
            image = (
                image
                + nn.functional.embedding(source_codes, self.source_project(self.image_embeddings.weight))
                + self.kept((codes == source_codes).long())
            )
        return self.reader(image, nn.functional.embedding(text, self.project(self.text.weight)), text_mask)


class ClipBackbone(nn.Module):
    """A CLIP or SigLIP model from a local folder; returns an MLP over [image, text, image x text]."""

    prompt_keys = ("input_ids", "attention_mask")  # the prepared tensors that carry the prompt

    def __init__(self, config: RewardConfig):
        super().__init__()
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        self.config = config
        path = config.backbone_path
        if not path or not Path(path).is_dir():
            raise BadInputError(
                f"CLIP/SigLIP backbone folder {path!r} does not exist: pass backbone_path=DIR, a local "
                "folder with a CLIPModel or SiglipModel, its tokenizer and image processor"
            )
        try:
            model = AutoModel.from_pretrained(path, trust_remote_code=config.trust_remote_code, use_safetensors=True)
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=config.trust_remote_code)
            self.processor = AutoImageProcessor.from_pretrained(path, trust_remote_code=config.trust_remote_code)
        except (OSError, ValueError, KeyError) as error:
            raise BadInputError(
                f"backbone folder {path} does not load as CLIP/SigLIP ({str(error).splitlines()[0]}); "
                "it needs config.json, model.safetensors, a tokenizer and preprocessor_config.json"
            ) from None
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise BadInputError(f"backbone folder {path} holds a {type(model).__name__}, not a CLIP or SigLIP model")
        model.requires_grad_(False)
        if config.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(
                model,
                LoraConfig(
                    r=config.lora_rank,
                    lora_alpha=2 * config.lora_rank,
                    target_modules=config.lora_targets,
                    lora_dropout=0.0,
                ),
            )
        self.model = model
        # SigLIP was trained on max-length padding; CLIP pads to the longest prompt.
        self.padding = "max_length" if "siglip" in type(self.base_model).__name__.lower() else "longest"
        dim = self.base_model.config.projection_dim if hasattr(self.base_model.config, "projection_dim") else None
        dim = dim or self.base_model.config.text_config.hidden_size
        self.mlp = nn.Sequential(nn.LayerNorm(3 * dim), nn.Linear(3 * dim, config.width), nn.GELU())

    @property
    def base_model(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def frozen_keys(self) -> set[str]:
        """State-dict keys of the frozen backbone weights: reloaded from ``backbone_path``, not saved."""
        return {name for name, p in self.named_parameters() if not p.requires_grad and name.startswith("model.")}

    def prepare(self, images: list[Image.Image] | None, prompts: list[str], tokens=None) -> dict[str, torch.Tensor]:
        if images is None:
            raise BadInputError("a CLIP/SigLIP reward model scores images; pass images")
        pixels = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"]
        text = self.tokenizer(
            list(prompts),
            padding=self.padding,
            truncation=True,
            return_tensors="pt",
            max_length=self.base_model.config.text_config.max_position_embeddings,
        )
        return {
            "pixel_values": pixels,
            "input_ids": text["input_ids"],
            "attention_mask": text.get("attention_mask", torch.ones_like(text["input_ids"])),
        }

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        base = self.base_model
        image = base.get_image_features(pixel_values=pixel_values.to(self.mlp[1].weight.dtype)).pooler_output
        text = base.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        image = nn.functional.normalize(image, dim=-1)
        text = nn.functional.normalize(text, dim=-1)
        return self.mlp(torch.cat([image, text, image * text], dim=-1))


BACKBONES = {"pixel": PixelBackbone, "token": TokenBackbone, "clip": ClipBackbone}
