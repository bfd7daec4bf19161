"""OCR engines behind one small interface: an image in, words with confidences and boxes out.

Two engines, chosen by measurement on generated-looking text images (see README and
``benchmarks/ocr_truth.py``):

- ``rapidocr`` (default): PaddleOCR's models on onnxruntime; the models ship inside the wheel, so
  it runs offline. The most accurate engine we measured, about 0.03-0.1 s per image on one core.
- ``tesseract``: Tesseract 5 through ``tesserocr`` with Debian's language data. About ten times
  faster and much weaker: a cheap reward inside RL, not the evaluation default.

Figures from different engines or settings are not comparable, so every engine carries its
``settings`` dict and the evaluation records it next to every figure.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Union

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
    ``max`` at 960, no upscaling (``upscale_to=0``; the field notes suggested 512, but on our
    truth set upscaling 64 and 128 px images to 512 lowered word accuracy from 96 to 93 % and
    took 4.5 times as long), lines read sideways dropped (``horizontal_only``, see
    ``_read_sideways``), and one onnxruntime thread: parallelism comes from one
    OCR process per core (``read_many``), which uses the CPU better than threads.
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
        bgr = np.ascontiguousarray(np.asarray(upscaled)[:, :, ::-1])
        result = self._ocr(bgr)
        if not result.txts:
            return []
        words: list[OCRWord] = []
        for text, confidence, polygon in zip(result.txts, result.scores, result.boxes):
            if self.settings["horizontal_only"] and _read_sideways(polygon, text):
                continue
            words.extend(_split_line(text, float(confidence), _box_from_points(polygon, scale)))
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


def load_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file fully into memory, or raise ``BadInputError`` naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise BadInputError(f"image {path} does not exist; regenerate the image set or remove its cache") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInputError(
            f"image {path} cannot be read ({error}); delete it and regenerate the image set"
        ) from None


ImageSource = Union[Image.Image, str, os.PathLike]
# Keys of ``settings`` that describe an engine rather than configure it.
_DESCRIPTIVE_SETTINGS = ("engine", "version")


def available_cores() -> int:
    """The number of CPU cores this process may run on (respects affinity and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_worker_engine: OCREngine | None = None


def _start_worker(name: str, options: dict[str, Any]) -> None:
    # One single-threaded OCR process per core: pin every math library to one thread before the
    # engine loads, or each worker would start as many threads as there are cores.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    global _worker_engine
    _worker_engine = get_engine(name, **options)


def _read_in_worker(source: ImageSource) -> list[OCRWord]:
    assert _worker_engine is not None, "OCR worker used before _start_worker"
    image = source if isinstance(source, Image.Image) else load_image(source)
    return _worker_engine.read(image)


class OCRPool:
    """A pool of OCR processes, one single-threaded engine per core, kept alive between calls.

    Use it as a context manager when reading several batches (evaluation, benchmarks): starting
    the processes and loading the models costs about a second per worker. With ``workers=1`` it
    reads in this process and starts nothing.
    """

    def __init__(self, engine: str | OCREngine = DEFAULT_ENGINE, workers: int | None = None, **settings: Any) -> None:
        if isinstance(engine, str):
            engine = get_engine(engine, **settings)
        elif settings:
            raise BadInputError("pass OCR settings either to get_engine or to OCRPool, not both")
        self.engine = engine
        self.workers = max(1, workers if workers is not None else available_cores())
        self._pool: Any = None

    def __enter__(self) -> OCRPool:
        if self.workers > 1:
            options = {k: v for k, v in self.engine.settings.items() if k not in _DESCRIPTIVE_SETTINGS}
            # spawn, not fork: the parent may hold torch or onnxruntime thread pools, which a
            # forked child inherits in a locked state.
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_start_worker, initargs=(self.engine.name, options))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def iter_read(self, sources: Sequence[ImageSource]) -> Iterator[list[OCRWord]]:
        """Read each image (or image file) and yield its words, in the order given."""
        if self._pool is None:
            for source in sources:
                yield self.engine.read(source if isinstance(source, Image.Image) else load_image(source))
            return
        yield from self._pool.imap(_read_in_worker, sources, chunksize=1)

    def read_many(self, sources: Sequence[ImageSource], progress: str | None = None) -> list[list[OCRWord]]:
        """Read every image and return the words of each, in order; ``progress`` labels a bar."""
        return list(_with_progress(self.iter_read(sources), len(sources), progress))


def read_many(
    sources: Sequence[ImageSource],
    engine: str | OCREngine = DEFAULT_ENGINE,
    workers: int | None = None,
    progress: str | None = None,
    **settings: Any,
) -> list[list[OCRWord]]:
    """Read many images (PIL images or file paths) with one OCR process per core, in order.

    ``workers`` defaults to the cores this process may use; ``workers=1`` reads in this process.
    The engine is given by name plus settings, or as an engine from ``get_engine`` (its settings
    are rebuilt in each worker). ``progress`` is a label for a progress bar, or None for none.
    """
    with OCRPool(engine, workers=min(workers or available_cores(), max(1, len(sources))), **settings) as pool:
        return pool.read_many(sources, progress=progress)


def _with_progress(items: Iterable[Any], total: int, label: str | None) -> Iterator[Any]:
    if label is None:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)
