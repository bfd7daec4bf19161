"""The RL prompt pool (``glyphworld-align``) never touches the held-out evaluation set: no held-out
word, no held-out template, no held-out prompt; so gains measured on the held-out set are transfer."""

from __future__ import annotations

import re

from imagepref.policy.align.pipeline import training_prompts
from imagepref.policy.glyphworld.world import (
    ALIGN_WORDS,
    HELDOUT_TEMPLATES,
    HELDOUT_WORDS,
    TRAIN_WORDS,
    align_specs,
    heldout_prompts,
)


def test_align_words_are_fresh_letter_strings():
    assert len(ALIGN_WORDS) == len(set(ALIGN_WORDS)) >= 500
    assert not set(ALIGN_WORDS) & set(HELDOUT_WORDS)
    assert not set(ALIGN_WORDS) & set(TRAIN_WORDS)
    assert all(re.fullmatch(r"[A-Z]{2,6}", word) for word in ALIGN_WORDS)
    assert max(map(len, ALIGN_WORDS)) == 6  # as long as the longest held-out words


def test_align_prompt_pool_is_disjoint_from_the_heldout_set():
    specs = align_specs(2000, seed=0)
    words = {spec.text for spec in specs}
    assert not words & set(HELDOUT_WORDS)
    assert all(spec.template >= 0 for spec in specs)  # training templates only
    heldout = heldout_prompts(64)
    assert not {spec.prompt for spec in specs} & {record["prompt"] for record in heldout}
    heldout_phrasing = HELDOUT_TEMPLATES[0].split('"')[0]  # 'a poster with '
    assert not any(spec.prompt.startswith(heldout_phrasing) for spec in specs)
    # Mostly fresh words, some training words so the words it already spells are not forgotten.
    fresh = sum(spec.text in set(ALIGN_WORDS) for spec in specs) / len(specs)
    assert 0.65 < fresh < 0.85


def test_the_cli_prompt_pool_is_the_seeded_align_pool():
    prompts = training_prompts("glyphworld-align", 64, seed=3)
    assert prompts == [spec.prompt for spec in align_specs(64, seed=3)]
    assert prompts == training_prompts("glyphworld-align", 64, seed=3)
    assert prompts != training_prompts("glyphworld-align", 64, seed=4)
