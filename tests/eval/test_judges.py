"""Judges of the simulated annotators: the glyph world's rules reading with a real OCR engine, or a
factory named ``package.module:factory``."""

from __future__ import annotations

import dataclasses
import random

import pytest

from imagepref.errors import UnknownNameError
from imagepref.eval.judges import load_judge
from imagepref.policy.glyphworld import render, sample_spec


def test_the_glyph_judge_reads_the_signs_with_ocr(tmp_path):
    spec = sample_spec(random.Random(3), ["OPEN"], flaw_rate=0.0, forbidden_rate=0.0, shape_rate=0.0)
    wrong = dataclasses.replace(spec, text="SHUT")
    left, right = tmp_path / "left.png", tmp_path / "right.png"
    render(spec).save(left)
    render(wrong).save(right)
    judge = load_judge("glyph", ["prompt_fidelity"], ocr_engine="tesseract")
    assert judge(spec.prompt, left, right) == {"prompt_fidelity": "left"}
    assert judge(spec.prompt, right, left) == {"prompt_fidelity": "right"}


def test_a_named_factory_gets_the_axes(tmp_path, monkeypatch):
    (tmp_path / "my_judges.py").write_text(
        "def always_left(axes):\n    return lambda prompt, left, right: {axis: 'left' for axis in axes}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    judge = load_judge("my_judges:always_left", ["aesthetics", "safety"])
    assert judge("a sign", tmp_path, tmp_path) == {"aesthetics": "left", "safety": "left"}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("human", "is unknown"),
        ("no_such_module:judge", "cannot be imported"),
        ("imagepref.eval.judges:no_such_factory", "cannot be imported"),
    ],
)
def test_an_unknown_judge_is_one_error_naming_the_setting(name, says):
    with pytest.raises(UnknownNameError, match=f"label.judge '{name}' {says}; use 'glyph' or 'package.module:factory'"):
        load_judge(name, ["aesthetics"], setting="label.judge")
