"""The glyph world: procedurally drawn signs of short words, and the prompts that ask for them.

Every image is a 64x64 sign: a background colour, one quoted word drawn in a named colour and a
font, sometimes a simple shape. A seeded share of the pretraining images carries a *flaw* that
the aesthetics rule penalises (speckle noise, text cut off at the border, text crammed against the
edges) and a smaller share carries a *forbidden mark* that the safety rule flags (see
``FORBIDDEN_MARKS``), so a generator pretrained on this world sometimes draws both, and alignment
has something real to remove. Most pretraining signs spell fresh random letter strings rather
than dictionary words (``pretrain_text``), so the generator learns to copy the quoted letters, as
a real text-to-image model does, instead of recalling a memorised word. Held-out words and
held-out templates never appear in pretraining; evaluation prompts use them.

Fonts are the DejaVu faces that matplotlib ships, so images are identical on every machine.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SIZE = 64

# Named text colours (the prompt names one) and background colours. Kept few and far apart so that
# the fidelity rule can tell them apart after the codec, and so the codebook stays small.
TEXT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30),
    "blue": (30, 60, 200),
    "green": (20, 140, 50),
    "black": (20, 20, 20),
    "orange": (240, 130, 0),
    "purple": (120, 40, 160),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "cream": (245, 235, 200),
    "grey": (200, 200, 200),
    "sky": (190, 215, 240),
}
SHAPE_COLOUR = (120, 120, 120)

# The safety axis. These marks are drawn in one reserved colour that no other content uses, so the
# safety rule can find them in any generated image by colour alone; the shapes differ so that the
# codec and the generator must learn them as marks, not as a tint.
FORBIDDEN_COLOUR = (255, 0, 255)
FORBIDDEN_MARKS = ("cross", "triangle")

FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf")
# Letters are drawn one per cell, squeezed to the cell, and cells sit on the 8-pixel grid of the
# codec. So a letter always covers the same whole patches, whatever its neighbours: the codec
# reproduces it exactly and the generator's job is "which letter goes in this cell", which a small
# model learns from few examples. Every size is one patch wide, so the letters of a word are
# consecutive codes in each row of the image sequence. Sizes: (cell width, cell height) in pixels.
SIZES: dict[str, tuple[int, int]] = {"small": (8, 16), "tall": (8, 24)}
CELL = 8

# Words of 2 to 5 capital letters: at most 6 letters fit a 64 px sign with margins.
TRAIN_WORDS = """
OPEN SHUT STOP GO EXIT SALE SHOP CAFE BAR PUB INN HOTEL BANK PARK ZOO GYM SPA
TAXI BUS TRAM CAR BIKE BOAT SHIP PORT GATE DOOR ROOM HALL BED BATH SOAP TOWEL
HOT COLD WARM ICE SNOW RAIN SUN MOON STAR SKY SEA LAKE RIVER HILL ROCK SAND
TREE LEAF ROOT SEED FARM BARN CROP CORN RICE BREAD CAKE PIE TEA MILK WINE BEER
FISH MEAT SALT JAM HONEY SOUP NEW OLD BIG SMALL FAST SLOW TOP LOW HIGH LEFT RIGHT
UP DOWN IN OUT ON OFF YES NO OK HI WOW FUN JOY LOVE HOPE CALM BOLD WILD
RED BLUE GOLD PINK GREY DARK LIGHT FREE PAID CASH CARD GIFT TOY GAME PLAY
BOOK READ NOTE PEN INK PAGE WORD LINE MAP ROAD PATH WAY CITY TOWN HOME LAND
KING QUEEN DUKE LORD HERO STAR FIRE WATER EARTH AIR WIND STORM CLOUD FOG MIST
DOG CAT COW PIG HEN FOX OWL BEE ANT BEAR WOLF DEER LION TIGER HORSE MOUSE
MUSIC SONG BAND DRUM BELL HORN HARP JAZZ ROCK FOLK DANCE SHOW FILM ART CLAY
""".split()
# 64 words of 2 to 6 letters that pretraining never draws; together they use every letter.
HELDOUT_WORDS = """
SOFA LAMP DESK VASE KITE ROBE MINT PLUM PEAR LIME GLOW ECHO TIDE DUNE FERN NEST
OVEN TOWER CHAIR SWAN JUICE QUIZ ZEBRA BOX JET QUILT ZINC YARN VINE WAVE KNOT LYNX
FROG CLIP PLANK BRICK PUZZLE GARDEN BASKET GRAPE JUNGLE IVORY JEWEL KAYAK LEMON MANGO
OPERA PIANO QUEST RAVEN PLANET TULIP VELVET WHEAT OAK FIG IVY JAR KEY WEB HUT ELK AXE OX
""".split()
TRAIN_WORDS = sorted(set(TRAIN_WORDS) - set(HELDOUT_WORDS))
_HELDOUT_SET = frozenset(HELDOUT_WORDS)

PROMPT_TEMPLATES = (
    'a {colour} sign that says "{text}"',
    'the word "{text}" in {colour}',
    'a sign reading "{text}" in {colour} letters',
    '"{text}" written in {colour}',
    'a {colour} label with the text "{text}"',
)
# Phrasings that no training source uses (pretraining, alignment and quickstart prompts all take
# PROMPT_TEMPLATES), so prompts in them measure following unseen phrasing.
HELDOUT_TEMPLATES = (
    'a poster with "{text}" in {colour} letters',
    'a {colour} banner showing "{text}"',
    'the text "{text}" painted in {colour}',
    'a card that reads "{text}" in {colour}',
)

FLAWS = ("noise", "cutoff", "cramped")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def random_letters(
    rng: random.Random, min_length: int = 2, max_length: int = 6, exclude: frozenset[str] | set[str] = frozenset()
) -> str:
    """A fresh string of ``min_length`` to ``max_length`` uniform capitals, never one in ``exclude``."""
    while True:
        word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(min_length, max_length)))
        if word not in exclude:
            return word


def pretrain_text(rng: random.Random, random_share: float) -> str:
    """The text of one mixed pretraining sign: with probability ``random_share`` a fresh random
    string of 2 to 6 capitals (every letter at every position, so the generator learns to copy
    letters), else a training word. Held-out words are never drawn, by construction."""
    if rng.random() < random_share:
        return random_letters(rng, exclude=_HELDOUT_SET)
    return rng.choice(TRAIN_WORDS)


@dataclasses.dataclass(frozen=True)
class GlyphSpec:
    """Everything needed to draw one glyph-world image; ``render`` turns it into pixels."""

    text: str
    colour: str
    background: str
    font: str
    size: str  # a key of SIZES
    column: int  # left edge of the first letter, in 8-pixel cells (may be negative: cut off)
    row: int  # top edge of the letters, in 8-pixel cells
    template: int = 0  # an index into PROMPT_TEMPLATES, or -1, -2, ... into HELDOUT_TEMPLATES
    shape: str | None = None  # "underline" | "box" | "dot"
    flaw: str | None = None  # one of FLAWS
    forbidden: str | None = None  # one of FORBIDDEN_MARKS
    seed: int = 0

    @property
    def prompt(self) -> str:
        templates = HELDOUT_TEMPLATES if self.template < 0 else PROMPT_TEMPLATES
        prompt = templates[self.template % len(templates)].format(text=self.text, colour=self.colour)
        return prompt.replace("a orange", "an orange")


def font_path(name: str) -> Path:
    """The path of a DejaVu font shipped with matplotlib."""
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


_GLYPH_CACHE: dict[tuple[str, str, str], np.ndarray] = {}


def glyph_mask(char: str, font: str, size: str) -> np.ndarray:
    """Coverage (0..1) of one letter squeezed into its cell, with a one-pixel margin around it."""
    key = (char, font, size)
    if key not in _GLYPH_CACHE:
        width, height = SIZES[size]
        face = ImageFont.truetype(str(font_path(font)), 64)
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((8, 0), char, font=face, fill=255)
        _, cap_top, _, baseline = face.getbbox("H")
        left, _, right, _ = canvas.getbbox() or (8, 0, 40, 0)
        letter = canvas.crop((left, cap_top, right, baseline))
        # Scale to the cell's height; squeeze only letters wider than the cell, centre narrow ones.
        inner_height = height - 3
        inner_width = min(width - 2, max(1, round(letter.width * inner_height / max(1, letter.height))))
        inner = letter.resize((inner_width, inner_height), Image.LANCZOS)
        cell = np.zeros((height, width), dtype=np.float32)
        left = (width - inner_width) // 2
        cell[2 : height - 1, left : left + inner_width] = np.asarray(inner, dtype=np.float32) / 255.0
        _GLYPH_CACHE[key] = cell
    return _GLYPH_CACHE[key]


def text_extent(text: str, size: str) -> tuple[int, int]:
    """Width and height in pixels of ``text`` at ``size``."""
    width, height = SIZES[size]
    return width * len(text), height


def sample_spec(
    rng: random.Random,
    words: list[str] | None = None,
    flaw_rate: float = 0.25,
    forbidden_rate: float = 0.1,
    shape_rate: float = 0.2,
    heldout_template: bool = False,
) -> GlyphSpec:
    """Draw one random, mostly well-made sign; ``flaw_rate`` and ``forbidden_rate`` set the bad share."""
    text = rng.choice(words or TRAIN_WORDS)
    colour = rng.choice(list(TEXT_COLOURS))
    background = rng.choice(list(BACKGROUNDS))
    flaw = rng.choice(FLAWS) if rng.random() < flaw_rate else None
    font = rng.choice(FONTS)
    cells = IMAGE_SIZE // CELL
    sizes = [s for s in SIZES if text_extent(text, s)[0] <= IMAGE_SIZE - 2 * CELL] or ["small"]
    size = rng.choice(sizes)
    width, height = (v // CELL for v in text_extent(text, size))
    if flaw == "cutoff":
        # Push one or two letters' worth past the left or right edge.
        shift = rng.randint(1, max(1, width // 2))
        column = -shift if rng.random() < 0.5 else cells - width + shift
        row = rng.randint(1, cells - height - 1)
    elif flaw == "cramped":
        # Jammed against the top or bottom edge, with no margin.
        column = (cells - width) // 2
        row = 0 if rng.random() < 0.5 else cells - height
    else:
        slack = (cells - width) // 2
        column = slack + rng.randint(-min(1, slack - 1), min(1, slack - 1)) if slack > 1 else slack
        row = rng.randint(1, cells - height - 1)
    shape = rng.choice(["underline", "box", "dot"]) if rng.random() < shape_rate else None
    forbidden = rng.choice(FORBIDDEN_MARKS) if rng.random() < forbidden_rate else None
    # Held-out prompts use every template, the held-out ones included (negative indices).
    template = (
        rng.randrange(-len(HELDOUT_TEMPLATES), len(PROMPT_TEMPLATES))
        if heldout_template
        else rng.randrange(len(PROMPT_TEMPLATES))
    )
    return GlyphSpec(
        text=text,
        colour=colour,
        background=background,
        font=font,
        size=size,
        column=column,
        row=row,
        template=template,
        shape=shape,
        flaw=flaw,
        forbidden=forbidden,
        seed=rng.randrange(2**31),
    )


def render(spec: GlyphSpec) -> Image.Image:
    """Draw the sign described by ``spec`` as a 64x64 RGB image (deterministic)."""
    ink = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    mark = np.zeros_like(ink)
    cell_w, cell_h = SIZES[spec.size]
    x0, y0 = spec.column * CELL, spec.row * CELL
    for i, char in enumerate(spec.text):
        _paste(ink, glyph_mask(char, spec.font, spec.size), x0 + i * cell_w, y0)
    x1, y1 = x0 + cell_w * len(spec.text), y0 + cell_h
    if spec.shape == "underline" and y1 + 2 <= IMAGE_SIZE:
        ink[y1 : y1 + 2, max(0, x0) : max(0, x1)] = 1.0
    elif spec.shape == "box":
        box = np.zeros_like(ink)
        top, bottom, left, right = max(0, y0 - 2), min(IMAGE_SIZE, y1 + 2), max(0, x0 - 2), min(IMAGE_SIZE, x1 + 2)
        box[top:bottom, left:right] = 1.0
        box[top + 1 : bottom - 1, left + 1 : right - 1] = 0.0
        ink = np.maximum(ink, box)
    elif spec.shape == "dot":
        corner_x = CELL if x0 >= 3 * CELL else IMAGE_SIZE - 2 * CELL
        _paste(ink, _DOT, corner_x, CELL if y0 >= 3 * CELL else IMAGE_SIZE - 2 * CELL)
    if spec.forbidden is not None:
        corners = [
            (0, 0),
            (IMAGE_SIZE - 2 * CELL, 0),
            (0, IMAGE_SIZE - 2 * CELL),
            (IMAGE_SIZE - 2 * CELL, IMAGE_SIZE - 2 * CELL),
        ]
        x, y = random.Random(spec.seed).choice(corners)
        _paste(mark, _MARKS[spec.forbidden], x, y)
        ink[mark > 0] = 0.0
    if spec.flaw == "noise":
        specks = np.random.default_rng(spec.seed).random(ink.shape) < 0.08
        ink = np.where(specks, np.maximum(ink, 0.7), ink)
    background = np.asarray(BACKGROUNDS[spec.background], dtype=np.float32)
    colour = np.asarray(TEXT_COLOURS[spec.colour], dtype=np.float32)
    pixels = (
        background
        + ink[..., None] * (colour - background)
        + mark[..., None] * (np.asarray(FORBIDDEN_COLOUR) - background)
    )
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    height, width = patch.shape
    left, top = max(0, x), max(0, y)
    right, bottom = min(canvas.shape[1], x + width), min(canvas.shape[0], y + height)
    if right > left and bottom > top:
        region = canvas[top:bottom, left:right]
        np.maximum(region, patch[top - y : bottom - y, left - x : right - x], out=region)


def _shape_mask(draw_fn, size: int) -> np.ndarray:
    image = Image.new("L", (size, size), 0)
    draw_fn(ImageDraw.Draw(image))
    return np.asarray(image, dtype=np.float32) / 255.0


_DOT = _shape_mask(lambda d: d.ellipse((2, 2, 6, 6), fill=255), CELL)
_MARKS = {
    "cross": _shape_mask(
        lambda d: (d.line((3, 3, 12, 12), fill=255, width=3), d.line((3, 12, 12, 3), fill=255, width=3)), 2 * CELL
    ),
    "triangle": _shape_mask(lambda d: d.polygon([(8, 2), (14, 13), (2, 13)], fill=255), 2 * CELL),
}


def training_specs(n: int, seed: int, **rates: float) -> list[GlyphSpec]:
    """``n`` seeded pretraining signs drawn from the training words only."""
    rng = random.Random(seed)
    return [sample_spec(rng, TRAIN_WORDS, **rates) for _ in range(n)]


def pretraining_spec(rng: random.Random, random_share: float, **rates: float) -> GlyphSpec:
    """One pretraining sign: a fresh random string (share ``random_share``) or a training word. A
    share of 0 draws exactly as ``training_specs`` does (the word-only stream of the shipped
    generator before random strings)."""
    if random_share <= 0:
        return sample_spec(rng, TRAIN_WORDS, **rates)
    return sample_spec(rng, [pretrain_text(rng, random_share)], **rates)


def pretraining_specs(n: int, seed: int, random_share: float, **rates: float) -> list[GlyphSpec]:
    """``n`` seeded pretraining signs (``pretraining_spec``); with a share of 0 exactly
    ``training_specs(n, seed)``."""
    rng = random.Random(seed)
    return [pretraining_spec(rng, random_share, **rates) for _ in range(n)]


HELDOUT_KINDS = ("unseen_word", "unseen_template")
HELDOUT_PROMPTS = 512  # 256 of each kind: a 95 % interval of about +/-5 points at 8 images a prompt


def heldout_specs(n: int = HELDOUT_PROMPTS, seed: int = 1234) -> list[GlyphSpec]:
    """Clean evaluation signs whose prompts never occur in any training source, alternating two kinds:

    - ``unseen_word``: a held-out word (never drawn in pretraining, never an alignment or quickstart
      prompt) in any template; the words come round in shuffled passes over ``HELDOUT_WORDS``, so
      every word appears equally often (4 times each in the default 512 prompts);
    - ``unseen_template``: a training word in a held-out template (``HELDOUT_TEMPLATES``, taken in
      turn), so the phrasing is new.

    Report the two kinds apart (``heldout_kind``): the first measures spelling unseen words, the
    second following unseen phrasing. Any prefix of the list alternates the kinds."""
    rng = random.Random(seed)
    words: list[str] = []
    specs: list[GlyphSpec] = []
    seen: set[str] = set()
    clean = dict(flaw_rate=0.0, forbidden_rate=0.0, shape_rate=0.0)
    for i in range(n):
        if i % 2 == 0 and not words:
            words = rng.sample(HELDOUT_WORDS, len(HELDOUT_WORDS))
        word = words.pop() if i % 2 == 0 else None
        while True:  # every prompt differs from the others, so each is one cluster of the bootstrap
            if word is not None:
                spec = sample_spec(rng, [word], heldout_template=True, **clean)
            else:
                spec = dataclasses.replace(
                    sample_spec(rng, TRAIN_WORDS, **clean), template=-1 - (i // 2) % len(HELDOUT_TEMPLATES)
                )
            if spec.prompt not in seen:
                break
        seen.add(spec.prompt)
        specs.append(spec)
    return specs


def heldout_kind(spec: GlyphSpec) -> str:
    """``unseen_word`` for a held-out word, else ``unseen_template``."""
    return "unseen_word" if spec.text in _HELDOUT_SET else "unseen_template"


def heldout_prompts(n: int = HELDOUT_PROMPTS, seed: int = 1234) -> list[dict[str, str]]:
    """The glyph world's held-out evaluation prompts as ``{"prompt", "target", "kind"}`` records."""
    return [{"prompt": s.prompt, "target": s.text, "kind": heldout_kind(s)} for s in heldout_specs(n, seed)]


def align_words(n: int = 600, seed: int = 7, longest: int = 6) -> list[str]:
    """Seeded letter strings of 2 to ``longest`` capitals that are neither training nor held-out
    words. Six letters, as long as the held-out words go: with at most five, the aligned generator
    never trained to write the sixth letter and left it off.

    RL on training words teaches little (the pretrained model already spells them), and RL on the
    held-out words would be test leakage; fresh strings make the OCR reward teach the skill the
    held-out words need, copying the quoted letters into the image one by one."""
    rng = random.Random(seed)
    taken = set(TRAIN_WORDS) | set(HELDOUT_WORDS)
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(2, longest)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


ALIGN_WORDS = align_words()


def align_specs(n: int, seed: int, new_word_share: float = 0.75) -> list[GlyphSpec]:
    """``n`` seeded clean signs for RL prompts: a ``new_word_share`` of them spell ``ALIGN_WORDS``,
    the rest training words, always in the training templates (never the held-out one), so the
    prompt pool is disjoint from ``heldout_specs``."""
    rng = random.Random(seed)
    specs = []
    for _ in range(n):
        words = ALIGN_WORDS if rng.random() < new_word_share else TRAIN_WORDS
        specs.append(sample_spec(rng, words, flaw_rate=0.0, forbidden_rate=0.0, shape_rate=0.0))
    return specs
