"""Glyph-world edits: the instruction kinds, held-out phrasings and words kept out of training by
construction, and the rules that judge an edit."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.policy.glyphworld.edits import (
    EDIT_HELDOUT_KINDS,
    EDIT_KINDS,
    EDIT_PHRASINGS,
    HELDOUT_EDIT_PHRASINGS,
    GlyphEdit,
    edit_heldout_kind,
    heldout_edits,
    instruction_for,
    judge_edit,
    preservation,
    shapes_shown,
    training_edit,
)
from imagepref.policy.glyphworld.rules import ink_colour
from imagepref.policy.glyphworld.world import HELDOUT_WORDS, GlyphSpec, render

SIGN = GlyphSpec(
    text="OPEN", colour="red", background="white", font="DejaVuSans-Bold.ttf", size="small", column=2, row=3
)
TEXT_KINDS = ("word", "letter")


def test_training_edits_never_use_a_heldout_phrasing_or_word():
    rng = random.Random(0)
    edits = [training_edit(rng) for _ in range(3000)]
    assert set(Counter(e.kind for e in edits)) == set(EDIT_KINDS)
    heldout_words = set(HELDOUT_WORDS)
    heldout_phrasings = {p for kind in HELDOUT_EDIT_PHRASINGS.values() for p in kind}
    heldout_instructions = {e.instruction for e in heldout_edits(400) if edit_heldout_kind(e) == "unseen_phrasing"}
    for edit in edits:
        assert edit.phrasing >= 0
        assert edit.source.text not in heldout_words and edit.target.text not in heldout_words
        assert edit.instruction not in heldout_instructions
    assert not heldout_phrasings & {p for kind in EDIT_PHRASINGS.values() for p in kind}


def test_heldout_edits_cover_every_kind_and_alternate_the_heldout_kinds():
    edits = heldout_edits(200)
    assert edits == heldout_edits(200)  # seeded
    assert [edit_heldout_kind(e) for e in edits[:4]] == list(EDIT_HELDOUT_KINDS) * 2
    assert Counter(e.kind for e in edits) == {kind: 20 for kind in EDIT_KINDS}
    for edit in edits:
        if edit_heldout_kind(edit) == "unseen_word":
            assert edit.source.text in HELDOUT_WORDS
            if edit.kind == "word":
                assert edit.value in HELDOUT_WORDS
        else:
            phrasings = range(len(EDIT_PHRASINGS[edit.kind]))
            assert edit.phrasing < 0
            assert edit.instruction not in {dataclasses.replace(edit, phrasing=i).instruction for i in phrasings}
        # Sources are clean of flaws and marks unless the edit removes them.
        assert (edit.source.flaw is not None) == (edit.kind == "remove_flaw")
        assert (edit.source.forbidden is not None) == (edit.kind == "remove_mark")


def test_an_edit_changes_only_what_it_names():
    edit = GlyphEdit(SIGN, "letter", "A", position=2)
    assert edit.target == dataclasses.replace(SIGN, text="OPAN")
    assert edit.instruction == 'change the third letter to "A"'
    assert GlyphEdit(SIGN, "ink_colour", "blue", phrasing=-1).instruction == "recolour the letters blue"
    assert GlyphEdit(SIGN, "word", "PUZZLE").target.column == 1  # six letters need the room
    moved = GlyphEdit(dataclasses.replace(SIGN, flaw="cutoff", column=-1), "remove_flaw").target
    assert moved.flaw is None and moved.column == 2


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("sparkle", None, "unknown edit kind"),
        ("ink_colour", "teal", "ink colour edit needs"),
        ("remove_mark", None, "no forbidden mark"),
        ("remove_box", None, "no box to remove"),
        ("word", "open", "capital letters"),
    ],
)
def test_an_edit_that_cannot_apply_is_one_line(kind, value, message):
    with pytest.raises((BadInputError, UnknownNameError), match=message):
        GlyphEdit(SIGN, kind, value)


def test_instructions_from_kind_and_value():
    assert instruction_for("ink_colour", "blue") == "make the ink blue"
    assert instruction_for("letter", "2=e") == 'change the second letter to "E"'
    assert instruction_for("remove_mark") == "remove the forbidden mark"
    with pytest.raises(UnknownNameError, match="unknown edit kind 'sparkle'"):
        instruction_for("sparkle")
    with pytest.raises(BadInputError, match="POSITION=LETTER"):
        instruction_for("letter", "E")
    with pytest.raises(BadInputError, match="takes no value"):
        instruction_for("add_box", "big")


def test_shapes_are_seen_in_pixels():
    assert shapes_shown(render(SIGN)) == {"underline": False, "box": False}
    assert shapes_shown(render(dataclasses.replace(SIGN, shape="underline"))) == {"underline": True, "box": False}
    assert shapes_shown(render(dataclasses.replace(SIGN, shape="box"))) == {"underline": False, "box": True}
    tall = dataclasses.replace(SIGN, text="HILL", size="tall", row=2)  # tall straight letters are no box
    assert shapes_shown(render(tall)) == {"underline": False, "box": False}


def test_the_target_succeeds_and_the_unchanged_source_fails():
    """On edits whose rules read no text (OCR is in the slow test), drawing the target is a success
    and handing back the source is not."""
    rng = random.Random(1)
    edits = [training_edit(rng, kind) for kind in EDIT_KINDS if kind not in TEXT_KINDS for _ in range(12)]
    edits = [e for e in edits if e.source.flaw != "cutoff" and e.source.flaw != "noise"]
    assert len(edits) > 50
    for edit in edits:
        source, target = render(edit.source), render(edit.target)
        assert judge_edit(edit, source, target)["success"] == 1.0, edit
        assert judge_edit(edit, source, source)["instruction_fidelity"] < 0.9, edit


def test_preservation_sees_changes_outside_the_edit():
    edit = GlyphEdit(SIGN, "ink_colour", "blue")
    source, target = render(SIGN), render(edit.target)
    assert preservation(edit, source, target) > 0.95  # anti-aliased edges differ a little by colour
    # The right colour, but a box drawn as well: an attribute and pixels outside the change.
    boxed = render(dataclasses.replace(edit.target, shape="box"))
    assert ink_colour(boxed) == "blue" and preservation(edit, source, boxed) < 0.9
    # The right colour on another background: everything outside the letters changed.
    other = render(dataclasses.replace(edit.target, background="sky"))
    assert preservation(edit, source, other) < 0.5
    # The right colour, the letters moved: the strokes no longer overlap the source's.
    moved = render(dataclasses.replace(edit.target, row=1))
    assert preservation(edit, source, moved) < 0.9


def test_word_edits_need_a_reader():
    edit = GlyphEdit(SIGN, "word", "SHUT")
    with pytest.raises(BadInputError, match="OCR reader"):
        judge_edit(edit, render(SIGN), render(edit.target))


@pytest.mark.slow
@pytest.mark.integration
def test_text_edits_are_judged_by_ocr():
    from imagepref.eval.ocr import text_reader

    read = text_reader()
    for edit in (GlyphEdit(SIGN, "word", "SHUT"), GlyphEdit(SIGN, "letter", "A", position=2)):
        source, target = render(edit.source), render(edit.target)
        assert judge_edit(edit, source, target, read)["success"] == 1.0
        assert judge_edit(edit, source, source, read)["success"] == 0.0
        blank = Image.fromarray(np.full((64, 64, 3), 250, dtype=np.uint8))
        assert judge_edit(edit, source, blank, read)["success"] == 0.0
