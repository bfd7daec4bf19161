"""Preference pairs for DPO: the three-axis collapse policy and the preference-data contract."""

from __future__ import annotations

import pytest

from imagepref.errors import BadInputError
from imagepref.policy.align.config import PairPolicy
from imagepref.policy.align.pairs import collapse_verdicts, preference_examples
from imagepref.policy.pretrain import micro_generator


def labels(aesthetics=None, prompt_fidelity=None, safety=None, pair_id="p1"):
    return {
        "pair_id": pair_id,
        "aesthetics_label": aesthetics,
        "prompt_fidelity_label": prompt_fidelity,
        "safety_label": safety,
    }


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


def changed_candidates(candidates, folder, change):
    """A copy of the candidate set's table, changed by ``change``, as a candidate set in ``folder``."""
    folder.mkdir()
    change(candidates.copy()).to_parquet(folder / "candidates.parquet")
    return folder


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda frame: frame.drop(columns=["image_tokens"]), "image_tokens"),
        (
            lambda frame: frame.assign(image_tokens=[[t + 10_000 for t in tokens] for tokens in frame["image_tokens"]]),
            "outside",
        ),
        (lambda frame: frame.assign(candidate_id=frame["candidate_id"] + "-x"), "none of the candidate sets"),
    ],
    ids=["no-image-tokens", "tokens-outside-the-image-range", "unknown-candidate"],
)
def test_bad_candidates_are_refused(preference_data, tmp_path, change, message):
    generator, root, candidates = preference_data
    folder = changed_candidates(candidates, tmp_path / "changed", change)
    with pytest.raises(BadInputError, match=message):
        preference_examples(root / "preferences", [folder], generator, PairPolicy())
