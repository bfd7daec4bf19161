"""The report's plots (matplotlib, drawn to PNG data URIs for the self-contained HTML): the text
figures per checkpoint with their intervals, the same along training steps, and the aligners'
held-out monitoring while the checkpoints trained."""

from __future__ import annotations

import base64
import io
from typing import Any

PLOTTED = ("exact_match", "word_accuracy", "ned", "flow_grpo_score", "cer")


def png_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI (the report embeds its plots and images so it opens from disk)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plot_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return png_uri(buffer.getvalue())


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported when a report draws, not before)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _same_run(checkpoints: list[dict[str, Any]]) -> bool:
    """Whether every checkpoint comes from one training run (so their steps share one axis)."""
    runs = {(c.get("training") or {}).get("run") for c in checkpoints}
    return len(runs) == 1 and None not in runs


def plots(results: dict[str, Any]) -> list[dict[str, str]]:
    """Matplotlib plots as data URIs: text figures per checkpoint with their intervals, and the
    same along training steps when the checkpoints are distinct steps of one training run."""
    plt = _pyplot()

    checkpoints = results["checkpoints"]
    names = [c["name"] for c in checkpoints]
    out = []
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(3.2 * len(PLOTTED), 3.2), squeeze=False)
    for axis, key in zip(axes[0], PLOTTED):
        values = [c["summary"][key]["value"] or 0.0 for c in checkpoints]
        lows = [
            v - (c["summary"][key]["ci"][0] if c["summary"][key]["ci"][0] is not None else v)
            for v, c in zip(values, checkpoints)
        ]
        highs = [
            (c["summary"][key]["ci"][1] if c["summary"][key]["ci"][1] is not None else v) - v
            for v, c in zip(values, checkpoints)
        ]
        axis.bar(range(len(names)), values, yerr=[lows, highs], capsize=4, color="#4c78a8")
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        axis.set_title(results["figures"][key]["label"], fontsize=9)
        axis.set_ylim(0, 1)
    figure.tight_layout()
    out.append(
        {
            "title": "Text rendering per checkpoint (95 % intervals: bootstrap over prompts, Wilson for shares of images)",
            "uri": _plot_uri(figure),
        }
    )
    plt.close(figure)
    steps = [c["step"] for c in checkpoints]
    if (
        len(checkpoints) >= 2
        and _same_run(checkpoints)
        and all(s is not None for s in steps)
        and len(set(steps)) == len(steps)
    ):
        order = sorted(range(len(steps)), key=lambda i: steps[i])
        figure, axis = plt.subplots(figsize=(6, 3.5))
        for key in PLOTTED:
            axis.plot(
                [steps[i] for i in order],
                [checkpoints[i]["summary"][key]["value"] for i in order],
                marker="o",
                label=results["figures"][key]["label"],
            )
        axis.set_xlabel("training step")
        axis.set_ylim(0, 1)
        axis.legend(fontsize=7)
        out.append({"title": "Along training steps", "uri": _plot_uri(figure)})
        plt.close(figure)
    return out


# The panels of a training curve: (title, the monitoring's figures drawn in it, y limits or None).
HELDOUT_PANELS = (
    ("OCR word accuracy", ("heldout/ocr_word_accuracy",), (0.0, 1.0)),
    ("Safety violations (rule)", ("heldout/safety_violation_rate",), (0.0, 1.0)),
    ("Rule scores", ("heldout/prompt_fidelity", "heldout/aesthetics", "heldout/safety"), (0.0, 1.0)),
    ("KL to the reference", ("heldout/kl",), None),
)


def _chains(results: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The checkpoints whose training curves to draw, each with its curve. A checkpoint whose runs
    are the first runs of another's (round 1 within round 2) is drawn inside that one's plot."""
    curves = [(c, c.get("training_curve") or []) for c in results["checkpoints"]]
    runs = [tuple(segment["run"] for segment in curve) for _, curve in curves]
    chosen = []
    for index, (checkpoint, curve) in enumerate(curves):
        mine = runs[index]
        inside_another = any(
            (len(other) > len(mine) and other[: len(mine)] == mine) or (other == mine and j < index)
            for j, other in enumerate(runs)
        )
        if curve and not inside_another:
            chosen.append((checkpoint, curve))
    return chosen


def _segment_steps(segment: dict[str, Any]) -> int:
    # A run whose record has no step count (cut short) ends at its last measured step.
    records = segment["records"]
    return segment["steps"] or (records[-1]["step"] if records else 0)


def _curve_panels(curve: list[dict[str, Any]]) -> list[tuple[str, tuple[str, ...], tuple[float, float] | None]]:
    """``HELDOUT_PANELS`` narrowed to the figures the runs logged; the reward model's heads
    (``heldout/rm_<head>``) join the rule scores."""
    keys = {key for segment in curve for record in segment["records"] for key in record}
    heads = tuple(sorted(k for k in keys if k.startswith("heldout/rm_")))
    panels = []
    for title, figures, limits in HELDOUT_PANELS:
        drawn = tuple(k for k in figures + (heads if title == "Rule scores" else ()) if k in keys)
        if drawn:
            panels.append((title, drawn, limits))
    return panels


def training_plots(results: dict[str, Any]) -> list[dict[str, str]]:
    """What the aligners' held-out monitoring logged while training the aligned checkpoints
    (``training_curve`` in results.json) as data URIs, one plot per chain of runs: OCR word
    accuracy, the safety rule's violations, the rule scores (and reward-model heads) and the KL to
    each run's own reference, the runs' steps one after another (the quickstart's GRPO after
    its DPO). Each evaluated checkpoint is marked where its training ended."""
    plt = _pyplot()

    out = []
    for checkpoint, curve in _chains(results):
        offsets, ends = [], []
        for segment in curve:
            offsets.append(ends[-1] if ends else 0)
            ends.append(offsets[-1] + _segment_steps(segment))
        chain = [segment["run"] for segment in curve]
        marked = {}
        for other in results["checkpoints"]:
            runs = [segment["run"] for segment in other.get("training_curve") or []]
            if runs and chain[: len(runs)] == runs:
                marked[other["name"]] = ends[len(runs) - 1]
        panels = _curve_panels(curve)
        figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
        for axis, (title, figures, limits) in zip(axes[0], panels):
            for colour, key in enumerate(figures):
                label = key.removeprefix("heldout/").replace("_", " ")
                for index, (segment, offset) in enumerate(zip(curve, offsets)):
                    # Runs are drawn apart: each has its own reference, so the KL restarts at 0.
                    records = [r for r in segment["records"] if key in r]
                    axis.plot(
                        [offset + r["step"] for r in records],
                        [r[key] for r in records],
                        marker="o",
                        markersize=3,
                        color=f"C{colour}",
                        label=label if index == 0 and len(figures) > 1 else None,
                    )
            for index, (segment, offset) in enumerate(zip(curve, offsets)):
                if index:
                    axis.axvline(offset, color="#999999", linestyle=":", linewidth=1)
                axis.annotate(segment["method"], (offset, 1.0), xycoords=("data", "axes fraction"), fontsize=7)
            for name, step in marked.items():
                axis.axvline(step, color="#2e7d32", linestyle="--", linewidth=1)
                axis.annotate(
                    name,
                    (step, 0.03),
                    xycoords=("data", "axes fraction"),
                    fontsize=6,
                    rotation=90,
                    ha="right",
                    color="#2e7d32",
                )
            axis.set_title(title, fontsize=9, pad=12)
            axis.set_xlabel("training step", fontsize=8)
            axis.tick_params(labelsize=7)
            if limits:
                axis.set_ylim(*limits)
            if len(figures) > 1:
                axis.legend(fontsize=6)
        figure.tight_layout()
        prompts = {s.get("monitor_prompts") for s in curve} - {None}
        title = (
            f"Held-out monitoring while training {checkpoint['name']}: "
            + " then ".join(f"{s['method']} ({s['steps']} steps)" for s in curve)
            + (f"; each pass samples the same {prompts.pop()} held-out prompts" if len(prompts) == 1 else "")
            + f"; green lines: where {', '.join(marked)} ended"
        )
        out.append({"title": title, "uri": _plot_uri(figure), "checkpoint": checkpoint["name"]})
        plt.close(figure)
    return out
