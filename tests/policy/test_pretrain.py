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


def test_pretraining_runs_on_one_thread_whatever_the_caller_set(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pretrain(tmp_path / "gen", PretrainConfig(steps=2, checkpoint_every=100, **TINY), log=lambda line: None)
        assert json.loads((tmp_path / "gen" / "pretrain.json").read_text())["threads"] == 1
        assert torch.get_num_threads() == 2  # the caller's setting comes back
    finally:
        torch.set_num_threads(before)


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


def test_batches_mix_random_letter_strings_with_training_words():
    from imagepref.policy.glyphworld.world import HELDOUT_WORDS, LETTERS, TRAIN_WORDS
    from imagepref.policy.pretrain import _batch_specs

    config = PretrainConfig(random_share=0.9)
    texts = [spec.text for step in range(200) for spec in _batch_specs(config, step)[0]]
    assert texts == [spec.text for step in range(200) for spec in _batch_specs(config, step)[0]]  # seeded
    fresh = [t for t in texts if t not in TRAIN_WORDS]
    assert 0.87 < len(fresh) / len(texts) < 0.93
    assert {len(t) for t in fresh} == {2, 3, 4, 5, 6}
    for position in range(6):  # every letter at every position
        assert {t[position] for t in fresh if len(t) > position} == set(LETTERS)
    assert not set(texts) & set(HELDOUT_WORDS)
    only_words = [spec.text for spec in _batch_specs(PretrainConfig(random_share=0.0), 0)[0]]
    assert set(only_words) <= set(TRAIN_WORDS)


def test_ink_loss_weight_one_is_the_plain_loss_and_more_weighs_ink():
    from imagepref.policy.pretrain import blank_codes, make_batch, micro_generator, weighted_loss

    generator = micro_generator()
    config = PretrainConfig(batch_size=4, **{k: v for k, v in TINY.items() if k != "batch_size"})
    input_ids, labels = make_batch(generator, config, 0)
    blank = blank_codes(generator)
    assert blank.numel() >= 1
    with torch.no_grad():
        plain = generator.model(input_ids=input_ids, labels=labels).loss
        torch.testing.assert_close(weighted_loss(generator.model, input_ids, labels, blank, 1.0), plain)
        assert weighted_loss(generator.model, input_ids, labels, blank, 4.0) != plain


def test_lr_restarts_keep_the_first_cycle_and_restart_from_each_peak():
    from imagepref.policy.pretrain import learning_rate

    plain = PretrainConfig(steps=500)
    restarted = PretrainConfig(steps=1200, lr_restarts=[(500, 1e-3)])
    assert [learning_rate(plain, k) for k in range(500)] == [learning_rate(restarted, k) for k in range(500)]
    assert learning_rate(restarted, 500) == pytest.approx(1e-3)
    assert learning_rate(restarted, 850) == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert learning_rate(restarted, 1199) == pytest.approx(1e-4, rel=1e-3)
    # The settings round-trip through a checkpoint's JSON, so such a run resumes.
    assert PretrainConfig(**restarted.model_dump(mode="json")) == restarted


@pytest.mark.slow
def test_the_command_writes_step_lines_when_its_output_is_a_file(tmp_path):
    # Redirected to a file, rich draws no progress bar; the step lines are what a log reader sees.
    import subprocess
    import sys

    log = tmp_path / "pretrain.log"
    with log.open("w") as stream:
        done = subprocess.run(
            [sys.executable, "-m", "imagepref.recipes.cli", "pretrain", "--out", str(tmp_path / "gen")]
            + ["--steps", "2", "--batch-size", "2", "--hidden-size", "8", "--layers", "1"],
            stdout=stream,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    assert "pretrain step 2/2 loss " in text
    assert f"saved the generator to {tmp_path / 'gen'}" in text
