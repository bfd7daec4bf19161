"""The default OCR engine's accuracy floors on the truth set rendered in code."""

from __future__ import annotations

import random

import pytest

from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_truth import DEGRADATIONS, SIZES, measure_engine, render_blank, render_truth_image, truth_set

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_truth_set_is_reproducible_and_labelled():
    first, second = truth_set(per_cell=1, blanks=2, seed=4), truth_set(per_cell=1, blanks=2, seed=4)
    assert [i.text for i in first] == [i.text for i in second]
    assert first[0].image.tobytes() == second[0].image.tobytes()
    assert {(i.size, i.degradation) for i in first if i.text} == {(s, d) for s in SIZES for d in DEGRADATIONS}
    assert all(i.image.size == (i.size, i.size) for i in first)
    assert [i.degradation for i in first if not i.text] == ["blank", "blank-busy"]


def test_default_engine_meets_the_floors():
    clean = truth_set(per_cell=10, degradations=("clean",), blanks=0, seed=0)
    small = truth_set(per_cell=8, sizes=(64,), blanks=0, seed=0)
    rng = random.Random(0)
    blanks = [render_blank(SIZES[i % 3], rng, busy=False) for i in range(50)]
    figures = measure_engine(get_engine(), clean + small + blanks, workers=2)
    print(figures)
    clean_scores = figures["by_degradation"]["clean"]
    assert clean_scores["images"] >= 30 + 8
    assert clean_scores["word_accuracy"] >= 0.95
    assert figures["by_size"][64]["word_accuracy"] >= 0.85
    assert figures["blank_no_text_rate"] >= 0.98


def test_a_misspelt_rendering_is_not_read_as_the_target():
    # Guards the floors against an engine that echoes whatever looks like a word: a rendered
    # "Bakrey" must not be read as "Bakery".
    image = render_truth_image("Bakrey", 128, "clean", random.Random(1)).image
    assert get_engine().read_text(image) == "Bakrey"
