"""A truth set for the OCR engines, rendered in code: known strings, clean and degraded, at the
sizes generators produce, plus blank images.

It answers "how far can we trust the reading?" before any checkpoint is scored: an engine that
cannot read clean rendered text, or that reads text on blank images, would make every
text-rendering figure meaningless. Two sets, both seeded and drawn in code:

- ``truth_set``: the DejaVu faces that matplotlib ships (the glyph world's fonts too), clean and
  degraded, at 64, 128 and 256 px;
- ``other_fonts_truth_set``: another renderer, with fonts from Debian's font packages and
  matplotlib's STIX and Computer Modern, at 64, 96, 128 and 256 px, saturated, outlined,
  textured, low-contrast and degraded. Settings are chosen on both, since a set drawn like the
  generator's own images overstates how well small images are read.

``benchmarks/ocr_truth.py`` prints the figures per engine, size and style;
``tests/eval/test_ocr_truth.py`` holds the accuracy floors.
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

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.eval.metrics import score_text
from imagepref.eval.ocr import OCREngine, OCRWord, drop_noise
from imagepref.eval.ocr_pool import OCRPool
from imagepref.eval.statistics import clustered_proportion

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

    def summarise(scores: list[Any]) -> dict[str, Any]:
        # Words of one image are read together, so the interval counts images, not words.
        words = clustered_proportion(
            list(range(len(scores))), [s.matched_words for s in scores], [s.target_words for s in scores]
        )
        return {
            "images": len(scores),
            "word_accuracy": sum(s.matched_words for s in scores) / sum(s.target_words for s in scores),
            "word_accuracy_ci": words["ci"],
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
    """Read the truth set with ``engine`` (a pool sized by ``choose_workers`` unless ``workers``
    is given) and return its figures, the engine's settings and the wall-clock seconds per image."""
    with OCRPool(engine, workers=workers, images=len(images)) as pool:
        started = time.perf_counter()
        readings = pool.read_many([item.image for item in images])
        seconds = time.perf_counter() - started
    figures = score_truth_readings(images, readings)
    figures["engine"] = engine.settings
    figures["seconds_per_image"] = seconds / len(images)
    figures["workers"] = pool.workers
    return figures


# ---------------------------------------------------------------------------------------------
# A second truth set from another renderer: fonts no part of this project draws with (Debian's
# Liberation, GNU FreeFont and URW base-35 families, and matplotlib's STIX and Computer Modern),
# sizes between the generators' output sizes, saturated and low-contrast colours, textured
# backgrounds, outlines and shadows, and several resampling filters. Settings chosen on the
# DejaVu set alone overstate how well small images are read (docs/benchmarks.md, OCR).

_DEBIAN_FONTS = Path("/usr/share/fonts")
# (font file, the Debian package that installs it; None for a font matplotlib ships).
OTHER_FONTS: tuple[tuple[Path, str | None], ...] = (
    *(
        (_DEBIAN_FONTS / "truetype/liberation2" / f"Liberation{face}.ttf", "fonts-liberation2")
        for face in ("Sans-Regular", "Sans-Bold", "Serif-Regular", "Serif-Bold", "Mono-Regular", "Sans-Italic")
    ),
    *(
        (_DEBIAN_FONTS / "truetype/freefont" / f"{face}.ttf", "fonts-freefont-ttf")
        for face in ("FreeSans", "FreeSansBold", "FreeSerif", "FreeSerifBold", "FreeMonoBold")
    ),
    *(
        (_DEBIAN_FONTS / "opentype/urw-base35" / f"{face}.otf", "fonts-urw-base35")
        for face in (
            "NimbusSans-Regular",
            "NimbusSansNarrow-Bold",
            "NimbusRoman-Bold",
            "C059-Roman",
            "P052-Bold",
            "URWBookman-Demi",
            "URWGothic-Book",
            "URWGothic-Demi",
            "NimbusMonoPS-Bold",
        )
    ),
    *((FONT_DIR / face, None) for face in ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "cmss10.ttf", "cmb10.ttf")),
)
OTHER_SIZES = (64, 96, 128, 256)
OTHER_STYLES = ("plain", "coloured", "outlined", "textured", "low-contrast", "degraded")
# Words that the DejaVu set does not draw: settings chosen on one set are checked on other text.
OTHER_WORDS = """
arrival gate bus tram ferry hall museum library cinema theatre bar grill salon tattoo florist
deli vegan sushi noodle tacos bagel donut juice wine beer snack lunch dinner brunch menu daily
special closed sorry push pull enter only private parking toilet lift floor level zone danger
caution wet paint keep calm smile shine glow neon retro vintage urban local craft organic fair
tower bridge castle harbor island valley canyon desert glacier meadow orchard farm barn ranch
pixel robot laser comet orbit planet galaxy nova zebra tiger eagle panda koala otter whale
""".split()
OTHER_NUMBERS = ("5", "12", "30", "48", "365", "1999", "7.99", "24/7", "50%")


def _other_fonts() -> tuple[Path, ...]:
    """The other-renderer fonts, or an ImagePrefError naming the Debian packages to install."""
    missing = sorted({package for path, package in OTHER_FONTS if package and not path.is_file()})
    if missing:
        raise ImagePrefError(
            f"the other-fonts OCR truth set needs the Debian font packages {', '.join(missing)}; install them with: "
            f"sudo apt-get install {' '.join(missing)} (or run scripts/install-system-deps)"
        )
    return tuple(path for path, _ in OTHER_FONTS)


# The longest text per image size, so that letters can stay at least 8 px tall.
OTHER_MAX_CHARS = {64: 9, 96: 10, 128: 12, 256: 20}


def _other_phrase(rng: random.Random, size: int) -> str:
    count = rng.randint(1, 2 if size < 128 else 3)
    words = [rng.choice(OTHER_WORDS) if rng.random() > 0.15 else rng.choice(OTHER_NUMBERS) for _ in range(count)]
    limit = OTHER_MAX_CHARS.get(size, size // 12)
    while len(" ".join(words)) > limit:
        words = words[:-1] if len(words) > 1 else [words[0][:limit]]
    case = rng.choice((str.upper, str.lower, str.title, str.upper))
    return case(" ".join(words))


def _luminance(colour: tuple[float, ...]) -> float:
    """Relative luminance (WCAG) of an sRGB colour given as 0-255 values."""
    channels = np.asarray(colour[:3], dtype=float) / 255
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def _contrast(first: tuple[float, ...], second: tuple[float, ...]) -> float:
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def _hsv_colour(rng: random.Random, saturation: tuple[float, float], value: tuple[float, float]) -> tuple[int, ...]:
    import colorsys

    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(*value))
    return tuple(int(round(c * 255)) for c in rgb)


def _ink_for(rng: random.Random, background: tuple[float, ...], contrast: tuple[float, float]) -> tuple[int, ...]:
    """A random ink colour whose WCAG contrast with ``background`` lies in ``contrast``."""
    for _ in range(400):
        ink = _hsv_colour(rng, (0.0, 1.0), (0.0, 1.0))
        if contrast[0] <= _contrast(ink, background) <= contrast[1]:
            return ink
    return (0, 0, 0) if _luminance(background) > 0.18 else (255, 255, 255)


def _texture(rng: random.Random, size: int, base: tuple[int, ...]) -> Image.Image:
    """Stripes, a checkerboard, or a smoothed noise field (photo-like) around ``base``."""
    kind = rng.choice(("stripes", "checker", "field"))
    grid = np.mgrid[0:size, 0:size].astype(float)
    period = rng.uniform(0.06, 0.2) * size
    if kind == "stripes":
        angle = rng.uniform(0, np.pi)
        pattern = np.sin((grid[0] * np.cos(angle) + grid[1] * np.sin(angle)) * 2 * np.pi / period)
    elif kind == "checker":
        pattern = ((grid[0] // period + grid[1] // period) % 2) * 2 - 1
    else:
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 1, (size, size))
        field = Image.fromarray(((noise - noise.min()) / np.ptp(noise) * 255).astype(np.uint8))
        smooth = np.asarray(field.filter(ImageFilter.GaussianBlur(period / 3)), dtype=float)
        pattern = (smooth - smooth.mean()) / (smooth.std() + 1e-6) / 2
    swing = rng.uniform(25, 55)
    pixels = np.asarray(base, dtype=float)[None, None, :] + swing * np.clip(pattern, -1, 1)[:, :, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _fit_font(
    font_path: Path, text: str, size: int, scale: int, rng: random.Random, stroke: int
) -> ImageFont.FreeTypeFont:
    """The largest font size whose text spans at most a random 40-92 % of the ``size`` px canvas
    and 40 % of its height; widened to 95 % where that would draw it under 8 px a letter at the
    output size (``size / scale``)."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))

    def largest(target: float) -> ImageFont.FreeTypeFont:
        font_size = 6
        while font_size < size:
            font = ImageFont.truetype(str(font_path), font_size + 1)
            left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=stroke)
            if right - left > target or bottom - top > size * 0.4:
                break
            font_size += 1
        return ImageFont.truetype(str(font_path), font_size)

    font = largest(size * rng.uniform(0.4, 0.92))
    return font if font.size >= 8 * scale else largest(size * 0.95)


def render_other_truth_image(
    text: str, size: int, style: str, rng: random.Random, fonts: tuple[Path, ...] | None = None
) -> TruthImage:
    """Render ``text`` at ``size`` px in one of ``OTHER_STYLES``, with a font from ``OTHER_FONTS``.

    Unlike ``render_truth_image`` the drawing scale (1x, 2x or 3x) and the resampling filter
    vary, and so do the ink and background: saturated colours at a contrast ratio of 3 or more,
    outlines and drop shadows, stripes, checks and noise fields behind the text, a low contrast
    ratio of 2-3, and blur, motion, rotation, noise and JPEG together (``degraded``).
    """
    if style not in OTHER_STYLES:
        raise BadInputError(f"unknown truth-set style {style!r}; choose one of: {', '.join(OTHER_STYLES)}")
    fonts = fonts or _other_fonts()
    font_path = rng.choice(fonts)
    scale = rng.choice((1, 2, 3))
    canvas_size = size * scale
    shadow: tuple[int, ...] | None = None
    stroke, stroke_fill = 0, None
    if style == "plain":
        background = _hsv_colour(rng, (0.0, 0.15), (0.85, 1.0))
        ink = _ink_for(rng, background, (7.0, 21.0))
    elif style == "coloured":
        background = _hsv_colour(rng, (0.5, 1.0), (0.3, 0.95))
        ink = _ink_for(rng, background, (3.0, 21.0))
    elif style == "outlined":
        background = _hsv_colour(rng, (0.0, 1.0), (0.2, 1.0))
        ink = _ink_for(rng, background, (1.0, 21.0))
        outline = _ink_for(rng, ink, (4.5, 21.0))
        if rng.random() < 0.5:
            stroke, stroke_fill = max(1, round(canvas_size * rng.uniform(0.008, 0.02))), outline
        else:
            shadow = outline
    elif style == "textured":
        background = _hsv_colour(rng, (0.0, 1.0), (0.25, 0.85))
        ink = _ink_for(rng, background, (4.5, 21.0))
    elif style == "low-contrast":
        background = _hsv_colour(rng, (0.0, 0.6), (0.2, 1.0))
        ink = _ink_for(rng, background, (2.0, 3.0))
    else:  # degraded
        background = _hsv_colour(rng, (0.0, 0.8), (0.3, 1.0))
        ink = _ink_for(rng, background, (4.0, 21.0))
    canvas = (
        _texture(rng, canvas_size, background)
        if style == "textured"
        else Image.new("RGB", (canvas_size, canvas_size), background)
    )
    font = _fit_font(font_path, text, canvas_size, scale, rng, stroke)
    draw = ImageDraw.Draw(canvas)
    offset = max(1, round(canvas_size * rng.uniform(0.01, 0.025))) if shadow is not None else 0
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    # Centred with some jitter, but the text (and its shadow) stays whole inside the image.
    free_x, free_y = canvas_size - (right - left) - offset, canvas_size - (bottom - top) - offset
    x = min(max(free_x / 2 + rng.uniform(-0.05, 0.05) * canvas_size, 0.02 * free_x), 0.98 * free_x) - left
    y = min(max(free_y / 2 + rng.uniform(-0.22, 0.22) * canvas_size, 0.05 * free_y), 0.95 * free_y) - top
    if shadow is not None:
        draw.text((x + offset, y + offset), text, font=font, fill=shadow)
    draw.text((x, y), text, font=font, fill=ink, stroke_width=stroke, stroke_fill=stroke_fill)
    if style == "degraded":
        canvas = canvas.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, fillcolor=background)
    resample = rng.choice((Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.BOX))
    image = canvas.resize((size, size), resample) if scale > 1 else canvas
    if style == "degraded":
        if rng.random() < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.4, 0.8) * size / 128))
        else:  # a short horizontal motion blur
            length = 3 if size < 128 else 5
            kernel = [0.0] * (length * length)
            kernel[length * (length // 2) : length * (length // 2 + 1)] = [1.0] * length
            image = image.filter(ImageFilter.Kernel((length, length), kernel, scale=length))
        noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(6, 14), (size, size, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=float) + noise, 0, 255).astype(np.uint8))
        image = _jpeg(image, rng.randint(25, 50))
    return TruthImage(image=image, text=text, size=size, degradation=style, font=font_path.name)


def other_fonts_truth_set(
    per_cell: int = 10,
    sizes: tuple[int, ...] = OTHER_SIZES,
    styles: tuple[str, ...] = OTHER_STYLES,
    blanks: int = 24,
    seed: int = 0,
) -> list[TruthImage]:
    """Render ``per_cell`` images for every (size, style) of the other-fonts set, and ``blanks``
    textured or plain images with no text (half crowded with shapes). Same seed, same set.
    Needs Debian's fonts-liberation2, fonts-freefont-ttf and fonts-urw-base35."""
    fonts = _other_fonts()
    rng = random.Random(seed)
    images = [
        render_other_truth_image(_other_phrase(rng, size), size, style, rng, fonts)
        for size in sizes
        for style in styles
        for _ in range(per_cell)
    ]
    for index in range(blanks):
        size = sizes[index % len(sizes)]
        base = _hsv_colour(rng, (0.0, 1.0), (0.2, 1.0))
        canvas = _texture(rng, size, base) if index % 4 < 2 else Image.new("RGB", (size, size), base)
        busy = index % 2 == 1
        if busy:
            _distractors(canvas, rng, rng.randint(4, 12))
        images.append(TruthImage(canvas, "", size, "blank-busy" if busy else "blank", ""))
    return images


TRUTH_SETS = {"dejavu": truth_set, "other-fonts": other_fonts_truth_set}
