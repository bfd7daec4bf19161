"""Fixtures shared by the policy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagepref.policy.pretrain import micro_generator


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


PREFERENCE_PROMPTS = [
    {"prompt_id": "p1", "prompt": 'a sign that says "CAT"'},
    {"prompt_id": "p2", "prompt": 'a sign that says "DOG"'},
]


def write_preference_data(generator, root: Path):
    """A real candidate set (2 prompts x 2 images) and a preference folder in the contract:
    prompt fidelity prefers the left image for p1 and the right one for p2; other axes tie.
    Returns the candidate rows."""
    from imagepref.labeling.preferences import pair_frame
    from imagepref.policy.candidates import write_candidate_set

    candidates = write_candidate_set(generator, PREFERENCE_PROMPTS, root / "candidates", images_per_prompt=2, seed=3)
    ids = candidates.groupby("prompt_id")["candidate_id"].apply(list)
    rows = []
    for record, winner in zip(PREFERENCE_PROMPTS, ("left", "right")):
        a, b = ids[record["prompt_id"]]
        rows.append(
            {
                "pair_id": record["prompt_id"],
                "prompt": record["prompt"],
                "candidate_left": a,
                "candidate_right": b,
                "candidate_a": a,
                "candidate_b": b,
                "annotator": "sim",
                "source": "simulated",
                "aesthetics": "tie",
                "prompt_fidelity": winner,
                "safety": "tie",
            }
        )
    (root / "preferences").mkdir()
    pair_frame(rows, ["aesthetics", "prompt_fidelity", "safety"]).to_parquet(root / "preferences" / "pairs.parquet")
    return candidates


@pytest.fixture(scope="session")
def preference_writer():
    """``write_preference_data`` as a fixture (test modules cannot import conftest under importlib mode)."""
    return write_preference_data
