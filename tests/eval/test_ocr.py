"""The OCR engines through their real packages: reading, caching, parallel reading, errors."""

from __future__ import annotations

import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError
from imagepref.eval.ocr import OCRWord, RapidOCREngine, drop_noise, get_engine
from imagepref.eval.ocr_pool import read_many
from imagepref.eval.ocr_truth import FONT_DIR

pytestmark = pytest.mark.integration


def rendered(text: str, size: int = 256, at: tuple[int, int] = (24, 100)) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    font = ImageFont.truetype(str(FONT_DIR / "DejaVuSans.ttf"), size // 9)
    ImageDraw.Draw(image).text(at, text, font=font, fill="black")
    return image


@pytest.mark.parametrize("name", ["rapidocr", "tesseract"])
def test_engine_reads_words_with_boxes_in_image_pixels(name):
    engine = get_engine(name)
    words = engine.read(rendered("Fresh Bread 42"))
    assert [w.text for w in words] == ["Fresh", "Bread", "42"]
    assert engine.read_text(rendered("Fresh Bread 42")) == "Fresh Bread 42"
    for word in words:
        assert 0.5 < word.confidence <= 1.0
        left, top, right, bottom = word.box
        # The text sits at y 100..130 of the 256 px image, whatever upscaling the engine did.
        assert 90 <= top < bottom <= 140 and 0 <= left < right <= 256
    assert words[0].box[2] <= words[1].box[0] + 4  # left to right
    assert engine.settings["engine"] == name and engine.settings["version"]


def test_rapidocr_margin_and_upscaling_keep_boxes_in_image_pixels():
    engine = get_engine("rapidocr", pad=0.15, upscale_to=512, det_box_thresh=0.4)
    assert engine.settings["pad"] == 0.15 and engine.settings["det_box_thresh"] == 0.4
    words = engine.read(rendered("Fresh Bread 42"))
    assert [w.text for w in words] == ["Fresh", "Bread", "42"]
    for word in words:
        left, top, right, bottom = word.box
        assert 90 <= top < bottom <= 140 and 0 <= left < right <= 256


def test_blank_image_reads_nothing():
    assert get_engine().read(Image.new("RGB", (128, 128), (240, 240, 240))) == []


def test_engines_are_cached_per_settings():
    assert get_engine() is get_engine("rapidocr")
    other = get_engine("rapidocr", upscale_to=256)
    assert other is not get_engine() and other.settings["upscale_to"] == 256
    assert get_engine().settings["use_angle_classifier"] is False
    assert get_engine().settings["det_limit_type"] == "max"


def test_unknown_engine_and_bad_settings():
    with pytest.raises(UnknownNameError, match="rapidocr, tesseract"):
        get_engine("easyocr")
    with pytest.raises(BadInputError, match="bad setting"):
        get_engine("rapidocr", colour="red")
    with pytest.raises(UnknownNameError, match="psm"):
        get_engine("tesseract", psm="SIDEWAYS")


def test_missing_packages_name_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tesserocr", None)  # makes `import tesserocr` fail
    with pytest.raises(ImagePrefError, match=r"pip install 'imagepref\[tesseract\]'"):
        get_engine("tesseract", upscale_to=300)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImagePrefError, match="pip install .*onnxruntime"):
        RapidOCREngine()


def test_missing_tesseract_language_data(tmp_path):
    with pytest.raises(ImagePrefError, match="apt-get install tesseract-ocr tesseract-ocr-eng") as caught:
        get_engine("tesseract", tessdata=str(tmp_path))
    assert "\n" not in str(caught.value)


def test_drop_noise_keeps_words_and_confident_single_characters():
    words = [
        OCRWord("OPEN", 0.55, (0, 0, 1, 1)),
        OCRWord("7", 0.95, (0, 0, 1, 1)),
        OCRWord("O", 0.6, (0, 0, 1, 1)),
        OCRWord("-:", 0.99, (0, 0, 1, 1)),
        OCRWord("•1", 0.58, (0, 0, 1, 1)),
    ]
    assert [w.text for w in drop_noise(words)] == ["OPEN", "7"]


def test_read_many_in_parallel_matches_serial_and_keeps_order(tmp_path):
    texts = ["North", "South", "Honey", "Radio", "Pizza", "Market"]
    images = [rendered(t, size=128, at=(12, 50)) for t in texts]
    path = tmp_path / "from-disk.png"
    images[2].save(path)
    sources = [images[0], images[1], path, *images[3:]]
    serial = read_many(sources, workers=1)
    parallel = read_many(sources, workers=2)
    assert parallel == serial
    assert [" ".join(w.text for w in words) for words in parallel] == texts


@pytest.mark.parametrize("workers", [1, 2])
def test_read_many_names_a_corrupt_or_missing_image(tmp_path, workers):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(BadInputError, match="corrupt.png cannot be read"):
        read_many([rendered("Hi"), corrupt], workers=workers)
    with pytest.raises(BadInputError, match="missing.png does not exist"):
        read_many([tmp_path / "missing.png"], workers=workers)
