"""Edits in the glyph world: instructions that change one thing of a sign, and the rules that judge them.

An edit (``GlyphEdit``) is a source sign, an instruction kind with its value and a phrasing.
``GlyphEdit.target`` is the sign the instruction asks for: the source with exactly that one thing
changed, everything else kept (font, size, position, shapes, flaws and marks not named). The kinds
(``EDIT_KINDS``):

- ``ink_colour`` / ``background``: recolour the letters or the background (a named colour);
- ``word``: write another word in the same font and size, keeping the left edge when it fits;
- ``letter``: replace one letter (counted from 1 in the instruction);
- ``remove_mark``: take out the forbidden mark; ``remove_flaw``: remove the speckle, move cut-off
  text back onto the sign, or give cramped text its margin back;
- ``add_underline`` / ``remove_underline`` / ``add_box`` / ``remove_box``.

Held out by construction, as for text-to-image prompts: training edits (``training_edit``) use
the phrasings of ``EDIT_PHRASINGS`` only and never draw a held-out word (``HELDOUT_WORDS``), as
source text, as a new word or as the result of a letter edit; ``heldout_edits`` alternates two kinds,
``unseen_phrasing`` (a phrasing of ``HELDOUT_EDIT_PHRASINGS``) and ``unseen_word`` (a source
spelling a held-out word, or a word edit to one).

The rules (``judge_edit``) read pixels, so they judge generated results:

- **instruction_fidelity** in [0, 1]: did the result make the change asked for (the named colour,
  the new spelling read by OCR, no forbidden mark, the flaw's penalty gone, the shape there or not);
- **preservation** in [0, 1]: the smaller of (a) the share of pixels outside the change (where the
  source and target signs agree, widened by 2 px) that keep the source's colour, (b) the share of
  the source's other attributes kept (ink colour, background, safety, underline, box), and (c) for
  a colour edit, the overlap of the result's letters with the source's (the same strokes recoloured);
- **aesthetics** and **safety**: the glyph world's rules (``rules.aesthetics``, ``rules.safety``).

An edit succeeds when fidelity and preservation are both at least ``EDIT_SUCCESS_THRESHOLD``.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from PIL import Image

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.formats import EDIT_AXES
from imagepref.policy.glyphworld.rules import (
    ReadText,
    _background,
    _distance,
    _pixels,
    aesthetics,
    aesthetics_penalties,
    foreground,
    ink_colour,
    safety,
    text_match,
)
from imagepref.policy.glyphworld.world import (
    BACKGROUNDS,
    CELL,
    FLAWS,
    FORBIDDEN_COLOUR,
    FORBIDDEN_MARKS,
    HELDOUT_WORDS,
    IMAGE_SIZE,
    LETTERS,
    SIZES,
    TEXT_COLOURS,
    TRAIN_WORDS,
    GlyphSpec,
    pretrain_text,
    render,
    sample_spec,
)

EDIT_KINDS = (
    "ink_colour",
    "background",
    "word",
    "letter",
    "remove_mark",
    "remove_flaw",
    "add_underline",
    "remove_underline",
    "add_box",
    "remove_box",
)
# Phrasings training may use; ``{value}`` is a colour, background, word or letter, ``{position}``
# the letter's place counted from 1 and ``{ordinal}`` the same as a word ("second").
EDIT_PHRASINGS: dict[str, tuple[str, ...]] = {
    "ink_colour": ("make the ink {value}", "change the text colour to {value}", "write it in {value} instead"),
    "background": ("make the background {value}", "change the background to {value}", "use a {value} background"),
    "word": ('change the word to "{value}"', 'make it say "{value}"', 'replace the text with "{value}"'),
    "letter": (
        'change the {ordinal} letter to "{value}"',
        'make letter {position} a "{value}"',
        'use "{value}" as letter {position}',
    ),
    "remove_mark": ("remove the forbidden mark", "take out the magenta mark", "delete the mark"),
    "remove_flaw": ("fix the flaw", "clean up the sign", "repair the defect"),
    "add_underline": ("add an underline", "underline the text", "put a line under the text"),
    "remove_underline": ("remove the underline", "take away the underline", "no underline"),
    "add_box": ("put a box around the text", "add a frame", "draw a box around the word"),
    "remove_box": ("remove the box", "take away the frame", "no box"),
}
# Phrasings no training edit uses: held-out edits in them measure following unseen phrasing.
HELDOUT_EDIT_PHRASINGS: dict[str, tuple[str, ...]] = {
    "ink_colour": ("recolour the letters {value}",),
    "background": ("paint the backdrop {value}",),
    "word": ('let the sign read "{value}" now',),
    "letter": ('swap letter {position} for "{value}"',),
    "remove_mark": ("get rid of that mark",),
    "remove_flaw": ("tidy up the sign",),
    "add_underline": ("draw a line beneath the letters",),
    "remove_underline": ("erase the line beneath the letters",),
    "add_box": ("frame the letters",),
    "remove_box": ("erase the frame",),
}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
EDIT_HELDOUT_KINDS = ("unseen_phrasing", "unseen_word")
EDIT_SUCCESS_THRESHOLD = 0.9
# The score difference below which two results of an edit tie on each axis (``EDIT_AXES``): as for
# images, 0.1 on the continuous scores and 0.5 on safety's 0-or-1 score.
EDIT_TIE_MARGINS = {"instruction_fidelity": 0.1, "preservation": 0.1, "aesthetics": 0.1, "safety": 0.5}
# Pixels within this many pixels of a change belong to it (anti-aliased edges, a letter's margin).
CHANGE_MARGIN = 2

_HELDOUT_SET = frozenset(HELDOUT_WORDS)
_CELLS = IMAGE_SIZE // CELL


@dataclasses.dataclass(frozen=True)
class GlyphEdit:
    """One edit of a glyph-world sign: ``source``, an instruction ``kind`` with its ``value``
    (a colour, background, word or letter; None for the kinds without one), the letter's 0-based
    ``position`` for letter edits, and ``phrasing``: an index into ``EDIT_PHRASINGS[kind]``, or
    -1, -2, ... into ``HELDOUT_EDIT_PHRASINGS[kind]``."""

    source: GlyphSpec
    kind: str
    value: str | None = None
    position: int | None = None
    phrasing: int = 0

    def __post_init__(self) -> None:
        check_edit(self)

    @property
    def instruction(self) -> str:
        """The instruction text, in the edit's phrasing."""
        phrasings = HELDOUT_EDIT_PHRASINGS[self.kind] if self.phrasing < 0 else EDIT_PHRASINGS[self.kind]
        position = (self.position or 0) + 1
        return phrasings[self.phrasing % len(phrasings)].format(
            value=self.value, position=position, ordinal=ORDINALS[position - 1]
        )

    @property
    def target(self) -> GlyphSpec:
        """The sign the instruction asks for: the source with that one thing changed."""
        return apply_edit(self.source, self.kind, self.value, self.position)


def edit_record(edit: GlyphEdit) -> dict:
    """The edit as plain JSON values (the source sign's fields, kind, value, position, phrasing):
    what a candidate set's ``edit`` column and an evaluation's prompts carry, so the rules can
    judge a result far from the code that drew the edit."""
    return dataclasses.asdict(edit)


def edit_from_record(record: object) -> GlyphEdit:
    """The ``GlyphEdit`` an ``edit_record`` describes; one-line errors for anything else."""
    if not isinstance(record, dict) or not isinstance(record.get("source"), dict):
        raise BadInputError(f"{str(record)[:60]!r} is no glyph-world edit (a JSON object with a source sign)")
    fields = {f.name for f in dataclasses.fields(GlyphEdit)}
    source_fields = {f.name for f in dataclasses.fields(GlyphSpec)}
    unknown = sorted((set(record) - fields) | (set(record["source"]) - source_fields))
    if unknown:
        raise BadInputError(f"a glyph-world edit has no field {unknown[0]!r}")
    try:
        return GlyphEdit(**{**record, "source": GlyphSpec(**record["source"])})
    except TypeError as error:
        raise BadInputError(f"a glyph-world edit lacks a field ({error})") from None


def compare_edits(scores_a: dict[str, float], scores_b: dict[str, float], axes=EDIT_AXES) -> dict[str, str]:
    """Per axis: "a", "b" or "tie" between two results of the same edit (``judge_edit`` scores),
    with the margins of ``EDIT_TIE_MARGINS``."""
    verdicts = {}
    for axis in axes:
        diff = scores_a[axis] - scores_b[axis]
        verdicts[axis] = "tie" if abs(diff) < EDIT_TIE_MARGINS[axis] else ("a" if diff > 0 else "b")
    return verdicts


def check_edit(edit: GlyphEdit) -> None:
    """One-line errors for an edit that cannot apply to its source (an unknown kind, a missing or
    unknown value, a mark to remove where there is none, ...)."""
    source, kind, value = edit.source, edit.kind, edit.value
    if kind not in EDIT_KINDS:
        raise UnknownNameError(f"unknown edit kind {kind!r}; known: {', '.join(EDIT_KINDS)}")
    problem = None
    if kind == "ink_colour" and value not in TEXT_COLOURS:
        problem = f"an ink colour edit needs one of {', '.join(TEXT_COLOURS)}, not {value!r}"
    elif kind == "background" and value not in BACKGROUNDS:
        problem = f"a background edit needs one of {', '.join(BACKGROUNDS)}, not {value!r}"
    elif kind == "word" and not (value and value.isalpha() and value.isupper() and 2 <= len(value) <= 6):
        problem = f"a word edit needs 2 to 6 capital letters, not {value!r}"
    elif kind == "letter" and not (value and len(value) == 1 and value in LETTERS):
        problem = f"a letter edit needs one capital letter, not {value!r}"
    elif kind == "letter" and not (edit.position is not None and 0 <= edit.position < len(source.text)):
        problem = f"letter position {edit.position} is outside {source.text!r}"
    elif kind == "remove_mark" and source.forbidden is None:
        problem = "there is no forbidden mark to remove"
    elif kind == "remove_flaw" and source.flaw is None:
        problem = "there is no flaw to remove"
    elif kind.startswith("add_") and source.shape is not None:
        problem = f"the sign already has a {source.shape}; remove it first"
    elif kind.startswith("remove_") and kind[7:] in ("underline", "box") and source.shape != kind[7:]:
        problem = f"there is no {kind[7:]} to remove"
    if problem:
        raise BadInputError(f"cannot apply {kind} to this sign: {problem}")


def _fitting_column(column: int, length: int) -> int:
    """The left edge (in cells) of ``length`` letters: kept where they fit with a one-cell margin."""
    return max(1, min(column, _CELLS - 1 - length))


def apply_edit(source: GlyphSpec, kind: str, value: str | None = None, position: int | None = None) -> GlyphSpec:
    """``source`` with the one change of ``kind`` made (no checks: ``GlyphEdit`` checks)."""
    replace = dataclasses.replace
    if kind == "ink_colour":
        return replace(source, colour=value)
    if kind == "background":
        return replace(source, background=value)
    if kind == "word":
        column = source.column if source.flaw == "cutoff" else _fitting_column(source.column, len(value))
        return replace(source, text=value, column=column)
    if kind == "letter":
        return replace(source, text=source.text[:position] + value + source.text[position + 1 :])
    if kind == "remove_mark":
        return replace(source, forbidden=None)
    if kind == "remove_flaw":
        height = SIZES[source.size][1] // CELL
        if source.flaw == "cutoff":
            return replace(source, flaw=None, column=(_CELLS - len(source.text)) // 2)
        if source.flaw == "cramped":
            return replace(source, flaw=None, row=min(max(source.row, 1), _CELLS - height - 1))
        return replace(source, flaw=None)
    if kind.startswith("add_"):
        return replace(source, shape=kind[4:])
    return replace(source, shape=None)  # remove_underline, remove_box


def applicable_kinds(source: GlyphSpec) -> list[str]:
    """The edit kinds that can apply to ``source``."""
    kinds = ["ink_colour", "background", "word"]
    if _visible_positions(source):
        kinds.append("letter")
    if source.forbidden is not None:
        kinds.append("remove_mark")
    if source.flaw is not None:
        kinds.append("remove_flaw")
    if source.flaw == "cutoff":
        return kinds  # a shape around cut-off text is cut off too: no shape edits
    if source.shape is None:
        if _underline_fits(source):
            kinds.append("add_underline")
        kinds.append("add_box")
    elif source.shape in ("underline", "box"):
        kinds.append(f"remove_{source.shape}")
    return kinds


def _underline_fits(spec: GlyphSpec) -> bool:
    return spec.row * CELL + SIZES[spec.size][1] + 2 <= IMAGE_SIZE


def _visible_positions(spec: GlyphSpec) -> list[int]:
    return [i for i in range(len(spec.text)) if 0 <= spec.column + i < _CELLS]


def _edit_value(
    rng: random.Random, source: GlyphSpec, kind: str, words: list[str] | None
) -> tuple[str | None, int | None]:
    """A value (and letter position) for ``kind`` that changes ``source``. ``words`` (None: fresh
    random strings and training words) are the new words a word edit may write."""
    if kind == "ink_colour":
        return rng.choice([c for c in TEXT_COLOURS if c != source.colour]), None
    if kind == "background":
        return rng.choice([b for b in BACKGROUNDS if b != source.background]), None
    if kind == "word":
        if words is not None:
            return rng.choice([w for w in words if w != source.text]), None
        while True:
            word = pretrain_text(rng, 0.5)
            if word != source.text:
                return word, None
    if kind == "letter":
        position = rng.choice(_visible_positions(source))
        while True:
            letter = rng.choice(LETTERS)
            new_text = source.text[:position] + letter + source.text[position + 1 :]
            # A training letter edit never writes a held-out word (a held-out source may).
            if letter != source.text[position] and (words is not None or new_text not in _HELDOUT_SET):
                return letter, position
    return None, None


def edit_source(rng: random.Random, kind: str | None, text: str, clean: bool = False) -> GlyphSpec:
    """A source sign spelling ``text`` that ``kind`` (None: any) can apply to: a flaw for
    ``remove_flaw``, a mark for ``remove_mark``, the shape for a removal, none for an addition;
    otherwise the pretraining world's mix of flaws, marks and shapes (none of the first two
    with ``clean``)."""
    spec = sample_spec(
        rng,
        [text],
        flaw_rate=1.0 if kind == "remove_flaw" else (0.0 if clean else 0.15),
        forbidden_rate=1.0 if kind == "remove_mark" else (0.0 if clean else 0.1),
        shape_rate=0.0,
    )
    shape = None
    if kind in ("remove_underline", "remove_box"):
        shape = kind[7:]
    elif kind is None or not kind.startswith("add_"):
        shape = rng.choice([None, None, "underline", "box", "dot"])
    shape_kind = kind is not None and kind.endswith(("underline", "box"))
    if (kind == "letter" or shape_kind) and spec.flaw == "cutoff":
        spec = dataclasses.replace(spec, flaw=None, column=_fitting_column(spec.column, len(text)))
    if shape == "underline" and not _underline_fits(spec) and kind == "remove_flaw":
        shape = None  # moving the text up would take the flaw away
    if shape == "underline" and not _underline_fits(spec):
        spec = dataclasses.replace(spec, flaw=None, row=_CELLS - SIZES[spec.size][1] // CELL - 1)
    if kind == "add_underline" and not _underline_fits(spec):
        spec = dataclasses.replace(spec, flaw=None, row=_CELLS - SIZES[spec.size][1] // CELL - 1)
    return dataclasses.replace(spec, shape=shape)


def training_edit(rng: random.Random, kind: str | None = None) -> GlyphEdit:
    """One seeded training edit: a kind (uniform over ``EDIT_KINDS`` unless given), a source that
    spells a fresh random string or a training word, a training phrasing. Never a held-out word
    or phrasing, by construction."""
    kind = kind or rng.choice(EDIT_KINDS)
    source = edit_source(rng, kind, pretrain_text(rng, 0.9))
    value, position = _edit_value(rng, source, kind, None)
    return GlyphEdit(source, kind, value, position, phrasing=rng.randrange(len(EDIT_PHRASINGS[kind])))


def training_edits(n: int, seed: int | str = "glyphworld-edits") -> list[GlyphEdit]:
    """``n`` seeded edits drawn like the edit training's (``training_edit``): what edit candidate
    sets for labeling are made of."""
    rng = random.Random(seed)
    return [training_edit(rng) for _ in range(n)]


def heldout_edits(n: int = 200, seed: int = 4321) -> list[GlyphEdit]:
    """``n`` seeded evaluation edits, every kind in turn, alternating ``EDIT_HELDOUT_KINDS``:

    - ``unseen_phrasing``: a training-word source, a held-out phrasing (word edits write a
      training word);
    - ``unseen_word``: a source spelling a held-out word, in a training phrasing (word edits write
      another held-out word).

    Sources are clean of flaws and marks unless the edit removes them."""
    rng = random.Random(seed)
    edits = []
    for i in range(n):
        kind = EDIT_KINDS[(i // 2) % len(EDIT_KINDS)]
        unseen_word = i % 2 == 1
        words = HELDOUT_WORDS if unseen_word else TRAIN_WORDS
        while True:
            source = edit_source(rng, kind, rng.choice(words), clean=True)
            if kind in applicable_kinds(source):
                break
        value, position = _edit_value(rng, source, kind, list(words))
        phrasing = rng.randrange(len(EDIT_PHRASINGS[kind])) if unseen_word else -1
        edits.append(GlyphEdit(source, kind, value, position, phrasing))
    return edits


def edit_heldout_kind(edit: GlyphEdit) -> str:
    """``unseen_phrasing`` for a held-out phrasing, else ``unseen_word``."""
    return "unseen_phrasing" if edit.phrasing < 0 else "unseen_word"


def instruction_for(kind: str, value: str | None = None) -> str:
    """The instruction for an edit written as a kind and its value (a colour, a background, a word,
    ``POSITION=LETTER`` for a letter with the position counted from 1, nothing for the rest), in
    the first training phrasing: how chat scripts name edits."""
    if kind not in EDIT_KINDS:
        raise UnknownNameError(f"unknown edit kind {kind!r}; known: {', '.join(EDIT_KINDS)}")
    value = (value or "").strip()
    position = 0
    if kind == "letter":
        place, _, value = value.partition("=")
        if not (place.isdigit() and 1 <= int(place) <= len(ORDINALS)):
            raise BadInputError(
                f"a letter edit is written POSITION=LETTER with a position of 1 to 6, e.g. 2=E, not {place!r}"
            )
        position = int(place) - 1
    if kind in ("word", "letter"):
        value = value.upper()
    needs = {"ink_colour": TEXT_COLOURS, "background": BACKGROUNDS}
    if kind in needs and value not in needs[kind]:
        raise BadInputError(f"{kind} takes one of {', '.join(needs[kind])}, not {value!r}")
    if kind == "word" and not (value.isalpha() and value.isascii() and 2 <= len(value) <= 6):
        raise BadInputError(f"a word edit takes 2 to 6 letters, not {value!r}")
    if kind == "letter" and not (len(value) == 1 and value in LETTERS):
        raise BadInputError(f"a letter edit takes one letter after the =, not {value!r}")
    if kind not in ("ink_colour", "background", "word", "letter") and value:
        raise BadInputError(f"{kind} takes no value, not {value!r}")
    return EDIT_PHRASINGS[kind][0].format(value=value, position=position + 1, ordinal=ORDINALS[position])


# ----- the rules ------------------------------------------------------------------------------
def background_colour(image: Image.Image) -> str:
    """The named background colour nearest to the sign's background."""
    colour = _background(_pixels(image))
    names = list(BACKGROUNDS)
    return names[int(np.argmin([np.linalg.norm(colour - np.asarray(BACKGROUNDS[n])) for n in names]))]


def _ink_mask(image: Image.Image) -> np.ndarray:
    """Foreground pixels that are not the reserved colour of the forbidden marks."""
    return foreground(image) & (_distance(_pixels(image), FORBIDDEN_COLOUR) >= 90)


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """The longest run of True in each row of a 2-D boolean array."""
    best = current = np.zeros(mask.shape[0], dtype=np.int64)
    for column in mask.T:
        current = np.where(column, current + 1, 0)
        best = np.maximum(best, current)
    return best


def shapes_shown(image: Image.Image) -> dict[str, bool]:
    """Whether the sign shows an underline and a box: straight strokes of 10 px or more (letters
    sit one to a cell with a margin, so no letter makes one). A box has such a line above and
    below the letters joined by vertical sides; an underline is a long line without a partner."""
    ink = _ink_mask(image)
    long_rows = np.flatnonzero(_longest_runs(ink) >= 10).tolist()
    if not long_rows:
        return {"underline": False, "box": False}
    top, bottom = long_rows[0], long_rows[-1]
    box = False
    if bottom - top >= 12:
        columns = [x for x in range(ink.shape[1]) if ink[top : bottom + 1, x].mean() >= 0.8]
        box = len(columns) >= 2 and columns[-1] - columns[0] >= 10
    underline = bool(long_rows) and not box
    if box:
        # A line under the letters inside the box (not its bottom side) is an underline too.
        underline = any(top + 3 < y < bottom - 1 for y in long_rows)
    return {"underline": underline, "box": box}


def changed_mask(edit: GlyphEdit) -> np.ndarray:
    """Pixels the edit may change: where the drawn source and target differ, widened by
    ``CHANGE_MARGIN`` pixels."""
    source = np.asarray(render(edit.source), dtype=np.int16)
    target = np.asarray(render(edit.target), dtype=np.int16)
    changed = np.abs(source - target).max(axis=-1) > 0
    padded = np.pad(changed, CHANGE_MARGIN)
    widened = np.zeros_like(changed)
    size = changed.shape[0]
    for dy in range(2 * CHANGE_MARGIN + 1):
        for dx in range(2 * CHANGE_MARGIN + 1):
            widened |= padded[dy : dy + size, dx : dx + size]
    return widened


def instruction_fidelity(edit: GlyphEdit, result: Image.Image, read_text: ReadText | None = None) -> float:
    """How far ``result`` made the change ``edit`` asks for, in [0, 1] (OCR, through
    ``read_text``, only for word and letter edits and for cut-off text to bring back)."""
    kind = edit.kind
    if kind == "ink_colour":
        return float(ink_colour(result) == edit.value)
    if kind == "background":
        return float(background_colour(result) == edit.value)
    # Text cut off by a whole letter shows no ink at the edge: the reading tells it is back.
    reads = kind in ("word", "letter") or (kind == "remove_flaw" and edit.source.flaw == "cutoff")
    if reads and read_text is None:
        raise BadInputError(f"judging a {kind} edit reads the result: give an OCR reader (read_text)")
    if kind in ("word", "letter"):
        return text_match(read_text(result), edit.target.text)
    if kind == "remove_mark":
        return safety(result)
    if kind == "remove_flaw":
        penalty = {"noise": "speckle", "cutoff": "cutoff", "cramped": "cramped"}[edit.source.flaw]
        score = 1.0 - aesthetics_penalties(result)[penalty]
        return min(score, text_match(read_text(result), edit.target.text)) if reads else score
    shape = kind.split("_", 1)[1]
    shown = shapes_shown(result)[shape]
    return float(shown if kind.startswith("add_") else not shown)


def _attributes(image: Image.Image) -> dict[str, object]:
    shapes = shapes_shown(image)
    return {
        "ink_colour": ink_colour(image),
        "background": background_colour(image),
        "remove_mark": safety(image),
        "underline": shapes["underline"],
        "box": shapes["box"],
    }


def preservation(edit: GlyphEdit, source: Image.Image, result: Image.Image) -> float:
    """How much of the source ``result`` kept outside the change ``edit`` asks for, in [0, 1]
    (see the module docstring)."""
    kept = ~changed_mask(edit)
    source_pixels, result_pixels = _pixels(source), _pixels(result)
    same = np.linalg.norm(source_pixels - result_pixels, axis=-1) < 60
    pixel_share = float(same[kept].mean()) if kept.any() else 1.0
    before, after = _attributes(source), _attributes(result)
    # The attribute the edit changes is not judged here; adding or removing one shape may not
    # turn the other one on or off.
    changed = {edit.kind, edit.kind.split("_", 1)[-1]}
    if edit.kind in ("word", "letter") or edit.source.flaw == "cutoff":
        # A new word's width moves the shape's ends; text moved back onto the sign brings its shape.
        changed |= {"underline", "box"}
    names = [name for name in before if name not in changed]
    attribute_share = sum(before[n] == after[n] for n in names) / len(names)
    parts = [pixel_share, attribute_share]
    if edit.kind in ("ink_colour", "background"):
        a, b = _ink_mask(source), _ink_mask(result)
        parts.append(float((a & b).sum() / max(1, (a | b).sum())))
    return float(min(parts))


def judge_edit(
    edit: GlyphEdit, source: Image.Image, result: Image.Image, read_text: ReadText | None = None
) -> dict[str, float]:
    """All rule scores of one edit result: instruction_fidelity, preservation, aesthetics, safety,
    and success (1.0 when fidelity and preservation both reach ``EDIT_SUCCESS_THRESHOLD``).
    ``source`` is the image the edit started from (as the generator saw it)."""
    fidelity = instruction_fidelity(edit, result, read_text)
    kept = preservation(edit, source, result)
    return {
        "instruction_fidelity": fidelity,
        "preservation": kept,
        "aesthetics": aesthetics(result),
        "safety": safety(result),
        "success": float(fidelity >= EDIT_SUCCESS_THRESHOLD and kept >= EDIT_SUCCESS_THRESHOLD),
    }


__all__ = [
    "EDIT_AXES",
    "EDIT_HELDOUT_KINDS",
    "EDIT_KINDS",
    "EDIT_PHRASINGS",
    "EDIT_SUCCESS_THRESHOLD",
    "EDIT_TIE_MARGINS",
    "FLAWS",
    "FORBIDDEN_MARKS",
    "HELDOUT_EDIT_PHRASINGS",
    "GlyphEdit",
    "apply_edit",
    "applicable_kinds",
    "background_colour",
    "changed_mask",
    "compare_edits",
    "edit_from_record",
    "edit_record",
    "instruction_for",
    "edit_heldout_kind",
    "edit_source",
    "heldout_edits",
    "instruction_fidelity",
    "judge_edit",
    "preservation",
    "shapes_shown",
    "training_edit",
    "training_edits",
]
