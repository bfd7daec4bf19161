"""DPO on TRL's ``DPOTrainer`` over pre-tokenized prompts and image-token completions.

No text round trip: examples already hold ``prompt_ids``, ``chosen_ids`` and ``rejected_ids``
(the image block), which is exactly what TRL's ``DataCollatorForPreference`` reads. With LoRA
(the default) the reference is the same model with its adapter off, so no second copy exists;
a full fine-tune keeps a frozen copy. Log-probs come from the generator interface
(``policy.align.logprobs``), so any family trains.
"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from trl import DPOTrainer

from imagepref.errors import BadInputError
from imagepref.policy.align.checkpoints import CheckpointFiles, lora_config, prepare_run, run_record
from imagepref.policy.align.config import DPOSettings
from imagepref.policy.align.training import (
    Monitoring,
    attach_monitor,
    reference_copy,
    route_logprobs,
    run_training,
    trainer_arguments,
)
from imagepref.policy.generator import Generator


class TokenDPOTrainer(CheckpointFiles, DPOTrainer):
    """TRL 1.16 ``DPOTrainer`` that takes token-id examples as they are.

    Checkpoints are pickle-free (``CheckpointFiles``)."""

    def __init__(self, *args, generator: Generator, **kwargs):
        self.generator = generator
        self.logprobs_routed = False
        super().__init__(*args, **kwargs)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        # Upstream hook: DPOTrainer._precompute_ref_logps(dataset, name, batch_size), private in TRL
        # 1.16, called from __init__ when precompute_ref_log_probs is set, after TRL patched its own
        # fused log-prob forward and before __init__ returns. Without routing here the precomputed
        # reference would be TRL's whole-vocabulary log-probs while the policy's come from the
        # generator interface. tests/policy/test_align_dpo.py::
        # test_precomputed_reference_gives_the_same_first_losses fails when that happens.
        route_logprobs(self, self.generator)
        self.logprobs_routed = True
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # Upstream hook: DPOTrainer._prepare_dataset(dataset, processing_class, args, dataset_name),
        # private in TRL 1.16, called from __init__ unless the dataset holds images; it extracts
        # prompts, appends EOS and tokenizes text. TRL takes no token-id input (it declined it
        # upstream) and has no public switch to skip this step, and our examples are already the
        # ids its collator reads, so the dataset passes unchanged.
        # tests/policy/test_align_dpo.py::test_upstream_dataset_hook fails when TRL changes it.
        return dataset


def dpo_dataset(examples: list[dict]) -> Dataset:
    """The examples as a ``datasets.Dataset`` with only the columns TRL's collator reads."""
    if not examples:
        raise BadInputError("no preference pairs to train on")
    return Dataset.from_list([{k: e[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for e in examples])


def build_dpo_trainer(generator: Generator, examples: list[dict], settings: DPOSettings, out: Path) -> TokenDPOTrainer:
    """A ``TokenDPOTrainer`` on ``generator.model`` writing into ``out``."""
    torch.manual_seed(settings.seed)  # the LoRA initialisation
    config = trainer_arguments(settings, out)
    trainer = TokenDPOTrainer(
        model=generator.model,
        ref_model=reference_copy(generator, settings),
        args=config,
        train_dataset=dpo_dataset(examples),
        processing_class=generator.tokenizer,
        peft_config=lora_config(settings, generator) if settings.lora else None,
        generator=generator,
    )
    if not trainer.logprobs_routed:
        route_logprobs(trainer, generator)
    return trainer


def train_dpo(
    generator: Generator,
    examples: list[dict],
    settings: DPOSettings,
    out: str | Path,
    base_path: str | None = None,
    resume: bool = False,
    monitoring: Monitoring | None = None,
) -> dict:
    """Run DPO on ``examples`` (see ``policy.align.pairs``) and save the adapter in ``out/adapter``."""
    out = Path(out)
    resume_from = prepare_run(out, run_record("dpo", settings, base_path, generator), resume)
    trainer = build_dpo_trainer(generator, examples, settings, out)
    attach_monitor(trainer, generator, settings, out, monitoring)
    return run_training(trainer, generator, settings, out, resume_from)
