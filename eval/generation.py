"""Generate a checkpoint's images for a prompt set, or reuse the ones generated before.

Each (checkpoint, prompts, seed, sampler settings) gets one folder under ``<out>/images/``, a
candidate set (``candidates.parquet`` plus ``images/``, see docs/formats.md) with a
``manifest.json`` recording what made it. A later evaluation with the same inputs reuses the
folder instead of sampling again; a checkpoint whose files changed gets a new folder. Folders are
written under a temporary name and renamed when complete, so an interrupted run leaves nothing
that looks finished.

Edit prompts (``EvalPrompt.is_edit``) are edited instead: each source sign is drawn and encoded by
the checkpoint's codec, edited ``samples`` times, and the set holds the sources beside the results
(``policy.candidates.write_edit_candidate_set``); ``ImageSet.candidates`` are the results and
``ImageSet.sources`` the sources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from imagepref.errors import BadInputError
from imagepref.eval.ocr import load_image
from imagepref.eval.prompts import EvalPrompt
from imagepref.formats import read_candidate_set

MANIFEST = "manifest.json"


@dataclass
class ImageSet:
    """A checkpoint's images for a prompt set: the candidate rows, where they live, and timing."""

    folder: Path
    candidates: pd.DataFrame
    seconds_per_image: float
    reused: bool
    sources: pd.DataFrame | None = None  # an edit set's source rows, indexed by candidate_id

    def image_paths(self) -> list[Path]:
        """Absolute paths of the images, in candidate order."""
        return [self.folder / p for p in self.candidates["image_path"]]


def checkpoint_fingerprint(path: Path) -> str:
    """A short hash of a checkpoint folder's file names, sizes and modification times: it changes
    when the weights change, without reading gigabytes of weights."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def image_set_key(
    checkpoint: Path,
    prompts: list[EvalPrompt],
    samples: int,
    seed: int,
    sampler: dict[str, Any],
    placement: dict[str, str] | None = None,
) -> str:
    """The cache key of an image set: checkpoint contents, prompts, samples per prompt, seed,
    sampler settings and, when given, the dtype and device sampled in (they change the images)."""
    record = {
        "checkpoint": checkpoint_fingerprint(checkpoint),
        "prompts": [(p.prompt_id, p.prompt) for p in prompts],
        "samples": samples,
        "seed": seed,
        "sampler": sampler,
        **({"placement": placement} if placement else {}),
        **({"edits": [p.metadata["edit"] for p in prompts]} if any(p.is_edit for p in prompts) else {}),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def load_cached(folder: Path) -> ImageSet:
    """Open a finished image set and check that every image is there and readable."""
    manifest = json.loads((folder / MANIFEST).read_text())
    try:
        candidates = read_candidate_set(folder).drop(columns="image_file").reset_index(drop=True)
    except BadInputError as error:
        raise BadInputError(
            f"cached image set {folder} is damaged ({error}); delete that folder to regenerate it"
        ) from None
    for relative in candidates["image_path"]:
        try:
            load_image(folder / relative)
        except BadInputError as error:
            raise BadInputError(f"{error} (cached set {folder}: delete that folder to regenerate it)") from None
    return _split_edits(ImageSet(folder, candidates, manifest["seconds_per_image"], reused=True))


def _split_edits(image_set: ImageSet) -> ImageSet:
    """An edit set's results as its candidates and its sources apart; other sets unchanged."""
    table = image_set.candidates
    if "source_candidate" not in table.columns:
        return image_set
    edited = table["source_candidate"].notna()
    image_set.candidates = table[edited].reset_index(drop=True)
    image_set.sources = table[~edited].set_index("candidate_id", drop=False)
    return image_set


def generate_image_set(
    checkpoint: Path,
    prompts: list[EvalPrompt],
    cache_root: Path,
    samples: int = 2,
    seed: int = 0,
    sampler: dict[str, Any] | None = None,
    batch_size: int = 32,
    on_progress: Callable[[int, int], None] | None = None,
    dtype: str | None = None,
    device: str | None = None,
) -> ImageSet:
    """Sample ``samples`` images per prompt from ``checkpoint`` (or reuse the cached set).

    ``sampler`` holds the sampler's settings (guidance_scale, temperature, top_k, top_p); every
    image gets a seeded, reproducible draw. ``on_progress(done, total)`` follows the sampling.
    ``dtype`` (float32, bfloat16, float16) and ``device`` say how the checkpoint is loaded; the
    set's manifest records both as loaded.
    """
    from imagepref.dtypes import dtype_name, torch_dtype
    from imagepref.policy.candidates import write_candidate_set
    from imagepref.policy.generator import load_generator

    sampler = dict(sampler or {})
    placement = {k: v for k, v in (("dtype", dtype), ("device", device)) if v is not None}
    key = image_set_key(checkpoint, prompts, samples, seed, sampler, placement)
    folder = cache_root / f"{checkpoint.name}-{key}"
    if (folder / MANIFEST).is_file():
        return load_cached(folder)
    if folder.exists():
        raise BadInputError(f"cached image set {folder} has no {MANIFEST}; delete that folder to regenerate it")
    generator = load_generator(checkpoint, dtype=torch_dtype(dtype), device=device)
    common = dict(
        seed=seed,
        sampler=sampler,
        batch_size=batch_size,
        generator_name=f"{generator.family}:{checkpoint}",
        on_progress=on_progress,
        id_prefix=f"{checkpoint.name}-{key}-",
        extra={
            "checkpoint": str(checkpoint),
            "family": generator.family,
            "fingerprint": checkpoint_fingerprint(checkpoint),
            "samples": samples,
            "dtype": dtype_name(generator.model.dtype),
            "device": str(generator.model.device),
        },
    )
    if any(p.is_edit for p in prompts):
        from imagepref.policy.candidates import glyph_edit_jobs, write_edit_candidate_set
        from imagepref.policy.editing import check_can_edit
        from imagepref.policy.glyphworld.edits import edit_from_record

        check_can_edit(generator)
        if not all(p.is_edit for p in prompts):
            raise BadInputError("a prompt set mixes edits and prompts; evaluate them apart")
        edits = [edit_from_record(p.metadata["edit"]) for p in prompts]
        jobs = glyph_edit_jobs(generator, edits, [p.prompt_id for p in prompts])
        candidates = write_edit_candidate_set(generator, jobs, folder, images_per_edit=samples, **common)
    else:
        candidates = write_candidate_set(
            generator,
            [{"prompt_id": p.prompt_id, "prompt": p.prompt} for p in prompts],
            folder,
            images_per_prompt=samples,
            **common,
        )
    seconds_per_image = json.loads((folder / MANIFEST).read_text())["seconds_per_image"]
    return _split_edits(ImageSet(folder, candidates, seconds_per_image, reused=False))
