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


__all__ = [
    "BACKGROUNDS",
    "FORBIDDEN_COLOUR",
    "FORBIDDEN_MARKS",
    "HELDOUT_WORDS",
    "IMAGE_SIZE",
    "TEXT_COLOURS",
    "SHIPPED_GENERATOR",
    "TRAIN_WORDS",
    "GlyphSpec",
    "heldout_prompts",
    "heldout_specs",
    "render",
    "sample_spec",
    "shipped_generator",
    "training_specs",
]
