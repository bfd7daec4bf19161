"""What the three trainers share: arguments, the LoRA-or-copy reference, monitoring, the finish.

Kept apart from the trainers so each trainer module reads as its method only.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from imagepref.errors import BadInputError
from imagepref.files import write_json_atomically
from imagepref.policy.align.checkpoints import ADAPTER_DIR, RUN_FILE, read_run, save_result
from imagepref.policy.align.config import AlignFields, guidance_of
from imagepref.policy.align.logprobs import generator_view, install_policy_logprobs
from imagepref.policy.align.monitoring import HeldoutMonitor, attach_first
from imagepref.policy.generator import Generator
from imagepref.policy.glyphworld import heldout_prompts
from imagepref.policy.glyphworld.rules import ReadText
from imagepref.policy.sampler import teacher_forced_logprobs


@dataclasses.dataclass
class Monitoring:
    """What held-out monitoring needs from outside ``policy``: an OCR reader and a word metric."""

    read_text: ReadText
    word_accuracy: Callable[[str, str], float]
    prompts: list[dict[str, str]] | None = None  # default: the glyph world's held-out prompts
    head_scores: Callable[[list, list[str]], dict[str, list[float]]] | None = None


def trainer_arguments(settings: AlignFields, out: Path, **trainer_sets):
    """TRL's config (``settings.trl_config``: DPOConfig or GRPOConfig) of ``settings`` for a run in
    ``out``: every TRL field the settings changed from TRL's default, plus what the trainer sets
    itself (``trainer_sets``: the run folder, the image block's length, ...).

    Without a GPU the run is placed on the CPU, as ``prepare_run`` places it. TRL's own checks of
    the values (loss weights per loss type, batch sizes) are one error line."""
    values = {**settings.trl_arguments(), **trainer_sets, "output_dir": str(out)}
    values["use_cpu"] = bool(values.get("use_cpu")) or not torch.cuda.is_available()
    try:
        return settings.trl_config(**values)
    except ValueError as error:
        raise BadInputError(f"align settings: {str(error).splitlines()[0]}") from None


def reference_copy(generator: Generator, settings: AlignFields) -> torch.nn.Module | None:
    """A frozen copy of the model for a full fine-tune (LoRA needs none: its reference is the
    same model with the adapter off)."""
    if settings.lora:
        return None
    reference = copy.deepcopy(generator.model).eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def zero_dropout(model: torch.nn.Module) -> None:
    """Switch off every dropout: ``nn.Dropout`` modules and float ``*dropout*`` attributes of the
    model's configs and modules.

    The sampler runs in eval mode and the training pass in train mode; any dropout left on (Emu3
    has ``nn.Dropout(0.1)`` in its layers and a functional attention dropout of 0.1) makes the two
    differ, so the step-1 ratio would not be 1 and the KL not 0."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for owner in (module, getattr(module, "config", None)):
            if owner is None:
                continue
            for name, value in list(vars(owner).items()):
                if "dropout" in name and isinstance(value, float) and value > 0:
                    setattr(owner, name, 0.0)


def route_logprobs(trainer, generator: Generator, want_hidden: bool = False) -> None:
    """Make the trainer's policy and reference log-probs come from the generator interface."""
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    zero_dropout(model)
    install_policy_logprobs(model, generator, want_hidden=want_hidden)
    if getattr(trainer, "ref_model", None) is not None:
        zero_dropout(trainer.ref_model)
        install_policy_logprobs(trainer.ref_model, generator)


def policy_of(trainer, generator: Generator) -> Generator:
    """The generator as the trainer currently has it (adapters on)."""
    return generator_view(generator, trainer.model)


def reference_logprobs_of(trainer, generator: Generator) -> Callable[[list, torch.Tensor], torch.Tensor]:
    """Teacher-forced log-probs under the reference: adapters off, or the frozen copy."""

    def reference(prompt_ids, codes):
        reference_model = getattr(trainer, "ref_model", None)
        if reference_model is not None:
            return teacher_forced_logprobs(generator_view(generator, reference_model), prompt_ids, codes)
        with trainer.model.disable_adapter():
            return teacher_forced_logprobs(policy_of(trainer, generator), prompt_ids, codes)

    return reference


def attach_monitor(
    trainer, generator: Generator, settings: AlignFields, out: Path, monitoring: Monitoring | None
) -> HeldoutMonitor:
    """Add held-out monitoring to ``trainer``; without ``monitoring`` (or with monitor_every=0) it
    only copies the training logs into ``metrics.jsonl``."""
    every = settings.monitor_every if monitoring is not None else 0
    monitoring = monitoring or Monitoring(read_text=lambda image: "", word_accuracy=lambda reading, target: 0.0)
    prompts = monitoring.prompts or heldout_prompts(settings.monitor_prompts)
    monitor = HeldoutMonitor(
        policy=lambda: policy_of(trainer, generator),
        reference_logprobs=reference_logprobs_of(trainer, generator),
        prompts=prompts,
        every=every,
        read_text=monitoring.read_text,
        word_accuracy=monitoring.word_accuracy,
        metrics_file=out / "metrics.jsonl",
        sampler={"guidance_scale": guidance_of(settings, generator)},
        head_scores=monitoring.head_scores,
    )
    attach_first(trainer, monitor)
    return monitor


def run_training(trainer, generator: Generator, settings: AlignFields, out: Path, resume_from: str | None) -> dict:
    """Train (resuming when asked), save the adapter, and record the outcome in ``align.json``."""
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume_from)
    adapter = out / ADAPTER_DIR
    if trainer.is_world_process_zero():  # one writer per run folder under accelerate launch
        save_result(out, trainer.model, generator, settings.lora)
        record = read_run(out)
        record["finished"] = {
            "steps": trainer.state.global_step,
            "seconds": round(time.time() - started, 2),
            "train_loss": result.training_loss,
            "adapter": ADAPTER_DIR,
        }
        write_json_atomically(out / RUN_FILE, record)
    trainer.accelerator.wait_for_everyone()
    return {"adapter": str(adapter), "steps": trainer.state.global_step, "log_history": trainer.state.log_history}
