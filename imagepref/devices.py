"""Torch devices by name, as recipes and command lines give them (``--device cuda:1``), checked
before anything is loaded onto them."""

from __future__ import annotations

import re

from imagepref.errors import BadInputError

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
_DEVICE = re.compile(r"^(?P<type>[a-z]+)(?::(?P<index>\d+))?$")


def check_device(name: str | None, what: str = "--device") -> str | None:
    """``name`` when this machine has that torch device (None stays None: the loader's default);
    otherwise one line naming ``what`` (the option or key) and what to pass instead. The name's
    form is checked first; torch is imported only to ask for a device it names."""
    if name is None:
        return None
    match = _DEVICE.match(name.strip())
    if match is None or match["type"] not in DEVICE_TYPES:
        raise BadInputError(f"{what} {name!r} is not a torch device; pass one of {', '.join(DEVICE_TYPES)} or cuda:N")
    kind, index = match["type"], int(match["index"] or 0)
    if kind == "cpu":
        return name
    import torch

    backend = {"cuda": torch.cuda, "mps": torch.backends.mps, "xpu": getattr(torch, "xpu", None)}[kind]
    available = backend is not None and backend.is_available()
    count = (backend.device_count() if hasattr(backend, "device_count") else 1) if available else 0
    if index >= count:
        found = (
            f"{count} {kind} device(s) are visible"
            if count
            else f"no {kind} device is visible to torch {torch.__version__}"
        )
        raise BadInputError(f"{what} {name}: {found}; use cpu or a device this machine has")
    return name
