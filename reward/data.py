"""Reading preference data and the candidate sets its ids point at (the contracts: docs/formats.md).

``pairs.parquet`` gives per pair and axis the a / b / tie vote counts; the candidate ids resolve
through one or more candidate sets (``candidates.parquet`` + ``images/``) to an image, its prompt
and its image tokens. ``imagepref.formats`` reads and checks both files; this module checks what
a reward model needs of them. Everything a user can get wrong here (axes the model lacks, no decisive
votes, ids no candidate set holds, images missing on disk) is one ``BadInputError`` line.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.formats import (
    CANDIDATES_FILE,
    OUTCOMES,
    PAIRS_FILE,
    check_images,
    pair_axes,
    read_candidate_sets,
    read_pairs,
)


@dataclasses.dataclass
class PreferenceSet:
    """Pairs with vote counts, and every candidate they name."""

    pairs: pd.DataFrame  # pair_id, prompt, candidate_a, candidate_b, <axis>_votes_{a,b,tie}
    candidates: pd.DataFrame  # indexed by candidate_id: prompt, image_file (absolute), image_tokens
    axes: list[str]

    def votes(self, axes: Sequence[str] | None = None) -> torch.Tensor:
        """(pairs, axes, 3) vote counts (a, b, tie); an axis the data lacks is all zeros (masked)."""
        axes = list(axes or self.axes)
        out = np.zeros((len(self.pairs), len(axes), 3), dtype=np.float32)
        for j, axis in enumerate(axes):
            for k, outcome in enumerate(OUTCOMES):
                column = f"{axis}_votes_{outcome}"
                if column in self.pairs:
                    out[:, j, k] = self.pairs[column].fillna(0).to_numpy(dtype=np.float32)
        return torch.from_numpy(out)

    def subset(self, mask: np.ndarray) -> PreferenceSet:
        """The pairs where ``mask`` is true (candidates kept whole)."""
        return PreferenceSet(self.pairs[mask].reset_index(drop=True), self.candidates, self.axes)

    def load_images(self, ids: Sequence[str]) -> list[Image.Image]:
        """The images of candidates ``ids``, loaded into memory."""
        images = []
        for candidate_id in ids:
            with Image.open(self.candidates.at[candidate_id, "image_file"]) as image:
                images.append(image.convert("RGB"))
        return images

    @property
    def edits(self) -> bool:
        """Whether the pairs compare edits (results of one instruction on one source)."""
        return "instruction" in self.pairs.columns

    def instructions(self, ids: Sequence[str]) -> list[str]:
        """The instruction each of candidates ``ids`` followed (edit results only)."""
        return [str(self.candidates.at[c, "instruction"]) for c in ids]

    def source_tokens(self, ids: Sequence[str]) -> list[list[int]]:
        """The image tokens of the source each of candidates ``ids`` edited (edit results only)."""
        return self.tokens([str(self.candidates.at[c, "source_candidate"]) for c in ids])

    def tokens(self, ids: Sequence[str]) -> list[list[int]]:
        """The image tokens of candidates ``ids``."""
        if "image_tokens" not in self.candidates:
            raise BadInputError(
                "the candidate sets have no image_tokens column, which the token backbone reads; "
                "regenerate them with `imagepref generate` or use backbone=pixel"
            )
        return [list(self.candidates.at[c, "image_tokens"]) for c in ids]


def check_axes(found: Sequence[str], axes: Sequence[str]) -> None:
    """One line when preference data has axes (``found``) a model of ``axes`` lacks."""
    extra = [a for a in found if a not in axes]
    if extra:
        raise BadInputError(
            f"preference data has axes the model lacks: {', '.join(extra)} (model axes: "
            f"{', '.join(axes)}); train with axes=[...] including them"
        )


def read_preferences(
    prefs_dir: str | Path,
    candidates_dirs: Sequence[str | Path] = (),
    axes: Sequence[str] | None = None,
    need_images: bool = True,
    require_decisive: bool = True,
) -> PreferenceSet:
    """Read and check preference data and its candidates.

    ``axes``: the model's axes; data with other axes is refused. With no ``candidates_dirs``,
    ``<prefs_dir>/candidates`` is used when it exists. ``need_images`` checks every image named by
    a pair is on disk; ``require_decisive`` refuses data without a single a/b vote.
    """
    prefs_dir = Path(prefs_dir)
    pairs_path = prefs_dir / PAIRS_FILE
    pairs = read_pairs(prefs_dir)
    found = pair_axes(pairs)
    if axes is not None:
        check_axes(found, axes)
    if not found:
        raise BadInputError(f"{pairs_path} has no <axis>_votes_a columns: it carries no votes")
    if len(pairs) == 0:
        raise BadInputError(f"{pairs_path} is empty: label some pairs first (`imagepref label pull`)")
    set_set = PreferenceSet(pairs.reset_index(drop=True), pd.DataFrame(), found)
    votes = set_set.votes()
    if require_decisive and float(votes[..., :2].sum()) == 0:
        what = "every vote is a tie" if float(votes.sum()) > 0 else "no pair has a vote"
        raise BadInputError(f"{pairs_path} has nothing to learn from: {what} across {len(pairs)} pairs")
    if not candidates_dirs and (prefs_dir / "candidates" / CANDIDATES_FILE).is_file():
        candidates_dirs = [prefs_dir / "candidates"]
    candidates = read_candidate_sets(candidates_dirs)
    named = pd.unique(pd.concat([set_set.pairs["candidate_a"], set_set.pairs["candidate_b"]]))
    unknown = [c for c in named if c not in candidates.index]
    if unknown:
        raise BadInputError(
            f"{len(unknown)} candidate id(s) of the pairs are in no candidate set given (e.g. "
            f"{unknown[0]!r}); pass every set the pairs came from with --candidates"
        )
    if need_images:
        check_images(candidates, named)
    set_set.candidates = candidates
    return set_set


def split_by_prompt(prefs: PreferenceSet, fraction: float, seed: int) -> tuple[PreferenceSet, PreferenceSet]:
    """(train, validation) with no prompt on both sides; ``fraction`` of the prompts validate."""
    prompts = sorted(prefs.pairs["prompt"].astype(str).unique())
    random.Random(seed).shuffle(prompts)
    count = int(round(fraction * len(prompts)))
    if fraction > 0 and len(prompts) >= 2:
        count = min(max(1, count), len(prompts) - 1)
    held = set(prompts[:count])
    in_val = prefs.pairs["prompt"].astype(str).isin(held).to_numpy()
    return prefs.subset(~in_val), prefs.subset(in_val)
