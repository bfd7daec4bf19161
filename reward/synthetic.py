"""Glyph-world preference data made in code: candidate sets, simulated judgments, the contract's tables.

For each seeded clean sign, ``variants_per_prompt`` versions are drawn for the same prompt, each
with a seeded mix of defects the rules see: a flaw (noise, cut-off, cramped), a forbidden mark,
the wrong ink colour, or a different word of the same length. Every image goes through the
generator's codec (encode, then decode), exactly as a generated candidate would, so the pixels
and the ``image_tokens`` column agree. Pairs within a prompt are judged by several simulated
annotators (``policy.glyphworld.rules.simulated_judge``, independent errors) and written as
``annotations.parquet`` and ``pairs.parquet`` of the preference-data contract (docs/formats.md).

OCR comes in as a callable (``read_text``), so this module depends on no engine; readings are
cached per image, since each image is judged in several pairs by several annotators.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.formats import (
    AXES,
    OUTCOMES,
    majority,
    pair_columns,
    refuse_existing_preferences,
    write_annotations,
    write_candidate_table,
    write_pairs,
)


def _cached(read_text: Callable[[Image.Image], str]) -> Callable[[Image.Image], str]:
    cache: dict[str, str] = {}

    def read(image: Image.Image) -> str:
        key = hashlib.sha1(image.convert("RGB").tobytes()).hexdigest()
        if key not in cache:
            cache[key] = read_text(image)
        return cache[key]

    return read


def _variant(spec, rng: random.Random, defect_rate: float):
    """A version of ``spec`` with a seeded mix of defects (maybe none)."""
    from imagepref.policy.glyphworld.world import FLAWS, FORBIDDEN_MARKS, TEXT_COLOURS, TRAIN_WORDS

    changes = {}
    if rng.random() < defect_rate:
        changes["flaw"] = rng.choice(FLAWS)
    if rng.random() < defect_rate:
        changes["forbidden"] = rng.choice(FORBIDDEN_MARKS)
    if rng.random() < defect_rate:
        changes["colour"] = rng.choice([c for c in TEXT_COLOURS if c != spec.colour])
    if rng.random() < defect_rate:
        same_length = [w for w in TRAIN_WORDS if len(w) == len(spec.text) and w != spec.text]
        if same_length:
            changes["text"] = rng.choice(same_length)
    if changes.get("flaw") in ("cutoff", "cramped"):
        # Re-place the text the way sample_spec places a cut-off or cramped sign.
        cells, width = 8, len(changes.get("text", spec.text))
        if changes["flaw"] == "cutoff":
            shift = rng.randint(1, max(1, width // 2))
            changes["column"] = -shift if rng.random() < 0.5 else cells - width + shift
        else:
            height = 2 if spec.size == "small" else 3
            changes["row"] = 0 if rng.random() < 0.5 else cells - height
    changes["seed"] = rng.randrange(2**31)
    return dataclasses.replace(spec, **changes)


def glyph_preference_data(
    out: str | Path,
    codec,
    read_text: Callable[[Image.Image], str],
    prompts: int = 200,
    variants_per_prompt: int = 4,
    annotators: int = 3,
    error_rate: float = 0.1,
    defect_rate: float = 0.35,
    seed: int = 0,
    generator_name: str = "glyph-codec",
) -> dict:
    """Write a glyph-world candidate set (``<out>/candidates``) and preference data (``<out>``).

    Every pair of a prompt's variants is judged by ``annotators`` simulated people who each err
    with probability ``error_rate``. Returns counts. The folder is built under a temporary name and
    renamed when complete."""
    from imagepref.policy.glyphworld import render, training_specs
    from imagepref.policy.glyphworld.rules import simulated_judge

    if prompts < 1 or variants_per_prompt < 2 or annotators < 1:
        raise BadInputError("need at least 1 prompt, 2 variants per prompt and 1 annotator")
    out = Path(out)
    refuse_existing_preferences(out)
    with staged_folder(out) as staging:
        (staging / "candidates" / "images").mkdir(parents=True)
        rng = random.Random(seed)
        bases = training_specs(prompts, seed, flaw_rate=0.0, forbidden_rate=0.0)
        records, images = [], []
        for p, base in enumerate(bases):
            for v in range(variants_per_prompt):
                spec = base if v == 0 and rng.random() < 0.5 else _variant(base, rng, defect_rate)
                images.append(render(spec))
                records.append(
                    {
                        "candidate_id": f"g{seed}-p{p}-v{v}",
                        "prompt_id": f"p{p}",
                        "prompt": base.prompt,
                        "sample": v,
                        "image_path": f"images/p{p}-v{v}.png",
                        "generator": generator_name,
                        "seed": spec.seed,
                    }
                )
        codes = codec.encode(images).reshape(len(images), -1)
        decoded = codec.decode(codes)
        for record, image, row in zip(records, decoded, codes):
            image.save(staging / "candidates" / record["image_path"])
            record["image_tokens"] = [int(c) for c in row]
        candidates = write_candidate_table(records, staging / "candidates")

        reader = _cached(read_text)
        judges = [simulated_judge(reader, AXES, error_rate, seed=seed * 1000 + k) for k in range(annotators)]
        annotation_rows, pair_rows = [], []
        now = datetime.now(UTC)
        folder = staging / "candidates"
        for _prompt_id, group in candidates.groupby("prompt_id", sort=False):
            for (_, a), (_, b) in itertools.combinations(group.iterrows(), 2):
                pair_id = f"{a.candidate_id}~{b.candidate_id}"
                pair = {
                    "pair_id": pair_id,
                    "prompt": a.prompt,
                    "candidate_a": a.candidate_id,
                    "candidate_b": b.candidate_id,
                    **{f"{axis}_votes_{o}": 0 for axis in AXES for o in OUTCOMES},
                }
                for k, judge in enumerate(judges):
                    left, right = (a, b) if rng.random() < 0.5 else (b, a)
                    verdict = judge(a.prompt, folder / left.image_path, folder / right.image_path)
                    annotation_rows.append(
                        {
                            "pair_id": pair_id,
                            "prompt": a.prompt,
                            "candidate_left": left.candidate_id,
                            "candidate_right": right.candidate_id,
                            "annotator": f"sim-{k:02d}",
                            "source": "simulated",
                            **verdict,
                            "lead_time": 0.0,
                            "created_at": now,
                        }
                    )
                    for axis, side in verdict.items():
                        chosen = {"left": left, "right": right}.get(side)
                        outcome = "tie" if chosen is None else ("a" if chosen.candidate_id == a.candidate_id else "b")
                        pair[f"{axis}_votes_{outcome}"] += 1
                for axis in AXES:
                    pair[f"{axis}_label"] = majority({o: pair[f"{axis}_votes_{o}"] for o in OUTCOMES})
                pair_rows.append(pair)
        write_annotations(pd.DataFrame(annotation_rows), staging)
        write_pairs(pd.DataFrame(pair_rows, columns=pair_columns(AXES)), staging)
    return {"candidates": len(candidates), "pairs": len(pair_rows), "annotations": len(annotation_rows)}


def _edit_result(edit, rng: random.Random, defect_rate: float):
    """A result of ``edit`` with a seeded mix of the ways an edit goes wrong (maybe none): the
    instruction ignored (the source kept), another attribute of the sign changed too (which only
    the source shows), or a flaw drawn in."""
    from imagepref.policy.glyphworld.world import BACKGROUNDS, FLAWS, TEXT_COLOURS

    spec = edit.source if rng.random() < defect_rate else edit.target
    changes = {}
    if rng.random() < defect_rate:
        # Changed where nothing was asked: the ink or the background (when the edit is not about it).
        asked = {"ink_colour": "colour", "background": "background"}.get(edit.kind)
        attribute = rng.choice([name for name in ("colour", "background") if name != asked])
        options = TEXT_COLOURS if attribute == "colour" else BACKGROUNDS
        changes[attribute] = rng.choice([c for c in options if c != getattr(spec, attribute)])
    if rng.random() < defect_rate / 2 and spec.flaw is None:
        changes["flaw"] = FLAWS[0]  # noise: drawn on the sign wherever it sits
    changes["seed"] = rng.randrange(2**31)
    return dataclasses.replace(spec, **changes)


def glyph_edit_preference_data(
    out: str | Path,
    codec,
    read_text: Callable[[Image.Image], str],
    edits: int = 100,
    results_per_edit: int = 3,
    annotators: int = 2,
    error_rate: float = 0.1,
    defect_rate: float = 0.4,
    seed: int = 0,
    generator_name: str = "glyph-codec",
) -> dict:
    """Write a glyph-world edit candidate set (``<out>/candidates``: each source once, then
    ``results_per_edit`` results naming their ``source_candidate`` and ``instruction``) and
    preference data about them (``<out>``), with the edit axes.

    The edits are the edit training's (``training_edits``); every image goes through the codec,
    as a generated one would. Each pair of one edit's results is judged by ``annotators``
    simulated people applying the edit rules (``judge_edit`` on the decoded source and results,
    ``compare_edits``), each answer flipped to another outcome with probability ``error_rate``.
    Returns counts."""
    from imagepref.formats import EDIT_AXES, EDIT_COLUMNS
    from imagepref.policy.glyphworld import render
    from imagepref.policy.glyphworld.edits import compare_edits, edit_record, judge_edit, training_edits

    if edits < 1 or results_per_edit < 2 or annotators < 1:
        raise BadInputError("need at least 1 edit, 2 results per edit and 1 annotator")
    out = Path(out)
    refuse_existing_preferences(out)
    with staged_folder(out) as staging:
        (staging / "candidates" / "images").mkdir(parents=True)
        rng = random.Random(seed)
        records, images, drawn = [], [], training_edits(edits, seed=f"reward-edits-{seed}")
        for e, edit in enumerate(drawn):
            source_id = f"s{seed}-e{e}"
            specs = [edit.source, *(_edit_result(edit, rng, defect_rate) for _ in range(results_per_edit))]
            for r, spec in enumerate(specs):
                images.append(render(spec))
                record = {
                    "candidate_id": source_id if r == 0 else f"g{seed}-e{e}-r{r}",
                    "prompt_id": f"s{e}" if r == 0 else f"e{e}",
                    "prompt": edit.source.prompt,
                    "sample": r,
                    "image_path": f"images/e{e}-{r}.png",
                    "generator": generator_name,
                    "seed": spec.seed,
                    "source_candidate": None if r == 0 else source_id,
                    "instruction": None if r == 0 else edit.instruction,
                    "edit": None if r == 0 else json.dumps(edit_record(edit)),
                }
                records.append(record)
        codes = codec.encode(images).reshape(len(images), -1)
        decoded = codec.decode(codes)
        for record, image, row in zip(records, decoded, codes):
            image.save(staging / "candidates" / record["image_path"])
            record["image_tokens"] = [int(c) for c in row]
        write_candidate_table(records, staging / "candidates")

        reader = _cached(read_text)
        by_id = {record["candidate_id"]: (record, image) for record, image in zip(records, decoded)}
        annotation_rows, pair_rows = [], []
        now = datetime.now(UTC)
        for e, edit in enumerate(drawn):
            source = by_id[f"s{seed}-e{e}"][1]
            results = [by_id[f"g{seed}-e{e}-r{r}"] for r in range(1, results_per_edit + 1)]
            scores = {record["candidate_id"]: judge_edit(edit, source, image, reader) for record, image in results}
            for (a, _), (b, _) in itertools.combinations(results, 2):
                truth = compare_edits(scores[a["candidate_id"]], scores[b["candidate_id"]])
                pair_id = f"{a['candidate_id']}~{b['candidate_id']}"
                pair = {
                    "pair_id": pair_id,
                    "prompt": a["prompt"],
                    "candidate_a": a["candidate_id"],
                    "candidate_b": b["candidate_id"],
                    **{column: a[column] for column in EDIT_COLUMNS},
                    **{f"{axis}_votes_{o}": 0 for axis in EDIT_AXES for o in OUTCOMES},
                }
                for k in range(annotators):
                    left, right = (a, b) if rng.random() < 0.5 else (b, a)
                    verdict = {}
                    for axis in EDIT_AXES:
                        outcome = truth[axis]
                        if rng.random() < error_rate:
                            outcome = rng.choice([o for o in OUTCOMES if o != outcome])
                        pair[f"{axis}_votes_{outcome}"] += 1
                        side = {"a": a, "b": b}.get(outcome)
                        verdict[axis] = "tie" if side is None else ("left" if side is left else "right")
                    annotation_rows.append(
                        {
                            "pair_id": pair_id,
                            "prompt": a["prompt"],
                            "candidate_left": left["candidate_id"],
                            "candidate_right": right["candidate_id"],
                            **{column: a[column] for column in EDIT_COLUMNS},
                            "annotator": f"sim-{k:02d}",
                            "source": "simulated",
                            **verdict,
                            "lead_time": 0.0,
                            "created_at": now,
                        }
                    )
                for axis in EDIT_AXES:
                    pair[f"{axis}_label"] = majority({o: pair[f"{axis}_votes_{o}"] for o in OUTCOMES})
                pair_rows.append(pair)
        write_annotations(pd.DataFrame(annotation_rows), staging)
        write_pairs(pd.DataFrame(pair_rows, columns=pair_columns(EDIT_AXES, edits=True)), staging)
    return {"candidates": len(records), "pairs": len(pair_rows), "annotations": len(annotation_rows)}
