"""The preference losses against hand-computed values, ties included."""

from __future__ import annotations

import math

import pytest
import torch

from imagepref.reward.losses import outcome_probabilities, preference_loss


def one_head(diff: float, votes: tuple[float, float, float]):
    return torch.tensor([[diff]]), torch.tensor([[votes]])


def test_bradley_terry_matches_hand_values():
    diff, votes = one_head(1.0, (1, 0, 0))
    total, _ = preference_loss(diff, votes, torch.zeros(1), "none")
    assert total.item() == pytest.approx(math.log(1 + math.exp(-1.0)), abs=1e-6)
    diff, votes = one_head(0.0, (2, 1, 0))  # soft label 2/3 vs 1/3 at p = 0.5
    assert preference_loss(diff, votes, torch.zeros(1), "none")[0].item() == pytest.approx(math.log(2), abs=1e-6)


def test_davidson_probabilities_and_tie_loss():
    # log nu = 0 (nu = 1), d = 2 ln 2: terms e^{d/2} = 2, e^{-d/2} = 1/2, nu = 1 -> divide by 3.5.
    probs = outcome_probabilities(torch.tensor([[2 * math.log(2)]]), torch.zeros(1), "davidson")[0, 0]
    assert probs.tolist() == pytest.approx([2 / 3.5, 0.5 / 3.5, 1 / 3.5], abs=1e-6)
    diff, votes = one_head(0.0, (0, 0, 1))  # at d = 0 all three are 1/3
    assert preference_loss(diff, votes, torch.zeros(1), "davidson")[0].item() == pytest.approx(math.log(3), abs=1e-6)
    diff, votes = one_head(2 * math.log(2), (1, 1, 2))  # soft: -(log 2/3.5 + log .5/3.5 + 2 log 1/3.5) / 4
    expected = -(math.log(2 / 3.5) + math.log(0.5 / 3.5) + 2 * math.log(1 / 3.5)) / 4
    assert preference_loss(diff, votes, torch.zeros(1), "davidson")[0].item() == pytest.approx(expected, abs=1e-6)


def test_rao_kupper_probabilities():
    # raw 0 -> eta = softplus(0) = ln 2. At d = ln 2: P(a) = sigmoid(0) = .5, P(b) = sigmoid(-2 ln 2) = .2, tie .3.
    probs = outcome_probabilities(torch.tensor([[math.log(2)]]), torch.zeros(1), "rao-kupper")[0, 0]
    assert probs.tolist() == pytest.approx([0.5, 0.2, 0.3], abs=1e-6)
    probs = outcome_probabilities(torch.tensor([[0.0]]), torch.zeros(1), "rao-kupper")[0, 0]
    assert probs.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3], abs=1e-6)


def test_a_tie_pulls_the_scores_together():
    diff = torch.tensor([[1.5]], requires_grad=True)
    for ties in ("davidson", "rao-kupper"):
        diff.grad = None
        preference_loss(diff, torch.tensor([[[0.0, 0.0, 1.0]]]), torch.zeros(1), ties)[0].backward()
        assert diff.grad.item() > 0  # descending the loss lowers |d|


def test_mask_weights_and_dropped_ties():
    diff = torch.tensor([[0.0, 1.0], [5.0, -1.0]])
    votes = torch.tensor(
        [
            [[1, 0, 0], [0, 0, 0]],  # head 2 unanswered on pair 1
            [[0, 0, 0], [0, 1, 0]],
        ],
        dtype=torch.float,
    )  # head 1 unanswered on pair 2
    total, per_head = preference_loss(diff, votes, torch.zeros(2), "none", torch.tensor([1.0, 3.0]))
    head1 = math.log(2)  # only pair 1: d = 0
    head2 = math.log(1 + math.exp(-1.0))  # only pair 2: b wins at d = -1
    assert per_head.tolist() == pytest.approx([head1, head2], abs=1e-6)
    assert total.item() == pytest.approx((head1 + 3 * head2) / 4, abs=1e-6)
    # Plain BT drops tie votes: a head with only ties has no weight, not a NaN.
    total, per_head = preference_loss(
        torch.tensor([[0.3, 0.0]]), torch.tensor([[[0, 0, 2], [1, 0, 0]]], dtype=torch.float), torch.zeros(2), "none"
    )
    assert per_head[0].item() == 0 and total.item() == pytest.approx(math.log(2), abs=1e-6)


def test_large_differences_stay_finite():
    diff, votes = one_head(-200.0, (1, 0, 1))
    for ties in ("davidson", "rao-kupper", "none"):
        total, _ = preference_loss(diff, votes, torch.zeros(1), ties)
        assert torch.isfinite(total)


def test_prompt_matching_loss_matches_hand_values_and_skips_invalid_rows():
    from imagepref.reward.losses import prompt_matching_loss

    own, other = torch.tensor([2.0, 0.0, 5.0]), torch.tensor([1.0, 0.0, -9.0])
    valid = torch.tensor([True, True, False])
    # softplus(other - own) over the valid rows: log(1 + e^-1) and log 2.
    expected = (math.log(1 + math.exp(-1.0)) + math.log(2)) / 2
    assert prompt_matching_loss(own, other, valid).item() == pytest.approx(expected, abs=1e-6)
    assert prompt_matching_loss(own, other, torch.zeros(3, dtype=torch.bool)).item() == 0.0
