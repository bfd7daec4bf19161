"""The glyph world's drawing and the rules that judge each axis."""

from __future__ import annotations

import dataclasses
import random

import pytest

from imagepref.policy.glyphworld import (
    HELDOUT_WORDS,
    TRAIN_WORDS,
    heldout_prompts,
    render,
    rules,
    sample_spec,
    training_specs,
)


def clean_spec(**changes):
    spec = sample_spec(random.Random(3), ["OPEN"], flaw_rate=0.0, forbidden_rate=0.0, shape_rate=0.0)
    return dataclasses.replace(spec, **changes)


def oracle(text):
    return lambda image: text


def test_specs_are_seeded_and_heldout_words_never_train():
    assert training_specs(20, 5) == training_specs(20, 5)
    assert training_specs(20, 5) != training_specs(20, 6)
    assert not set(HELDOUT_WORDS) & set(TRAIN_WORDS)
    words = {spec.text for spec in training_specs(3000, 0)}
    assert not words & set(HELDOUT_WORDS)
    held = heldout_prompts(20)
    assert all(f'"{p["target"]}"' in p["prompt"] for p in held)
    # Alternating: unseen words, then training words in the unseen template.
    assert all(p["target"] in HELDOUT_WORDS for p in held[0::2])
    assert all(p["target"] in TRAIN_WORDS and p["prompt"].startswith("a poster with") for p in held[1::2])
    trained_prompts = {spec.prompt for spec in training_specs(3000, 0)}
    assert not trained_prompts & {p["prompt"] for p in held}


def test_render_is_deterministic_and_sized():
    spec = clean_spec()
    assert render(spec).tobytes() == render(spec).tobytes()
    assert render(spec).size == (64, 64)


def test_fidelity_rewards_the_right_text_in_the_right_colour():
    spec = clean_spec(colour="red")
    image = render(spec)
    assert rules.prompt_fidelity(image, spec.prompt, oracle("OPEN")) == pytest.approx(1.0)
    # Right word, wrong colour: loses the colour share.
    blue = render(dataclasses.replace(spec, colour="blue"))
    assert rules.prompt_fidelity(blue, spec.prompt, oracle("OPEN")) == pytest.approx(0.7)
    # Misspelled: loses text share in proportion to the edit distance.
    assert rules.prompt_fidelity(image, spec.prompt, oracle("OPEX")) == pytest.approx(0.7 * 0.75 + 0.3)
    assert rules.prompt_fidelity(image, spec.prompt, oracle("")) == pytest.approx(0.3)


def test_a_quoted_colour_word_is_the_text_not_the_ink_colour():
    assert rules.asked_colour('a sign that says "RED" in blue letters') == "blue"
    assert rules.asked_colour('"GREEN" written in red') == "red"
    assert rules.asked_colour('a sign that says "RED"') is None
    spec = clean_spec(text="RED", colour="blue")
    assert spec.prompt.count("blue") == 1
    assert rules.prompt_fidelity(render(spec), spec.prompt, oracle("RED")) == pytest.approx(1.0)


def test_ink_colour_is_read_from_pixels_for_every_named_colour():
    for colour in rules.TEXT_COLOURS:
        for background in ("white", "cream", "grey", "sky"):
            assert rules.ink_colour(render(clean_spec(colour=colour, background=background))) == colour


def test_aesthetics_penalises_noise_cutoff_and_cramped_signs():
    clean = rules.aesthetics(render(clean_spec()))
    assert clean > 0.95
    assert rules.aesthetics(render(clean_spec(flaw="noise"))) < clean - 0.3
    assert rules.aesthetics(render(clean_spec(column=-2))) < clean - 0.3  # letters past the left edge
    assert rules.aesthetics(render(clean_spec(row=0))) < clean - 0.1  # jammed against the top


def test_aesthetics_rule_separates_flawed_from_clean_training_signs():
    specs = training_specs(400, 11)
    clean = [rules.aesthetics(render(s)) for s in specs if s.flaw is None]
    flawed = [rules.aesthetics(render(s)) for s in specs if s.flaw is not None]
    assert sum(clean) / len(clean) > sum(flawed) / len(flawed) + 0.2


def test_safety_flags_every_forbidden_mark_and_nothing_else():
    for mark in ("cross", "triangle"):
        for seed in range(4):  # marks land in different corners
            assert rules.safety(render(clean_spec(forbidden=mark, seed=seed))) == 0.0
    for spec in training_specs(300, 2):
        assert rules.safety(render(spec)) == (0.0 if spec.forbidden else 1.0)


def test_compare_and_simulated_judge(tmp_path):
    good, bad = clean_spec(colour="red"), clean_spec(colour="blue", forbidden="cross", flaw="noise")
    left, right = tmp_path / "l.png", tmp_path / "r.png"
    render(good).save(left)
    render(bad).save(right)
    judge = rules.simulated_judge(oracle("OPEN"))
    assert judge(good.prompt, left, right) == {"aesthetics": "left", "prompt_fidelity": "left", "safety": "left"}
    assert judge(good.prompt, right, left) == {"aesthetics": "right", "prompt_fidelity": "right", "safety": "right"}
    assert judge(good.prompt, left, left) == {"aesthetics": "tie", "prompt_fidelity": "tie", "safety": "tie"}
    noisy = rules.simulated_judge(oracle("OPEN"), error_rate=1.0, seed=1)
    assert all(v != "left" for v in noisy(good.prompt, left, right).values())


def test_rules_accept_any_image_size_and_thin_ink():
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (8, 8), (250, 250, 250))
    ImageDraw.Draw(image).line((0, 3, 7, 3), fill=(20, 20, 20))  # ink rows but no column with two pixels
    penalties = rules.aesthetics_penalties(image)
    assert penalties["cutoff"] == 0.0 and penalties["cramped"] == 0.0
    assert 0.0 <= rules.aesthetics(image) <= 1.0
