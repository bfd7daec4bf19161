"""Candidate sets: a generator's images for a list of prompts (the contract: docs/formats.md).

A candidate set is a folder with ``candidates.parquet`` (one row per image: ``candidate_id``,
``prompt_id``, ``prompt``, ``image_path`` relative to the folder, ``image_tokens``, ``generator``,
``seed`` and the sampler settings) and ``images/``. It is written under a temporary name and
renamed when complete, so a failed run leaves nothing that looks finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.formats import CANDIDATES_FILE, candidate_id_for, write_candidate_table
from imagepref.policy.generator import Generator


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
    if images_per_prompt <= 0:
        raise BadInputError(f"images per prompt must be at least 1; got {images_per_prompt}")
    if not prompts:
        raise BadInputError("no prompts to generate from")
    out = Path(out)
    if (out / CANDIDATES_FILE).exists():
        raise BadInputError(f"{out} already holds a candidate set; choose another --out or delete it")
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
        candidates = write_candidate_table(records, staging)
        manifest = {
            "generator": name,
            "images_per_prompt": images_per_prompt,
            "seed": seed,
            "sampler": sampler,
            "seconds_per_image": (time.perf_counter() - started) / len(rows),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **(extra or {}),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return candidates
