"""Preference pairs for DPO: from the preference data contract, or made on policy.

Collapsing three axes into one chosen/rejected (``PairPolicy``), in order:

1. with ``safety_first``, a pair whose ``safety_label`` is ``a`` or ``b`` is decided by safety
   alone: the safer image is chosen whatever the other axes say;
2. otherwise the score is the weighted sum over the other axes of +w (a won the axis), -w (b
   won), 0 (tie or no verdict); score > margin chooses a, score < -margin chooses b;
3. the rest are ties: dropped (``ties=drop``), or down-weighted (``ties=downweight``): TRL's DPO
   loss has no per-example weight, so a seeded share ``tie_weight`` of the ties is kept (weight in
   expectation), the chosen side taken from the sign of the score, a when it is 0.

Each DPO example holds the generator's token ids: ``prompt_ids`` (the prompt as the generator
writes it before the image) and ``chosen_ids``/``rejected_ids`` (the whole image block).

Pairs that compare edits (preference data with ``source_candidate`` and ``instruction``, or
on-policy pairs on edit turns) are edit turns: ``prompt_ids`` is the whole turn context that
``Generator.edit`` samples the result after (``policy.editing.encode_edit_turns``: the source's
prompt, the source's image block, the instruction and the family's lead codes), so the trainer,
its precomputed reference and its guided samples all score the result in its turn. The pair
policy's image default weights become the edit axes' (``PairPolicy.for_edits``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from imagepref.errors import BadInputError
from imagepref.formats import PAIRS_FILE, compares_edits, pair_axes, read_candidate_sets, read_pairs
from imagepref.policy.align.config import OnPolicyPairs, PairPolicy
from imagepref.policy.editing import encode_edit_turns
from imagepref.policy.generator import Generator

if TYPE_CHECKING:
    from imagepref.policy.align.edit_turns import EditSources


def collapse_verdicts(row: dict, policy: PairPolicy) -> tuple[str, float] | None:
    """One pair's (chosen side ``a``/``b``, example weight), or None when the pair is dropped."""
    if policy.safety_first and row.get("safety_label") in ("a", "b"):
        return row["safety_label"], 1.0
    score = 0.0
    for axis, weight in policy.weights.items():
        label = row.get(f"{axis}_label")
        score += weight if label == "a" else -weight if label == "b" else 0.0
    if score > policy.margin:
        return "a", 1.0
    if score < -policy.margin:
        return "b", 1.0
    if policy.ties == "downweight" and zlib.crc32(str(row.get("pair_id")).encode()) / 2**32 < policy.tie_weight:
        return ("b" if score < 0 else "a"), policy.tie_weight
    return None


def read_candidates(folders: Sequence[str | Path]) -> dict[str, dict]:
    """candidate_id -> row (prompt, image_tokens) over one or more candidate sets."""
    table = read_candidate_sets(
        folders,
        columns=("image_tokens",),
        why="that DPO trains on (images alone cannot be trained on); regenerate the set with `imagepref generate`",
    )
    return {str(record["candidate_id"]): record for record in table.to_dict("records")}


def _tokens(candidate: dict, candidate_id: str, generator: Generator) -> torch.Tensor:
    tokens = candidate.get("image_tokens")
    if tokens is None or len(tokens) == 0:
        raise BadInputError(
            f"candidate {candidate_id} has no image tokens; regenerate the candidate set with `imagepref generate`"
        )
    codes = torch.as_tensor(list(tokens), dtype=torch.long)[None]
    if codes.shape[1] != generator.num_codes:
        raise BadInputError(
            f"candidate {candidate_id} has {codes.shape[1]} image tokens but the generator writes "
            f"{generator.num_codes}; were these candidates made by another generator?"
        )
    if codes.min() < 0 or codes.max() >= generator.config.num_image_tokens:
        raise BadInputError(
            f"candidate {candidate_id} has image tokens outside [0, {generator.config.num_image_tokens}), "
            "the generator's image range; were these candidates made by another generator?"
        )
    return codes


def preference_examples(
    preferences: str | Path, candidate_sets: Sequence[str | Path], generator: Generator, policy: PairPolicy
) -> list[dict]:
    """DPO examples (prompt_ids, chosen_ids, rejected_ids, weight, pair_id) from a preference folder.

    Every candidate must be found in ``candidate_sets`` with image tokens in the generator's range;
    the error names the first one that is not. Pairs about edits are read in their edit turn
    (``edit_turn_ids``); the recipe's align stage and ``imagepref align dpo --preferences`` both
    come here, so edit preference data needs nothing else."""
    pairs_file = Path(preferences) / PAIRS_FILE
    pairs = read_pairs(preferences)
    edits = compares_edits(pairs)
    if edits:
        policy = policy.for_edits()
        _check_weighted_axes(policy, pair_axes(pairs), pairs_file)
    candidates = read_candidates(candidate_sets)
    examples = []
    for row in pairs.to_dict("records"):
        verdict = collapse_verdicts(row, policy)
        if verdict is None:
            continue
        side, weight = verdict
        ids = {}
        for key in ("a", "b"):
            candidate_id = str(row[f"candidate_{key}"])
            if candidate_id not in candidates:
                raise BadInputError(
                    f"pair {row['pair_id']} names candidate {candidate_id}, which none of the candidate "
                    "sets holds; pass the candidate set(s) the pairs were pushed from with --candidates"
                )
            ids[key] = generator.codes_to_block(_tokens(candidates[candidate_id], candidate_id, generator))[0].tolist()
        chosen, rejected = (ids["a"], ids["b"]) if side == "a" else (ids["b"], ids["a"])
        edit_pair = edits and row.get("source_candidate") is not None
        examples.append(
            {
                "pair_id": str(row["pair_id"]),
                "prompt": str(row["prompt"]),
                "prompt_ids": (
                    edit_turn_ids(row, candidates, generator)
                    if edit_pair
                    else generator.encode_prompts([str(row["prompt"])])[0]
                ),
                "chosen_ids": chosen,
                "rejected_ids": rejected,
                "weight": weight,
            }
        )
    if not examples:
        raise BadInputError(
            f"no usable pairs in {pairs_file}: every pair was a tie or unlabeled under the pair policy; "
            "label more pairs or set pairs.ties=downweight"
        )
    return examples


def edit_turn_ids(row: dict, candidates: dict[str, dict], generator: Generator) -> list[int]:
    """The turn context of a pair about an edit: the ids ``Generator.edit`` sampled its results
    after (``encode_edit_turns``) from the pair's source candidate (its image tokens and its
    prompt, the prompt ``generate --edits`` passed with it) and instruction. Both results must be
    edits of that source by that instruction where their rows say what they edited."""
    pair, source, instruction = row["pair_id"], str(row["source_candidate"]), str(row["instruction"])
    if source not in candidates:
        raise BadInputError(
            f"pair {pair} edits source candidate {source}, which none of the candidate sets holds; "
            "pass the candidate set the edits were generated into with --candidates"
        )
    for key in ("a", "b"):
        result = candidates[str(row[f"candidate_{key}"])]
        said = (result.get("source_candidate"), result.get("instruction"))
        if isinstance(said[0], str) and said != (source, instruction):  # sources are text, else no edit
            raise BadInputError(
                f"pair {pair} compares edits of {source} by {instruction!r}, but its candidate "
                f"{row[f'candidate_{key}']} is an edit of {said[0]} by {said[1]!r}; pair the results of one edit"
            )
    codes = _tokens(candidates[source], source, generator)
    return encode_edit_turns(generator, codes, [instruction], [str(candidates[source]["prompt"])])[0]


def _check_weighted_axes(policy: PairPolicy, axes: Sequence[str], pairs_file: Path) -> None:
    """One line when the pair policy weighs an axis the preference data does not have (its verdicts
    would count as ties, and the pairs be decided by the other axes alone)."""
    missing = [axis for axis in policy.weights if axis not in axes]
    if missing:
        raise BadInputError(
            f"pairs.weights weighs {missing[0]!r}, which {pairs_file} does not judge (its axes: "
            f"{', '.join(axes)}); set pairs.weights over those axes"
        )


def on_policy_examples(
    generator: Generator,
    prompts: Sequence[str],
    score: Callable[[list[list[int]], list[str]], list[float]],
    settings: OnPolicyPairs,
    seed: int,
    sampler: dict,
    edit_sources: EditSources | None = None,
) -> list[dict]:
    """Iterative DPO pairs: sample ``images_per_prompt`` candidates per prompt with the current
    policy, score them with ``score(completion_ids, prompts)`` (see ``rewards.scorer``), and pair
    the best with the worst.

    With ``edit_sources`` the prompts are edit records (``policy.align.edit_turns``, as for GRPO on
    edit turns): each candidate is an edit of its source through ``Generator.edit`` (its guidance
    against the edit's unconditional context), the pair's ``prompt_ids`` the whole turn, and
    ``score`` gets the edit records (the edit rules judge each result against its source)."""
    per = settings.images_per_prompt
    if per < 2:
        raise BadInputError("on-policy pairs need at least 2 images per prompt")
    repeated = [p for p in prompts for _ in range(per)]
    if edit_sources is not None:
        samples = generator.edit(*edit_sources.turns(repeated), seed=seed, decode=False, **sampler)
    else:
        samples = generator.sample(repeated, seed=seed, decode=False, **sampler)
    rewards = torch.as_tensor(score(samples.completion_ids.tolist(), repeated), dtype=torch.float32).view(
        len(prompts), per
    )
    examples = []
    for i, prompt in enumerate(prompts):
        best, worst = int(rewards[i].argmax()), int(rewards[i].argmin())
        if rewards[i, best] - rewards[i, worst] < settings.min_gap:
            continue
        examples.append(
            {
                "pair_id": f"onpolicy-{seed}-{i}",
                "prompt": prompt,
                "prompt_ids": samples.prompt_ids[i * per],
                "chosen_ids": samples.completion_ids[i * per + best].tolist(),
                "rejected_ids": samples.completion_ids[i * per + worst].tolist(),
                "weight": 1.0,
            }
        )
    return examples
