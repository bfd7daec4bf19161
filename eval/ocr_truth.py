"""A truth set for the OCR engines, rendered in code: known strings, clean and degraded, at the
sizes generators produce, plus blank images.

It answers "how far can we trust the reading?" before any checkpoint is scored: an engine that
cannot read clean rendered text, or that reads text on blank images, would make every
text-rendering figure meaningless. Fonts are the DejaVu faces that matplotlib ships, so the set is
the same on every machine. ``benchmarks/ocr_truth.py`` prints the figures per engine, size and
degradation; ``tests/eval/test_ocr_truth.py`` holds the accuracy floors.
"""

from __future__ import annotations

import io
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from imagepref.eval.metrics import score_text
from imagepref.eval.ocr import OCREngine, OCRWord, drop_noise
from imagepref.eval.ocr_pool import OCRPool

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSans-Oblique.ttf",
)
SIZES = (64, 128, 256)
DEGRADATIONS = ("clean", "styled", "rotated", "blurred", "jpeg", "noisy")
# Short, common words, as generators are asked to draw: signs, labels, one-line slogans.
WORDS = """
open stop sale exit cafe bakery hotel books music coffee pizza taxi bank park north south fresh
free hello world love peace dream hope sun moon star river lake city road home garden market
street night light fire water earth wind ocean forest paper green blue red gold silver black
white apple lemon honey bread milk tea jazz rock dance party winter summer spring autumn
welcome thanks happy lucky magic royal grand super quick brown fox bold bright quiet wild
radio video game play news mail shop store club team school class study exam space rocket
""".split()
NUMBERS = ("24", "42", "99", "2026", "7", "100", "3.50", "No.1")

# Words per image by size: 64 px images hold a short word or two (at most 9 characters), as the
# glyph world draws them; larger images hold up to four words.
MAX_WORDS = {64: 2, 128: 3, 256: 4}


@dataclass
class TruthImage:
    """One image of the truth set: the image, the text drawn on it ("" for a blank), and how."""

    image: Image.Image
    text: str
    size: int
    degradation: str
    font: str


def _phrase(rng: random.Random, size: int) -> str:
    count = rng.randint(1, MAX_WORDS[size])
    words = [rng.choice(WORDS) if rng.random() > 0.12 else rng.choice(NUMBERS) for _ in range(count)]
    while size == 64 and len(" ".join(words)) > 9:
        words = words[:-1] if len(words) > 1 else [words[0][:6]]
    case = rng.choice((str.upper, str.lower, str.title))
    return case(" ".join(words))


def _background(rng: random.Random, size: int, styled: bool) -> Image.Image:
    if not styled:
        shade = rng.randint(225, 255)
        return Image.new("RGB", (size, size), (shade, shade, shade))
    # A gradient with soft blobs behind the text: closer to a generated scene than a flat fill.
    top = np.array([rng.randint(0, 255) for _ in range(3)], dtype=float)
    bottom = np.array([rng.randint(0, 255) for _ in range(3)], dtype=float)
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    pixels = top * (1 - ramp) + bottom * ramp
    canvas = Image.fromarray(np.repeat(pixels, size, axis=1).astype(np.uint8))
    blobs = canvas.copy()
    _distractors(blobs, rng, rng.randint(2, 6))
    return Image.blend(canvas, blobs.filter(ImageFilter.GaussianBlur(size / 40)), 0.35)


def _contrasting_colour(rng: random.Random, background: Image.Image) -> tuple[int, int, int]:
    mean = np.asarray(background, dtype=float).mean()
    for _ in range(50):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if abs(sum(colour) / 3 - mean) > 90:
            return colour  # type: ignore[return-value]
    return (0, 0, 0) if mean > 127 else (255, 255, 255)


def _draw_text(
    canvas: Image.Image, text: str, font_file: str, colour: tuple[int, int, int], rng: random.Random
) -> None:
    # Fit the text to 55-90 % of the width (and at most 45 % of the height), then place it with
    # some jitter, as a generator would.
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    target = width * rng.uniform(0.55, 0.9)
    font_size = 8
    while True:
        font = ImageFont.truetype(str(FONT_DIR / font_file), font_size + 2)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left > target or bottom - top > height * 0.45:
            break
        font_size += 2
    font = ImageFont.truetype(str(FONT_DIR / font_file), font_size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) / 2 - left + rng.uniform(-0.04, 0.04) * width
    y = (height - (bottom - top)) / 2 - top + rng.uniform(-0.2, 0.2) * height
    draw.text((x, y), text, font=font, fill=colour)


def _distractors(canvas: Image.Image, rng: random.Random, count: int) -> None:
    draw = ImageDraw.Draw(canvas)
    size = canvas.size[0]
    for _ in range(count):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        r = rng.uniform(0.04, 0.15) * size
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        shape = rng.choice(("ellipse", "rectangle", "line"))
        if shape == "line":
            draw.line(
                (x, y, x + rng.uniform(-2, 2) * r, y + rng.uniform(-2, 2) * r), fill=colour, width=max(1, size // 64)
            )
        else:
            getattr(draw, shape)((x - r, y - r, x + r, y + r), fill=colour)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def render_truth_image(text: str, size: int, degradation: str, rng: random.Random) -> TruthImage:
    """Render ``text`` at ``size`` px with one ``degradation`` (see ``DEGRADATIONS``).

    Drawn at 4x and downsampled, as a codec decodes at its output size; degradations add colour
    and gradient backgrounds, rotation up to 8 degrees, blur, JPEG noise, or all of them.
    """
    scale = 4
    styled = degradation in ("styled", "noisy")
    font = rng.choice(FONTS) if degradation != "clean" else rng.choice(FONTS[:4])
    canvas = _background(rng, size * scale, styled)
    colour = (rng.randint(0, 60),) * 3 if not styled else _contrasting_colour(rng, canvas)
    _draw_text(canvas, text, font, colour, rng)  # type: ignore[arg-type]
    if degradation in ("rotated", "noisy"):
        fill = canvas.getpixel((0, 0))
        canvas = canvas.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    image = canvas.resize((size, size), Image.Resampling.LANCZOS)
    if degradation in ("blurred", "noisy"):
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.5, 0.9) * size / 128))
    if degradation == "noisy":
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 10, (size, size, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype(np.uint8))
    if degradation in ("jpeg", "noisy"):
        image = _jpeg(image, rng.randint(20, 40))
    return TruthImage(image=image, text=text, size=size, degradation=degradation, font=font)


def render_blank(size: int, rng: random.Random, busy: bool) -> TruthImage:
    """An image with no text: a plain or gradient background, or one crowded with shapes."""
    canvas = _background(rng, size, styled=rng.random() < 0.5)
    if busy:
        _distractors(canvas, rng, rng.randint(4, 12))
    return TruthImage(image=canvas, text="", size=size, degradation="blank-busy" if busy else "blank", font="")


def truth_set(
    per_cell: int = 10,
    sizes: tuple[int, ...] = SIZES,
    degradations: tuple[str, ...] = DEGRADATIONS,
    blanks: int = 20,
    seed: int = 0,
) -> list[TruthImage]:
    """Render ``per_cell`` images for every (size, degradation), and ``blanks`` blank images
    (half plain, half busy with shapes, spread over the sizes). Same seed, same set."""
    rng = random.Random(seed)
    images = [
        render_truth_image(_phrase(rng, size), size, degradation, rng)
        for size in sizes
        for degradation in degradations
        for _ in range(per_cell)
    ]
    images += [render_blank(sizes[i % len(sizes)], rng, busy=i % 2 == 1) for i in range(blanks)]
    return images


def score_truth_readings(images: list[TruthImage], readings: list[list[OCRWord]]) -> dict[str, Any]:
    """Word accuracy and exact match per (size, degradation), overall for text images, and the
    rate of images read as having no text among plain blanks (``blank_no_text_rate``) and blanks
    crowded with shapes (``blank_busy_no_text_rate``); noise words dropped as in evaluation."""
    cells: dict[tuple[int, str], list[Any]] = defaultdict(list)
    blank_clear: dict[str, list[bool]] = defaultdict(list)
    for item, words in zip(images, readings, strict=True):
        reading = " ".join(w.text for w in drop_noise(words))
        if not item.text:
            blank_clear[item.degradation].append(not reading.strip())
            continue
        cells[(item.size, item.degradation)].append(score_text(item.text, reading))
    figures: dict[str, Any] = {"cells": {}, "by_size": {}, "by_degradation": {}}

    def summarise(scores: list[Any]) -> dict[str, float]:
        return {
            "images": len(scores),
            "word_accuracy": sum(s.matched_words for s in scores) / sum(s.target_words for s in scores),
            "exact_match": sum(bool(s.exact_match) for s in scores) / len(scores),
        }

    for (size, degradation), scores in sorted(cells.items()):
        figures["cells"][f"{size}px/{degradation}"] = summarise(scores)
    for size in sorted({s for s, _ in cells}):
        figures["by_size"][size] = summarise([x for (s, _), v in cells.items() if s == size for x in v])
    for degradation in dict.fromkeys(d for _, d in cells):
        figures["by_degradation"][degradation] = summarise(
            [x for (_, d), v in cells.items() if d == degradation for x in v]
        )
    if cells:
        figures["all_text"] = summarise([x for v in cells.values() for x in v])
    for kind, clear in blank_clear.items():
        key = kind.replace("-", "_")
        figures[f"{key}_no_text_rate"] = sum(clear) / len(clear)
        figures[f"{key}s"] = len(clear)
    return figures


def measure_engine(engine: OCREngine, images: list[TruthImage], workers: int | None = None) -> dict[str, Any]:
    """Read the truth set with ``engine`` (one process per core) and return its figures, the
    engine's settings and the wall-clock seconds per image."""
    with OCRPool(engine, workers=workers) as pool:
        started = time.perf_counter()
        readings = pool.read_many([item.image for item in images])
        seconds = time.perf_counter() - started
    figures = score_truth_readings(images, readings)
    figures["engine"] = engine.settings
    figures["seconds_per_image"] = seconds / len(images)
    figures["workers"] = pool.workers
    return figures
