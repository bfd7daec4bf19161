"""What the transformers-backed families share: reading a checkpoint folder, refusing remote code
unless asked, writing a generator folder atomically, and a character tokenizer for tiny test models.

Emu3, Janus-Pro and the causal-LM-plus-VQ family each read in one file (``emu3.py``, ``janus.py``,
``causal_vq.py``); the steps here are the same for all three, so they live once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.files import staged_folder


class UnsupportedByFamilyError(ImagePrefError):
    """A family was asked to do something its architecture cannot do."""


def read_model_config(path: str | Path) -> dict:
    """``config.json`` of a transformers checkpoint folder, with one-line errors when it is not one."""
    path = Path(path)
    config_file = path / "config.json"
    if not path.is_dir():
        raise BadInputError(f"model folder {path} does not exist: pass a local checkpoint folder")
    if not config_file.is_file():
        raise BadInputError(
            f"{path} holds no config.json, so it is no transformers checkpoint: "
            "pass the folder that save_pretrained wrote"
        )
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        raise BadInputError(f"{config_file} is not valid JSON ({error.msg} at line {error.lineno})") from None


def check_remote_code(path: str | Path, trust_remote_code: bool) -> None:
    """Refuse a checkpoint whose ``config.json`` maps to its own Python code unless the user allowed it.

    transformers would raise a multi-line ValueError deep in ``from_pretrained``; we say which flag
    to pass, because running a folder's code is the user's decision, never our default."""
    config = read_model_config(path)
    if config.get("auto_map") and not trust_remote_code:
        raise BadInputError(
            f"{path} needs its own Python code (config.json has auto_map): read that code, then "
            "pass --trust-remote-code (trust_remote_code=True) to run it"
        )


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """A torch dtype from a dtype, its name ("bfloat16", "bf16", "float32") or None (float32)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    if dtype not in names:
        raise BadInputError(f"unknown dtype {dtype!r}; use one of {', '.join(names)}")
    return names[dtype]


def save_generator_folder(generator, path: str | Path, with_codec: bool = False) -> None:
    """Write ``generator``'s model (safetensors), tokenizer, codec folder when it has its own, and
    ``imagepref.json`` into ``path`` through a staged folder (``imagepref.files.staged_folder``,
    merged into what ``path`` already holds), so a failed save leaves ``path`` as it was."""
    from imagepref.policy.generator import CONFIG_NAME

    with staged_folder(path, existing="merge") as folder:
        generator.model.save_pretrained(str(folder), safe_serialization=True)
        generator.tokenizer.save_pretrained(str(folder))
        if with_codec:
            generator.codec.save_pretrained(folder / generator.config.codec)
        (folder / CONFIG_NAME).write_text(generator.config.model_dump_json(indent=2))


def pixels_in_unit_range(images, size: tuple[int, int], module: torch.nn.Module) -> torch.Tensor:
    """PIL images to (batch, 3, height, width) in [-1, 1] on ``module``'s device and dtype, the
    input range of the Emu3 and Janus VQ models (their processors normalise with mean = std = 0.5)."""
    from imagepref.policy.codec import images_to_array

    pixels = images_to_array(images, size).permute(0, 3, 1, 2) * 2 - 1
    return pixels.to(module.device, module.dtype)


def checked_codes(codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """``codes`` as (batch, codes) longs; a one-line error when one lies outside ``[0, num_codes)``."""
    codes = codes.reshape(codes.shape[0], -1).long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= num_codes):
        raise BadInputError(f"codes must lie in [0, {num_codes}); got {codes.min()}..{codes.max()}")
    return codes


def images_from_unit_range(pixels: torch.Tensor) -> list:
    """(batch, 3, height, width) decoder output in [-1, 1] to PIL images."""
    from imagepref.policy.codec import array_to_images

    return array_to_images(((pixels.float() + 1) / 2).permute(0, 2, 3, 1))


def character_tokenizer(
    special_tokens: list[str], image_tokens: list[str], bos: str, eos: str, pad: str, unk: str
) -> PreTrainedTokenizerFast:
    """A tokenizer with one token per printable ASCII character, then ``special_tokens``, then
    ``image_tokens`` (contiguous ids): enough to build tiny Emu3/Janus/causal-VQ models in code,
    with the special-token names of the real checkpoints."""
    characters = [chr(c) for c in range(32, 127)]
    vocab = {token: i for i, token in enumerate([unk] + characters)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens([AddedToken(t, special=True) for t in special_tokens])
    backend.add_tokens([AddedToken(t, special=True) for t in image_tokens])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk)


def token_id(tokenizer, token: str, folder: str | Path | None = None) -> int:
    """The id of ``token``; a one-line error when the tokenizer lacks it (a tokenizer of another model)."""
    ids = tokenizer.convert_tokens_to_ids(token)
    if ids is None or ids == tokenizer.unk_token_id:
        where = f" in {folder}" if folder else ""
        raise BadInputError(f"the tokenizer{where} has no {token!r} token: is it this model's own tokenizer?")
    return ids


def language_model_targets(prefix_pattern: str, names: list[str]) -> str:
    """A peft ``target_modules`` regex that wraps ``names`` only inside the language model (not the
    vision encoder or the VQ model, which reuse names such as ``q_proj``)."""
    return rf"{prefix_pattern}.*\.({'|'.join(names)})"
