"""The glyph world's drawing and the rules that judge each axis."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter

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
from imagepref.policy.glyphworld.world import (
    ALIGN_WORDS,
    HELDOUT_PROMPTS,
    HELDOUT_TEMPLATES,
    LETTERS,
    PROMPT_TEMPLATES,
    align_specs,
    pretrain_text,
    pretraining_specs,
    random_letters,
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


def test_heldout_set_is_large_balanced_and_covers_every_letter():
    assert len(HELDOUT_WORDS) == len(set(HELDOUT_WORDS)) == 64
    assert set("".join(HELDOUT_WORDS)) == set(LETTERS)
    assert {len(word) for word in HELDOUT_WORDS} == {2, 3, 4, 5, 6}
    assert not set(HELDOUT_WORDS) & set(ALIGN_WORDS)
    held = heldout_prompts()
    assert held == heldout_prompts() and len(held) == HELDOUT_PROMPTS == 512
    assert len({p["prompt"] for p in held}) == len(held)  # each prompt one cluster of the bootstrap
    assert all(f'"{p["target"]}"' in p["prompt"] for p in held)
    # Alternating kinds: unseen words (each equally often), then training words in unseen templates.
    assert [p["kind"] for p in held] == ["unseen_word", "unseen_template"] * 256
    assert Counter(p["target"] for p in held[0::2]) == {word: 4 for word in HELDOUT_WORDS}
    assert all(p["target"] in TRAIN_WORDS for p in held[1::2])
    patterns = [_template_pattern(t) for t in HELDOUT_TEMPLATES]
    used = Counter(next(i for i, pattern in enumerate(patterns) if pattern.fullmatch(p["prompt"])) for p in held[1::2])
    assert used == {i: 64 for i in range(len(HELDOUT_TEMPLATES))}


def test_heldout_kind_is_large_enough_for_a_five_point_interval():
    """256 prompts of a kind at 8 images each: even when prompts differ widely (per-prompt accuracy
    spread evenly over 0..1), the prompt-clustered 95 % interval of the rate is within +/-5 points."""
    import numpy as np

    from imagepref.eval.statistics import clustered_ratio

    rng = np.random.default_rng(0)
    prompts = HELDOUT_PROMPTS // 2
    for _ in range(5):
        hits = rng.binomial(1, np.repeat(rng.uniform(0, 1, prompts), 8))
        figure = clustered_ratio(np.repeat(np.arange(prompts), 8), hits)
        assert figure["ci"][1] - figure["ci"][0] <= 0.10


def _template_pattern(template: str) -> re.Pattern:
    pattern = re.escape(template).replace(r"\{text\}", "[A-Z]+").replace(r"\{colour\}", "[a-z]+")
    return re.compile(pattern.replace("a\\ ", "an?\\ ", 1) if template.startswith("a ") else pattern)


def _training_sources() -> dict[str, list]:
    """Prompt specs of every training source: pretraining batches (at two mixes of random strings),
    the quickstart's round prompts and the align prompt pools (default and ``glyphworld-align``)."""
    from imagepref.policy.pretrain import PretrainConfig, _batch_specs

    pretraining = [
        spec
        for share in (0.5, 1.0)
        for step in range(300)
        for spec in _batch_specs(PretrainConfig(random_share=share), step)[0]
    ]
    return {
        "pretraining": pretraining,
        "quickstart": [spec for round_ in range(1, 4) for spec in training_specs(96, seed=round_)],  # recipe seed 0
        "align": training_specs(256, 0) + align_specs(2000, 0),
    }


def test_word_only_pretraining_is_the_training_stream():
    assert pretraining_specs(200, 3, random_share=0.0) == training_specs(200, 3)


def test_heldout_words_templates_and_prompts_never_reach_a_training_source():
    held = heldout_prompts()
    held_prompts = {p["prompt"] for p in held}
    patterns = [_template_pattern(t) for t in HELDOUT_TEMPLATES]
    assert not set(HELDOUT_TEMPLATES) & set(PROMPT_TEMPLATES)
    for name, specs in _training_sources().items():
        assert not {spec.text for spec in specs} & set(HELDOUT_WORDS), name
        assert all(spec.template >= 0 for spec in specs), name
        prompts = {spec.prompt for spec in specs}
        assert not prompts & held_prompts, name
        assert not any(pattern.fullmatch(prompt) for prompt in prompts for pattern in patterns), name


def test_random_pretraining_strings_skip_heldout_words():
    rng = random.Random(0)
    texts = [pretrain_text(rng, 1.0) for _ in range(100_000)]
    assert {len(t) for t in texts} == {2, 3, 4, 5, 6}
    assert not set(texts) & set(HELDOUT_WORDS)  # unfiltered, about 40 of these draws would be held-out words
    everything_but_ox = {a + b for a in LETTERS for b in LETTERS} - {"OX"}
    assert random_letters(random.Random(1), 2, 2, exclude=everything_but_ox) == "OX"


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


def test_findings_name_the_wrong_ink_colour_and_box_the_forbidden_mark():
    from imagepref.policy.glyphworld.world import CELL, IMAGE_SIZE

    prompt = 'a red sign that says "OPEN"'
    image = render(clean_spec(colour="blue", forbidden="cross", seed=0))
    found = rules.findings(image, prompt)
    assert (found["ink_colour"], found["asked_colour"], found["wrong_colour"]) == ("blue", "red", True)
    # One mark, drawn inside one 16-pixel corner of the sign.
    [(left, top, right, bottom)] = found["forbidden_boxes"]
    corners = {(0, 0), (IMAGE_SIZE - 2 * CELL, 0), (0, IMAGE_SIZE - 2 * CELL), (IMAGE_SIZE - 2 * CELL,) * 2}
    assert any(x <= left < right <= x + 2 * CELL and y <= top < bottom <= y + 2 * CELL for x, y in corners)
    assert right - left >= 4 and bottom - top >= 4
    clean = rules.findings(render(clean_spec(colour="red")), prompt)
    assert clean == {"ink_colour": "red", "asked_colour": "red", "wrong_colour": False, "forbidden_boxes": []}
    # No colour asked: nothing to get wrong.
    assert rules.findings(image, '"OPEN"')["wrong_colour"] is False


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
