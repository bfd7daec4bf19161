"""Nested training states (optimizer, scheduler, RNG, counters) saved without pickle.

torch and transformers save these states with pickle (``optimizer.pt``, ``rng_state.pth``). They
are nested dicts and lists of numbers and tensors, so they split cleanly into one safetensors file
(the tensors) and one JSON file (the structure, each tensor replaced by its key). No library does
this split for optimizer and RNG states, hence this module.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from imagepref.files import replaced_on_success, write_text_atomically


def _split(value, tensors: dict[str, torch.Tensor], path: str):
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {"__dict__": {key: _split(item, tensors, f"{path}.{key}") for key, item in value.items()}}
        # Optimizer states are keyed by parameter index: keep the keys' types.
        return {"__items__": [[key, _split(item, tensors, f"{path}.{key}")] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [_split(item, tensors, f"{path}.{i}") for i, item in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path}: a {type(value).__name__} cannot be saved without pickle")


def _join(value, tensors: dict[str, torch.Tensor]):
    if isinstance(value, list):
        return [_join(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=value["dtype"])
    if "__tuple__" in value:
        return tuple(_join(item, tensors) for item in value["__tuple__"])
    if "__items__" in value:
        return {key: _join(item, tensors) for key, item in value["__items__"]}
    return {key: _join(item, tensors) for key, item in value["__dict__"].items()}


def save_state(folder: str | Path, name: str, state) -> None:
    """Write a nested state (optimizer, scheduler, RNG) as ``name.safetensors`` (its tensors) and
    ``name.json`` (everything else) into a fresh folder; the JSON goes last, so its presence means
    the pair is whole. (Overwriting a pair in place could leave new tensors beside old JSON after a
    kill: use ``save_numbered_state`` for a state saved again and again.)"""
    tensors: dict[str, torch.Tensor] = {}
    structure = _split(state, tensors, "state")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tensors:
        with replaced_on_success(folder / f"{name}.safetensors") as staging:
            save_file(tensors, str(staging))
    write_text_atomically(folder / f"{name}.json", json.dumps(structure))


def load_state(folder: str | Path, name: str):
    """Read back what ``save_state`` wrote (no pickle anywhere), or None when it is not there."""
    folder = Path(folder)
    if not (folder / f"{name}.json").is_file():
        return None
    tensors = load_file(str(folder / f"{name}.safetensors")) if (folder / f"{name}.safetensors").is_file() else {}
    return _join(json.loads((folder / f"{name}.json").read_text()), tensors)


def save_numbered_state(folder: str | Path, name: str, state, number: int) -> None:
    """Save ``state`` as number ``number`` (an epoch, a step) in ``folder/<number>/``, then remove
    the older numbers: a kill at any moment leaves at least one whole state to resume from."""
    folder = Path(folder)
    save_state(folder / str(number), name, state)
    for older in folder.iterdir():
        if older.name.isdigit() and int(older.name) < number:
            shutil.rmtree(older, ignore_errors=True)


def load_newest_state(folder: str | Path, name: str):
    """The newest whole state ``save_numbered_state`` wrote into ``folder``, or None."""
    folder = Path(folder)
    numbers = (
        sorted(
            (int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / f"{name}.json").is_file()), reverse=True
        )
        if folder.is_dir()
        else []
    )
    return load_state(folder / str(numbers[0]), name) if numbers else None
