"""Judges for simulated annotators: ``judge(prompt, left, right) -> {axis: left|right|tie}``.

``glyph`` is the glyph world's rules reading each sign's text with one of the evaluation's OCR
engines: the image rules on a pair of images, the edit rules on a pair of edits (called with the
source image and the edit's description, see ``labeling.simulate``); any other judge is named ``package.module:factory``, a function that takes the axes and
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

    read_text = text_reader(ocr_engine)
    images = simulated_judge(read_text, axes=tuple(axes), error_rate=0.0)

    def judge(prompt: str, left: Path, right: Path, source: Path | None = None, edit: str | None = None):
        if source is None:
            return images(prompt, left, right)
        return judge_glyph_edit(edit, source, left, right, axes, read_text)

    return judge


def judge_glyph_edit(
    edit: str | dict | None, source: Path, left: Path, right: Path, axes: Sequence[str], read_text
) -> dict[str, str]:
    """Left, right or tie per axis between two results of one glyph-world edit (``edit``: its
    record, as JSON text or a dict), by the edit rules (``judge_edit``) and their tie margins."""
    import json

    from PIL import Image

    from imagepref.errors import BadInputError
    from imagepref.policy.glyphworld.edits import EDIT_TIE_MARGINS, compare_edits, edit_from_record, judge_edit

    if edit is None:
        raise BadInputError(
            "the glyph judge judges glyph-world edits only: this task carries no edit description "
            "(make edit candidates with `imagepref generate --edits glyphworld-edits`)"
        )
    glyph_edit = edit_from_record(json.loads(edit) if isinstance(edit, str) else edit)
    with Image.open(source) as before, Image.open(left) as a, Image.open(right) as b:
        scores_a = judge_edit(glyph_edit, before.convert("RGB"), a.convert("RGB"), read_text)
        scores_b = judge_edit(glyph_edit, before.convert("RGB"), b.convert("RGB"), read_text)
    unknown = [axis for axis in axes if axis not in EDIT_TIE_MARGINS]
    if unknown:
        raise BadInputError(
            f"the glyph edit rules have no axis {unknown[0]!r}; they judge {', '.join(EDIT_TIE_MARGINS)}"
        )
    side = {"a": "left", "b": "right", "tie": "tie"}
    return {axis: side[verdict] for axis, verdict in compare_edits(scores_a, scores_b, tuple(axes)).items()}


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
