"""Reading a candidate set (the contract in shared/design.md) and the scores a reward model writes.

A candidate set is a folder with `candidates.parquet` and `images/`; one row per image with at
least `candidate_id`, `prompt_id`, `prompt` and `image_path` (relative to the folder).

A scores file (parquet or CSV) comes in one of two shapes:

* per pair: `candidate_a`, `candidate_b`, optional `uncertainty` (1 - |2 p - 1| averaged over
  axes: 1 = a coin toss), optional `disagreement` (how far an ensemble's members disagree about
  the pair; `imagepref reward score --pairs` writes it for an ensemble) and optional `<axis>_p_a`,
  the probability that `candidate_a` wins on that axis. Uncertainty pairing labels the pairs
  with the most disagreement first, then the most uncertain: members that disagree mark what
  the model has not learned, a shared coin toss may be a true tie that more votes will not settle;
* per candidate: `candidate_id` and one numeric column per axis (a reward head's score, higher is
  better). A pair's `<axis>_p_a` is then the Bradley-Terry probability sigmoid(s_a - s_b) and its
  uncertainty the mean over axes of 1 - |2 p - 1| (1 = a coin toss, 0 = sure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from imagepref.errors import BadInputError

REQUIRED_COLUMNS = ("candidate_id", "prompt_id", "prompt", "image_path")


@dataclass(frozen=True)
class CandidateSet:
    """A loaded, checked candidate set: its folder and its table indexed by `candidate_id`."""

    root: Path
    table: pd.DataFrame

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def image(self, candidate_id: str) -> Path:
        """The absolute path of a candidate's image."""
        return self.root / str(self.table.at[candidate_id, "image_path"])


def load_candidate_set(folder: Path) -> CandidateSet:
    """Read and check a candidate set: columns, unique ids, at least one row, every image on disk.

    Raises `BadInputError` naming the first problem and the fix.
    """
    folder = Path(folder).resolve()
    table_path = folder / "candidates.parquet"
    if not table_path.is_file():
        raise BadInputError(f"{folder} is not a candidate set: {table_path.name} is missing (make one with `imagepref generate`)")
    try:
        table = pd.read_parquet(table_path)
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise BadInputError(f"{table_path} is not a readable parquet file ({type(error).__name__})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise BadInputError(f"{table_path} lacks the column(s) {', '.join(missing)} that the candidate-set contract requires")
    if table.empty:
        raise BadInputError(f"candidate set {folder} is empty: {table_path.name} has no rows, so there is nothing to label")
    table = table.assign(candidate_id=table["candidate_id"].astype(str), prompt_id=table["prompt_id"].astype(str))
    duplicated = table["candidate_id"][table["candidate_id"].duplicated()]
    if not duplicated.empty:
        raise BadInputError(f"candidate id {duplicated.iloc[0]!r} appears twice in {table_path}; candidate ids must be unique")
    images_dir = (folder / "images").resolve()
    absent = []
    for relative in table["image_path"].astype(str):
        image = (folder / relative).resolve()
        if images_dir not in image.parents:
            raise BadInputError(f"image {relative!r} lies outside {images_dir}; candidate images must be inside the set's images/ folder")
        if not image.is_file():
            absent.append(relative)
    if absent:
        raise BadInputError(f"{len(absent)} image(s) of {folder} are missing on disk, first {absent[0]!r}; regenerate or restore them")
    return CandidateSet(folder, table.set_index("candidate_id", drop=False))


@dataclass(frozen=True)
class PairScore:
    """A reward model's view of one pair in a/b order: how unsure it is, how much its ensemble's
    members disagree (None for one model), and P(a wins) per axis."""

    uncertainty: float | None
    p_a: dict[str, float]
    disagreement: float | None = None


class Ranked(Protocol):
    """Anything that carries a pair's two ranking figures (a `PairScore`, a planned pair)."""

    uncertainty: float | None
    disagreement: float | None


def labeling_priority(score: Ranked | None) -> tuple[float, float]:
    """The key uncertainty pairing sorts by, highest first: the members' disagreement, then the
    uncertainty (-1 for what a scores file does not give)."""
    if score is None:
        return (-1.0, -1.0)
    return (-1.0 if score.disagreement is None else score.disagreement,
            -1.0 if score.uncertainty is None else score.uncertainty)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise BadInputError(f"scores file {path} does not exist; pass the file the reward model wrote")
    try:
        return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as error:
        raise BadInputError(f"scores file {path} is neither parquet nor CSV ({type(error).__name__})") from None


class PairScores:
    """Pair scores in a/b order (a < b), given per pair or computed from per-candidate scores."""

    def __init__(self, per_pair: dict[tuple[str, str], PairScore] | None = None,
                 per_candidate: dict[str, dict[str, float]] | None = None) -> None:
        self._per_pair = per_pair or {}
        self._per_candidate = per_candidate or {}

    def get(self, first: str, second: str) -> PairScore | None:
        """The score of the pair (`first`, `second`) with `first` < `second`, or None if unscored."""
        if self._per_pair:
            return self._per_pair.get((first, second))
        p_a = {}
        for axis, values in self._per_candidate.items():
            if first in values and second in values:
                p_a[axis] = 1.0 / (1.0 + math.exp(-(values[first] - values[second])))
        if not p_a:
            return None
        return PairScore(sum(1.0 - abs(2.0 * p - 1.0) for p in p_a.values()) / len(p_a), p_a)


def load_pair_scores(path: Path, axes: list[str]) -> PairScores:
    """Read a scores file of either shape (see the module docstring) for the given axes."""
    table = _read_table(Path(path))
    if {"candidate_a", "candidate_b"} <= set(table.columns):
        per_pair: dict[tuple[str, str], PairScore] = {}
        for row in table.to_dict("records"):
            first, second = str(row["candidate_a"]), str(row["candidate_b"])
            p_a = {axis: float(row[f"{axis}_p_a"]) for axis in axes
                   if f"{axis}_p_a" in row and not _missing(row[f"{axis}_p_a"])}
            uncertainty, disagreement = (None if _missing(row.get(name)) else float(row[name])
                                         for name in ("uncertainty", "disagreement"))
            if first > second:
                first, second = second, first
                p_a = {axis: 1.0 - value for axis, value in p_a.items()}
            per_pair[(first, second)] = PairScore(uncertainty, p_a, disagreement)
        return PairScores(per_pair=per_pair)
    score_axes = [axis for axis in axes if axis in table.columns]
    if "candidate_id" not in table.columns or not score_axes:
        raise BadInputError(f"scores file {path} needs candidate_a, candidate_b (per pair) or candidate_id plus "
                            f"one column per axis ({', '.join(axes)}) (per candidate)")
    ids = table["candidate_id"].astype(str)
    return PairScores(per_candidate={axis: dict(zip(ids, table[axis].astype(float))) for axis in score_axes})


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
