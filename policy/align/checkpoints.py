"""Run folders, adapters, resumption and merging.

An alignment run writes one folder::

    OUT/align.json        method, settings, base generator path and fingerprint (the run's record)
    OUT/adapter/          the peft adapter (or, for a full fine-tune, the whole generator folder)
    OUT/metrics.jsonl     training logs and held-out monitoring, one JSON object a line
    OUT/checkpoint-N/     transformers checkpoints every ``save_every`` steps (adapter as safetensors,
                          optimizer/scheduler/RNG in torch's format, read back with weights_only=True)
    OUT/runs/             TensorBoard events (transformers' default place)

A run resumes from its newest checkpoint only when ``align.json`` matches (same method, settings
and base), so a folder of another run is refused instead of silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from imagepref.errors import BadInputError
from imagepref.files import staged_folder, write_text_atomically
from policy.generator import CONFIG_NAME, Generator, load_generator

RUN_FILE = "align.json"
ADAPTER_DIR = "adapter"


def base_fingerprint(generator: Generator) -> str:
    """A short hash of the base generator's config, parameter shapes and a sample of its weights:
    enough to tell two bases apart without hashing gigabytes."""
    digest = hashlib.sha256(generator.config.model_dump_json().encode())
    for name, tensor in generator.model.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
    for tensor in list(generator.model.state_dict().values())[:2]:
        digest.update(tensor.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_record(method: str, settings, base_path: str | None, generator: Generator) -> dict:
    """What ``align.json`` holds for a run."""
    return {"method": method, "settings": settings.model_dump(), "base": str(base_path) if base_path else None,
            "base_fingerprint": base_fingerprint(generator)}


def prepare_run(out: Path, record: dict, resume: bool) -> str | None:
    """Create or check the run folder; returns the checkpoint to resume from (or None).

    A folder that already holds another run's ``align.json`` is refused."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / RUN_FILE
    if existing.is_file():
        saved = json.loads(existing.read_text())
        for key in ("method", "settings", "base_fingerprint"):
            if saved.get(key) != record.get(key):
                raise BadInputError(f"{out} holds another run (its {key} differs); resume with the same method, "
                                    "settings and base, or choose a fresh --out")
        if not resume:
            raise BadInputError(f"{out} already holds a run; pass --resume to continue it or choose a fresh --out")
    elif resume:
        raise BadInputError(f"--resume given but {out} holds no run ({RUN_FILE} missing); drop --resume to start one")
    write_json_atomic(existing, record)
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if resume and checkpoints else None


def write_json_atomic(path: Path, data) -> None:
    """Write JSON through ``imagepref.files``: a crash never leaves half a file."""
    write_text_atomically(path, json.dumps(data, indent=1, default=str))


def lora_config(settings, generator: Generator):
    """The peft ``LoraConfig`` of ``settings`` (a ``CommonSettings``); the family narrows the
    target names to its language model (``Generator.lora_target_modules``)."""
    from peft import LoraConfig

    targets = generator.lora_target_modules(list(settings.lora_targets))
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")


def save_result(out: Path, trainer_model: torch.nn.Module, generator: Generator, lora: bool) -> Path:
    """Save the trained adapter (or the full generator) into ``out/adapter`` atomically."""
    target = out / ADAPTER_DIR
    shutil.rmtree(target, ignore_errors=True)  # a resumed run replaces its earlier result
    with staged_folder(target) as staging:
        if lora:
            trainer_model.save_pretrained(str(staging), safe_serialization=True)
        else:
            _with_model(generator, trainer_model).save_pretrained(staging)
    return target


def _with_model(generator: Generator, model: torch.nn.Module) -> Generator:
    from policy.align.logprobs import generator_view

    return generator_view(generator, model)


def read_run(run: Path) -> dict:
    """``align.json`` of a run folder, with a one-line error for anything else."""
    record = Path(run) / RUN_FILE
    if not record.is_file():
        raise BadInputError(f"{run} is not an alignment run folder (no {RUN_FILE}); pass the --out of `imagepref align`")
    return json.loads(record.read_text())


def load_aligned(run: str | Path, base: str | Path | None = None, merge: bool = False) -> Generator:
    """The aligned generator of a run folder: its base with the adapter applied (merged when
    ``merge``). Refuses an adapter whose recorded base fingerprint differs from ``base``'s."""
    run = Path(run)
    record = read_run(run)
    adapter = run / ADAPTER_DIR
    if not adapter.is_dir():
        raise BadInputError(f"{run} has no {ADAPTER_DIR}/ yet: the run has not finished; resume it first")
    if (adapter / CONFIG_NAME).is_file():  # a full fine-tune saved the whole generator
        return load_generator(adapter)
    base = base or record.get("base")
    if not base:
        raise BadInputError(f"{run} does not record its base generator; pass --base")
    generator = load_generator(base)
    if base_fingerprint(generator) != record["base_fingerprint"]:
        raise BadInputError(f"the adapter in {run} was trained on another base than {base}; pass the base it names "
                            f"({record.get('base')}) or its exact copy")
    from peft import PeftModel

    model = PeftModel.from_pretrained(generator.model, str(adapter))
    generator.model = model.merge_and_unload() if merge else model
    return generator


def merge_run(run: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """Write a merged generator folder (loadable with ``load_generator``) from a run's adapter."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BadInputError(f"{out} exists and is not empty; choose another --out")
    generator = load_aligned(run, base, merge=True)
    with staged_folder(out) as staging:
        generator.save_pretrained(staging)
    return out
