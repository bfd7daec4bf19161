"""The glyph world's palette codec: exact round trips on signs, safetensors folders, bad codes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imagepref.errors import BadInputError
from imagepref.policy.codec import load_codec
from imagepref.policy.glyphworld import heldout_specs, render, training_specs
from imagepref.policy.pretrain import PretrainConfig, fit_codec


@pytest.fixture(scope="module")
def codec():
    return fit_codec(PretrainConfig(codec_images=600, codec_iterations=4, num_shapes=512))


def test_round_trip_reproduces_heldout_signs(codec):
    images = [render(s) for s in heldout_specs(24)]
    codes = codec.encode(images)
    assert codes.shape == (24, codec.tokens_per_image) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < codec.num_codes
    decoded = codec.decode(codes)
    errors = [np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean() for a, b in zip(images, decoded)]
    assert max(errors) < 4.0  # mean absolute error in 0..255 levels: the letters come back whole
    # Codes of a decoded image are the same codes: decode is a fixed point of encode.
    assert torch.equal(codec.encode(decoded)[:, :2], codes[:, :2])


def test_palette_codes_name_background_and_ink(codec):
    specs = training_specs(40, 3, flaw_rate=0.0, forbidden_rate=0.0)
    codes = codec.encode([render(s) for s in specs])
    palette = (codec.palette * 255).round().int().tolist()
    from imagepref.policy.glyphworld import BACKGROUNDS, TEXT_COLOURS

    for spec, row in zip(specs, codes.tolist()):
        assert palette[row[0]] == list(BACKGROUNDS[spec.background])
        assert palette[row[1]] == list(TEXT_COLOURS[spec.colour])


def test_save_and_load_round_trip(codec, tmp_path):
    codec.save_pretrained(tmp_path / "codec")
    assert {p.name for p in (tmp_path / "codec").iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_codec(tmp_path / "codec")
    images = [render(s) for s in training_specs(4, 1)]
    assert torch.equal(loaded.encode(images), codec.encode(images))


def test_bad_codes_and_folders_are_refused(codec, tmp_path):
    with pytest.raises(BadInputError, match="must lie in"):
        codec.decode(torch.full((1, codec.tokens_per_image), codec.num_codes))
    with pytest.raises(BadInputError, match="codes"):
        codec.decode(torch.zeros((1, 5), dtype=torch.long))
    with pytest.raises(BadInputError, match="not a codec folder"):
        load_codec(tmp_path)
