"""Agreement between annotators, per axis: the figures open-source Label Studio does not compute.

For each axis, over the regular (non-gold) pairs, with answers in the stable a/b order:

* Krippendorff's alpha, nominal (the `krippendorff` package), over pairs with two or more answers;
* raw pairwise agreement: of all pairs of annotators who answered the same pair, the share that
  gave the same answer (what image-preference papers report next to alpha);
* per annotator, agreement with the majority of the *other* annotators of each pair (pairs where
  the others have no strict majority are left out), and accuracy on the gold pairs;
* the tie rate: the share of answers that are `tie`.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from imagepref.formats import GOLD_FILE, majority, pair_axes, read_annotations, read_pairs

ANSWERS = ("a", "b", "tie")


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def krippendorff_alpha(answers_by_item: dict[str, dict[str, str]]) -> float | None:
    """Nominal alpha for {item: {annotator: answer}}; None when no item has two answers or
    every answer is the same (alpha is undefined without variation)."""
    import krippendorff

    annotators = sorted({who for answers in answers_by_item.values() for who in answers})
    items = [item for item, answers in answers_by_item.items() if len(answers) >= 2]
    if not items:
        return None
    matrix = np.full((len(annotators), len(items)), np.nan)
    for column, item in enumerate(items):
        for who, answer in answers_by_item[item].items():
            matrix[annotators.index(who), column] = ANSWERS.index(answer)
    if len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return None
    return round(float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")), 4)


def axis_agreement(rows: list[dict], gold_rows: list[dict], axis: str) -> dict:
    """All agreement figures of one axis (see the module docstring) as a JSON-ready dict."""
    by_item: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if row.get(axis) in ANSWERS:
            by_item[row["pair_id"]][row["annotator"]] = row[axis]
    agreeing = compared = 0
    for answers in by_item.values():
        for first, second in itertools.combinations(answers.values(), 2):
            compared += 1
            agreeing += first == second
    answers_all = [answer for answers in by_item.values() for answer in answers.values()]
    per_annotator: dict[str, dict] = defaultdict(
        lambda: {"answers": 0, "with_majority": 0, "majority_compared": 0, "gold_correct": 0, "gold_answered": 0}
    )
    for answers in by_item.values():
        for who, answer in answers.items():
            stats = per_annotator[who]
            stats["answers"] += 1
            others = {option: 0 for option in ANSWERS}
            for other, other_answer in answers.items():
                if other != who:
                    others[other_answer] += 1
            consensus = majority(others)
            if consensus is not None:
                stats["majority_compared"] += 1
                stats["with_majority"] += answer == consensus
    for row in gold_rows:
        expected = row.get(f"{axis}_gold")
        if expected in ANSWERS and row.get(axis) in ANSWERS:
            stats = per_annotator[row["annotator"]]
            stats["gold_answered"] += 1
            stats["gold_correct"] += row[axis] == expected
    annotators = {
        who: {
            "answers": stats["answers"],
            "agreement_with_majority": _ratio(stats["with_majority"], stats["majority_compared"]),
            "majority_compared": stats["majority_compared"],
            "gold_accuracy": _ratio(stats["gold_correct"], stats["gold_answered"]),
            "gold_answered": stats["gold_answered"],
        }
        for who, stats in sorted(per_annotator.items())
    }
    return {
        "items": len(by_item),
        "answers": len(answers_all),
        "krippendorff_alpha": krippendorff_alpha(by_item),
        "pairwise_agreement": _ratio(agreeing, compared),
        "pairwise_compared": compared,
        "tie_rate": _ratio(sum(answer == "tie" for answer in answers_all), len(answers_all)),
        "annotators": annotators,
    }


def agreement_report(rows: list[dict], gold_rows: list[dict], axes: list[str]) -> dict:
    """Agreement figures for every axis, from rows already in a/b order (`preferences.to_ab`)."""
    return {"axes": {axis: axis_agreement(rows, gold_rows, axis) for axis in axes}}


def agreement_from_folder(folder: Path) -> dict:
    """Recompute the agreement report from a pulled preference-data folder."""
    from imagepref.labeling.preferences import to_ab

    annotations = read_annotations(folder)
    gold = read_annotations(folder, GOLD_FILE) if (Path(folder) / GOLD_FILE).exists() else annotations.iloc[0:0]
    pairs = read_pairs(folder)
    axes = pair_axes(pairs)
    pairs = pairs.set_index("pair_id")

    def rows_of(frame) -> list[dict]:
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for record in records:
            if record.get("candidate_a") is None:  # annotations.parquet keeps a/b in pairs.parquet
                record["candidate_a"] = pairs.at[record["pair_id"], "candidate_a"]
                record["candidate_b"] = pairs.at[record["pair_id"], "candidate_b"]
        return to_ab(records, axes)

    return agreement_report(rows_of(annotations), rows_of(gold), axes)


def format_agreement_table(report: dict):
    """A rich table of the report: one row per axis, then one row per annotator and axis."""
    from rich.table import Table

    table = Table(title="Agreement per axis")
    for header in ("axis", "annotator", "answers", "alpha", "pairwise", "with majority", "gold accuracy", "tie rate"):
        table.add_column(header)

    def show(value: object) -> str:
        return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))

    for axis, figures in report["axes"].items():
        table.add_row(
            axis,
            "(all)",
            show(figures["answers"]),
            show(figures["krippendorff_alpha"]),
            show(figures["pairwise_agreement"]),
            "",
            "",
            show(figures["tie_rate"]),
        )
        for who, stats in figures["annotators"].items():
            table.add_row(
                "",
                who,
                show(stats["answers"]),
                "",
                "",
                show(stats["agreement_with_majority"]),
                show(stats["gold_accuracy"]),
                "",
            )
    return table


def save_agreement(report: dict, path: Path) -> None:
    """Write the report as JSON."""
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
