"""Building the preference data contract's two tables (docs/formats.md) from judgments.

`annotations.parquet` has one row per judgment of one pair by one annotator, with left/right
screen answers; `pairs.parquet` has one row per pair with the votes per axis counted in the
stable a/b order. A pair's `<axis>_label` is the answer with the most votes, or null when there
are no votes or the top count is shared (annotators disagree without a majority). Judgments of
edits carry the edit's `source_candidate` and `instruction` in both tables.
"""

from __future__ import annotations

import pandas as pd

from imagepref.formats import EDIT_COLUMNS, OUTCOMES, annotation_columns, majority, pair_columns


def annotation_frame(
    rows: list[dict], axes: list[str], extra: list[str] | None = None, edits: bool = False
) -> pd.DataFrame:
    """annotations.parquet's table (plus `extra` columns; with `edits`, the edit columns) from
    parsed rows, with stable dtypes."""
    columns = annotation_columns(axes, edits) + list(extra or [])
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns:
        if column not in ("lead_time",):
            frame[column] = frame[column].astype("string")
    frame["lead_time"] = pd.to_numeric(frame["lead_time"], errors="coerce").astype("float64")
    # Each row parsed on its own: Label Studio leaves out the fraction when the microseconds are 0,
    # and a format guessed from the first row would turn the other rows into NaT.
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, errors="coerce", format="ISO8601")
    return frame.sort_values(["pair_id", "annotator"], kind="stable").reset_index(drop=True)


def to_ab(rows: list[dict], axes: list[str]) -> list[dict]:
    """Rows with each axis answer turned from screen sides (left/right) into candidates (a/b)."""
    converted = []
    for row in rows:
        mapped = dict(row)
        for axis in axes:
            side = row.get(axis)
            if side in ("left", "right"):
                chosen = row["candidate_left"] if side == "left" else row["candidate_right"]
                mapped[axis] = "a" if chosen == row["candidate_a"] else "b"
        converted.append(mapped)
    return converted


def pair_frame(rows: list[dict], axes: list[str], edits: bool = False) -> pd.DataFrame:
    """pairs.parquet's table: per pair and axis the a / b / tie vote counts and the majority label
    (with `edits`, each pair's source and instruction)."""
    pairs: dict[str, dict] = {}
    for row in to_ab(rows, axes):
        pair = pairs.setdefault(
            row["pair_id"],
            {
                "pair_id": row["pair_id"],
                "prompt": row["prompt"],
                "candidate_a": row["candidate_a"],
                "candidate_b": row["candidate_b"],
                **{column: row.get(column) for column in (EDIT_COLUMNS if edits else ())},
                **{f"{axis}_votes_{answer}": 0 for axis in axes for answer in OUTCOMES},
            },
        )
        for axis in axes:
            if row.get(axis) in OUTCOMES:
                pair[f"{axis}_votes_{row[axis]}"] += 1
    for pair in pairs.values():
        for axis in axes:
            pair[f"{axis}_label"] = majority({answer: pair[f"{axis}_votes_{answer}"] for answer in OUTCOMES})
    frame = pd.DataFrame(list(pairs.values()), columns=pair_columns(axes, edits))
    for axis in axes:
        for answer in OUTCOMES:
            frame[f"{axis}_votes_{answer}"] = frame[f"{axis}_votes_{answer}"].astype("int64")
        frame[f"{axis}_label"] = frame[f"{axis}_label"].astype("string")
    for column in ("pair_id", "prompt", "candidate_a", "candidate_b", *(EDIT_COLUMNS if edits else ())):
        frame[column] = frame[column].astype("string")
    return frame.sort_values("pair_id", kind="stable").reset_index(drop=True)
