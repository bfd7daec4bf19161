"""OCR engines behind one small interface: an image in, words with confidences and boxes out.

Two engines, chosen by measurement on generated-looking text images (see docs/benchmarks.md and
``benchmarks/ocr_truth.py``):

- ``rapidocr`` (default): PaddleOCR's models on onnxruntime; the models ship inside the wheel, so
  it runs offline. The most accurate engine on the truth set (docs/benchmarks.md).
- ``tesseract``: Tesseract 5 through ``tesserocr`` with Debian's language data. Several times
  faster and much weaker: a cheap reward inside RL, not the evaluation default.

Figures from different engines or settings are not comparable, so every engine carries its
``settings`` dict and the evaluation records it next to every figure. Reading many images with one
OCR process per core is ``eval.ocr_pool.read_many``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError

DEFAULT_ENGINE = "rapidocr"
DEBIAN_TESSDATA = "/usr/share/tesseract-ocr/5/tessdata/"

# Measured on blank images crowded with distractor shapes (benchmarks/ocr_truth.py): stray
# readings are punctuation ("-", ":", "。") or one character ("O", "M", "1") with confidence
# 0.5-0.8, while real one-character words ("7", "A") came with confidence above 0.85.
NOISE_MAX_CHARS = 1
NOISE_MIN_CONFIDENCE = 0.8


@dataclass(frozen=True)
class OCRWord:
    """One word read from an image: its text, the engine's confidence in [0, 1], and its box.

    ``box`` is the axis-aligned ``(left, top, right, bottom)`` in the pixels of the image that
    was passed in (not of any upscaled copy).
    """

    text: str
    confidence: float
    box: tuple[int, int, int, int]


class OCREngine(Protocol):
    """What every engine offers: a name, its settings, and ``read``/``read_text``."""

    name: str
    settings: dict[str, Any]

    def read(self, image: Image.Image) -> list[OCRWord]: ...

    def read_text(self, image: Image.Image) -> str: ...


def _alphanumerics(text: str) -> int:
    return sum(ch.isalnum() for ch in text)


def drop_noise(words: list[OCRWord]) -> list[OCRWord]:
    """Drop readings that are only punctuation, and one-character readings with low confidence:
    on blank or busy images these are almost always a stray shape read as "-", "O" or "1"."""
    return [
        word
        for word in words
        if _alphanumerics(word.text) > NOISE_MAX_CHARS
        or (_alphanumerics(word.text) == 1 and word.confidence >= NOISE_MIN_CONFIDENCE)
    ]


def _upscaled(image: Image.Image, min_side: int) -> tuple[Image.Image, float]:
    """Return an RGB copy whose shorter side is at least ``min_side``, and the scale applied."""
    image = image.convert("RGB")
    shorter = min(image.size)
    if min_side <= 0 or shorter >= min_side:
        return image, 1.0
    scale = min_side / shorter
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.BICUBIC), scale


def _box_from_points(points: Any, scale: float) -> tuple[int, int, int, int]:
    array = np.asarray(points, dtype=float).reshape(-1, 2) / scale
    left, top = array.min(axis=0)
    right, bottom = array.max(axis=0)
    return (int(round(left)), int(round(top)), int(round(right)), int(round(bottom)))


class _EngineBase:
    name: str
    settings: dict[str, Any]

    def read(self, image: Image.Image) -> list[OCRWord]:  # pragma: no cover - overridden
        raise NotImplementedError

    def read_text(self, image: Image.Image) -> str:
        """Read ``image`` and join the words with spaces, one-character noise dropped."""
        return " ".join(word.text for word in drop_noise(self.read(image)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"


class RapidOCREngine(_EngineBase):
    """RapidOCR 3.x (PaddleOCR models on onnxruntime) with the settings we measured best.

    No angle classifier (it once flipped a word upside down), detection side limit of type
    ``max`` at 960, no upscaling (``upscale_to=0``), RapidOCR's own detector thresholds
    (``det_thresh``, ``det_box_thresh``, ``det_unclip_ratio``) and no margin (``pad``, a share of
    the shorter side added around the image from its edge pixels), lines read sideways dropped
    (``horizontal_only``, see ``_read_sideways``), and one onnxruntime thread: parallelism comes
    from OCR processes (``read_many``), which use the CPU better than threads. The values were
    chosen on both truth sets (``eval/ocr_truth.py``): upscaling to 256 or 512 px helped the
    other renderer's set, cost the DejaVu set's 64 px images more and was slower; lower thresholds
    and a wider unclip ratio read text on blanks; a margin changed one word (docs/benchmarks.md,
    OCR).
    """

    name = "rapidocr"

    def __init__(
        self,
        use_angle_classifier: bool = False,
        det_limit_type: str = "max",
        det_limit_side_len: int = 960,
        upscale_to: int = 0,
        threads: int = 1,
        text_score: float = 0.5,
        horizontal_only: bool = True,
        det_thresh: float = 0.3,
        det_box_thresh: float = 0.5,
        det_unclip_ratio: float = 1.6,
        pad: float = 0.0,
    ) -> None:
        if det_limit_type not in ("max", "min"):
            raise BadInputError(f"rapidocr det_limit_type must be 'max' or 'min', not {det_limit_type!r}")
        self.settings = {
            "engine": "rapidocr",
            "version": _package_version("rapidocr"),
            "use_angle_classifier": use_angle_classifier,
            "det_limit_type": det_limit_type,
            "det_limit_side_len": det_limit_side_len,
            "upscale_to": upscale_to,
            "threads": threads,
            "text_score": text_score,
            "horizontal_only": horizontal_only,
            "det_thresh": det_thresh,
            "det_box_thresh": det_box_thresh,
            "det_unclip_ratio": det_unclip_ratio,
            "pad": pad,
        }
        try:
            import onnxruntime  # noqa: F401  rapidocr 3.x does not install it and fails late
            from rapidocr import RapidOCR
        except ImportError as error:
            raise ImagePrefError(
                f"the rapidocr OCR engine needs the packages rapidocr and onnxruntime ({error}); "
                "install them with: pip install 'rapidocr>=3.10,<3.11' onnxruntime"
            ) from None
        params = {
            "Global.use_cls": use_angle_classifier,
            "Global.log_level": "error",
            "Global.text_score": text_score,
            "Det.limit_type": det_limit_type,
            "Det.limit_side_len": det_limit_side_len,
            "Det.thresh": det_thresh,
            "Det.box_thresh": det_box_thresh,
            "Det.unclip_ratio": det_unclip_ratio,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": threads,
        }
        try:
            self._ocr = RapidOCR(params=params)
        except Exception as error:  # its model loader raises bare exceptions for missing files
            raise ImagePrefError(
                f"rapidocr could not load its bundled models ({type(error).__name__}: {error}); "
                "reinstall it with: pip install --force-reinstall 'rapidocr>=3.10,<3.11'"
            ) from None

    def read(self, image: Image.Image) -> list[OCRWord]:
        """Read ``image`` into words in reading order (line by line, left to right)."""
        upscaled, scale = _upscaled(image, self.settings["upscale_to"])
        rgb = np.asarray(upscaled)
        margin = round(self.settings["pad"] * min(rgb.shape[:2]))
        if margin:  # a border of the edge pixels, so text near an edge is not cut by the detector
            rgb = np.pad(rgb, ((margin, margin), (margin, margin), (0, 0)), mode="edge")
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        result = self._ocr(bgr)
        if not result.txts:
            return []
        words: list[OCRWord] = []
        for text, confidence, polygon in zip(result.txts, result.scores, result.boxes):
            if self.settings["horizontal_only"] and _read_sideways(polygon, text):
                continue
            box = _box_from_points(np.asarray(polygon, dtype=float) - margin, scale)
            words.extend(_split_line(text, float(confidence), box))
        return words


def _read_sideways(polygon: Any, text: str) -> bool:
    """Whether a detected line was read across its height or at a steep tilt.

    RapidOCR turns a crop taller than 1.5 times its width by 90 degrees before recognising it, so
    a short stroke or shape becomes a string like "200000". Generated text on signs and posters
    runs roughly horizontally; on blank images crowded with shapes, every multi-character false
    reading we saw came from such a sideways or steep (over 30 degrees) crop.
    """
    if sum(ch.isalnum() for ch in text) <= 1:
        return False
    points = np.asarray(polygon, dtype=float).reshape(-1, 2)
    along, across = points[1] - points[0], points[3] - points[0]
    width, height = np.linalg.norm(along), np.linalg.norm(across)
    tilt = abs(np.degrees(np.arctan2(along[1], along[0])))
    return height >= 1.5 * width or 30 < tilt < 150


def _split_line(text: str, confidence: float, box: tuple[int, int, int, int]) -> list[OCRWord]:
    """Split a read line into words; each word's box is the line box cut at the word's character
    offsets. (RapidOCR's own word boxes split words at wide letter spacing, "W IN TER", so the
    line's text is the better source of words and this proportional cut of the box is enough for
    drawing the reading under an image.)"""
    left, top, right, bottom = box
    length = max(1, len(text))
    words, offset = [], 0
    for piece in text.split():
        start = text.index(piece, offset)
        offset = start + len(piece)
        x0 = left + (right - left) * start / length
        x1 = left + (right - left) * offset / length
        words.append(OCRWord(piece, confidence, (int(round(x0)), top, int(round(x1)), bottom)))
    return words


class TesseractEngine(_EngineBase):
    """Tesseract 5 through ``tesserocr``, reading Debian's English language data.

    ``psm`` (page segmentation mode) defaults to the one measured best on generated-looking
    images (sparse text); unlike RapidOCR it reads 64 px images better upscaled (``upscale_to``).
    """

    name = "tesseract"

    def __init__(
        self,
        psm: str = "SPARSE_TEXT",
        upscale_to: int = 256,
        tessdata: str | None = None,
        lang: str = "eng",
    ) -> None:
        try:
            import tesserocr
        except ImportError as error:
            raise ImagePrefError(
                f"the tesseract OCR engine needs the package tesserocr ({error}); install it with: "
                "pip install 'imagepref[tesseract]' (and Debian's tesseract-ocr tesseract-ocr-eng)"
            ) from None
        if not hasattr(tesserocr.PSM, psm):
            choices = ", ".join(name for name in dir(tesserocr.PSM) if name.isupper())
            raise UnknownNameError(f"unknown tesseract psm {psm!r}; choose one of: {choices}")
        tessdata = tessdata or os.environ.get("TESSDATA_PREFIX") or DEBIAN_TESSDATA
        tessdata = tessdata.rstrip("/") + "/"
        if not (Path(tessdata) / f"{lang}.traineddata").is_file():
            raise ImagePrefError(
                f"tesseract language data {lang}.traineddata not found in {tessdata}; install it with: "
                f"sudo apt-get install tesseract-ocr tesseract-ocr-{lang} (or run scripts/install-system-deps)"
            )
        self.settings = {
            "engine": "tesseract",
            "version": tesserocr.tesseract_version().split()[1],
            "psm": psm,
            "upscale_to": upscale_to,
            "lang": lang,
            "tessdata": tessdata,
        }
        self._tesserocr = tesserocr
        self._api = tesserocr.PyTessBaseAPI(path=tessdata, lang=lang, psm=getattr(tesserocr.PSM, psm))

    def read(self, image: Image.Image) -> list[OCRWord]:
        """Read ``image`` into words in Tesseract's reading order."""
        upscaled, scale = _upscaled(image, self.settings["upscale_to"])
        self._api.SetImage(upscaled)
        self._api.Recognize()
        words: list[OCRWord] = []
        level = self._tesserocr.RIL.WORD
        iterator = self._api.GetIterator()
        if iterator is None:
            return words
        for item in self._tesserocr.iterate_level(iterator, level):
            try:
                text = item.GetUTF8Text(level)
            except RuntimeError:  # tesserocr raises "No text returned" for an empty word
                continue
            if not text or not text.strip():
                continue
            confidence = item.Confidence(level) / 100.0
            bounding = item.BoundingBox(level)
            box = _box_from_points([bounding[:2], bounding[2:]], scale) if bounding else (0, 0, 0, 0)
            words.append(OCRWord(text.strip(), confidence, box))
        return words


ENGINES: dict[str, type[_EngineBase]] = {"rapidocr": RapidOCREngine, "tesseract": TesseractEngine}


def _package_version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=16)
def _cached_engine(name: str, frozen_settings: tuple[tuple[str, Any], ...]) -> OCREngine:
    return ENGINES[name](**dict(frozen_settings))


def get_engine(name: str = DEFAULT_ENGINE, **settings: Any) -> OCREngine:
    """Return the OCR engine ``name`` ("rapidocr" or "tesseract") built with ``settings``.

    Engines are cached per (name, settings): the first call loads the models, later calls with
    the same settings return the same instance, so rewards and metrics can call this freely.
    An unknown name raises ``UnknownNameError``; a missing package or language data raises an
    ``ImagePrefError`` that names what to install.
    """
    if name not in ENGINES:
        raise UnknownNameError(f"unknown OCR engine {name!r}; choose one of: {', '.join(ENGINES)}")
    try:
        frozen = tuple(sorted(settings.items()))
        hash(frozen)
    except TypeError:
        raise BadInputError(f"OCR engine settings must be plain values, got {settings!r}") from None
    try:
        return _cached_engine(name, frozen)
    except TypeError as error:
        raise BadInputError(f"bad setting for OCR engine {name!r}: {error}") from None


def text_reader(engine_name: str = DEFAULT_ENGINE, **options: Any) -> Callable[[Image.Image], str]:
    """The one way to get an OCR text reader: ``read(image) -> str``, the text ``engine_name``
    (built by ``get_engine`` with ``options``) reads in an image, in reading order. Simulated
    judges, the glyph-data generator and RL text rewards take this callable, not an engine."""
    return get_engine(engine_name, **options).read_text


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file fully into memory, or raise ``BadInputError`` naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise BadInputError(f"image {path} does not exist; regenerate the image set or remove its cache") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInputError(f"image {path} cannot be read ({error}); delete it and regenerate the image set") from None
