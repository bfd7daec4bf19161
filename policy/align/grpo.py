"""GRPO on TRL's ``GRPOTrainer``, with our sampler as its ``rollout_func``.

Rollouts come from ``policy.sampler`` (batched classifier-free guidance, image tokens only) and
carry the policy's raw log-probs; forced block tokens (Emu3's end-of-row markers) are masked out of
the loss through ``env_mask``. Training log-probs come from the generator interface
(``policy.align.logprobs``), so any family trains. Rewards read ``completion_ids``
(``policy.align.rewards``) and are mixed with the configured weights. The KL term to the
reference is on by default (beta 0.04; TRL's default of 0 lets the policy drift unchecked).
"""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from torch.utils.data import Sampler
from trl import GRPOConfig, GRPOTrainer

from imagepref.errors import BadInputError
from imagepref.policy.align.checkpoints import CheckpointFiles, lora_config, prepare_run, run_record
from imagepref.policy.align.config import GRPOSettings, guidance_of
from imagepref.policy.align.edit_turns import EditSources
from imagepref.policy.align.training import (
    Monitoring,
    attach_monitor,
    reference_copy,
    route_logprobs,
    run_training,
    trainer_arguments,
)
from imagepref.policy.generator import Generator


def rollout(
    generator: Generator,
    prompts: list[str],
    seed: int,
    guidance_scale: float,
    temperature: float,
    decoding: str = "plain",
    window: int = 8,
    edit_sources: EditSources | None = None,
) -> dict:
    """Sample one image per prompt with the shared sampler, in the shape TRL's ``rollout_func`` returns.

    ``decoding="sjd"`` draws from the same distribution with the same raw log-probs, in fewer passes.
    With ``edit_sources``, the prompts are edit records and each image is an edit of its source
    (``Generator.edit``)."""
    settings = dict(
        seed=seed,
        guidance_scale=guidance_scale,
        temperature=temperature,
        decode=False,
        decoding=decoding,
        window=window,
    )
    if edit_sources is not None:
        # An edit turn: the source sign's codes, its instruction and prompt (``edit_turns``); the
        # completion is the new image's block, scored again on the whole turn (``prompt_ids``).
        samples = generator.edit(*edit_sources.turns(prompts), **settings)
    else:
        samples = generator.sample(prompts, **settings)
    layout = generator.block_layout()
    slots = torch.tensor([i for i, t in enumerate(layout) if t is None])
    logprobs = torch.zeros(len(prompts), len(layout))
    logprobs[:, slots] = samples.logprobs
    mask = torch.zeros(len(layout), dtype=torch.long)
    mask[slots] = 1
    return {
        "prompt_ids": [list(p) for p in samples.prompt_ids],
        "completion_ids": samples.completion_ids.tolist(),
        "logprobs": logprobs.tolist(),
        "env_mask": [mask.tolist()] * len(prompts),
    }


class EpochSeededSampler(Sampler):
    """TRL's ``RepeatSampler`` (as ``GRPOTrainer._get_train_sampler`` builds it) whose shuffle is a
    function of (seed, epoch).

    TRL seeds its sampler once, so epoch k's order is the k-th draw of its generator; a run
    resumed in epoch k starts a fresh sampler and would draw epoch 1's order. transformers calls
    ``set_epoch`` on the train sampler at each epoch (also on resume), so reseeding the wrapped
    sampler's generator there restores the same data order. It reads the ``shuffle``, ``seed`` and
    ``generator`` attributes of TRL 1.16's RepeatSampler (checked by
    tests/policy/test_align_grpo.py::test_upstream_sampler_hook)."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def __iter__(self):
        return iter(self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        if self.sampler.shuffle:
            self.sampler.generator.manual_seed((self.sampler.seed or 0) * 1_000_003 + epoch)


class ImageGRPOTrainer(CheckpointFiles, GRPOTrainer):
    """TRL 1.16 ``GRPOTrainer`` whose rollouts are image blocks from our sampler.

    Hooks: the ``rollout_func`` constructor argument (experimental in TRL 1.16), the fused
    log-prob forward TRL patches onto the model (answered by ``route_logprobs``, see
    ``policy.align.logprobs``) and ``_get_train_sampler`` (an epoch-seeded sampler, so a resumed
    run keeps the data order). For a full fine-tune, TRL 1.16 would reload the reference from
    ``config._name_or_path``; an in-memory generator has none, so the frozen copy is set after
    construction instead. Checkpoints are pickle-free (``CheckpointFiles``)."""

    def __init__(
        self,
        generator: Generator,
        settings: GRPOSettings,
        reward_funcs,
        args: GRPOConfig,
        train_dataset: Dataset,
        ref_model: torch.nn.Module | None = None,
        want_hidden: bool = False,
        edit_sources: EditSources | None = None,
    ):
        self.generator = generator
        self.settings = settings
        self.edit_sources = edit_sources
        beta = args.beta
        if ref_model is not None:
            args.beta = 0.0  # keeps TRL from loading a reference by name; restored below
        super().__init__(
            model=generator.model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            processing_class=generator.tokenizer,
            peft_config=lora_config(settings, generator) if settings.lora else None,
            rollout_func=self._rollout,
        )
        if ref_model is not None:
            args.beta = self.beta = beta
            self.ref_model = ref_model.to(self.accelerator.device)
        route_logprobs(self, generator, want_hidden=want_hidden)

    def _get_train_sampler(self, dataset=None):
        # Upstream hook: transformers 5.24 Trainer._get_train_sampler, which TRL 1.16's GRPOTrainer
        # overrides as _get_train_sampler(dataset=None) to build its RepeatSampler; the train
        # dataloader takes its sampler from here. There is no public way to reseed a sampler per
        # epoch. tests/policy/test_align_grpo.py::test_upstream_sampler_hook fails when it changes.
        return EpochSeededSampler(super()._get_train_sampler(dataset))

    def _rollout(self, prompts: list, trainer) -> dict:
        # The seed is a function of the step, so a resumed run draws the same images.
        seed = self.settings.seed * 100_003 + self.state.global_step * 101 + self.accelerator.process_index
        # TRL shuffles each generation batch with the global RNG right after this call; seeding it
        # from the step too makes a resumed run add the losses in the same order, bit for bit.
        torch.manual_seed(seed)
        policy = self.model
        was_training = policy.training
        policy.eval()
        try:
            from imagepref.policy.align.training import policy_of

            guidance_scale, temperature = self.rollout_sampling()
            return rollout(
                policy_of(self, self.generator),
                [str(p) for p in prompts],
                seed,
                guidance_scale,
                temperature,
                decoding=self.settings.decoding,
                window=self.settings.window,
                edit_sources=self.edit_sources,
            )
        finally:
            policy.train(was_training)

    def rollout_sampling(self) -> tuple[float, float]:
        """(guidance scale, temperature) the rollouts are drawn with: the run's settings."""
        return guidance_of(self.settings, self.generator), self.settings.temperature


def grpo_arguments(settings: GRPOSettings, out: Path, generator: Generator, reward_weights: list[float]) -> GRPOConfig:
    """The ``GRPOConfig`` of ``settings``: the completion is one image block of the generator's."""
    batch_size = settings.per_device_train_batch_size
    if batch_size % settings.num_generations:
        raise BadInputError(
            f"batch_size ({batch_size}) must be a multiple of num_generations "
            f"({settings.num_generations}): each step trains on whole groups"
        )
    return trainer_arguments(
        settings, out, max_completion_length=len(generator.block_layout()), reward_weights=reward_weights
    )


def prompt_dataset(prompts: list[str]) -> Dataset:
    """Training prompts as the dataset GRPO draws groups from."""
    if not prompts:
        raise BadInputError("no training prompts: give a prompts file with at least one prompt")
    return Dataset.from_list([{"prompt": p} for p in prompts])


def train_grpo(
    generator: Generator,
    prompts: list[str],
    reward_funcs: list,
    reward_weights: list[float],
    settings: GRPOSettings,
    out: str | Path,
    base_path: str | None = None,
    resume: bool = False,
    monitoring: Monitoring | None = None,
    edit_sources: EditSources | None = None,
) -> dict:
    """Run GRPO on ``prompts`` with the given rewards (see ``policy.align.rewards.build_rewards``).

    With ``edit_sources``, ``prompts`` are edit records (``policy.align.edit_turns``) and the
    rollouts are edit turns of their sources."""
    out = Path(out)
    resume_from = prepare_run(out, run_record("grpo", settings, base_path, generator), resume)
    args = grpo_arguments(settings, out, generator, reward_weights)
    torch.manual_seed(settings.seed)  # the LoRA initialisation
    trainer = ImageGRPOTrainer(
        generator,
        settings,
        reward_funcs,
        args,
        prompt_dataset(prompts),
        ref_model=reference_copy(generator, settings),
        edit_sources=edit_sources,
    )
    attach_monitor(trainer, generator, settings, out, monitoring)
    return run_training(trainer, generator, settings, out, resume_from)
