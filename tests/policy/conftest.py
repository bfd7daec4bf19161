"""Fixtures shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.pretrain import micro_generator


@pytest.fixture(scope="session")
def micro_folder(tmp_path_factory) -> Path:
    """A tiny untrained glyph generator saved as a generator folder (loadable by load_generator)."""
    folder = tmp_path_factory.mktemp("micro") / "generator"
    micro_generator(seed=0).save_pretrained(folder)
    return folder


def token_rule_reward(generator):
    """A simple rule reward for trainer tests: the share of the image block's ids in the lower
    half of the image range. Every code counts, so every group has a reward spread to learn from."""
    start, end = generator.config.image_token_range
    middle = (start + end) // 2

    def lower_half(prompts, completions, completion_ids, **kwargs):
        return [sum(1 for i in ids if i < middle) / len(ids) for ids in completion_ids]

    return lower_half


@pytest.fixture
def rule_reward():
    """``token_rule_reward`` as a fixture: call it with a generator."""
    return token_rule_reward
