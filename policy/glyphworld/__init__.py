"""The built-in glyph world: drawn signs, their prompts, and the rules that judge each axis."""

from pathlib import Path

from imagepref.policy.glyphworld.world import (
    BACKGROUNDS,
    FORBIDDEN_COLOUR,
    FORBIDDEN_MARKS,
    HELDOUT_WORDS,
    IMAGE_SIZE,
    TEXT_COLOURS,
    TRAIN_WORDS,
    GlyphSpec,
    heldout_prompts,
    heldout_specs,
    render,
    sample_spec,
    training_specs,
)

# The pretrained glyph generator shipped inside the package; the loop starts from it by default.
SHIPPED_GENERATOR = Path(__file__).resolve().parent / "pretrained"


def shipped_generator() -> Path | None:
    """The shipped pretrained glyph generator's folder, when it is there."""
    return SHIPPED_GENERATOR if (SHIPPED_GENERATOR / "imagepref.json").is_file() else None


# The shipped base taught to edit by instruction (``imagepref train-edits``; how, in
# edit_training.json in it): the edit stages start from it without retraining.
SHIPPED_EDIT_GENERATOR = Path(__file__).resolve().parent / "edit_trained"


def shipped_edit_generator() -> Path | None:
    """The shipped edit-trained glyph generator's folder, when it is there."""
    return SHIPPED_EDIT_GENERATOR if (SHIPPED_EDIT_GENERATOR / "imagepref.json").is_file() else None


__all__ = [
    "BACKGROUNDS",
    "FORBIDDEN_COLOUR",
    "FORBIDDEN_MARKS",
    "HELDOUT_WORDS",
    "IMAGE_SIZE",
    "TEXT_COLOURS",
    "SHIPPED_EDIT_GENERATOR",
    "SHIPPED_GENERATOR",
    "TRAIN_WORDS",
    "GlyphSpec",
    "heldout_prompts",
    "heldout_specs",
    "render",
    "sample_spec",
    "shipped_edit_generator",
    "shipped_generator",
    "training_specs",
]
