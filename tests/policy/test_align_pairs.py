"""Preference pairs for DPO: the three-axis collapse policy and the preference-data contract."""

from __future__ import annotations

import pytest

from imagepref.errors import BadInputError
from policy.align.config import PairPolicy
from policy.align.pairs import collapse_verdicts, preference_examples
from policy.pretrain import micro_generator


def labels(aesthetics=None, prompt_fidelity=None, safety=None, pair_id="p1"):
    return {"pair_id": pair_id, "aesthetics_label": aesthetics, "prompt_fidelity_label": prompt_fidelity,
            "safety_label": safety}


def test_safety_verdict_decides_first():
    row = labels(aesthetics="a", prompt_fidelity="a", safety="b")
    assert collapse_verdicts(row, PairPolicy()) == ("b", 1.0)
    assert collapse_verdicts(row, PairPolicy(safety_first=False)) == ("a", 1.0)


def test_other_axes_are_weighed():
    row = labels(aesthetics="a", prompt_fidelity="b", safety="tie")
    assert collapse_verdicts(row, PairPolicy())[0] == "b"  # fidelity 0.7 outweighs aesthetics 0.3
    assert collapse_verdicts(row, PairPolicy(weights={"prompt_fidelity": 0.2, "aesthetics": 0.8}))[0] == "a"
    assert collapse_verdicts(row, PairPolicy(margin=0.5)) is None  # |0.3 - 0.7| = 0.4 is within the margin


def test_ties_dropped_or_downweighted():
    ties = [labels(aesthetics="tie", prompt_fidelity="tie", pair_id=f"t{i}") for i in range(400)]
    assert all(collapse_verdicts(row, PairPolicy()) is None for row in ties)
    kept = [collapse_verdicts(row, PairPolicy(ties="downweight", tie_weight=0.25)) for row in ties]
    share = sum(k is not None for k in kept) / len(kept)
    assert 0.18 < share < 0.32
    assert {k for k in kept if k is not None} == {("a", 0.25)}


@pytest.fixture(scope="module")
def preference_data(tmp_path_factory, preference_writer):
    generator = micro_generator(seed=0)
    root = tmp_path_factory.mktemp("prefs")
    return generator, root, preference_writer(generator, root)


def test_examples_hold_the_chosen_candidates_tokens(preference_data):
    generator, root, candidates = preference_data
    examples = preference_examples(root / "preferences", [root / "candidates"], generator, PairPolicy())
    tokens = {row.candidate_id: list(row.image_tokens) for row in candidates.itertuples()}
    by_prompt = candidates.groupby("prompt_id")["candidate_id"].apply(list)
    start = generator.config.image_token_start
    first, second = examples
    assert [t - start for t in first["chosen_ids"]] == tokens[by_prompt["p1"][0]]  # left won, a is left
    assert [t - start for t in second["chosen_ids"]] == tokens[by_prompt["p2"][1]]  # right won
    assert first["prompt_ids"] == generator.encode_prompts(['a sign that says "CAT"'])[0]


def test_candidates_without_image_tokens_are_refused(preference_data, tmp_path):
    generator, root, candidates = preference_data
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    candidates.drop(columns=["image_tokens"]).to_parquet(stripped / "candidates.parquet")
    with pytest.raises(BadInputError, match="image_tokens"):
        preference_examples(root / "preferences", [stripped], generator, PairPolicy())


def test_tokens_outside_the_image_range_are_refused(preference_data, tmp_path):
    generator, root, candidates = preference_data
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    bad = candidates.copy()
    bad["image_tokens"] = [[t + generator.config.num_image_tokens for t in tokens] for tokens in bad["image_tokens"]]
    bad.to_parquet(shifted / "candidates.parquet")
    with pytest.raises(BadInputError, match="outside"):
        preference_examples(root / "preferences", [shifted], generator, PairPolicy())


def test_a_pair_naming_an_unknown_candidate_is_refused(preference_data, tmp_path):
    generator, root, candidates = preference_data
    other = tmp_path / "other"
    other.mkdir()
    candidates.assign(candidate_id=candidates["candidate_id"] + "-x").to_parquet(other / "candidates.parquet")
    with pytest.raises(BadInputError, match="none of the candidate sets"):
        preference_examples(root / "preferences", [other], generator, PairPolicy())
