"""PPO for image tokens, built on TRL 1.16's GRPOTrainer machinery (TRL removed PPOTrainer in 1.13).

What differs from GRPO:

- a **learned value baseline**: a separate value model, as in TRL's former PPOTrainer: its own
  trainable copy of the base's trunk under a linear value head, read at each code-predicting
  position, trained only by its clipped value loss (own optimizer group, ``value_lr``), on returns
  standardised by their running mean and spread (``NormalisedValueHead``);
- **GAE over the image tokens**: the reward of the image arrives at its last code, and every code
  also gets a KL penalty ``-beta * (log pi - log ref)``; advantages and returns come from
  generalised advantage estimation (gamma, lambda), whitened over the batch;
- the **clipped surrogate** ``-min(r A, clip(r, 1 - eps, 1 + eps) A)`` per code, with
  ``r = exp(log pi - log pi_rollout)`` where ``log pi_rollout`` is the raw policy log-prob the
  sampler reported when it drew the code: the same distribution the training pass computes, so
  at step 1 the ratio is 1 and the KL to the reference is 0 (``ppo/ratio_max_dev``, ``ppo/kl_max``);
- rollouts **sampled from that raw policy** (no guidance, temperature 1; ``rollout_sampling``), so the
  codes are on policy for the ratio, the surrogate and the KL estimate; guidance applies only to
  the held-out monitoring.

Hooks of TRL 1.16's GRPOTrainer overridden (besides our own ``rollout_sampling``), private there
and so checked by tests/policy/test_align_ppo.py::test_upstream_hooks: ``_calculate_rewards``
(keeps the mixed reward instead of only group advantages), ``_generate_and_score_completions``
(adds values, GAE advantages and returns) and ``_compute_loss`` (the PPO loss); and transformers'
public ``create_optimizer`` (adds the value model's parameter group). The value model sits outside
the policy, so the Trainer's ``model.zero_grad()`` after each optimizer step does not reach it: a
callback (``on_optimizer_step``) clears its gradients and saves it beside each checkpoint
(``on_save``); it is read back before a resumed run starts.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from imagepref.policy.align.checkpoints import prepare_run, run_record
from imagepref.policy.align.config import PPOSettings
from imagepref.policy.align.grpo import ImageGRPOTrainer, grpo_arguments, prompt_dataset
from imagepref.policy.align.logprobs import generator_view, policy_logprobs
from imagepref.policy.align.training import Monitoring, attach_monitor, reference_copy, run_training
from imagepref.policy.generator import Generator

VALUE_MODEL_FILE = "value_model.safetensors"
# Weight of the running return statistics against a new batch's (about the last 10 batches count).
RETURN_STATS_DECAY = 0.9


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a (batch, steps) episode that ends after the last
    step; returns (advantages, returns)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over every code of the batch: 1 when the value
    head predicts the returns, 0 when it predicts no better than their mean, below 0 when worse.
    NaN when the returns do not vary."""
    spread = returns.float().var()
    if spread <= 0:
        return float("nan")
    return (1 - (returns.float() - values.float()).var() / spread).item()


class ImagePPOTrainer(ImageGRPOTrainer):
    """PPO with a value head and GAE on TRL 1.16's GRPOTrainer machinery (see the module docstring)."""

    def __init__(self, generator: Generator, settings: PPOSettings, reward_funcs, args, train_dataset, ref_model=None):
        hidden = generator.model.config.get_text_config().hidden_size
        # The critic: its own trainable copy of the base's trunk (taken before LoRA goes into the
        # policy) under a value head, as TRL's PPOTrainer keeps a separate value model.
        self.value_trunk = copy.deepcopy(generator.model).requires_grad_(True)
        self.value_head = NormalisedValueHead(hidden, RETURN_STATS_DECAY)
        self.critic = torch.nn.ModuleDict({"trunk": self.value_trunk, "head": self.value_head})
        super().__init__(generator, settings, reward_funcs, args, train_dataset, ref_model=ref_model)
        self.critic.to(self.accelerator.device)
        self._critic_view = generator_view(generator, self.value_trunk)
        self.add_callback(ValueModelCallback(self.critic))
        self._slots = torch.tensor([i for i, t in enumerate(generator.block_layout()) if t is None])

    def rollout_sampling(self) -> tuple[float, float]:
        """PPO samples its rollouts from the raw policy: guidance 1 and temperature 1, whatever the
        run's ``guidance_scale`` (which then sets only the held-out monitoring sampler).

        The ratio, the KL penalty and the surrogate's gradient all use the raw conditional
        log-probs; only without guidance are those the log-probs of the distribution the codes were
        drawn from. Drawn with guidance 1.5 (the glyph default) they were off policy: on the shipped
        base the summed KL reached 22 by step 85 and the reward fell; drawn at guidance 1,
        with the same settings and seed, it stayed under 2 for 150 steps."""
        return 1.0, 1.0

    # ----- rewards, values, GAE -------------------------------------------------------------
    # Upstream hooks (TRL 1.16 GRPOTrainer, private): _calculate_rewards(inputs, prompts,
    # completions, completion_ids_list) -> (batch, reward functions) tensor,
    # _generate_and_score_completions(inputs) -> the batch dict _compute_loss(model, inputs) reads.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._mixed_rewards = (rewards_per_func * self.reward_weights.to(rewards_per_func.device)[None]).nansum(1)
        return rewards_per_func

    def _policy_pass(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs (batch, codes) and values (batch, codes) of the rollout's codes."""
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        length = inputs["completion_ids"].shape[1]
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, :-length] = -100
        out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True)
        logps = out.log_probs[:, -length:][:, self._slots.to(input_ids.device)]
        return logps, self._values(input_ids, attention_mask, labels)

    def _values(self, input_ids, attention_mask, labels) -> torch.Tensor:
        """Values (batch, codes) from the critic's own trunk, at the code-predicting positions.

        Not a head on the policy's hidden states: flowing into the shared trunk, the value loss's
        gradients moved the policy itself (on the shipped base the reward fell and the KL grew),
        and detached, those states held almost nothing the returns depend on (a least-squares
        linear fit on the micro generator's explained 0.7 % of the returns' variance)."""
        critic = policy_logprobs(self._critic_view, input_ids, attention_mask, labels, want_hidden=True)
        return self.value_head(critic.hidden_states.float())[..., 0]

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        device = output["completion_ids"].device
        slots = self._slots.to(device)
        with torch.no_grad():
            input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
            attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
            labels = input_ids.masked_fill(attention_mask == 0, -100)
            labels[:, : -output["completion_ids"].shape[1]] = -100
            values = self._values(input_ids, attention_mask, labels)
            rollout_logps = output["sampling_per_token_logps"][:, slots]
            ref = output.get("ref_per_token_logps")
            kl = (rollout_logps - ref[:, slots]) if ref is not None else torch.zeros_like(rollout_logps)
            rewards = -self.beta * kl
            rewards[:, -1] += self._mixed_rewards.to(device)
            if self.value_head.batches_seen == 0:  # the untrained head starts at the first mean return
                self.value_head.observe(gae(rewards, values, self.settings.gamma, self.settings.lam)[1])
                values = self._values(input_ids, attention_mask, labels)
            advantages, returns = gae(rewards, values, self.settings.gamma, self.settings.lam)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            self.value_head.observe(returns)
        metrics = self._metrics["train"]
        metrics["ppo/kl"].append(kl.sum(-1).mean().item())
        metrics["ppo/kl_max"].append(kl.abs().max().item())
        metrics["ppo/value_mean"].append(values.mean().item())
        metrics["ppo/explained_variance"].append(explained_variance(values, returns))
        metrics["ppo/return_std"].append(returns.std().item())
        output.update(advantages=advantages, returns=returns, old_values=values)
        return output

    # ----- the loss -------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        slots = self._slots.to(inputs["completion_ids"].device)
        logps, values = self._policy_pass(model, inputs)
        rollout_logps = inputs["sampling_per_token_logps"][:, slots]
        mask = inputs["completion_mask"][:, slots].float()
        ratio = torch.exp(logps - rollout_logps)
        advantages = inputs["advantages"]
        epsilon = self.settings.epsilon
        surrogate = torch.min(ratio * advantages, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages)
        policy_loss = -(surrogate * mask).sum() / mask.sum()
        # In units of the returns' running spread: returns ~0.04 apart between images would
        # otherwise be far below the step an Adam update takes (see NormalisedValueHead).
        head = self.value_head
        values, old_values, returns = (head.standardise(v) for v in (values, inputs["old_values"], inputs["returns"]))
        clipped = old_values + torch.clamp(values - old_values, -self.settings.value_clip, self.settings.value_clip)
        value_loss = 0.5 * (torch.max((values - returns) ** 2, (clipped - returns) ** 2) * mask).sum() / mask.sum()
        metrics = self._metrics["train"]
        metrics["ppo/policy_loss"].append(policy_loss.item())
        metrics["ppo/value_loss"].append(value_loss.item())
        metrics["ppo/ratio_mean"].append(ratio.mean().item())
        metrics["ppo/ratio_max_dev"].append((ratio - 1).abs().max().item())
        metrics["ppo/clip_fraction"].append(((ratio - 1).abs() > epsilon).float().mean().item())
        return policy_loss + self.settings.value_coef * value_loss

    # ----- the value head's optimizer group and checkpoints ---------------------------------
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        optimizer.add_param_group(
            {"params": list(self.critic.parameters()), "lr": self.settings.value_lr, "weight_decay": 0.0}
        )
        return optimizer

    def load_value_model(self, checkpoint: str | None) -> None:
        """Read the value model saved beside ``checkpoint`` (a resumed run), before training starts."""
        if checkpoint is not None and (Path(checkpoint) / VALUE_MODEL_FILE).is_file():
            load_model(self.critic, str(Path(checkpoint) / VALUE_MODEL_FILE))


class NormalisedValueHead(torch.nn.Linear):
    """A linear value head on the policy's hidden states that predicts returns standardised by
    their running mean and standard deviation, with PopArt's output-preserving rescale whenever
    those statistics move (van Hasselt et al., 2016, "Learning values across many orders of
    magnitude"). ``forward`` gives values in return units; the value loss is taken on
    ``standardise``d values and returns.

    Why: the returns of an image differ by ~0.04 between images (the reward's spread) while an
    AdamW step moves a linear head's output by about lr x the summed size of its inputs whatever
    the loss's scale. In return units, at value lr 1e-4 the head could not reach the returns' mean
    within hundreds of steps and lost it again as the policy's hidden states moved; at 1e-2 its
    output swung far wider than the returns themselves (explained variance down to -50). In
    units of the returns' spread the same step is small and scale-free, and the running mean
    starts the head at the first batch's mean return instead of at 0."""

    def __init__(self, hidden_size: int, decay: float) -> None:
        super().__init__(hidden_size, 1)
        torch.nn.init.zeros_(self.weight)
        torch.nn.init.zeros_(self.bias)
        self.decay = decay
        self.register_buffer("return_mean", torch.zeros(()))
        self.register_buffer("return_std", torch.ones(()))
        self.register_buffer("batches_seen", torch.zeros(()))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.return_mean + self.return_std * super().forward(hidden)

    def standardise(self, values: torch.Tensor) -> torch.Tensor:
        return (values - self.return_mean) / self.return_std

    @torch.no_grad()
    def observe(self, returns: torch.Tensor) -> None:
        """Fold one batch's returns into the running statistics (exponential moving averages of the
        first and second moments; the first batch sets them), keeping every output unchanged after
        the first batch."""
        returns = returns.float()
        mean, second = returns.mean(), returns.pow(2).mean()
        first = self.batches_seen == 0
        if not first:
            old_second = self.return_std**2 + self.return_mean**2
            mean = self.decay * self.return_mean + (1 - self.decay) * mean
            second = self.decay * old_second + (1 - self.decay) * second
        std = (second - mean**2).clamp_min(1e-8).sqrt().clamp_min(1e-3)
        if not first:  # the first batch moves the untrained head (output 0) onto its mean return
            self.weight.mul_(self.return_std / std)
            self.bias.copy_((self.return_std * self.bias + self.return_mean - mean) / std)
        self.return_mean.copy_(mean)
        self.return_std.copy_(std)
        self.batches_seen += 1


class ValueModelCallback(TrainerCallback):
    """Clear the value model's gradients after each optimizer step and write it into each
    checkpoint folder as it is saved (the main process only).

    The Trainer clears gradients with ``model.zero_grad()``, which does not reach a value model
    outside the policy. Left alone its gradients summed over every step so far, so it chased the
    integral of its past errors: on the micro generator over 400 steps the mean value climbed to
    0.86 against returns of about 0.5 and the value loss rose."""

    def __init__(self, value_model: torch.nn.Module) -> None:
        self.value_model = value_model

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.value_model.zero_grad(set_to_none=True)

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            save_value_model(self.value_model, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


def save_value_model(value_model: torch.nn.Module, folder: Path) -> None:
    """Write the value model's weights (and its return statistics) as safetensors into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(value_model, str(folder / VALUE_MODEL_FILE))


def build_ppo_trainer(
    generator: Generator,
    prompts: list[str],
    reward_funcs: list,
    reward_weights: list[float],
    settings: PPOSettings,
    out: Path,
) -> ImagePPOTrainer:
    """An ``ImagePPOTrainer`` writing into ``out``."""
    args = grpo_arguments(settings, out, generator, reward_weights)
    torch.manual_seed(settings.seed)  # the LoRA initialisation
    return ImagePPOTrainer(
        generator, settings, reward_funcs, args, prompt_dataset(prompts), ref_model=reference_copy(generator, settings)
    )


def train_ppo(
    generator: Generator,
    prompts: list[str],
    reward_funcs: list,
    reward_weights: list[float],
    settings: PPOSettings,
    out: str | Path,
    base_path: str | None = None,
    resume: bool = False,
    monitoring: Monitoring | None = None,
) -> dict:
    """Run PPO on ``prompts``; the value model is saved beside the adapter."""
    out = Path(out)
    resume_from = prepare_run(out, run_record("ppo", settings, base_path, generator), resume)
    trainer = build_ppo_trainer(generator, prompts, reward_funcs, reward_weights, settings, out)
    attach_monitor(trainer, generator, settings, out, monitoring)
    trainer.load_value_model(resume_from)
    result = run_training(trainer, generator, settings, out, resume_from)
    if trainer.is_world_process_zero():
        save_value_model(trainer.critic, out)
    return result
