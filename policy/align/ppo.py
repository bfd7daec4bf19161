"""PPO for image tokens, built on TRL 1.16's GRPOTrainer machinery (TRL removed PPOTrainer in 1.13).

What differs from GRPO:

- a **learned value baseline**: a linear value head on the policy's hidden states (the input of
  its output head) at each code-predicting position, trained with its own clipped value loss;
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
public ``create_optimizer`` (adds the value head's parameter group). The value head is saved
beside each checkpoint by a callback (``on_save``) and read back before a resumed run starts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from imagepref.policy.align.checkpoints import prepare_run, run_record
from imagepref.policy.align.config import PPOSettings
from imagepref.policy.align.grpo import ImageGRPOTrainer, grpo_arguments, prompt_dataset
from imagepref.policy.align.training import Monitoring, attach_monitor, reference_copy, run_training
from imagepref.policy.generator import Generator

VALUE_HEAD_FILE = "value_head.safetensors"


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
        self.value_head = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)
        super().__init__(generator, settings, reward_funcs, args, train_dataset, ref_model=ref_model, want_hidden=True)
        self.value_head.to(self.accelerator.device)
        self.add_callback(ValueHeadCheckpoints(self.value_head))
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
        # Detached: the value loss trains the head only. Flowing into the shared trunk, its regression
        # gradients moved the policy itself (on the shipped base the reward fell and the KL grew).
        values = self.value_head(out.hidden_states.float().detach())[..., 0]
        return logps, values

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        device = output["completion_ids"].device
        slots = self._slots.to(device)
        with torch.no_grad():
            _, values = self._policy_pass(self.model, output)
            rollout_logps = output["sampling_per_token_logps"][:, slots]
            ref = output.get("ref_per_token_logps")
            kl = (rollout_logps - ref[:, slots]) if ref is not None else torch.zeros_like(rollout_logps)
            rewards = -self.beta * kl
            rewards[:, -1] += self._mixed_rewards.to(device)
            advantages, returns = gae(rewards, values, self.settings.gamma, self.settings.lam)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        metrics = self._metrics["train"]
        metrics["ppo/kl"].append(kl.sum(-1).mean().item())
        metrics["ppo/kl_max"].append(kl.abs().max().item())
        metrics["ppo/value_mean"].append(values.mean().item())
        metrics["ppo/explained_variance"].append(explained_variance(values, returns))
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
        old_values, returns = inputs["old_values"], inputs["returns"]
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
            {"params": list(self.value_head.parameters()), "lr": self.settings.value_lr, "weight_decay": 0.0}
        )
        return optimizer

    def load_value_head(self, checkpoint: str | None) -> None:
        """Read the value head saved beside ``checkpoint`` (a resumed run), before training starts."""
        if checkpoint is not None and (Path(checkpoint) / VALUE_HEAD_FILE).is_file():
            self.value_head.load_state_dict(load_file(str(Path(checkpoint) / VALUE_HEAD_FILE)))


class ValueHeadCheckpoints(TrainerCallback):
    """Write the value head into each checkpoint folder as it is saved (the main process only)."""

    def __init__(self, value_head: torch.nn.Module) -> None:
        self.value_head = value_head

    def on_save(self, args, state, control, **kwargs):
        if args.should_save:
            save_value_head(self.value_head, Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}")


def save_value_head(value_head: torch.nn.Module, folder: Path) -> None:
    """Write the value head's weights as safetensors into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in value_head.state_dict().items()}, str(folder / VALUE_HEAD_FILE)
    )


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
    """Run PPO on ``prompts``; the value head is saved beside the adapter."""
    out = Path(out)
    resume_from = prepare_run(out, run_record("ppo", settings, base_path, generator), resume)
    trainer = build_ppo_trainer(generator, prompts, reward_funcs, reward_weights, settings, out)
    attach_monitor(trainer, generator, settings, out, monitoring)
    trainer.load_value_head(resume_from)
    result = run_training(trainer, generator, settings, out, resume_from)
    if trainer.is_world_process_zero():
        save_value_head(trainer.value_head, out)
    return result
