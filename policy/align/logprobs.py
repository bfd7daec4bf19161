"""Policy log-probs for TRL's trainers, for any generator family.

TRL 1.16's DPOTrainer (``_compute_loss``, ``compute_ref_log_probs``) and GRPOTrainer
(``_get_per_token_logps_and_entropies``) get log-probs by calling
``model(input_ids, attention_mask, labels=..., fused_lm_head=True).log_probs``, a forward that
``trl.trainer.utils.add_fused_lm_head`` patches onto the model. That reads the text LM head over
the whole vocabulary, which is right for a plain causal LM but wrong for a family with a separate
image head (Janus). ``install_policy_logprobs`` patches the same forward the same way TRL does,
but answers ``fused_lm_head=True`` through ``policy.sampler.teacher_forced_logprobs``: the
generator interface's raw log-probs of the image codes, the very numbers the sampler reports.
So TRL's losses, reference passes (adapters off) and ratios all see one distribution.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from imagepref.policy.generator import Generator
from imagepref.policy.sampler import teacher_forced_logprobs


@dataclasses.dataclass
class PolicyLogprobOutput:
    """What TRL reads from a fused forward: per-token log-probs, shifted like the labels."""

    log_probs: torch.Tensor  # (batch, seq_len - 1); 0 where the label is -100 or a forced block token
    # TRL logs these diagnostics; the interface gives log-probs of the codes only, so they are NaN
    # (entropy, mean logits) and False (top-1) rather than a made-up figure.
    entropy: torch.Tensor | None = None
    mean_logits: torch.Tensor | None = None
    is_top1: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    hidden_states: torch.Tensor | None = None  # (batch, num_codes, hidden) at the code-predicting positions


def generator_view(generator: Generator, model: torch.nn.Module) -> Generator:
    """A shallow copy of ``generator`` whose ``model`` is ``model`` (a peft-wrapped, trained or
    reference copy of it): the family's methods then run on that model."""
    view = copy.copy(generator)
    view.model = model
    return view


def split_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, block_length: int
) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """From padded prompt+block rows: the prompt ids, the block (batch, block_length) and the
    position of each block token in the row."""
    prompts, blocks, where = [], [], []
    for ids, mask, label in zip(input_ids, attention_mask, labels):
        scored = torch.nonzero(label != -100)[:, 0]
        if scored.numel() != block_length:
            raise ValueError(f"a completion has {scored.numel()} scored tokens, but an image block has {block_length}")
        prompt_positions = torch.nonzero((mask != 0) & (label == -100))[:, 0]
        prompt_positions = prompt_positions[prompt_positions < scored[0]]
        prompts.append(ids[prompt_positions].tolist())
        blocks.append(ids[scored])
        where.append(scored)
    return prompts, torch.stack(blocks), torch.stack(where)


def policy_logprobs(
    generator: Generator,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    want_hidden: bool = False,
) -> PolicyLogprobOutput:
    """TRL's fused-forward answer for ``generator``: log-probs of the labelled block tokens."""
    layout = generator.block_layout()
    prompts, block, where = split_rows(input_ids, attention_mask, labels, len(layout))
    codes = generator.block_to_codes(block)
    captured: list[torch.Tensor] = []
    scored: list[torch.Tensor] = []
    hook = None
    if want_hidden:
        # The value head reads what the output head reads. A plain causal LM computes logits in its
        # output embeddings (capture their input); a family with its own image head (Janus) hands
        # hidden states to ``code_logprobs`` (capture its argument instead).
        head = generator.model.get_output_embeddings()
        if head is not None:
            hook = head.register_forward_hook(lambda module, args, output: captured.append(args[0]))
        family_code_logprobs = generator.code_logprobs
        generator = copy.copy(generator)
        generator.code_logprobs = lambda source: (scored.append(source), family_code_logprobs(source))[1]
    try:
        code_lp = teacher_forced_logprobs(generator, prompts, codes, grad=torch.is_grad_enabled())
    finally:
        if hook is not None:
            hook.remove()
    slots = torch.tensor([i for i, t in enumerate(layout) if t is None], device=code_lp.device)
    log_probs = code_lp.new_zeros(input_ids.shape[0], input_ids.shape[1] - 1)
    # The label at position t is predicted at position t - 1 (the shift TRL applies).
    log_probs.scatter_(1, (where[:, slots] - 1).to(code_lp.device), code_lp)
    hidden = None
    if want_hidden:
        hidden = captured[-1][:, -len(layout) - 1 : -1][:, slots] if captured else scored[-1]
    unknown = torch.full_like(log_probs, float("nan")).detach()
    return PolicyLogprobOutput(
        log_probs=log_probs,
        entropy=unknown,
        mean_logits=unknown,
        is_top1=torch.zeros_like(log_probs, dtype=torch.bool),
        hidden_states=hidden,
    )


def install_policy_logprobs(model: torch.nn.Module, generator: Generator, want_hidden: bool = False) -> None:
    """Patch ``model.forward`` so ``fused_lm_head=True`` is answered by ``policy_logprobs``.

    ``model`` is the plain (un-peft-wrapped) causal LM; LoRA layers injected into it stay active
    or disabled exactly as TRL's ``use_adapter`` context says. Without ``fused_lm_head`` the
    original forward runs, so sampling (and the view's own teacher-forced pass) is unchanged.

    Upstream hook: the forward ``trl.trainer.utils.add_fused_lm_head`` installs (TRL 1.16), which
    DPOTrainer ``_compute_loss`` / ``compute_ref_log_probs`` and GRPOTrainer
    ``_get_per_token_logps_and_entropies`` call as ``model(..., labels=..., fused_lm_head=True)``
    and read ``.log_probs`` from. A trainer-method override could compute the same numbers, but
    it would call the model around the DDP/FSDP wrapper TRL calls through, which under
    ``accelerate launch`` skips the gradient synchronisation; answering inside the model's own
    forward keeps every wrapper in the call. tests/policy/test_align_dpo.py::
    test_upstream_fused_forward_hook fails when TRL stops calling it this way."""
    original = model.forward
    view = generator_view(generator, model)

    def forward(*args, fused_lm_head: bool = False, labels=None, **kwargs):
        if not fused_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return original(*args, **kwargs)
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        return policy_logprobs(view, input_ids, kwargs["attention_mask"], labels, want_hidden=want_hidden)

    model.forward = forward
