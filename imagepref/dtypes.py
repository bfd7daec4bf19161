"""Weight dtypes by name, as recipes and command lines give them (``--dtype bfloat16``)."""

from __future__ import annotations

from imagepref.errors import BadInputError

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def check_dtype(name: str | None, what: str = "dtype") -> str | None:
    """``name`` when it names a dtype ``torch_dtype`` takes (None passes), without importing torch;
    any other name is a one-line error naming ``what`` and listing the known names."""
    if name is not None and name not in DTYPE_NAMES:
        raise BadInputError(f"{what} must be one of {', '.join(DTYPE_NAMES)}; got {name!r}")
    return name


def torch_dtype(name: str | None, what: str = "dtype"):
    """The ``torch.dtype`` named ``name`` (None stays None: the loader's default); any other name
    is a one-line error naming ``what`` (the option or key) and listing the known names."""
    if check_dtype(name, what) is None:
        return None
    import torch

    return getattr(torch, name)


def dtype_name(dtype) -> str:
    """The name ``torch_dtype`` takes for a ``torch.dtype`` (``torch.bfloat16`` -> ``bfloat16``)."""
    return str(dtype).removeprefix("torch.")
