"""Image codecs: images to a grid of discrete codes and back.

Two codecs share one small interface (``ImageCodec``):

- ``PatchCodec``, the glyph world's codec: a k-means codebook over 4x4 RGB patches. We measured
  diffusers' ``VQModel`` on the glyph world first: a tiny config (about 3 M parameters) trains at
  about 7 s per batch of 32 on 2 CPU cores, so "a few minutes" is a few dozen steps and the
  reconstructions are blobs OCR cannot read. The k-means codebook fits in under two minutes, is
  exact to reproduce, and OCR reads its reconstructions of held-out signs about as well as the
  originals (``benchmarks/codec.py`` prints the ratio). Signs are flat colours and sharp edges, so
  a 4x4 patch has few distinct looks and a codebook covers them; on photographs it would not.
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
    grid: tuple[int, int]  # (rows, columns) of codes
    image_size: tuple[int, int]  # (height, width) in pixels

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes, shape (batch, rows, columns), dtype long."""
        ...

    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes of shape (batch, rows, columns) or (batch, rows*columns) to images."""
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


class PatchCodec:
    """A k-means codebook over square RGB patches: each patch becomes its nearest centroid."""

    def __init__(self, codebook: torch.Tensor, patch: int = 4, image_size: tuple[int, int] = (64, 64)):
        self.codebook = codebook.float()  # (num_codes, patch*patch*3)
        self.patch = patch
        self.image_size = tuple(image_size)
        self.num_codes = codebook.shape[0]
        self.grid = (image_size[0] // patch, image_size[1] // patch)

    def _patches(self, pixels: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = pixels.shape
        p = self.patch
        patches = pixels.reshape(batch, height // p, p, width // p, p, channels).permute(0, 1, 3, 2, 4, 5)
        return patches.reshape(batch, (height // p) * (width // p), p * p * channels)

    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, rows, columns)."""
        patches = self._patches(images_to_array(images, self.image_size))
        flat = patches.reshape(-1, patches.shape[-1])
        codes = torch.cat([torch.cdist(chunk, self.codebook).argmin(1) for chunk in flat.split(65536)])
        return codes.reshape(len(images), *self.grid)

    def decode_pixels(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes to float pixels (batch, height, width, 3) in [0, 1]."""
        codes = codes.reshape(codes.shape[0], -1).long()
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.num_codes):
            raise BadInputError(f"codes must lie in [0, {self.num_codes}); got {codes.min()}..{codes.max()}")
        rows, columns = self.grid
        p = self.patch
        patches = self.codebook[codes].reshape(codes.shape[0], rows, columns, p, p, 3)
        return patches.permute(0, 1, 3, 2, 4, 5).reshape(codes.shape[0], rows * p, columns * p, 3)

    def decode(self, codes: torch.Tensor) -> list[Image.Image]:
        """Codes to PIL images."""
        return array_to_images(self.decode_pixels(codes))

    @classmethod
    def fit(cls, images: list[Image.Image], num_codes: int = 1024, patch: int = 4, iterations: int = 12,
            seed: int = 0, image_size: tuple[int, int] = (64, 64), progress=None) -> "PatchCodec":
        """Fit the codebook with Lloyd's k-means on all patches of ``images`` (seeded, exact to reproduce).

        Hand-written because the few lines of Lloyd iteration on torch tensors are faster here than
        pulling in scikit-learn for one call, and the result is bit-for-bit repeatable.
        """
        generator = torch.Generator().manual_seed(seed)
        codec = cls(torch.zeros(num_codes, patch * patch * 3), patch, image_size)
        data = codec._patches(images_to_array(images, image_size)).reshape(-1, patch * patch * 3)
        if data.shape[0] < num_codes:
            raise BadInputError(f"k-means needs at least {num_codes} patches; got {data.shape[0]}: give more images")
        centroids = data[torch.randperm(data.shape[0], generator=generator)[:num_codes]].clone()
        for _ in range(iterations):
            assign = torch.cat([torch.cdist(chunk, centroids).argmin(1) for chunk in data.split(65536)])
            counts = torch.bincount(assign, minlength=num_codes).float()
            sums = torch.zeros_like(centroids).index_add_(0, assign, data)
            # An empty cluster takes a random patch, so no code is wasted.
            refill = data[torch.randint(0, data.shape[0], (num_codes,), generator=generator)]
            centroids = torch.where((counts == 0)[:, None], refill, sums / counts.clamp(min=1)[:, None])
            if progress is not None:
                progress()
        codec.codebook = centroids
        return codec

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` and ``model.safetensors``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"codec_type": "patch_kmeans", "num_codes": self.num_codes, "patch": self.patch,
                  "image_size": list(self.image_size)}
        (path / "config.json").write_text(json.dumps(config, indent=2))
        save_file({"codebook": self.codebook.contiguous()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PatchCodec":
        """Load a codec saved by ``save_pretrained``."""
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        codebook = load_file(str(path / "model.safetensors"))["codebook"]
        return cls(codebook, config["patch"], tuple(config["image_size"]))


class VQModelCodec:
    """A diffusers ``VQModel`` as an ``ImageCodec`` (the codec of generic causal-LM generators)."""

    def __init__(self, model, image_size: tuple[int, int]):
        self.model = model.eval()
        self.image_size = tuple(image_size)
        self.num_codes = model.config.num_vq_embeddings
        factor = 2 ** (len(model.config.block_out_channels) - 1)
        self.grid = (image_size[0] // factor, image_size[1] // factor)

    @torch.no_grad()
    def encode(self, images: list[Image.Image]) -> torch.Tensor:
        """Images to codes (batch, rows, columns) through the encoder and the quantizer."""
        pixels = images_to_array(images, self.image_size).permute(0, 3, 1, 2) * 2 - 1
        pixels = pixels.to(self.model.device, self.model.dtype)
        latents = self.model.encode(pixels).latents
        _, _, (_, _, indices) = self.model.quantize(latents)
        return indices.reshape(len(images), *self.grid).cpu()

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
    if config.get("codec_type") == "patch_kmeans":
        return PatchCodec.from_pretrained(path)
    if config.get("_class_name") == "VQModel":
        from diffusers import VQModel

        model = VQModel.from_pretrained(str(path), use_safetensors=True)
        size = image_size or (config.get("sample_size", 64),) * 2
        return VQModelCodec(model, size)
    raise BadInputError(f"{path} holds no known codec (expected a patch codec or a diffusers VQModel)")
