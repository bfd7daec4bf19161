"""Micro checkpoints of the glyph family for evaluation tests: random weights, built in code."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> list[Path]:
    """Two tiny untrained glyph generators saved as ``run/checkpoint-0`` and ``run/checkpoint-10``
    (a 32-code patch codec, one 32-wide layer), as one training run would leave them."""
    import random

    import policy.codec as codecs
    from eval.ocr_truth import render_truth_image
    from policy.families.glyph import GlyphGenerator

    root = tmp_path_factory.mktemp("run")
    rng = random.Random(0)
    signs = [render_truth_image(word, 64, "clean", rng).image for word in ("OPEN", "Cafe", "42", "sale")]
    # The glyph codec is being reworked in policy/ (k-means patches -> palette + shapes); build
    # whichever this checkout has, as small as it goes.
    if hasattr(codecs, "PaletteCodec"):
        palette = [(255, 255, 255), (230, 230, 230), (20, 20, 20), (40, 40, 160)]
        codec = codecs.PaletteCodec.fit(signs, palette=palette, mark_colour=(230, 0, 230), num_shapes=30, iterations=2)
    else:
        codec = codecs.PatchCodec.fit(signs, num_codes=32, patch=8, iterations=2)
    paths = []
    for step, seed in ((0, 0), (10, 1)):
        path = root / f"checkpoint-{step}"
        GlyphGenerator.create(codec, hidden_size=32, layers=1, heads=2, seed=seed).save_pretrained(path)
        paths.append(path)
    return paths


PROMPTS = [
    'a poster with "OPEN" in red letters',
    'a sign that says "Cafe" in blue letters',
    'a label reading "42"',
    'two signs: "IN" and "OUT"',
    "a plain sign with no words",
]


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> Path:
    """Five prompts in the user JSONL format: four with targets (one with two pieces), one without."""
    import json

    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path
