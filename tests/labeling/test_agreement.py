"""Agreement figures against values computed by hand on a small fixed example."""

from __future__ import annotations

import pytest

from imagepref.labeling.agreement import agreement_report
from imagepref.labeling.preferences import majority, pair_frame, to_ab

# Three annotators, four pairs, answers already in a/b order; A3 did not answer p4.
ANSWERS = {"A1": ["a", "a", "b", "tie"], "A2": ["a", "b", "b", "tie"], "A3": ["a", "a", "b", None]}


def rows() -> list[dict]:
    return [
        {"pair_id": f"p{item + 1}", "annotator": who, "q": answer}
        for who, answers in ANSWERS.items()
        for item, answer in enumerate(answers)
        if answer
    ]


def test_figures_match_the_hand_computation():
    gold = [
        {"pair_id": "g1", "annotator": "A1", "q": "a", "q_gold": "a"},
        {"pair_id": "g1", "annotator": "A2", "q": "b", "q_gold": "a"},
    ]
    figures = agreement_report(rows(), gold, ["q"])["axes"]["q"]
    # Coincidences: o_aa = 3 + 1, o_ab = o_ba = 1, o_bb = 3, o_tt = 2; n = 11, n_a = 5, n_b = 4, n_tie = 2.
    # D_o = 2/11, D_e = 2 (5*4 + 5*2 + 4*2) / (11*10) = 76/110, alpha = 1 - (2/11) / (76/110) = 1 - 20/76.
    assert figures["krippendorff_alpha"] == pytest.approx(1 - 20 / 76, abs=1e-4)
    # Agreeing annotator pairs: p1 3/3, p2 1/3, p3 3/3, p4 1/1 -> 8/10.
    assert figures["pairwise_agreement"] == 0.8 and figures["pairwise_compared"] == 10
    assert figures["tie_rate"] == pytest.approx(2 / 11, abs=1e-4)
    people = figures["annotators"]
    # Against the majority of the others: p2 has no majority for A1 and A3 (a vs b), so it is left out.
    assert (people["A1"]["agreement_with_majority"], people["A1"]["majority_compared"]) == (1.0, 3)
    assert (people["A2"]["agreement_with_majority"], people["A2"]["majority_compared"]) == (0.75, 4)
    assert (people["A3"]["agreement_with_majority"], people["A3"]["majority_compared"]) == (1.0, 2)
    assert people["A1"]["gold_accuracy"] == 1.0 and people["A2"]["gold_accuracy"] == 0.0
    assert people["A3"]["gold_accuracy"] is None


def test_alpha_is_undefined_without_variation_and_pairs_need_two_answers():
    same = [{"pair_id": "p1", "annotator": who, "q": "a"} for who in ("A", "B")]
    assert agreement_report(same, [], ["q"])["axes"]["q"]["krippendorff_alpha"] is None
    alone = [{"pair_id": "p1", "annotator": "A", "q": "a"}]
    figures = agreement_report(alone, [], ["q"])["axes"]["q"]
    assert figures["pairwise_agreement"] is None and figures["krippendorff_alpha"] is None


def test_sides_map_back_to_candidates_and_labels_need_a_strict_majority():
    judged = [
        {
            "pair_id": "p",
            "prompt": "x",
            "candidate_left": "B",
            "candidate_right": "A",
            "candidate_a": "A",
            "candidate_b": "B",
            "annotator": "u1",
            "q": "left",
        },
        {
            "pair_id": "p",
            "prompt": "x",
            "candidate_left": "A",
            "candidate_right": "B",
            "candidate_a": "A",
            "candidate_b": "B",
            "annotator": "u2",
            "q": "right",
        },
    ]
    assert [row["q"] for row in to_ab(judged, ["q"])] == ["b", "b"]
    frame = pair_frame(judged, ["q"])
    assert (frame.at[0, "q_votes_b"], frame.at[0, "q_votes_a"], frame.at[0, "q_label"]) == (2, 0, "b")
    assert majority({"a": 1, "b": 1, "tie": 0}) is None and majority({"a": 0, "b": 0, "tie": 0}) is None
