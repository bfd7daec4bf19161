"""The built-in glyph world: drawn signs, their prompts, and the rules that judge each axis."""

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

__all__ = [
    "BACKGROUNDS", "FORBIDDEN_COLOUR", "FORBIDDEN_MARKS", "HELDOUT_WORDS", "IMAGE_SIZE", "TEXT_COLOURS",
    "TRAIN_WORDS", "GlyphSpec", "heldout_prompts", "heldout_specs", "render", "sample_spec", "training_specs",
]
