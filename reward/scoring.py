"""Scoring candidate sets with a reward model, in the two shapes of the scores file (docs/formats.md;
written with ``imagepref.formats.write_scores``, read by labeling):

- ``candidate_scores``: one row per candidate: ``candidate_id``, the raw score of each head,
  ``<axis>_normalised`` and ``combined`` (the RL reward), for reports and ad-hoc ranking;
- ``pair_scores``: one row per pair of candidates of the same prompt: ``candidate_a`` <
  ``candidate_b``, ``<axis>_p_a`` (P(a preferred) under the trained tie model), ``uncertainty``
  and, for an ensemble, ``disagreement`` (the members' spread), which labeling's uncertainty
  pairing ranks by first, so people label what more votes can teach the model.

Each candidate is scored once per member; pairs are formed from those scores, not re-scored. A
model of edits scores the results of an edit set (each with its source and instruction), and pairs
results of one edit; the sources themselves are not scored.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from imagepref.formats import check_images, read_candidate_sets
from imagepref.reward.config import check_scored_set
from imagepref.reward.data import PreferenceSet
from imagepref.reward.model import RewardModel, score_candidates

BATCH = 256


def scored_rows(model: RewardModel, table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``read_candidate_sets`` table the model scores: every row for an image model,
    the edit results (not their sources) for a model of edits; one line when the set and the model
    disagree about whether these are edits."""
    edit_set = "instruction" in table.columns
    check_scored_set(model.config, edit_set)
    return table[table["instruction"].notna()] if edit_set else table


def _member_scores(model: RewardModel, table: pd.DataFrame, rows: pd.DataFrame) -> torch.Tensor:
    """Raw scores (members, candidates, axes) of ``rows`` of a ``read_candidate_sets`` table (the
    whole table: an edit's source is one of its rows)."""
    if model.config.backbone != "token":
        check_images(rows)
    candidates = PreferenceSet(pd.DataFrame(), table, list(model.axes))  # no pairs: every candidate of the set
    return score_candidates(model, candidates, rows["candidate_id"], BATCH, per_member=True)


def candidate_scores(model: RewardModel, candidate_sets: Sequence[str | Path]) -> pd.DataFrame:
    """One row per candidate: raw head scores, normalised ones and the combined reward."""
    everything = read_candidate_sets(candidate_sets)
    table = scored_rows(model, everything)
    raw = _member_scores(model, everything, table).mean(0)
    normalised = model.normalise(raw)
    frame = pd.DataFrame({"candidate_id": table["candidate_id"].tolist()})
    for i, axis in enumerate(model.axes):
        frame[axis] = raw[:, i].numpy()
        frame[f"{axis}_normalised"] = normalised[:, i].numpy()
    frame["combined"] = model.combined_from_scores(raw).numpy()
    return frame


def pair_scores(model: RewardModel, candidate_sets: Sequence[str | Path]) -> pd.DataFrame:
    """One row per pair of candidates that share a ``prompt_id`` (edits: a source and an
    instruction): P(a preferred) per axis,
    ``uncertainty`` and (several members) ``disagreement``; see the module docstring."""
    everything = read_candidate_sets(candidate_sets)
    table = scored_rows(model, everything)
    raw = _member_scores(model, everything, table)
    position = {candidate: i for i, candidate in enumerate(table["candidate_id"])}
    pairs = [
        pair
        for _, group in table.groupby(
            [table["source_candidate"].astype(str), table["instruction"].astype(str)]
            if model.config.edits
            else table["prompt_id"].astype(str),
            sort=True,
        )
        for pair in itertools.combinations(sorted(group["candidate_id"]), 2)
    ]
    columns = ["candidate_a", "candidate_b", *(f"{axis}_p_a" for axis in model.axes), "uncertainty"]
    if not pairs:
        return pd.DataFrame(columns=columns)
    a = torch.tensor([position[first] for first, _ in pairs])
    b = torch.tensor([position[second] for _, second in pairs])
    view = model.uncertainty_from_scores(raw[:, a], raw[:, b])
    frame = pd.DataFrame({"candidate_a": [first for first, _ in pairs], "candidate_b": [second for _, second in pairs]})
    for name, values in view.items():
        frame[name] = values.numpy()
    return frame
