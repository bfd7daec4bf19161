"""Image codecs: images to a grid of discrete codes and back.

Two codecs share one small interface (``ImageCodec``):

- ``PaletteCodec``, the glyph world's codec: two palette codes and an 8x8 grid of shape codes
  (its docstring says why it beats diffusers' ``VQModel`` on this data);
- ``VQModelCodec`` wraps a diffusers ``VQModel`` folder, the codec of real generators.

A codec is a folder with ``config.json`` and ``model.safetensors``; nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from imagepref.errors import BadInputError


class ImageCodec(Protocol):
    """What every codec offers: a code count, a grid shape, encode and decode."""

    num_codes: int
    tokens_per_image: int  # codes in one image's sequence
    grid: tuple[int, int]  # (rows, columns) of spatial codes
    image_size: tuple[int, int]  # (height, width) in pixels

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes, shape (batch, tokens_per_image), dtype long."""
        ...

    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes of shape (batch, tokens_per_image) to images."""
        ...

    def save_pretrained(self, path: str | Path) -> None:
        """Write config.json and model.safetensors into ``path``."""
        ...


def images_to_array(images: list[Image.Image], size: tuple[int, int]) -> torch.Tensor:
    """Stack PIL images as float32 (batch, height, width, 3) in [0, 1], resizing if needed."""
    height, width = size
    arrays = []
    for image in images:
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(arrays))


def array_to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(batch, height, width, 3) floats in [0, 1] to PIL images."""
    data = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(frame) for frame in data]


class PaletteCodec:
    """The glyph world's codec: two palette codes, then one shape code per 8x8 patch.

    A sign is a background colour, an ink colour and the reserved colour of the forbidden marks.
    ``encode`` picks the background and ink from a fixed palette, turns every pixel into two
    weights (how far it goes from the background towards the ink, and towards the mark colour),
    and replaces each 8x8 patch of weights by its nearest codebook entry. ``decode`` blends the
    three colours back with the entry's weights. The code sequence of one image is
    ``[background, ink, shape_0 ... shape_63]``; palette codes come first in the code space.

    Why not diffusers' ``VQModel``: we measured it on the glyph world. A tiny config (about 3 M
    parameters) trains at about 7 s per batch of 32 on 2 CPU cores, so "a few minutes" is a few
    dozen steps and OCR cannot read its reconstructions. A k-means codebook over raw RGB patches
    fits in a minute but needs 4x4 patches (256 codes an image) to stay legible, because every
    colour pair multiplies the patterns; the generator then needs far more compute to learn.
    Taking the colours out of the patches leaves a few hundred letter pieces, which a 1,024-entry
    codebook holds almost exactly at 8x8 (64 codes an image). ``benchmarks/codec.py`` prints the
    OCR ratio of reconstructions against originals.
    """

    def __init__(
        self,
        palette: torch.Tensor,
        codebook: torch.Tensor,
        mark_colour: tuple[int, int, int],
        patch: int = 8,
        image_size: tuple[int, int] = (64, 64),
    ):
        self.palette = palette.float()  # (P, 3) in [0, 1]
        self.codebook = codebook.float()  # (K, patch*patch*2) weights towards ink and mark
        self.mark_colour = torch.tensor(mark_colour, dtype=torch.float32) / 255.0
        self.patch = patch
        self.image_size = tuple(image_size)
        self.grid = (image_size[0] // patch, image_size[1] // patch)
        self.num_palette = palette.shape[0]
        self.num_codes = self.num_palette + codebook.shape[0]
        self.tokens_per_image = 2 + self.grid[0] * self.grid[1]

    # -- colours and weights ---------------------------------------------------------------
    def _colours(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Palette indices of background and ink for each image (batch,) each."""
        batch = pixels.shape[0]
        flat = pixels.reshape(batch, -1, 3)
        to_palette = torch.cdist(flat, self.palette[None].expand(batch, -1, -1))  # (B, N, P)
        nearest = to_palette.argmin(-1)
        background = torch.mode(nearest, dim=1).values
        bg_rgb = self.palette[background][:, None]
        away = (flat - bg_rgb).norm(dim=-1)
        not_mark = (flat - self.mark_colour).norm(dim=-1) > 0.35
        ink = torch.empty_like(background)
        for i in range(batch):
            strong = away[i] > 0.25
            candidates = flat[i][strong & not_mark[i]]
            if candidates.shape[0] == 0:
                ink[i] = (background[i] + 1) % self.num_palette
                continue
            keep = candidates[(candidates - bg_rgb[i]).norm(dim=-1) >= (candidates - bg_rgb[i]).norm(dim=-1).median()]
            distances = torch.cdist(keep.median(dim=0).values[None], self.palette)[0]
            distances[background[i]] = float("inf")
            ink[i] = distances.argmin()
        return background, ink

    def _weights(self, pixels: torch.Tensor, background: torch.Tensor, ink: torch.Tensor) -> torch.Tensor:
        """(batch, H, W, 2): each pixel's position on the segments background->ink and background->mark."""
        bg = self.palette[background][:, None, None]
        towards = [self.palette[ink][:, None, None] - bg, (self.mark_colour - bg)]
        weights, residuals = [], []
        for direction in towards:
            t = (((pixels - bg) * direction).sum(-1) / (direction * direction).sum(-1).clamp(min=1e-6)).clamp(0, 1)
            weights.append(t)
            residuals.append((pixels - bg - t[..., None] * direction).norm(dim=-1))
        use_ink = residuals[0] <= residuals[1]
        return torch.stack([torch.where(use_ink, weights[0], 0.0), torch.where(use_ink, 0.0, weights[1])], dim=-1)

    def _patches(self, weights: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = weights.shape
        p = self.patch
        patches = weights.reshape(batch, height // p, p, width // p, p, channels).permute(0, 1, 3, 2, 4, 5)
        return patches.reshape(batch, (height // p) * (width // p), p * p * channels)

    def _analyse(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pixels = images_to_array(images, self.image_size)
        background, ink = self._colours(pixels)
        return background, ink, self._patches(self._weights(pixels, background, ink))

    # -- the interface ---------------------------------------------------------------------
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, 2 + rows*columns): background, ink, then the shape codes."""
        background, ink, patches = self._analyse(images)
        flat = patches.reshape(-1, patches.shape[-1])
        shapes = torch.cat([torch.cdist(chunk, self.codebook).argmin(1) for chunk in flat.split(65536)])
        shapes = shapes.reshape(len(images), -1) + self.num_palette
        return torch.cat([background[:, None], ink[:, None], shapes], dim=1)

    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to float pixels (batch, height, width, 3) in [0, 1].

        A code of the wrong kind in a slot (a shape code where a colour belongs, or the reverse)
        is read modulo its kind, so any sampled sequence decodes to some image."""
        codes = codes.reshape(codes.shape[0], -1).long()
        if codes.shape[1] != self.tokens_per_image:
            raise BadInputError(f"an image is {self.tokens_per_image} codes; got {codes.shape[1]}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise BadInputError(f"codes must lie in [0, {self.num_codes}); got {codes.min()}..{codes.max()}")
        bg = self.palette[codes[:, 0] % self.num_palette][:, None, None]
        ink = self.palette[codes[:, 1] % self.num_palette][:, None, None]
        shapes = (codes[:, 2:] - self.num_palette) % self.codebook.shape[0]
        rows, columns = self.grid
        p = self.patch
        weights = self.codebook[shapes].reshape(codes.shape[0], rows, columns, p, p, 2)
        weights = weights.permute(0, 1, 3, 2, 4, 5).reshape(codes.shape[0], rows * p, columns * p, 2)
        return bg + weights[..., :1] * (ink - bg) + weights[..., 1:] * (self.mark_colour - bg)

    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes to PIL images."""
        return array_to_images(self.decode_pixels(codes))

    @classmethod
    def fit(
        cls,
        images: list[Image.Image],
        palette: list[tuple[int, int, int]],
        mark_colour: tuple[int, int, int],
        num_shapes: int = 1024,
        patch: int = 8,
        iterations: int = 10,
        seed: int = 0,
        image_size: tuple[int, int] = (64, 64),
        progress=None,
    ) -> PaletteCodec:
        """Fit the shape codebook: weighted k-means over the distinct weight patches of ``images``.

        Hand-written because a few lines of Lloyd iteration on torch tensors do it, with weights
        and bit-for-bit repeatable; scikit-learn would be a large dependency for one call.
        """
        generator = torch.Generator().manual_seed(seed)
        palette_t = torch.tensor(palette, dtype=torch.float32) / 255.0
        codec = cls(palette_t, torch.zeros(num_shapes, patch * patch * 2), mark_colour, patch, image_size)
        patches = torch.cat(
            [codec._analyse(images[i : i + 512])[2].reshape(-1, patch * patch * 2) for i in range(0, len(images), 512)]
        )
        # Letter pieces repeat exactly: k-means over distinct patches, weighted by their counts.
        distinct, counts = torch.unique((patches * 16).round(), dim=0, return_counts=True)
        distinct, counts = distinct / 16, counts.float()
        if distinct.shape[0] < num_shapes:
            raise BadInputError(f"only {distinct.shape[0]} distinct patches for {num_shapes} codes: give more images")
        order = torch.argsort(counts, descending=True)
        frequent = order[: num_shapes // 2]
        rest = order[num_shapes // 2 :]
        chosen = torch.cat(
            [frequent, rest[torch.randperm(rest.shape[0], generator=generator)[: num_shapes - frequent.shape[0]]]]
        )
        centroids = distinct[chosen].clone()
        for _ in range(iterations):
            assign = torch.cat([torch.cdist(chunk, centroids).argmin(1) for chunk in distinct.split(16384)])
            weight_sum = torch.zeros(num_shapes).index_add_(0, assign, counts)
            sums = torch.zeros_like(centroids).index_add_(0, assign, distinct * counts[:, None])
            refill = distinct[torch.randint(0, distinct.shape[0], (num_shapes,), generator=generator)]
            centroids = torch.where((weight_sum == 0)[:, None], refill, sums / weight_sum.clamp(min=1e-9)[:, None])
            if progress is not None:
                progress()
        codec.codebook = centroids
        return codec

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "codec_type": "palette",
            "num_codes": self.num_codes,
            "patch": self.patch,
            "image_size": list(self.image_size),
            "mark_colour": (self.mark_colour * 255).round().int().tolist(),
        }
        (path / "config.json").write_text(json.dumps(config, indent=2))
        save_file(
            {"palette": self.palette.contiguous(), "codebook": self.codebook.contiguous()},
            str(path / "model.safetensors"),
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> PaletteCodec:
        """Load a codec saved by ``save_pretrained``."""
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        tensors = load_file(str(path / "model.safetensors"))
        return cls(
            tensors["palette"],
            tensors["codebook"],
            tuple(config["mark_colour"]),
            config["patch"],
            tuple(config["image_size"]),
        )


class VQModelCodec:
    """A diffusers ``VQModel`` as an ``ImageCodec`` (the codec of generic causal-LM generators)."""

    def __init__(self, model, image_size: tuple[int, int]):
        self.model = model.eval()
        self.image_size = tuple(image_size)
        self.num_codes = model.config.num_vq_embeddings
        factor = 2 ** (len(model.config.block_out_channels) - 1)
        self.grid = (image_size[0] // factor, image_size[1] // factor)
        self.tokens_per_image = self.grid[0] * self.grid[1]

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, rows*columns) through the encoder and the quantizer."""
        pixels = images_to_array(images, self.image_size).permute(0, 3, 1, 2) * 2 - 1
        pixels = pixels.to(self.model.device, self.model.dtype)
        latents = self.model.encode(pixels).latents
        _, _, (_, _, indices) = self.model.quantize(latents)
        return indices.reshape(len(images), -1).cpu()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes to images through the codebook lookup and the decoder."""
        codes = codes.reshape(codes.shape[0], -1).long().to(self.model.device)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise BadInputError(f"codes must lie in [0, {self.num_codes}); got {codes.min()}..{codes.max()}")
        shape = (codes.shape[0], *self.grid, self.model.config.vq_embed_dim)
        if self.model.config.lookup_from_codebook:
            pixels = self.model.decode(codes, force_not_quantize=True, shape=shape).sample
        else:
            # Look the codes up ourselves, so VQModels saved without lookup_from_codebook decode too.
            quant = self.model.quantize.get_codebook_entry(codes, shape)
            pixels = self.model.decode(quant, force_not_quantize=True).sample
        return array_to_images(((pixels.float() + 1) / 2).permute(0, 2, 3, 1))

    def save_pretrained(self, path: str | Path) -> None:
        """Write the VQModel folder (config.json, diffusion_pytorch_model.safetensors)."""
        self.model.save_pretrained(str(path), safe_serialization=True)


def load_codec(path: str | Path, image_size: tuple[int, int] | None = None) -> ImageCodec:
    """Load a codec folder: the glyph world's patch codec or a diffusers VQModel."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise BadInputError(f"{path} is not a codec folder (no config.json): point to the folder a codec was saved in")
    config = json.loads(config_file.read_text())
    if config.get("codec_type") == "palette":
        return PaletteCodec.from_pretrained(path)
    if config.get("_class_name") == "VQModel":
        from diffusers import VQModel

        model = VQModel.from_pretrained(str(path), use_safetensors=True)
        size = image_size or (config.get("sample_size", 64),) * 2
        return VQModelCodec(model, size)
    raise BadInputError(f"{path} holds no known codec (expected a patch codec or a diffusers VQModel)")
