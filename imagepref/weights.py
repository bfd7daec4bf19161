"""Weight files checked before torch loads them, so a damaged or missing file is one line naming
its folder instead of a traceback from deep inside a loader, seconds later.

A safetensors file is an 8-byte little-endian header length, a JSON header giving each tensor's
byte range, then the bytes; a file whose length disagrees with its header is truncated or is not
safetensors at all. Reading the header costs a few kilobytes and no torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from imagepref.errors import BadInputError

WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
# A header larger than this is no safetensors header (the library refuses above 100 MB too).
_LARGEST_HEADER = 100_000_000


def check_safetensors(file: Path, folder: Path) -> None:
    """Raise ``BadInputError`` naming ``folder`` unless ``file`` is a whole safetensors file."""
    fix = f"the weights in {folder} do not load: {file.name}"
    restore = "restore the folder from where it was saved, or save the model again"
    if not file.is_file():
        raise BadInputError(f"{fix} is missing; {restore}")
    size = file.stat().st_size
    try:
        with file.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            if length > min(size - 8, _LARGEST_HEADER):
                raise ValueError("header length beyond the file")
            header = json.loads(stream.read(length))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise BadInputError(f"{fix} is not a safetensors file; {restore}") from None
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise BadInputError(f"{fix} is cut short ({size:,} of {expected:,} bytes) or damaged; {restore}")


def check_model_folder(folder: str | Path, what: str = "model folder") -> None:
    """Raise ``BadInputError`` unless ``folder`` holds a transformers ``config.json`` and whole
    safetensors weights (one ``model.safetensors`` or the shards its index names)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise BadInputError(
            f"{what} {folder} has no config.json (the model's architecture); restore it from where the "
            "model was saved, or save the model again"
        )
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BadInputError(f"the weights in {folder} do not load: {WEIGHTS_INDEX} is malformed") from None
        for shard in shards:
            check_safetensors(folder / shard, folder)
    else:
        check_safetensors(folder / WEIGHTS_FILE, folder)
