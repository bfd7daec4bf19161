"""Run folders, adapters, resumption and merging.

An alignment run writes one folder::

    OUT/align.json        method, settings, base generator path and fingerprint (the run's record)
    OUT/adapter/          the peft adapter (or, for a full fine-tune, the whole generator folder)
    OUT/metrics.jsonl     training logs and held-out monitoring, one JSON object a line
    OUT/checkpoint-N/     transformers checkpoints every ``save_steps`` steps, pickle-free: adapter,
                          optimizer and RNG tensors as safetensors, the rest (scheduler, step
                          counts, training arguments) as JSON (``CheckpointFiles``)
    OUT/runs/             TensorBoard events (transformers' default place)

A run resumes from its newest checkpoint only when ``align.json`` matches (same method, settings
and base), so a folder of another run is refused instead of silently mixed. Under
``accelerate launch`` only the main process writes the run's files; every process reads them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch
from transformers.trainer_callback import PrinterCallback

from imagepref.dtypes import dtype_name, torch_dtype
from imagepref.errors import BadInputError
from imagepref.files import check_output, staged_folder, write_json_atomically, write_text_atomically
from imagepref.policy.align.steps import StepLines
from imagepref.policy.generator import CONFIG_NAME, Generator, load_generator
from imagepref.tensor_state import load_state, save_state

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
    """What ``align.json`` holds for a run (``dtype`` is the base's weights' dtype as loaded, so the
    adapter is later applied to the base loaded the same way)."""
    return {
        "method": method,
        "settings": settings.model_dump(mode="json"),
        "base": str(base_path) if base_path else None,
        "base_fingerprint": base_fingerprint(generator),
        "dtype": dtype_name(generator.model.dtype),
    }


def prepare_run(out: Path, record: dict, resume: bool) -> str | None:
    """Create or check the run folder; returns the checkpoint to resume from (or None).

    A folder that already holds another run's ``align.json`` is refused. Under ``accelerate
    launch`` the main process alone checks and writes the folder and tells the others its answer
    (accelerate's ``PartialState``): processes checking one by one would race on ``align.json``."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # Placed as trainer_arguments places the trainers (CPU when no GPU), so it sees the same
    # processes they will; on CPU, accelerate counts the processes of a launch only with cpu=True.
    state = PartialState(cpu=not torch.cuda.is_available())
    answer: list = [None, None]  # (checkpoint, error message)
    if state.is_main_process:
        try:
            answer[0] = _prepare_run_folder(out, record, resume)
        except BadInputError as error:
            answer[1] = str(error)
    if state.num_processes > 1:
        broadcast_object_list(answer)
    if answer[1]:
        raise BadInputError(answer[1])
    return answer[0]


def _prepare_run_folder(out: Path, record: dict, resume: bool) -> str | None:
    out.mkdir(parents=True, exist_ok=True)
    existing = out / RUN_FILE
    if existing.is_file():
        saved = json.loads(existing.read_text())
        for key in ("method", "settings", "base_fingerprint"):
            if saved.get(key) != record.get(key):
                raise BadInputError(
                    f"{out} holds another run (its {key} differs); resume with the same method, "
                    "settings and base, or choose a fresh --out"
                )
        if not resume:
            raise BadInputError(f"{out} already holds a run; pass --resume to continue it or choose a fresh --out")
    elif resume:
        raise BadInputError(f"--resume given but {out} holds no run ({RUN_FILE} missing); drop --resume to start one")
    write_json_atomically(existing, record)
    # transformers writes trainer_state.json last: a checkpoint without it was cut short by a kill.
    checkpoints = sorted(
        (p for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    return str(checkpoints[-1]) if resume and checkpoints else None


def lora_config(settings, generator: Generator):
    """The peft ``LoraConfig`` of ``settings`` (``policy.align.config``); the family narrows the
    target names to its language model (``Generator.lora_target_modules``)."""
    from peft import LoraConfig

    targets = generator.lora_target_modules(list(settings.lora_targets))
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )


def save_result(out: Path, trainer_model: torch.nn.Module, generator: Generator, lora: bool) -> Path:
    """Save the trained adapter (or the full generator) into ``out/adapter`` atomically."""
    target = out / ADAPTER_DIR
    # A resumed run replaces its earlier result; the old one stays whole until the new one is.
    with staged_folder(target, existing="replace") as staging:
        if lora:
            trainer_model.save_pretrained(str(staging), safe_serialization=True)
        else:
            _with_model(generator, trainer_model).save_pretrained(staging)
    return target


def _with_model(generator: Generator, model: torch.nn.Module) -> Generator:
    from imagepref.policy.align.logprobs import generator_view

    return generator_view(generator, model)


def read_run(run: Path) -> dict:
    """``align.json`` of a run folder, with a one-line error for anything else."""
    record = Path(run) / RUN_FILE
    if not record.is_file():
        raise BadInputError(
            f"{run} is not an alignment run folder (no {RUN_FILE}); pass the --out of `imagepref align`"
        )
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BadInputError(f"{record} is not JSON ({error}); the run folder is damaged: start a fresh --out") from None
    if not isinstance(data, dict):
        raise BadInputError(f"{record} is not a run record (a JSON object); start a fresh --out")
    return data


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
    # The base is loaded in the dtype it was trained in, so its fingerprint (and the merge) match.
    generator = load_generator(base, dtype=torch_dtype(record.get("dtype")))
    if base_fingerprint(generator) != record["base_fingerprint"]:
        raise BadInputError(
            f"the adapter in {run} was trained on another base than {base}; pass the base it names "
            f"({record.get('base')}) or its exact copy"
        )
    from peft import PeftModel

    model = PeftModel.from_pretrained(generator.model, str(adapter))
    generator.model = model.merge_and_unload() if merge else model
    return generator


def merge_run(run: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """Write a merged generator folder (loadable with ``load_generator``) from a run's adapter."""
    run = Path(run)
    # RUN/merged is the layout recipes and run_aligner use: what the merge reads (the adapter and the
    # checkpoints) is the input; the run folder itself is refused as a non-empty output.
    out = check_output(out, inputs=[run / "adapter", *sorted(run.glob("checkpoint-*"))])
    generator = load_aligned(run, base, merge=True)
    with staged_folder(out) as staging:
        generator.save_pretrained(staging)
    return out


# ----- pickle-free trainer checkpoints ------------------------------------------------------
class CheckpointFiles:
    """Mixin for the aligners' trainers (TRL 1.16 on transformers 5.24): checkpoints without pickle.

    transformers has no public hook for the checkpoint format (it pickles the optimizer, scheduler,
    RNG states and arguments), so this overrides these private transformers 5.24 ``Trainer``
    hooks, with their signatures there (tests/policy/test_align_checkpoints.py::test_upstream_hooks
    fails when one changes):
    ``_save_optimizer_and_scheduler(output_dir)`` / ``_load_optimizer_and_scheduler(checkpoint)``,
    ``_save_scaler(output_dir)`` / ``_load_scaler(checkpoint)``, ``_save_rng_state(output_dir)`` /
    ``_load_rng_state(checkpoint)``, and ``_save(output_dir, state_dict)``, whose last line pickles
    the arguments into ``training_args.bin``; they are kept as ``training_args.json`` instead.
    As in transformers, only the main process (``args.should_save``) writes the shared files and
    each process its own RNG state. DeepSpeed and FSDP keep their engines' own checkpoint formats
    (those hooks go to transformers unchanged there)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # StepLines (policy.align.steps) replaces transformers' PrinterCallback (with tqdm off it
        # prints every log dict to stdout): one line a step, routed where the caller wants it.
        self.remove_callback(PrinterCallback)
        self.add_callback(StepLines())

    def _engine_owns_checkpoints(self) -> bool:
        return bool(self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        if self._engine_owns_checkpoints():
            return super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            save_state(output_dir, "optimizer", self.optimizer.state_dict())
            save_state(output_dir, "scheduler", self.lr_scheduler.state_dict())

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if checkpoint is None or self._engine_owns_checkpoints():
            return super()._load_optimizer_and_scheduler(checkpoint)
        optimizer, scheduler = load_state(checkpoint, "optimizer"), load_state(checkpoint, "scheduler")
        if optimizer is None or scheduler is None:
            # Going on with a fresh optimizer would silently end elsewhere than the run would have.
            raise BadInputError(
                f"{checkpoint} has no optimizer.json/scheduler.json (a checkpoint of an older imagepref "
                "or cut short); delete that checkpoint folder to resume from the one before"
            )
        self.optimizer.load_state_dict(optimizer)  # torch moves each state to its parameter's device
        self.lr_scheduler.load_state_dict(scheduler)

    def _save_scaler(self, output_dir: str) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and self.args.should_save:
            save_state(output_dir, "scaler", scaler.state_dict())

    def _load_scaler(self, checkpoint: str | None) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        state = load_state(checkpoint, "scaler") if checkpoint is not None and scaler is not None else None
        if state is not None:
            scaler.load_state_dict(state)

    def _rng_name(self) -> str:
        return "rng_state" if self.args.world_size <= 1 else f"rng_state_{self.args.process_index}"

    def _save_rng_state(self, output_dir: str) -> None:
        from transformers.training_args import ParallelMode

        states = {"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.random.get_rng_state()}
        if torch.cuda.is_available():
            distributed = self.args.parallel_mode == ParallelMode.DISTRIBUTED
            states["cuda"] = torch.cuda.random.get_rng_state_all() if distributed else torch.cuda.random.get_rng_state()
        save_state(output_dir, self._rng_name(), states)

    def _load_rng_state(self, checkpoint: str | None) -> None:
        from transformers.trainer_pt_utils import set_rng_state_for_device
        from transformers.training_args import ParallelMode

        states = load_state(checkpoint, self._rng_name()) if checkpoint is not None else None
        if states is None:
            logging.getLogger(__name__).info("no RNG state in %s: the resumed run may draw differently", checkpoint)
            return
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.random.set_rng_state(states["cpu"])
        if torch.cuda.is_available() and "cuda" in states:
            set_rng_state_for_device("CUDA", torch.cuda, states, self.args.parallel_mode == ParallelMode.DISTRIBUTED)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            # transformers 5.24 has no hook for this file alone; it is replaced as soon as written.
            Path(output_dir, "training_args.bin").unlink(missing_ok=True)
            write_text_atomically(Path(output_dir) / "training_args.json", self.args.to_json_string())
