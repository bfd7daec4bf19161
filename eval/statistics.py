"""Confidence intervals, win rates and diversity for comparing checkpoints.

Images of one prompt are not independent (same prompt, same difficulty), so every interval here
accounts for the prompts:

- means and ratios of sums (word accuracy, character error rate, MARIO-Eval precision, axis
  scores): a percentile bootstrap that resamples *prompts*, keeping each prompt's images
  together (``clustered_ratio``). Written on numpy rather than ``scipy.stats.bootstrap`` because
  the figures are ratios of sums over clusters, which that API does not express without a Python
  call per resample; vectorised, 2,000 resamples take milliseconds.
- shares of images (exact match, safety violations) and win rates: a Wilson score interval on
  the effective number of images (``clustered_proportion``). A bootstrap collapses to [0, 0]
  when no image of the sample is flagged, which does not mean none ever would be; Wilson's
  interval keeps a width there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
# Two scores this close are equal: differences of rule scores carry floating error (0.8 - 0.7 is
# 0.10000000000000009, 0.7 - 0.6 is 0.09999999999999998), far below this, and any difference
# between two images' scores that means something is far above it.
SCORE_TOLERANCE = 1e-9


def clustered_ratio(
    clusters: Sequence[Any],
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """sum(numerators) / sum(denominators) and its 95 % bootstrap interval, resampling clusters.

    With no denominators this is the mean. Returns ``{"value", "ci": [low, high], "n"}``; the
    value is None when there is nothing to average.
    """
    numerators = np.asarray(numerators, dtype=float)
    denominators = np.ones_like(numerators) if denominators is None else np.asarray(denominators, dtype=float)
    if numerators.size == 0 or denominators.sum() == 0:
        return {"value": None, "ci": [None, None], "n": int(numerators.size)}
    keys = {key: index for index, key in enumerate(dict.fromkeys(clusters))}
    cluster_of = np.array([keys[key] for key in clusters])
    num = np.bincount(cluster_of, weights=numerators, minlength=len(keys))
    den = np.bincount(cluster_of, weights=denominators, minlength=len(keys))
    value = num.sum() / den.sum()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), size=(resamples, len(keys)))
    num_totals, den_totals = num[picks].sum(axis=1), den[picks].sum(axis=1)
    ratios = num_totals[den_totals > 0] / den_totals[den_totals > 0]
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail]) if ratios.size else (value, value)
    return {"value": float(value), "ci": [float(low), float(high)], "n": int(numerators.size), "interval": "bootstrap"}


def wilson_interval(share: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for a share observed on ``n`` trials (``n`` may be fractional, an
    effective number); never zero-width, even at 0 or 1."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    scale = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / scale
    half = z / scale * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def clustered_proportion(
    clusters: Sequence[Any], successes: Sequence[float], trials: Sequence[float] | None = None
) -> dict[str, Any]:
    """sum(successes) / sum(trials) (with no trials, the mean of per-image 0/1 outcomes) and its
    95 % Wilson interval on the effective number of trials.

    The effective number is the number of trials divided by the design effect, the variance of
    the share across clusters (prompts) over the variance the same number of independent trials
    would give, as in Korn and Graubard's intervals for clustered surveys; the design effect is
    held between 1 (independent images) and the mean number of trials per cluster (a prompt's
    images all alike), so the effective number lies between the number of prompts and the number
    of images. At a share of 0 or 1, or with a single prompt, the clusters' agreement cannot be
    measured, and each prompt counts as one trial: the cautious end. Returns ``{"value", "ci",
    "n", "interval", "effective_n"}``; the value is None when there is nothing to count.
    """
    successes = np.asarray(successes, dtype=float)
    trials = np.ones_like(successes) if trials is None else np.asarray(trials, dtype=float)
    total = float(trials.sum())
    if successes.size == 0 or total == 0:
        return {"value": None, "ci": [None, None], "n": int(successes.size), "interval": "wilson", "effective_n": None}
    keys = {key: index for index, key in enumerate(dict.fromkeys(clusters))}
    cluster_of = np.array([keys[key] for key in clusters])
    hits = np.bincount(cluster_of, weights=successes, minlength=len(keys))
    tries = np.bincount(cluster_of, weights=trials, minlength=len(keys))
    share = float(hits.sum() / total)
    independent_variance = share * (1 - share) / total
    clustered_variance = float(((hits - share * tries) ** 2).sum()) / total**2
    if independent_variance > 0 and len(keys) > 1:
        design_effect = min(max(clustered_variance / independent_variance, 1.0), total / len(keys))
    else:
        design_effect = total / len(keys)
    effective_n = total / design_effect
    low, high = wilson_interval(share, effective_n)
    return {
        "value": share,
        "ci": [low, high],
        "n": int(successes.size),
        "interval": "wilson",
        "effective_n": effective_n,
    }


def outcome(difference: float, tie_margin: float = 0.0) -> float:
    """1 (a win), 0.5 (a tie) or 0 (a loss) for a score ``difference`` against a margin.

    As for the rule judges, a difference that reaches the margin decides and a smaller one is a
    tie; a difference within ``SCORE_TOLERANCE`` of the margin counts as reaching it (floating
    error must not split 0.8 - 0.7 and 0.7 - 0.6), and one within it of zero is a tie whatever
    the margin."""
    gap = abs(difference)
    if gap <= SCORE_TOLERANCE or gap < tie_margin - SCORE_TOLERANCE:
        return 0.5
    return float(difference > 0)


def win_rate(
    keys: Sequence[tuple[str, int]],
    scores: Sequence[float],
    baseline: dict[tuple[str, int], float],
    tie_margin: float = 0.0,
) -> dict[str, Any]:
    """How often a checkpoint's image beats the baseline's image for the same prompt and sample.

    ``keys`` are (prompt_id, sample index); a win counts 1, a tie (a difference below
    ``tie_margin``, see ``outcome``) 0.5, a loss 0. Returns the rate with its Wilson interval on
    the effective number of pairs (``clustered_proportion``; ties make the outcomes less spread
    than 0/1 ones, so the interval errs wide), plus the counts.
    """
    outcomes, clusters = [], []
    for key, score in zip(keys, scores):
        if key not in baseline or score is None or baseline[key] is None:
            continue
        outcomes.append(outcome(score - baseline[key], tie_margin))
        clusters.append(key[0])
    result = clustered_proportion(clusters, outcomes)
    result.update(
        wins=sum(o == 1.0 for o in outcomes),
        ties=sum(o == 0.5 for o in outcomes),
        losses=sum(o == 0.0 for o in outcomes),
    )
    return result


def token_diversity(prompt_ids: Sequence[str], tokens: Sequence[Sequence[int]], seed: int = 0) -> dict[str, Any]:
    """Mean pairwise distance between a prompt's images in token space, averaged over prompts.

    The distance of two images is the share of token positions whose codes differ (normalised
    Hamming distance): 0 when a prompt always yields the same image, near 1 when its images share
    no code at any position. Prompts with a single image are left out.
    """
    by_prompt: dict[str, list[np.ndarray]] = defaultdict(list)
    for prompt_id, row in zip(prompt_ids, tokens):
        by_prompt[prompt_id].append(np.asarray(row))
    clusters, values = [], []
    for prompt_id, rows in by_prompt.items():
        if len(rows) < 2:
            continue
        length = max(len(r) for r in rows)
        stacked = np.stack([np.pad(r, (0, length - len(r)), constant_values=-1) for r in rows])
        differ = (stacked[:, None, :] != stacked[None, :, :]).mean(axis=-1)
        upper = np.triu_indices(len(rows), k=1)
        clusters.append(prompt_id)
        values.append(float(differ[upper].mean()))
    return clustered_ratio(clusters, values, seed=seed)


def paired_difference(
    clusters: Sequence[Any],
    base: Sequence[float],
    other: Sequence[float],
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """mean(other) - mean(base) over paired images (the same prompt and sample under two
    checkpoints) and its 95 % percentile bootstrap interval, resampling prompts with each prompt's
    images of both checkpoints together. ``verdict`` is "beyond noise" when the interval excludes 0,
    else "within noise". Returns ``{"value", "ci", "n", "verdict", "base"}``; ``base`` is
    mean(base) over the same images."""
    base = np.asarray(base, dtype=float)
    other = np.asarray(other, dtype=float)
    if base.size == 0:
        return {"value": None, "ci": [None, None], "n": 0, "verdict": "not measured", "base": None}
    keys = {key: index for index, key in enumerate(dict.fromkeys(clusters))}
    cluster_of = np.array([keys[key] for key in clusters])
    sums = np.bincount(cluster_of, weights=other - base, minlength=len(keys))
    counts = np.bincount(cluster_of, minlength=len(keys)).astype(float)
    value = float(sums.sum() / counts.sum())
    picks = np.random.default_rng(seed).integers(0, len(keys), size=(resamples, len(keys)))
    differences = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = (float(x) for x in np.percentile(differences, [tail, 100 - tail]))
    beyond = low > SCORE_TOLERANCE or high < -SCORE_TOLERANCE
    return {
        "value": value,
        "ci": [low, high],
        "n": int(base.size),
        "verdict": "beyond noise" if beyond else "within noise",
        "base": float(base.mean()),
    }
