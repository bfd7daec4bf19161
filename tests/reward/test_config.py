"""RewardConfig defaults that depend on the backbone, and the prompt-matching negatives."""

from __future__ import annotations

import torch

from imagepref.reward.backbones import edit_quoted_letter, prompt_bytes
from imagepref.reward.config import (
    DEFAULT_MEMBERS,
    DEFAULT_WIDTHS,
    RewardConfig,
    config_with_overrides,
    default_prompt_matching_weight,
)


def test_width_follows_the_backbone_unless_set():
    assert RewardConfig().width == DEFAULT_WIDTHS["pixel"]
    assert RewardConfig(backbone="token").width == DEFAULT_WIDTHS["token"] != DEFAULT_WIDTHS["pixel"]
    assert config_with_overrides(RewardConfig(), ["backbone=token"]).width == DEFAULT_WIDTHS["token"]
    assert config_with_overrides(RewardConfig(), ["backbone=token", "width=48"]).width == 48
    assert config_with_overrides(RewardConfig(width=40), ["backbone=token"]).width == 40
    saved = RewardConfig(backbone="token").model_dump()
    assert RewardConfig.model_validate(saved).width == DEFAULT_WIDTHS["token"]


def test_ensemble_members_follow_the_backbone_unless_set():
    assert RewardConfig().members == DEFAULT_MEMBERS["pixel"] > 1
    assert RewardConfig(backbone="token").members == RewardConfig(backbone="clip").members == 1
    assert config_with_overrides(RewardConfig(), ["backbone=token"]).members == 1
    assert config_with_overrides(RewardConfig(), ["backbone=token", "members=3"]).members == 3
    import pytest

    from imagepref.errors import BadInputError

    with pytest.raises(BadInputError, match="members"):
        config_with_overrides(RewardConfig(), ["members=0"])


def test_prompt_matching_left_unset_is_on_for_the_pixel_backbone_on_enough_pairs():
    assert RewardConfig().prompt_matching_weight is None
    assert default_prompt_matching_weight("pixel", 2400) == 1.0
    assert default_prompt_matching_weight("pixel", 360) == 0.0
    assert default_prompt_matching_weight("token", 2400) == default_prompt_matching_weight("clip", 2400) == 0.0


def test_edit_quoted_letter_changes_one_quoted_letter_keeping_its_case():
    prompts = ['a red sign that says "OPEN"', 'the word "go" in blue', "no quoted text at all"]
    ids, _ = prompt_bytes(prompts, 40)
    for seed in range(20):
        edited = edit_quoted_letter(ids, torch.Generator().manual_seed(seed))
        changed = (edited != ids).nonzero().tolist()
        assert [row for row, _ in changed] == [0, 1]  # one letter in each quoted prompt, none in the third
        for row, column in changed:
            before, after = chr(int(ids[row, column])), chr(int(edited[row, column]))
            assert before != after and before.isupper() == after.isupper() and after.isalpha()
            assert prompts[row].index('"') < column < prompts[row].rindex('"')
