"""Shared fixtures: a small glyph codec and generator, and glyph-world preference data judged by
simulated annotators reading with a real OCR engine (built once per session)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def glyph_generator():
    """An untrained glyph generator around a small fitted codec (its embeddings feed the token backbone).

    The codec is fitted on signs of the training words only (``random_share=0``), the signs the
    preference data shows. Fitted on pretraining's default mix (mostly random strings), this small
    codec (128 shapes from 300 signs) left the token backbone at 59 % held-out fidelity accuracy on
    these 360 pairs, in one run.
    """
    from imagepref.policy.families.glyph import GlyphGenerator
    from imagepref.policy.pretrain import PretrainConfig, fit_codec

    codec = fit_codec(PretrainConfig(num_shapes=128, codec_images=300, codec_iterations=3, random_share=0.0))
    return GlyphGenerator.create(codec, hidden_size=32, layers=1, heads=2, seed=0)


@pytest.fixture(scope="session")
def glyph_prefs(tmp_path_factory, glyph_generator):
    """Preference data over 60 prompts x 4 variants (360 pairs), 3 annotators erring 10 % of the time."""
    from imagepref.eval.ocr import get_engine
    from imagepref.reward.synthetic import glyph_preference_data

    out = tmp_path_factory.mktemp("reward") / "prefs"
    glyph_preference_data(
        out,
        glyph_generator.codec,
        get_engine("tesseract").read_text,
        prompts=60,
        variants_per_prompt=4,
        annotators=3,
        error_rate=0.1,
        seed=3,
    )
    return out
