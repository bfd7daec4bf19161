"""How good is a reward model on preference data (``imagepref reward eval``)?

Per head:
- **pairwise accuracy** on the pairs with a majority for a or b, and on the pairs where every
  annotator agreed, each with a bootstrap 95 % interval over pairs;
- **calibration**: the expected calibration error of P(a beats b) (ties shared out), 10 bins of
  confidence;
- **ties**: the share of pairs whose majority is a tie, the model's mean P(tie) on those pairs and
  on decided pairs, and its three-way accuracy (a / b / tie by the largest probability);
- **humans**: with two or more annotators per pair, the "single human" accuracy of HPSv2: each
  decisive vote against the majority of the *other* votes on that pair, next to the model's
  accuracy against the same references.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagepref.reward.data import PreferenceSet
from imagepref.reward.model import RewardModel, score_candidates


def bootstrap_interval(correct: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of 0/1 outcomes (nan, nan when empty)."""
    if len(correct) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def expected_calibration_error(p_a: np.ndarray, a_won: np.ndarray, bins: int = 10) -> float:
    """ECE of binary predictions: confidence max(p, 1-p) against how often the predicted side won."""
    if len(p_a) == 0:
        return float("nan")
    confidence = np.maximum(p_a, 1 - p_a)
    correct = ((p_a >= 0.5) == a_won).astype(float)
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            error += chosen.mean() * abs(correct[chosen].mean() - confidence[chosen].mean())
    return float(error)


def single_human_agreement(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out agreement from (pairs, 3) a/b/tie vote counts.

    For every decisive (a or b) vote on a pair with a strict a-or-b majority among the *other*
    votes: 1 if the vote matches that majority. Returns (agreements, pair index of each, the
    reference majority of each: 0 for a, 1 for b)."""
    agree, where, references = [], [], []
    for i, row in enumerate(votes.astype(int)):
        for outcome in (0, 1):
            for _ in range(row[outcome]):
                others = row.copy()
                others[outcome] -= 1
                top = int(np.argmax(others))
                if others.sum() and top in (0, 1) and (others == others[top]).sum() == 1:
                    agree.append(float(outcome == top))
                    where.append(i)
                    references.append(top)
    return np.asarray(agree), np.asarray(where, dtype=int), np.asarray(references, dtype=int)


def evaluate_reward_model(
    model: RewardModel, prefs: PreferenceSet, axes: Sequence[str] | None = None, resamples: int = 1000, seed: int = 0
) -> dict:
    """Every figure of the module docstring, per axis, as a JSON-ready dict."""
    axes = [a for a in (axes or prefs.axes) if a in model.axes]
    ids = list(dict.fromkeys([*prefs.pairs["candidate_a"], *prefs.pairs["candidate_b"]]))
    scores = score_candidates(model, prefs, ids)
    row = {c: i for i, c in enumerate(ids)}
    s_a = scores[[row[c] for c in prefs.pairs["candidate_a"]]]
    s_b = scores[[row[c] for c in prefs.pairs["candidate_b"]]]
    probs = model.pair_probabilities(s_a, s_b).numpy()  # (pairs, model axes, 3)
    votes = prefs.votes(axes).numpy()
    report = {"pairs": len(prefs.pairs), "axes": {}}
    for j, axis in enumerate(axes):
        h = model.axes.index(axis)
        v = votes[:, j]
        p = probs[:, h]
        p_a = p[:, 0] + p[:, 2] / 2
        total = v.sum(1)
        label = np.full(len(v), -1)
        top = v.argmax(1)
        strict = (v == v.max(1, keepdims=True)).sum(1) == 1
        label[(total > 0) & strict] = top[(total > 0) & strict]
        decided = np.isin(label, (0, 1))
        unanimous = decided & (total >= 2) & (v.max(1) == total)
        model_pick = np.where(p_a >= 0.5, 0, 1)
        correct = (model_pick == label).astype(float)
        human, where, references = single_human_agreement(v)
        entry = {
            "decided_pairs": int(decided.sum()),
            "accuracy": _mean(correct[decided]),
            "accuracy_ci95": bootstrap_interval(correct[decided], resamples, seed),
            "unanimous_pairs": int(unanimous.sum()),
            "accuracy_unanimous": _mean(correct[unanimous]),
            "accuracy_unanimous_ci95": bootstrap_interval(correct[unanimous], resamples, seed),
            "ece": expected_calibration_error(p_a[decided], label[decided] == 0),
            "tie_rate": _mean((label == 2)[total > 0].astype(float)),
            "p_tie_on_ties": _mean(p[label == 2, 2]),
            "p_tie_on_decided": _mean(p[decided, 2]),
            "three_way_accuracy": _mean((p.argmax(1) == label)[label >= 0].astype(float)),
            "ties_model": model.config.ties,
        }
        if len(human):
            # The model judged against the same leave-one-out references as each human vote.
            entry["single_human_accuracy"] = _mean(human)
            entry["single_human_ci95"] = bootstrap_interval(human, resamples, seed)
            entry["model_accuracy_same_references"] = _mean((model_pick[where] == references).astype(float))
            entry["human_judgments"] = int(len(human))
        report["axes"][axis] = entry
    return report


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")
