"""Turning a candidate set into comparison pairs: strategy, left/right order, gold pairs.

Every choice is a pure function of the seed and the candidate ids, so pushing the same set with
the same settings plans the same pairs with the same pair ids and sides; that is what makes a
second push add nothing. `candidate_a` < `candidate_b` is the stable order of the contract;
left/right is the screen position, drawn per pair and stored with the task.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

from imagepref.errors import BadInputError
from imagepref.formats import read_known_answers
from imagepref.labeling.candidates import CandidateSet, PairScores, labeling_priority
from imagepref.labeling.config import CHOICES, LabelingConfig

# A prediction says "tie" when the reward model's P(a wins) is this close to a coin toss.
TIE_MARGIN = 0.1


@dataclass(frozen=True)
class PlannedPair:
    """One pair to label: ids in a/b order, the screen sides, and gold answers or model scores."""

    pair_id: str
    prompt_id: str
    prompt: str
    candidate_a: str
    candidate_b: str
    candidate_left: str
    candidate_right: str
    is_gold: bool = False
    gold: dict[str, str] = field(default_factory=dict)
    uncertainty: float | None = None
    p_a: dict[str, float] = field(default_factory=dict)
    disagreement: float | None = None


def pair_id_for(candidate_a: str, candidate_b: str, gold: bool = False) -> str:
    """A stable id for the unordered pair (gold pairs get their own ids, so they never collide)."""
    first, second = sorted((candidate_a, candidate_b))
    digest = hashlib.sha1(f"{first}\x1f{second}".encode()).hexdigest()[:16]
    return f"{'g' if gold else 'p'}-{digest}"


def _sides(pair_id: str, first: str, second: str, seed: int) -> tuple[str, str]:
    # Seeded per pair (not per run), so the sides do not depend on which other pairs are pushed.
    swap = random.Random(f"{seed}:{pair_id}").random() < 0.5
    return (second, first) if swap else (first, second)


def _make(prompt_id: str, prompt: str, first: str, second: str, seed: int, **extra: object) -> PlannedPair:
    first, second = sorted((first, second))
    gold = bool(extra.get("is_gold"))
    pair_id = pair_id_for(first, second, gold)
    left, right = _sides(pair_id, first, second, seed)
    return PlannedPair(pair_id, prompt_id, prompt, first, second, left, right, **extra)  # type: ignore[arg-type]


def plan_pairs(candidates: CandidateSet, config: LabelingConfig, scores: PairScores | None = None) -> list[PlannedPair]:
    """The regular pairs for a candidate set, by `config.pairing`, all within a prompt.

    `random` draws `pairs_per_prompt` pairs per prompt (default: candidates // 2, disjoint where
    it can); `all` takes every pair; `uncertainty` ranks every pair by the scores (most members'
    disagreement first, then most uncertain; see `labeling_priority`), keeping `pairs_per_prompt`
    per prompt if set. `max_pairs` caps the total (a seeded sample for random/all, the top for
    uncertainty).
    """
    # In a set of edits, the sources are shown beside each pair, never paired themselves.
    table = candidates.edits if candidates.has_edits else candidates.table
    groups = {prompt_id: sorted(group["candidate_id"]) for prompt_id, group in table.groupby("prompt_id", sort=True)}
    if all(len(ids) < 2 for ids in groups.values()):
        raise BadInputError(
            f"candidate set {candidates.root} has one image per prompt, so there is nothing to pair; "
            "generate at least two images per prompt"
        )
    if config.pairing == "uncertainty" and scores is None:
        raise BadInputError("pairing 'uncertainty' needs a scores file (scores_file / --scores) with uncertainties")
    prompts = table.groupby("prompt_id")["prompt"].first().to_dict()
    pairs: list[PlannedPair] = []
    for prompt_id, ids in groups.items():
        if len(ids) < 2:
            continue
        every = list(itertools.combinations(ids, 2))
        if config.pairing == "random":
            chosen = _random_pairs(
                ids,
                every,
                config.pairs_per_prompt or max(1, len(ids) // 2),
                random.Random(f"{config.seed}:{prompt_id}"),
            )
        elif config.pairing == "all":
            chosen = every
        else:
            ranked = sorted(every, key=lambda ab: labeling_priority(scores.get(*ab)), reverse=True)
            chosen = ranked[: config.pairs_per_prompt] if config.pairs_per_prompt else ranked
        for first, second in chosen:
            score = scores.get(first, second) if scores is not None else None
            pairs.append(
                _make(
                    prompt_id,
                    prompts[prompt_id],
                    first,
                    second,
                    config.seed,
                    uncertainty=score.uncertainty if score else None,
                    p_a=dict(score.p_a) if score else {},
                    disagreement=score.disagreement if score else None,
                )
            )
    if config.pairing == "uncertainty":
        if all(pair.uncertainty is None and pair.disagreement is None for pair in pairs):
            raise BadInputError(
                "the scores file gives no uncertainty for any pair of this candidate set; check its candidate ids"
            )
        pairs.sort(key=labeling_priority, reverse=True)
        return pairs[: config.max_pairs] if config.max_pairs else pairs
    if config.max_pairs and len(pairs) > config.max_pairs:
        keep = set(random.Random(config.seed).sample(range(len(pairs)), config.max_pairs))
        pairs = [pair for index, pair in enumerate(pairs) if index in keep]
    return pairs


def _random_pairs(
    ids: list[str], every: list[tuple[str, str]], wanted: int, rng: random.Random
) -> list[tuple[str, str]]:
    shuffled = list(ids)
    rng.shuffle(shuffled)
    disjoint = [tuple(sorted(shuffled[index : index + 2])) for index in range(0, len(shuffled) - 1, 2)]
    if wanted <= len(disjoint):
        return disjoint[:wanted]  # type: ignore[return-value]
    rest = [pair for pair in every if pair not in disjoint]
    rng.shuffle(rest)
    return disjoint + rest[: wanted - len(disjoint)]  # type: ignore[operator]


def plan_gold_pairs(candidates: CandidateSet, config: LabelingConfig, regular_count: int) -> list[PlannedPair]:
    """Known-answer pairs to mix in: round(gold_rate x regular pairs), sampled from the gold file.

    The gold file (parquet or CSV) has `candidate_a`, `candidate_b` (ids in this candidate set)
    and, per axis, the known answer `a`, `b` or `tie` (empty = not checked on that axis).
    """
    wanted = round(config.gold_rate * regular_count)
    if wanted == 0:
        return []
    if config.gold_file is None:
        raise BadInputError(
            f"gold_rate is {config.gold_rate} but no gold_file is set; give known-answer pairs or set gold_rate 0"
        )
    path = Path(config.gold_file)
    pool: list[PlannedPair] = []
    for row in read_known_answers(path, config.axes).to_dict("records"):
        first, second = row["candidate_a"], row["candidate_b"]
        for candidate in (first, second):
            if candidate not in candidates.table.index:
                raise BadInputError(f"gold pair candidate {candidate!r} is not in candidate set {candidates.root}")
        answers = {axis: row[axis] for axis in config.axes if isinstance(row.get(axis), str) and row[axis]}
        if first > second:
            answers = {axis: {"a": "b", "b": "a"}.get(value, value) for axis, value in answers.items()}
        if not answers:
            raise BadInputError(f"gold pair {first} / {second} in {path} has no known answer on any axis")
        prompt_id = str(candidates.table.at[min(first, second), "prompt_id"])
        prompt = str(candidates.table.at[min(first, second), "prompt"])
        pool.append(_make(prompt_id, prompt, first, second, config.seed, is_gold=True, gold=answers))
    rng = random.Random(f"{config.seed}:gold")
    return rng.sample(pool, min(wanted, len(pool)))


def prediction_result(pair: PlannedPair) -> list[dict]:
    """Label Studio pre-annotation results from the pair's P(a wins), on the screen's sides."""
    result = []
    for axis, p_a in pair.p_a.items():
        if abs(p_a - 0.5) < TIE_MARGIN:
            choice = "tie"
        else:
            winner = pair.candidate_a if p_a > 0.5 else pair.candidate_b
            choice = "left" if winner == pair.candidate_left else "right"
        assert choice in CHOICES
        result.append({"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [choice]}})
    return result
