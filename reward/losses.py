"""Preference losses: Bradley-Terry per head, with ties modelled instead of thrown away.

Every head gives each image a scalar score ``s``; for a pair the model only sees ``d = s_a - s_b``.

- **Bradley-Terry** (``ties="none"``): P(a) = sigmoid(d); tie votes are masked out.
- **Rao-Kupper** (``ties="rao-kupper"``): P(a) = sigmoid(d - eta), P(b) = sigmoid(-d - eta),
  P(tie) = 1 - P(a) - P(b), with a learned threshold eta = softplus(raw) >= 0 per head.
- **Davidson** (``ties="davidson"``, the default): with pa = e^{s_a}, pb = e^{s_b},
  P(a) = pa / (pa + pb + nu sqrt(pa pb)), P(tie) = nu sqrt(pa pb) / (...), with a learned
  nu = exp(raw) > 0 per head. Ties then pull the two scores together instead of being lost.

Votes from several annotators become soft labels: the loss of a pair is the cross-entropy against
the vote shares, ``-(v_a log P(a) + v_b log P(b) + v_tie log P(tie)) / (v_a + v_b + v_tie)``. A pair
with no votes on an axis is masked out of that head. Head losses are means over their unmasked
pairs, mixed with the configured weights.

Why by hand: TRL's ``RewardTrainer`` and the published BT losses take one scalar and one
chosen/rejected label; none handles ties, masks and vote counts per head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TIE_MODELS = ("davidson", "rao-kupper", "none")


def outcome_logprobs(diff: torch.Tensor, tie_param: torch.Tensor, ties: str = "davidson") -> torch.Tensor:
    """Log-probabilities of (a wins, b wins, tie) for score differences ``diff`` (..., heads).

    ``tie_param`` (heads,) is the raw, unconstrained tie parameter of each head (log nu for
    Davidson, softplus^-1 of eta for Rao-Kupper; ignored for plain BT, whose tie log-prob is -inf).
    Returns a tensor of shape (..., heads, 3). Computed in log space so large differences stay finite.
    """
    diff = diff.float()
    if ties == "davidson":
        half = diff / 2
        log_nu = tie_param.float().expand_as(diff)
        # log of the three unnormalised terms, divided through by sqrt(pa pb): e^{d/2}, e^{-d/2}, nu.
        terms = torch.stack([half, -half, log_nu], dim=-1)
        return terms - torch.logsumexp(terms, dim=-1, keepdim=True)
    if ties == "rao-kupper":
        eta = F.softplus(tie_param.float()).expand_as(diff)
        log_a, log_b = F.logsigmoid(diff - eta), F.logsigmoid(-diff - eta)
        # P(tie) = 1 - P(a) - P(b) = sigmoid(d+eta) - sigmoid(d-eta), written stably:
        # = sigmoid(d+eta) sigmoid(-d+eta) (1 - e^{-2 eta}).
        log_tie = (
            F.logsigmoid(diff + eta) + F.logsigmoid(eta - diff) + torch.log((-torch.expm1(-2 * eta)).clamp(min=1e-12))
        )
        return torch.stack([log_a, log_b, log_tie], dim=-1)
    if ties == "none":
        return torch.stack([F.logsigmoid(diff), F.logsigmoid(-diff), torch.full_like(diff, float("-inf"))], dim=-1)
    raise ValueError(f"unknown tie model {ties!r}; known: {', '.join(TIE_MODELS)}")


def outcome_probabilities(diff: torch.Tensor, tie_param: torch.Tensor, ties: str = "davidson") -> torch.Tensor:
    """Probabilities of (a wins, b wins, tie), shape (..., heads, 3); see ``outcome_logprobs``."""
    return outcome_logprobs(diff, tie_param, ties).exp()


def preference_loss(
    diff: torch.Tensor,
    votes: torch.Tensor,
    tie_param: torch.Tensor,
    ties: str = "davidson",
    head_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted multi-head preference loss and each head's loss.

    ``diff``: (pairs, heads) score differences s_a - s_b. ``votes``: (pairs, heads, 3) counts of
    (a, b, tie) votes, any non-negative numbers (a single label is a one-hot row). Rows without
    votes on a head are masked out of it; with ``ties="none"`` tie votes are dropped first.
    Returns (total, per_head) where a head with no votes at all has loss 0 and no weight.
    """
    votes = votes.float()
    if ties == "none":
        votes = votes.clone()
        votes[..., 2] = 0
    total_votes = votes.sum(-1)  # (pairs, heads)
    mask = total_votes > 0
    logp = outcome_logprobs(diff, tie_param, ties)
    # 0 * -inf (a plain-BT tie with no tie votes) must count as 0, not NaN.
    weighted = torch.where(votes > 0, votes * logp, torch.zeros_like(logp))
    per_pair = -weighted.sum(-1) / total_votes.clamp(min=1)
    counts = mask.sum(0)
    per_head = (per_pair * mask).sum(0) / counts.clamp(min=1)
    weights = torch.ones(diff.shape[-1], device=diff.device) if head_weights is None else head_weights.float()
    weights = weights * (counts > 0)
    total = (per_head * weights).sum() / weights.sum().clamp(min=1e-12)
    return total, per_head


def prompt_matching_loss(own: torch.Tensor, other: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The auxiliary prompt-matching loss: each image should match its own prompt better than
    another candidate's prompt, ``mean(-log sigmoid(own - other))`` over the ``valid`` rows.

    ``own`` and ``other`` are one head's scores (batch,) of the same images read against their own
    prompt and against a different one. This is weak supervision from data every candidate set
    already has (the prompt it was generated for), in the spirit of the image-text matching
    objectives that CLIP- and BLIP-based reward models inherit from pretraining: it teaches a
    model trained from scratch to compare the drawn text and colour with the prompt far faster
    than the few preference pairs whose variants differ in spelling can. 0 when no row is valid.
    Masked rather than indexed, so a training step does not wait on the device to count rows."""
    per_row = torch.where(valid, F.softplus(other.float() - own.float()), 0.0)
    return per_row.sum() / valid.sum().clamp(min=1)
