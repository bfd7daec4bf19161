"""Judges for simulated annotators: ``judge(prompt, left, right) -> {axis: left|right|tie}``.

``glyph`` is the glyph world's rules reading each sign's text with one of the evaluation's OCR
engines; any other judge is named ``package.module:factory``, a function that takes the axes and
returns a judge.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

from imagepref.errors import UnknownNameError

Judge = Callable[[str, Path, Path], dict[str, str]]


def glyph_judge(axes: Sequence[str], ocr_engine: str = "rapidocr") -> Judge:
    """The glyph world's rules, reading text with ``ocr_engine``. The judge is exact: simulated
    annotators apply their own error rate."""
    from imagepref.eval.ocr import text_reader
    from imagepref.policy.glyphworld.rules import simulated_judge

    return simulated_judge(text_reader(ocr_engine), axes=tuple(axes), error_rate=0.0)


def load_judge(name: str, axes: Sequence[str], ocr_engine: str = "rapidocr", setting: str = "judge") -> Judge:
    """The judge ``name`` (``glyph`` or ``package.module:factory``); ``setting`` names where the
    name came from in an error (``--judge``, ``label.judge``)."""
    if name == "glyph":
        return glyph_judge(axes, ocr_engine)
    module_name, _, factory = name.partition(":")
    if not module_name or not factory:
        raise UnknownNameError(f"{setting} {name!r} is unknown; use 'glyph' or 'package.module:factory'")
    try:
        return getattr(importlib.import_module(module_name), factory)(list(axes))
    except (ImportError, AttributeError):
        raise UnknownNameError(
            f"{setting} {name!r} cannot be imported; use 'glyph' or 'package.module:factory'"
        ) from None
