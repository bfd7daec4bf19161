"""Micro checkpoints of the glyph family for evaluation tests: random weights, built in code."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> list[Path]:
    """Two tiny untrained glyph generators saved as ``run/checkpoint-0`` and ``run/checkpoint-10``
    (one 32-wide layer), as one training run would leave them."""
    from imagepref.policy.pretrain import micro_generator

    root = tmp_path_factory.mktemp("run")
    paths = []
    for step, seed in ((0, 0), (10, 1)):
        path = root / f"checkpoint-{step}"
        micro_generator(seed=0, model_seed=seed).save_pretrained(path)
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
