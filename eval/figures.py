"""The figures of one checkpoint, computed from its scored images, and which checkpoint is best.

Every figure comes with a 95 % interval that accounts for the prompts (``eval.statistics``): a
Wilson interval on the effective number of images for shares of images (exact match, safety
violations, the safety rule's score) and win rates, a bootstrap over prompts for the rest; and a
direction, so the report can mark the best value of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from imagepref.eval.statistics import (
    clustered_proportion,
    clustered_ratio,
    paired_difference,
    token_diversity,
    win_rate,
)
from imagepref.policy.glyphworld.edits import EDIT_TIE_MARGINS
from imagepref.policy.glyphworld.rules import TIE_MARGINS


@dataclass(frozen=True)
class Figure:
    """How one figure is named, shown and compared."""

    key: str
    label: str
    higher_is_better: bool
    percent: bool = True


TEXT_FIGURES = (
    Figure("exact_match", "Exact match", True),
    Figure("word_accuracy", "Word accuracy", True),
    Figure("cer", "Character error rate", False),
    Figure("ned", "NED (AnyText)", True),
    Figure("word_precision", "Word precision (MARIO)", True),
    Figure("word_recall", "Word recall (MARIO)", True),
    Figure("word_f1", "Word F1 (MARIO)", True),
    Figure("flow_grpo_score", "Flow-GRPO OCR score", True),
    Figure("reading_similarity", "Reading similarity (whole reading)", True),
)
OTHER_FIGURES = (
    Figure("safety_violation_rate", "Safety violation rate (rule)", False),
    Figure("reward_safety_violation_rate", "Safety violation rate (reward head)", False),
    # Edits: instruction fidelity and preservation both met (the edit rules' success).
    Figure("rules/success", "Edit success (rule)", True),
    Figure("diversity", "Diversity (token distance)", True),
    Figure("seconds_per_image", "Time per image (s)", False, percent=False),
)
# Win rates on rule scores tie below each rule's own margin, the one its judge uses
# (policy.glyphworld.rules.TIE_MARGINS): 0.1 on the continuous aesthetics and fidelity scores,
# 0.5 on the safety rule's 0-or-1 score. Reward-model scores have no margin.
# Rule axes whose score is 0 or 1 per image: their mean is a share of images (Wilson interval).
RULE_SHARE_AXES = ("safety", "success")


def text_figures(images: list[dict[str, Any]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Text-rendering figures over the images that have a target: means of per-image figures,
    and CER and MARIO-Eval's word figures from summed counts, each with its interval."""
    scored = [i for i in images if i["text"]["has_target"]]
    clusters = [i["prompt_id"] for i in scored]
    text = [i["text"] for i in scored]
    figures = {"exact_match": clustered_proportion(clusters, [float(t["exact_match"]) for t in text])}
    for key in ("word_accuracy", "ned", "flow_grpo_score", "reading_similarity"):
        figures[key] = clustered_ratio(clusters, [float(t[key]) for t in text], seed=seed)
    figures["cer"] = clustered_ratio(
        clusters, [sum(p["edits"] for p in t["pieces"]) for t in text], [t["target_chars"] for t in text], seed=seed
    )
    figures["word_precision"] = clustered_ratio(
        clusters, [t["matched_words"] for t in text], [t["read_words"] for t in text], seed=seed
    )
    figures["word_recall"] = clustered_ratio(
        clusters, [t["matched_words"] for t in text], [t["target_words"] for t in text], seed=seed
    )
    figures["word_f1"] = _f1_with_interval(clusters, text, seed)
    return figures


KIND_FIGURES = ("exact_match", "word_accuracy", "cer", "flow_grpo_score")


def kind_figures(images: list[dict[str, Any]], kinds: dict[str, str], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Exact match, word accuracy, CER and the Flow-GRPO score per kind of prompt (a prompt file's
    ``kind`` field, e.g. the glyph world's ``unseen_word`` and ``unseen_template``), keyed
    ``kind/figure``; empty when no prompt has a kind."""
    figures: dict[str, dict[str, Any]] = {}
    for kind in sorted(set(kinds.values())):
        chosen = [i for i in images if kinds.get(i["prompt_id"]) == kind]
        if chosen:
            figures.update(
                {
                    f"{kind}/{key}": value
                    for key, value in text_figures(chosen, seed=seed).items()
                    if key in KIND_FIGURES
                }
            )
    return figures


def _f1_with_interval(clusters: list[str], text: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    # F1 of summed counts is 2 * matched / (read + target): one more ratio of sums.
    return clustered_ratio(
        clusters, [2 * t["matched_words"] for t in text], [t["read_words"] + t["target_words"] for t in text], seed=seed
    )


def axis_figures(images: list[dict[str, Any]], source: str, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Mean and interval of each axis score from ``source`` ("rules" or "reward"); the 0-or-1 rule
    scores (``RULE_SHARE_AXES``) are shares of images, with a Wilson interval."""
    axes = sorted({axis for i in images for axis in (i.get(source) or {})})
    judged = [i for i in images if i.get(source)]
    clusters = [i["prompt_id"] for i in judged]
    figures = {}
    for axis in axes:
        values = [i[source][axis] for i in judged]
        if source == "rules" and axis in RULE_SHARE_AXES:
            figures[axis] = clustered_proportion(clusters, values)
        else:
            figures[axis] = clustered_ratio(clusters, values, seed=seed)
    return figures


def safety_violation_rate(images: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Share of images the glyph world's safety rule flags (score 0), where the rule applies, with
    its Wilson interval (``seed`` is there for the figures' common signature; Wilson needs none)."""
    judged = [i for i in images if i.get("rules")]
    return clustered_proportion([i["prompt_id"] for i in judged], [float(i["rules"]["safety"] < 0.5) for i in judged])


# A reward scorer may add this key: per image, 1.0 when the reward model's safety head calls it unsafe.
UNSAFE_KEY = "unsafe"


def reward_safety_violation_rate(images: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Share of images the reward model's safety head calls unsafe (below its saved threshold),
    with its Wilson interval (``seed`` unused, as for ``safety_violation_rate``)."""
    judged = [i for i in images if i.get("reward_unsafe") is not None]
    return clustered_proportion([i["prompt_id"] for i in judged], [i["reward_unsafe"] for i in judged])


def diversity(images: list[dict[str, Any]], tokens: list[list[int]], seed: int = 0) -> dict[str, Any]:
    """Mean pairwise token distance between each prompt's images (see ``token_diversity``)."""
    return token_diversity([i["prompt_id"] for i in images], tokens, seed=seed)


def win_rates(
    images: list[dict[str, Any]], baseline_images: list[dict[str, Any]], source: str, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Per axis, the rate at which these images beat the baseline's for the same prompt and
    sample, ties counting half, with a Wilson interval on the effective number of pairs. Rule
    scores tie below their rule's margin (``TIE_MARGINS``), reward scores only when equal
    (``seed`` unused, as for ``safety_violation_rate``)."""
    axes = sorted({axis for i in images for axis in (i.get(source) or {})})
    rates = {}
    for axis in axes:
        baseline = {(i["prompt_id"], i["sample"]): (i.get(source) or {}).get(axis) for i in baseline_images}
        keys = [(i["prompt_id"], i["sample"]) for i in images]
        scores = [(i.get(source) or {}).get(axis) for i in images]
        margin = TIE_MARGINS.get(axis, EDIT_TIE_MARGINS.get(axis, 0.0)) if source == "rules" else 0.0
        rates[axis] = win_rate(keys, scores, baseline, tie_margin=margin)
    return rates


def image_value(image: dict[str, Any], key: str) -> float | None:
    """One image's contribution to the mean figure ``key``: a per-image text figure
    (``word_accuracy``, ``exact_match``, ``ned``, ...), ``safety_violation_rate`` (1 when the safety
    rule flags it) or an axis score (``rules/<axis>``, ``reward/<axis>``); None when the image has
    none (no quoted target, not judged)."""
    if key == "safety_violation_rate":
        rules = image.get("rules")
        return float(rules["safety"] < 0.5) if rules else None
    if "/" in key:
        source, axis = key.split("/", 1)
        value = (image.get(source) or {}).get(axis)
        return None if value is None else float(value)
    text = image.get("text") or {}
    value = text.get(key) if text.get("has_target") else None
    return None if value is None or isinstance(value, list | dict) else float(value)


# Figures that are means of one value per image, which a paired comparison can difference.
PAIRED_KEYS = ("exact_match", "word_accuracy", "ned", "flow_grpo_score", "reading_similarity", "safety_violation_rate")


def paired_change(
    base_images: list[dict[str, Any]], images: list[dict[str, Any]], key: str, seed: int = 0
) -> dict[str, Any]:
    """The change of figure ``key`` from the base's images to these, paired by prompt and sample,
    with the prompt-clustered bootstrap interval of the difference and its verdict ("beyond
    noise" or "within noise"; see ``paired_difference``)."""
    base = {(i["prompt_id"], i["sample"]): image_value(i, key) for i in base_images}
    clusters, before, after = [], [], []
    for image in images:
        value, base_value = image_value(image, key), base.get((image["prompt_id"], image["sample"]))
        if value is not None and base_value is not None:
            clusters.append(image["prompt_id"])
            before.append(base_value)
            after.append(value)
    return paired_difference(clusters, before, after, seed=seed)


def _pairable(key: str) -> bool:
    return key in PAIRED_KEYS or key.startswith(("rules/", "reward/"))


def best_checkpoints(checkpoints: list[dict[str, Any]], seed: int = 0) -> dict[str, list[str]]:
    """For every figure in the summaries, the name(s) of the checkpoint(s) with the best value,
    marked only where it is best beyond noise: for figures that are means over images, the
    paired difference from every other checkpoint's value must exclude zero; other figures
    (ratios of summed counts, diversity, time) are marked on their value alone."""
    directions = {f.key: f.higher_is_better for f in TEXT_FIGURES + OTHER_FIGURES}
    best: dict[str, list[str]] = {}
    keys = {key for c in checkpoints for key in c["summary"]}
    for key in sorted(keys):
        values = {
            c["name"]: c["summary"][key]["value"]
            for c in checkpoints
            if c["summary"].get(key, {}).get("value") is not None
        }
        # Nothing to mark when fewer than two checkpoints have the figure or all are equal.
        if len(values) < 2 or np.allclose(list(values.values()), next(iter(values.values()))):
            continue
        # Axis scores (rules/..., reward/...) are better when higher.
        higher = directions.get(key, directions.get(key.rpartition("/")[2], not key.endswith("violation_rate")))
        target = max(values.values()) if higher else min(values.values())
        leaders = [name for name, value in values.items() if np.isclose(value, target)]
        if _pairable(key) and all("images" in c for c in checkpoints):
            images = {c["name"]: c["images"] for c in checkpoints}
            leaders = [
                name
                for name in leaders
                if all(
                    paired_change(images[other], images[name], key, seed)["verdict"] == "beyond noise"
                    for other in values
                    if other not in leaders
                )
            ]
        if leaders:
            best[key] = leaders
    return best


# The headline lines of a comparison: (label, summary key, higher is better).
SUMMARY_FIGURES = (
    ("OCR word accuracy", "word_accuracy", True),
    ("prompt fidelity (rule)", "rules/prompt_fidelity", True),
    ("aesthetics (rule)", "rules/aesthetics", True),
    ("safety violations", "safety_violation_rate", False),
)
# The same for an evaluation of edits (``glyphworld-edits-heldout``).
EDIT_SUMMARY_FIGURES = (
    ("edit success (rule)", "rules/success", True),
    ("instruction fidelity (rule)", "rules/instruction_fidelity", True),
    ("preservation (rule)", "rules/preservation", True),
    ("OCR word accuracy of the result", "word_accuracy", True),
    ("safety violations", "safety_violation_rate", False),
)


def summary_lines(
    results: dict[str, Any], base: dict[str, Any] | None = None, last: dict[str, Any] | None = None
) -> list[str]:
    """One line per headline figure from ``base`` (default: the first checkpoint) to ``last``
    (default: the last one), with the change and the
    prompt-clustered bootstrap interval of the paired difference; word accuracy (on edits: edit
    success) also per kind of held-out prompt (the glyph world's unseen words and unseen templates,
    or unseen phrasings), since the kinds measure different things. A change is called better or worse only when that interval excludes zero;
    otherwise it is within noise."""
    checkpoints = results["checkpoints"]
    base = checkpoints[0] if base is None else base
    last = checkpoints[-1] if last is None else last
    seed = results.get("settings", {}).get("bootstrap_seed", 0)
    kinds = {p["prompt_id"]: p["kind"] for p in results.get("prompts", []) if p.get("kind")}

    def line(label: str, key: str, higher: bool, kind: str | None = None) -> str:
        def chosen(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return images if kind is None else [i for i in images if kinds.get(i["prompt_id"]) == kind]

        base_images, last_images = chosen(base["images"]), chosen(last["images"])
        change = paired_change(base_images, last_images, key, seed)
        if change["value"] is None:
            return f"{label}: not measured"
        if base is last:  # one checkpoint: its figures, nothing to compare
            return f"{label}: {change['base'] * 100:.1f} % ({base['name']})"
        before = change["base"]
        after = before + change["value"]
        low, high = (100 * x for x in change["ci"])
        if change["verdict"] == "beyond noise":
            verdict = "better" if (change["value"] > 0) == higher else "worse"
        else:
            verdict = "within noise"
        return (
            f"{label}: {before * 100:.1f} % -> {after * 100:.1f} % ({change['value'] * 100:+.1f} points, "
            f"95 % interval of the paired difference [{low:+.1f}, {high:+.1f}], {verdict}; "
            f"{base['name']} -> {last['name']})"
        )

    lines = []
    edits = any(p.get("edit_kind") for p in results.get("prompts", []))
    for label, key, higher in EDIT_SUMMARY_FIGURES if edits else SUMMARY_FIGURES:
        if base["summary"].get(key, {}).get("value") is None or last["summary"].get(key, {}).get("value") is None:
            lines.append(f"{label}: not measured")
            continue
        lines.append(line(label, key, higher))
        if key == ("rules/success" if edits else "word_accuracy"):  # the headline figure per held-out kind
            for kind in dict.fromkeys(kinds.values()):
                lines.append(line(f"{label}, {kind.replace('_', ' ')}", key, higher, kind))
    return lines
