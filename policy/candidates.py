"""Candidate sets: a generator's images for a list of prompts (the contract: docs/formats.md).

A candidate set is a folder with ``candidates.parquet`` (one row per image: ``candidate_id``,
``prompt_id``, ``prompt``, ``image_path`` relative to the folder, ``image_tokens``, ``generator``,
``seed`` and the sampler settings) and ``images/``. It is written under a temporary name and
renamed when complete, so a failed run leaves nothing that looks finished.

An edit candidate set (``write_edit_candidate_set``) holds each source image once and the edited
results, each naming its ``source_candidate`` and its ``instruction``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.formats import CANDIDATES_FILE, candidate_id_for, write_candidate_table
from imagepref.policy.generator import Generator


def _check_new_set(out: str | Path, images_per: int, per: str, empty: bool, nothing: str) -> Path:
    """Refuse, before any image is drawn, a set of no images per ``per`` (prompt, edit), nothing
    to draw (``empty``, said by ``nothing``) or an ``out`` that already holds a candidate set."""
    if images_per <= 0:
        raise BadInputError(f"images per {per} must be at least 1; got {images_per}")
    if empty:
        raise BadInputError(nothing)
    out = Path(out)
    if (out / CANDIDATES_FILE).exists():
        raise BadInputError(f"{out} already holds a candidate set; choose another --out or delete it")
    return out


def _write_set_files(
    staging: Path,
    records: list[dict[str, Any]],
    manifest: dict[str, Any],
    started: float,
    images: int,
    extra: dict[str, Any] | None,
) -> pd.DataFrame:
    """Write the candidate table and ``manifest.json`` (``manifest`` with the time per image and
    the creation time, then ``extra``) into the staging folder; returns the candidate rows."""
    candidates = write_candidate_table(records, staging)
    manifest = {
        **manifest,
        "seconds_per_image": (time.perf_counter() - started) / images,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return candidates


def write_candidate_set(
    generator: Generator,
    prompts: Sequence[dict[str, str]],
    out: str | Path,
    images_per_prompt: int = 2,
    seed: int = 0,
    sampler: dict[str, Any] | None = None,
    batch_size: int = 32,
    generator_name: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    extra: dict[str, Any] | None = None,
    id_prefix: str | None = None,
) -> pd.DataFrame:
    """Sample ``images_per_prompt`` images per prompt and write the candidate set to ``out``.

    Every image is a seeded, reproducible draw; ``sampler`` holds the sampler settings
    (guidance_scale, temperature, top_k, top_p). ``extra`` is written to ``manifest.json``.
    Candidate ids are unique across sets: by default they end in a digest of the prompt and the
    image tokens (``imagepref.formats.candidate_id_for``); a caller that keeps ids apart itself
    (a recipe's round, an evaluation's checkpoint and input hash) passes ``id_prefix`` instead and
    gets ``<id_prefix><prompt_id>-<sample>-s<seed>``. Returns the candidate rows.
    """
    out = _check_new_set(out, images_per_prompt, "prompt", not prompts, "no prompts to generate from")
    sampler = dict(sampler or {})
    name = generator_name or generator.family
    rows = [(p, s) for p in prompts for s in range(images_per_prompt)]
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with staged_folder(out) as staging:
        (staging / "images").mkdir()
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            result = generator.sample(
                [p["prompt"] for p, _ in chunk], seed=seed + start, batch_size=batch_size, **sampler
            )
            for (prompt, index), image, codes in zip(chunk, result.images, result.codes):
                relative = f"images/{prompt['prompt_id']}-{index}.png"
                image.save(staging / relative)
                tokens = [int(c) for c in codes]
                records.append(
                    {
                        "candidate_id": (
                            candidate_id_for(prompt["prompt_id"], index, seed, prompt["prompt"], tokens)
                            if id_prefix is None
                            else f"{id_prefix}{prompt['prompt_id']}-{index}-s{seed}"
                        ),
                        "prompt_id": prompt["prompt_id"],
                        "prompt": prompt["prompt"],
                        "sample": index,
                        "image_path": relative,
                        "image_tokens": tokens,
                        "generator": name,
                        "seed": seed + start,
                        **{f"sampler_{k}": v for k, v in sampler.items()},
                    }
                )
            if on_progress is not None:
                on_progress(min(start + batch_size, len(rows)), len(rows))
        manifest = {"generator": name, "images_per_prompt": images_per_prompt, "seed": seed, "sampler": sampler}
        return _write_set_files(staging, records, manifest, started, len(rows), extra)


@dataclass(frozen=True)
class EditJob:
    """One edit to draw: its id, the source image's codes, the prompt that made the source ("" when
    none did), the instruction, and where known the source's candidate id in its own set
    (``source_candidate``, kept as the source row's id) and the glyph world's description of the
    edit (``edit``, ``policy.glyphworld.edits.edit_record``: what the rules need to judge it)."""

    edit_id: str
    source_codes: list[int]
    source_prompt: str
    instruction: str
    source_candidate: str | None = None
    source_prompt_id: str | None = None
    edit: dict[str, Any] | None = None


def glyph_edit_jobs(generator: Generator, edits: Sequence[Any], ids: Sequence[str] | None = None) -> list[EditJob]:
    """Jobs for glyph-world edits (``GlyphEdit``): each source sign drawn and encoded by the
    generator's codec, the source's own prompt, and the edit's record."""
    from imagepref.policy.glyphworld.edits import edit_record
    from imagepref.policy.glyphworld.world import render

    if not edits:
        raise BadInputError("no edits to draw")
    codes = generator.encode_images([render(edit.source) for edit in edits])
    ids = list(ids) if ids is not None else [f"e{index:04d}" for index in range(len(edits))]
    return [
        EditJob(edit_id, [int(c) for c in row], edit.source.prompt, edit.instruction, edit=edit_record(edit))
        for edit_id, edit, row in zip(ids, edits, codes.tolist())
    ]


def source_set_edit_jobs(sources: pd.DataFrame, requests: Sequence[Any]) -> list[EditJob]:
    """Jobs for the requests of an edits file (``imagepref.formats.read_edit_requests``) on the
    candidates of a source set (``read_candidate_set`` with ``image_tokens``)."""
    jobs = []
    for request in requests:
        if request.source not in sources.index:
            raise BadInputError(
                f"edit {request.edit_id!r} names source {request.source!r}, which is not a candidate of the source set"
            )
        row = sources.loc[request.source]
        jobs.append(
            EditJob(
                request.edit_id,
                [int(c) for c in row["image_tokens"]],
                str(row["prompt"]),
                request.instruction,
                source_candidate=request.source,
                source_prompt_id=str(row["prompt_id"]),
            )
        )
    return jobs


def write_edit_candidate_set(
    generator: Generator,
    jobs: Sequence[EditJob],
    out: str | Path,
    images_per_edit: int = 2,
    seed: int = 0,
    sampler: dict[str, Any] | None = None,
    batch_size: int = 32,
    generator_name: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    extra: dict[str, Any] | None = None,
    id_prefix: str | None = None,
) -> pd.DataFrame:
    """Edit each job's source ``images_per_edit`` times (``Generator.edit``) and write the
    candidate set to ``out``: one row per source (its codes decoded, as the generator saw it;
    shared sources once) and one per result, which names its ``source_candidate`` and its
    ``instruction`` (docs/formats.md). A result's ``prompt_id`` is its edit's id, so comparisons
    pair results of the same edit only; its ``prompt`` is the source's prompt. Ids as in
    ``write_candidate_set`` (the digest covers the instruction too). Returns the candidate rows."""
    out = _check_new_set(out, images_per_edit, "edit", not jobs, "no edits to draw")
    import torch

    from imagepref.policy.editing import source_codes_tensor

    sampler = dict(sampler or {})
    name = generator_name or generator.family
    codes = source_codes_tensor(generator, [job.source_codes for job in jobs])  # one line for another codec
    rows = [(job, codes[j], s) for j, job in enumerate(jobs) for s in range(images_per_edit)]
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    with staged_folder(out) as staging:
        (staging / "images").mkdir()
        source_ids: dict[str, str] = {}
        for job, source_codes in zip(jobs, codes):
            key = job.source_candidate or job.edit_id
            if key in source_ids:
                continue
            tokens = [int(c) for c in source_codes]
            prompt_id = job.source_prompt_id or f"{job.edit_id}-source"
            if job.source_candidate is not None:
                candidate = job.source_candidate
            elif id_prefix is None:
                candidate = candidate_id_for(prompt_id, 0, seed, job.source_prompt, tokens)
            else:
                candidate = f"{id_prefix}{prompt_id}"
            relative = f"images/source-{len(source_ids):04d}.png"
            generator.decode(source_codes[None])[0].save(staging / relative)
            source_ids[key] = candidate
            records.append(
                {
                    "candidate_id": candidate,
                    "prompt_id": prompt_id,
                    "prompt": job.source_prompt,
                    "sample": 0,
                    "image_path": relative,
                    "image_tokens": tokens,
                    "source_candidate": None,
                    "instruction": None,
                    "edit": None,
                    "generator": None,  # drawn or taken from its own set, not sampled here
                    "seed": None,
                }
            )
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            result = generator.edit(
                torch.stack([source for _, source, _ in chunk]),
                [job.instruction for job, _, _ in chunk],
                [job.source_prompt for job, _, _ in chunk],
                seed=seed + start,
                batch_size=batch_size,
                **sampler,
            )
            for (job, _, index), image, new_codes in zip(chunk, result.images, result.codes):
                relative = f"images/{job.edit_id}-{index}.png"
                image.save(staging / relative)
                tokens = [int(c) for c in new_codes]
                turn = f"{job.source_prompt}\x1f{job.instruction}"
                records.append(
                    {
                        "candidate_id": (
                            candidate_id_for(job.edit_id, index, seed, turn, tokens)
                            if id_prefix is None
                            else f"{id_prefix}{job.edit_id}-{index}-s{seed}"
                        ),
                        "prompt_id": job.edit_id,
                        "prompt": job.source_prompt,
                        "sample": index,
                        "image_path": relative,
                        "image_tokens": tokens,
                        "source_candidate": source_ids[job.source_candidate or job.edit_id],
                        "instruction": job.instruction,
                        "edit": json.dumps(job.edit) if job.edit is not None else None,
                        "generator": name,
                        "seed": seed + start,
                        **{f"sampler_{k}": v for k, v in sampler.items()},
                    }
                )
            if on_progress is not None:
                on_progress(min(start + batch_size, len(rows)), len(rows))
        manifest = {
            "generator": name,
            "edits": len(jobs),
            "images_per_edit": images_per_edit,
            "seed": seed,
            "sampler": sampler,
        }
        return _write_set_files(staging, records, manifest, started, len(rows), extra)
