"""The default OCR engine's accuracy floors on the two truth sets rendered in code."""

from __future__ import annotations

import random

import pytest

from imagepref.errors import ImagePrefError
from imagepref.eval import ocr_truth
from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_truth import (
    DEGRADATIONS,
    OTHER_SIZES,
    OTHER_STYLES,
    SIZES,
    measure_engine,
    other_fonts_truth_set,
    render_blank,
    render_truth_image,
    truth_set,
)

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


def test_other_fonts_set_is_reproducible_labelled_and_uses_no_dejavu_face():
    first = other_fonts_truth_set(per_cell=1, blanks=4, seed=3)
    second = other_fonts_truth_set(per_cell=1, blanks=4, seed=3)
    assert [i.text for i in first] == [i.text for i in second]
    assert all(a.image.tobytes() == b.image.tobytes() for a, b in zip(first, second))
    assert {(i.size, i.degradation) for i in first if i.text} == {(s, d) for s in OTHER_SIZES for d in OTHER_STYLES}
    assert all(i.image.size == (i.size, i.size) for i in first)
    assert [i.degradation for i in first if not i.text] == ["blank", "blank-busy"] * 2
    assert not any("DejaVu" in i.font for i in first)
    assert other_fonts_truth_set(per_cell=1, blanks=0, seed=4)[0].text != first[0].text


def test_other_fonts_set_names_the_missing_font_package(monkeypatch):
    missing = (ocr_truth.OTHER_FONTS[0][0].with_name("NoSuchFace.ttf"), "fonts-liberation2")
    monkeypatch.setattr(ocr_truth, "OTHER_FONTS", (missing, *ocr_truth.OTHER_FONTS[1:]))
    with pytest.raises(ImagePrefError, match="apt-get install fonts-liberation2 ") as caught:
        other_fonts_truth_set(per_cell=1)
    assert "\n" not in str(caught.value)


def test_default_engine_meets_the_floors_on_other_fonts():
    # A small sample (2 images per size and style, 8 blanks), so the default run stays quick;
    # benchmarks/ocr_truth.py measures the full set (docs/benchmarks.md, OCR).
    images = other_fonts_truth_set(per_cell=2, blanks=8, seed=0)
    figures = measure_engine(get_engine(), images, workers=1)
    print(figures)
    assert figures["all_text"]["images"] == 2 * len(OTHER_SIZES) * len(OTHER_STYLES)
    assert figures["all_text"]["word_accuracy"] >= 0.90
    assert figures["by_size"][64]["word_accuracy"] >= 0.85
    assert figures["blank_no_text_rate"] == 1.0
    assert figures["blank_busy_no_text_rate"] >= 0.75
