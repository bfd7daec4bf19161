"""Where a checkpoint fails: figures per kind of prompt, and accuracy by word length and by letter."""

from __future__ import annotations

import pytest

from imagepref.eval.figures import best_checkpoints, kind_figures
from imagepref.eval.metrics import score_text
from imagepref.eval.report import _letter_hits, _markdown, breakdown_rows, figure_rows, target_rows
from imagepref.eval.runner import _summary

READINGS = {  # prompt id -> (target, kind, readings of two images)
    "p1": ("SOFA", "unseen_word", ["SOFA", "SODA"]),
    "p2": ("OX", "unseen_word", ["OX", "OX"]),
    "p3": ("OPEN", "unseen_template", ["OPEN", "OPN"]),
}


def results_for(readings: dict) -> dict:
    images = [
        {"prompt_id": pid, "sample": k, "reading": reading, "text": score_text([target], reading).to_dict()}
        for pid, (target, _, pair) in readings.items()
        for k, reading in enumerate(pair)
    ]
    kinds = {pid: kind for pid, (_, kind, _) in readings.items()}
    summary = _summary(images, [[0]] * len(images), 0.1, seed=0, kinds=kinds)
    from imagepref.eval.figures import OTHER_FIGURES, TEXT_FIGURES

    checkpoint = {"name": "base", "images": images, "summary": summary, "win_rates": {}, "win_rate_source": "rules"}
    return {
        "prompt_set": {"name": "t", "prompts": 3, "with_target": 3},
        "settings": {"samples": 2, "seed": 0, "baseline": "base"},
        "ocr": {"engine": "test"},
        "figures": {
            f.key: {"label": f.label, "higher_is_better": f.higher_is_better, "percent": f.percent}
            for f in TEXT_FIGURES + OTHER_FIGURES
        },
        "best": best_checkpoints([checkpoint]),
        "prompts": [
            {"prompt_id": pid, "prompt": f'"{t}"', "targets": [t], "kind": kind}
            for pid, (t, kind, _) in readings.items()
        ],
        "checkpoints": [checkpoint],
    }


def test_figures_per_kind():
    results = results_for(READINGS)
    summary = results["checkpoints"][0]["summary"]
    assert summary["unseen_word/exact_match"]["value"] == pytest.approx(3 / 4)
    assert summary["unseen_template/exact_match"]["value"] == pytest.approx(1 / 2)
    assert summary["unseen_word/cer"]["value"] == pytest.approx(1 / 12)  # one edit over 4+4+2+2 letters
    assert kind_figures(results["checkpoints"][0]["images"], {}) == {}
    labels = {row["key"]: row["label"] for row in figure_rows(results)}
    assert labels["unseen_word/cer"] == "unseen word: Character error rate ↓"
    assert "| unseen word: Exact match ↑ | 75.0 %" in _markdown(results, None)


def test_letter_alignment():
    assert _letter_hits("SOFA", "SODA") == [("S", True), ("O", True), ("F", False), ("A", True)]
    assert _letter_hits("OPEN", "OPN") == [("O", True), ("P", True), ("E", False), ("N", True)]
    assert _letter_hits("OX", "OXX") == [("O", True), ("X", True)]  # an inserted letter costs no target letter
    assert [hit for _, hit in _letter_hits("AB", "")] == [False, False]


def test_by_length_and_by_letter_tables():
    results = results_for(READINGS)
    tables = breakdown_rows(results)
    by_length = {row["group"]: row["cells"][0] for row in tables["length"]}
    assert by_length["2"] == {"hits": 2, "total": 2, "rate": 1.0}
    assert by_length["4"] == {"hits": 2, "total": 4, "rate": 0.5}
    by_letter = {row["group"]: row["cells"][0] for row in tables["letter"]}
    assert by_letter["F"] == {"hits": 1, "total": 2, "rate": 0.5}
    assert by_letter["O"]["total"] == 2 + 2 + 2 and by_letter["O"]["hits"] == 6
    assert sum(c["cells"][0]["total"] for c in tables["letter"]) == 4 + 4 + 2 + 2 + 4 + 4
    summary = _markdown(results, target_rows(results))
    assert summary.index("## By word length") < summary.index("## By letter") < summary.index("## By target")
    assert "| F | 50.0 % (1/2) |" in summary
