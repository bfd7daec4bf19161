"""Pretraining the glyph generator: the loss falls, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from imagepref.errors import BadInputError
from imagepref.policy.generator import load_generator
from imagepref.policy.pretrain import PretrainConfig, pretrain

TINY = dict(
    num_shapes=64,
    codec_images=150,
    codec_iterations=2,
    hidden_size=48,
    layers=1,
    heads=2,
    batch_size=8,
    lr=3e-3,
    warmup=2,
)


def test_a_few_steps_lower_the_loss(tmp_path):
    config = PretrainConfig(steps=30, checkpoint_every=100, **TINY)
    generator = pretrain(tmp_path / "gen", config, log=lambda line: None)
    losses = json.loads((tmp_path / "gen" / "pretrain.json").read_text())["losses"]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    loaded = load_generator(tmp_path / "gen")
    assert loaded.config == generator.config
    assert (tmp_path / "gen" / "model.safetensors").is_file()
    assert not list((tmp_path / "gen").rglob("*.bin")) and not list((tmp_path / "gen").rglob("*.pt"))


def test_resume_gives_the_same_weights_as_one_run(tmp_path):
    whole = PretrainConfig(steps=8, checkpoint_every=4, **TINY)
    pretrain(tmp_path / "one", whole, log=lambda line: None)

    class Killed(Exception):
        pass

    def kill_after_five(stage, done, total, info):
        if stage == "train" and done == 6:
            raise Killed

    with pytest.raises(Killed):
        pretrain(tmp_path / "two", whole, progress=kill_after_five, log=lambda line: None)
    assert json.loads((tmp_path / "two" / "checkpoint" / "state.json").read_text())["step"] == 4
    pretrain(tmp_path / "two", whole, log=lambda line: None)
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)


def test_resume_with_other_settings_is_refused(tmp_path):
    pretrain(tmp_path / "gen", PretrainConfig(steps=2, checkpoint_every=1, **TINY), log=lambda line: None)
    with pytest.raises(BadInputError, match="other settings"):
        pretrain(tmp_path / "gen", PretrainConfig(steps=3, checkpoint_every=1, **TINY), log=lambda line: None)
