"""Pair planning, candidate-set checks, scores files and the labeling config, without a server."""

from __future__ import annotations

import pandas as pd
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.labeling.candidates import load_candidate_set, load_pair_scores
from imagepref.labeling.config import LabelingConfig, label_config_xml
from imagepref.labeling.pairing import plan_gold_pairs, plan_pairs, prediction_result
from imagepref.labeling.pull import check_result


def test_strategies_are_deterministic_and_stay_within_a_prompt(tmp_path, candidate_set):
    candidates = load_candidate_set(candidate_set(tmp_path / "set"))
    every = plan_pairs(candidates, LabelingConfig(pairing="all"))
    assert len(every) == 3 * 6 and len({pair.pair_id for pair in every}) == 18
    random_pairs = plan_pairs(candidates, LabelingConfig(pairing="random", seed=3))
    assert len(random_pairs) == 3 * 2
    assert random_pairs == plan_pairs(candidates, LabelingConfig(pairing="random", seed=3))
    for pair in every:
        assert pair.candidate_a.split("-")[0] == pair.candidate_b.split("-")[0]  # same prompt
        assert pair.candidate_a < pair.candidate_b
        assert {pair.candidate_left, pair.candidate_right} == {pair.candidate_a, pair.candidate_b}
    assert 0 < sum(pair.candidate_left == pair.candidate_a for pair in every) < len(every)
    assert len(plan_pairs(candidates, LabelingConfig(pairing="all", max_pairs=5))) == 5


def test_uncertainty_ranking_and_pre_annotations_from_per_candidate_scores(tmp_path, candidate_set):
    candidates = load_candidate_set(candidate_set(tmp_path / "set", prompts=1))
    scores_path = tmp_path / "scores.csv"
    pd.DataFrame(
        {"candidate_id": ["c0-red", "c0-green", "c0-blue", "c0-grey"], "aesthetics": [3.0, 0.0, 0.1, -3.0]}
    ).to_csv(scores_path)
    scores = load_pair_scores(scores_path, ["aesthetics"])
    pairs = plan_pairs(candidates, LabelingConfig(pairing="uncertainty", max_pairs=2), scores)
    assert {(pair.candidate_a, pair.candidate_b) for pair in pairs[:1]} == {
        ("c0-blue", "c0-green")
    }  # closest scores first
    assert pairs[0].uncertainty > pairs[1].uncertainty
    top = plan_pairs(candidates, LabelingConfig(pairing="all"), scores)
    red_grey = next(pair for pair in top if {pair.candidate_a, pair.candidate_b} == {"c0-red", "c0-grey"})
    expected = "left" if red_grey.candidate_left == "c0-red" else "right"
    assert prediction_result(red_grey)[0]["value"]["choices"] == [expected]
    with pytest.raises(BadInputError, match="scores file"):
        plan_pairs(candidates, LabelingConfig(pairing="uncertainty"))


def test_per_pair_scores_are_turned_into_a_b_order(tmp_path):
    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"candidate_a": ["z"], "candidate_b": ["y"], "uncertainty": [0.4], "safety_p_a": [0.9]}).to_parquet(
        path
    )
    score = load_pair_scores(path, ["safety"]).get("y", "z")
    assert score.uncertainty == 0.4 and score.p_a["safety"] == pytest.approx(0.1)


def test_uncertainty_pairing_labels_what_the_members_disagree_on_first(tmp_path, candidate_set):
    candidates = load_candidate_set(candidate_set(tmp_path / "set", prompts=1))
    path = tmp_path / "pairs.parquet"
    # red/green: a coin toss all members agree on; blue/grey: sure on average, members split.
    pd.DataFrame(
        {
            "candidate_a": ["c0-green", "c0-blue", "c0-blue"],
            "candidate_b": ["c0-red", "c0-grey", "c0-red"],
            "uncertainty": [1.0, 0.2, 0.5],
            "disagreement": [0.0, 0.3, 0.1],
            "aesthetics_p_a": [0.5, 0.9, 0.75],
        }
    ).to_parquet(path)
    scores = load_pair_scores(path, ["aesthetics"])
    pairs = plan_pairs(candidates, LabelingConfig(pairing="uncertainty"), scores)
    ranked = [(pair.candidate_a, pair.candidate_b) for pair in pairs]
    assert ranked[:3] == [("c0-blue", "c0-grey"), ("c0-blue", "c0-red"), ("c0-green", "c0-red")]
    assert pairs[0].disagreement == 0.3 and pairs[0].p_a["aesthetics"] == pytest.approx(0.9)
    assert all(pair.uncertainty is None for pair in pairs[3:])  # pairs the file does not score come last
    kept = plan_pairs(candidates, LabelingConfig(pairing="uncertainty", pairs_per_prompt=1), scores)
    assert [(pair.candidate_a, pair.candidate_b) for pair in kept] == [("c0-blue", "c0-grey")]


def test_gold_pairs_come_at_the_configured_rate(tmp_path, candidate_set):
    candidates = load_candidate_set(candidate_set(tmp_path / "set"))
    gold = tmp_path / "gold.csv"
    pd.DataFrame(
        [{"candidate_a": f"c{p}-red", "candidate_b": f"c{p}-blue", "aesthetics": "a"} for p in range(3)]
    ).to_csv(gold)
    picked = plan_gold_pairs(candidates, LabelingConfig(gold_rate=0.2, gold_file=gold), regular_count=10)
    assert len(picked) == 2 and all(pair.is_gold and pair.gold == {"aesthetics": "b"} for pair in picked)
    assert all(pair.pair_id.startswith("g-") for pair in picked)


def test_bad_candidate_sets_are_refused_with_the_fix(tmp_path, candidate_set):
    folder = candidate_set(tmp_path / "one", colours=("red",))
    with pytest.raises(BadInputError, match="one image per prompt"):
        plan_pairs(load_candidate_set(folder), LabelingConfig())
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    pd.DataFrame(columns=["candidate_id", "prompt_id", "prompt", "image_path"]).to_parquet(empty / "candidates.parquet")
    with pytest.raises(BadInputError, match="empty"):
        load_candidate_set(empty)
    gone = candidate_set(tmp_path / "gone")
    (gone / "images" / "c1-blue.png").unlink()
    with pytest.raises(BadInputError, match="missing on disk"):
        load_candidate_set(gone)


def test_label_config_has_one_required_left_right_tie_group_per_axis():
    config = LabelingConfig(axes=["aesthetics", "prompt_fidelity", "safety"])
    xml = label_config_xml(config)
    assert xml.count('choice="single-radio" required="true"') == 3
    assert 'alias="tie" hotkey="e"' in xml and '<TextArea name="comment"' in xml
    validator = LabelInterface(xml)

    def region(axis, values):
        return {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": values}}

    assert check_result([region("safety", ["tie"])], config.axes, validator)[2] is None
    assert check_result([region("safety", ["left", "right"])], config.axes, validator)[2] is not None
    assert check_result([region("style", ["left"])], config.axes, validator)[2] == "unknown axis 'style'"
    assert check_result([], config.axes, validator)[2] == "no axis answered"
    with pytest.raises(BadInputError):
        LabelingConfig.load(None, axes=["Bad Axis"])


def test_an_edit_project_shows_source_and_instruction_and_pairs_results_of_one_edit(tmp_path):
    folder = tmp_path / "edits"
    (folder / "images").mkdir(parents=True)
    rows = []
    for edit in range(2):
        rows.append(
            {
                "candidate_id": f"s{edit}",
                "prompt_id": "sources",
                "prompt": "a sign",
                "image_path": f"images/s{edit}.png",
            }
        )
        rows += [
            {
                "candidate_id": f"e{edit}-{sample}",
                "prompt_id": f"e{edit}",
                "prompt": "a sign",
                "image_path": f"images/e{edit}-{sample}.png",
                "source_candidate": f"s{edit}",
                "instruction": "make the ink blue",
            }
            for sample in range(3)
        ]
    for row in rows:
        Image.new("RGB", (8, 8)).save(folder / row["image_path"])
    pd.DataFrame(rows).to_parquet(folder / "candidates.parquet")
    candidates = load_candidate_set(folder)
    pairs = plan_pairs(candidates, LabelingConfig(edits=True, pairing="all"))
    # Results of one edit are paired; the sources (which share a prompt id here) never are.
    assert len(pairs) == 2 * 3
    assert all(pair.candidate_a.split("-")[0] == pair.candidate_b.split("-")[0] for pair in pairs)
    config = LabelingConfig(edits=True)
    assert config.axes == ["instruction_fidelity", "preservation", "aesthetics", "safety"]
    xml = label_config_xml(config)
    LabelInterface(xml)
    assert 'value="$image_source"' in xml and 'value="$instruction"' in xml
    assert xml.index("$instruction") < xml.index("$image_source") < xml.index("$image_left")
    for key in ("1", "w", "d", "z"):
        assert f'hotkey="{key}"' in xml
    assert LabelingConfig(edits=True, axes=["preservation"]).axes == ["preservation"]


def test_a_saved_export_of_edits_pulls_with_the_edit_axes_and_columns(tmp_path):
    import json

    from imagepref.formats import EDIT_AXES, read_annotations, read_pairs
    from imagepref.labeling.pull import pull

    answers = {"instruction_fidelity": "left", "preservation": "tie", "aesthetics": "right", "safety": "tie"}
    task = {
        "id": 1,
        "data": {
            "pair_id": "p-1",
            "prompt": "a sign",
            "candidate_a": "e0-0",
            "candidate_b": "e0-1",
            "candidate_left": "e0-1",
            "candidate_right": "e0-0",
            "source_candidate": "s0",
            "instruction": "make the ink blue",
        },
        "annotations": [
            {
                "id": 7,
                "completed_by": {"email": "ann@example.org"},
                "created_at": "2026-01-01T10:00:00Z",
                "result": [
                    {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [answer]}}
                    for axis, answer in answers.items()
                ],
            }
        ],
    }
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task]))
    report = pull(tmp_path / "out", from_file=export)
    assert (report.written, report.quarantined) == (1, 0)
    row = read_annotations(tmp_path / "out").iloc[0]
    assert {axis: row[axis] for axis in EDIT_AXES} == answers
    pair = read_pairs(tmp_path / "out").iloc[0]
    assert (pair["source_candidate"], pair["instruction"]) == ("s0", "make the ink blue")
    # Left was e0-1, which is candidate b: fidelity goes to b.
    assert (pair["instruction_fidelity_label"], pair["preservation_label"], pair["aesthetics_label"]) == (
        "b",
        "tie",
        "a",
    )
