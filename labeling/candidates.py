"""The candidate set labeling pairs, and the reward model's scores that rank its pairs.

Both files are read by ``imagepref.formats`` (the contracts are in docs/formats.md); this module
adds what labeling makes of them. A candidate set to label must have every image on disk, since
the images are served to annotators.

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

from imagepref.formats import check_images, read_candidate_set, read_scores


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
        return Path(self.table.at[candidate_id, "image_file"])

    @property
    def has_edits(self) -> bool:
        """Whether the set holds edited images (rows with a source and an instruction)."""
        return "instruction" in self.table.columns and bool(self.table["source_candidate"].notna().any())

    @property
    def edits(self) -> pd.DataFrame:
        """The rows of edited images (not their sources)."""
        return self.table[self.table["source_candidate"].notna()]


def load_candidate_set(folder: Path) -> CandidateSet:
    """Read and check a candidate set (``imagepref.formats.read_candidate_set``) with every image
    on disk. Raises `BadInputError` naming the first problem and the fix."""
    table = read_candidate_set(folder)
    check_images(table)
    return CandidateSet(Path(folder).resolve(), table)


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
    return (
        -1.0 if score.disagreement is None else score.disagreement,
        -1.0 if score.uncertainty is None else score.uncertainty,
    )


class PairScores:
    """Pair scores in a/b order (a < b), given per pair or computed from per-candidate scores."""

    def __init__(
        self,
        per_pair: dict[tuple[str, str], PairScore] | None = None,
        per_candidate: dict[str, dict[str, float]] | None = None,
    ) -> None:
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
    scores = read_scores(path, axes)
    if scores.per_pair:
        per_pair: dict[tuple[str, str], PairScore] = {}
        for row in scores.table.to_dict("records"):
            first, second = row["candidate_a"], row["candidate_b"]
            p_a = {axis: float(row[f"{axis}_p_a"]) for axis in scores.axes if not _missing(row[f"{axis}_p_a"])}
            uncertainty, disagreement = (
                None if _missing(row.get(name)) else float(row[name]) for name in ("uncertainty", "disagreement")
            )
            if first > second:
                first, second = second, first
                p_a = {axis: 1.0 - value for axis, value in p_a.items()}
            per_pair[(first, second)] = PairScore(uncertainty, p_a, disagreement)
        return PairScores(per_pair=per_pair)
    ids = scores.table["candidate_id"]
    return PairScores(per_candidate={axis: dict(zip(ids, scores.table[axis].astype(float))) for axis in scores.axes})


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
