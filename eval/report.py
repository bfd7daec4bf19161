"""Write an evaluation's ``results.json``, ``summary.md`` and a self-contained ``report.html``.

The HTML opens from disk with no server and no network: the plots (matplotlib) and the images are
embedded as base64 ``data:`` URIs, and the styles are inline.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from imagepref.eval.figures import summary_lines
from imagepref.eval.metrics import DEFAULT_NORMALIZATION
from imagepref.files import write_text_atomically

PLOTTED = ("exact_match", "word_accuracy", "ned", "flow_grpo_score", "cer")
TARGET_ROWS = 60  # the "By target" table shows the baseline's worst targets first, up to this many


def figure_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure in any checkpoint's summary, in a stable reading order, with its cells
    (value, interval, best) per checkpoint."""
    known = results["figures"]
    keys: list[str] = [k for k in known if any(k in c["summary"] for c in results["checkpoints"])]
    order = {key: index for index, key in enumerate(known)}
    # Figures per kind of prompt (kind/figure) together, each kind in the order of the known figures.
    extra = sorted(
        {k for c in results["checkpoints"] for k in c["summary"]} - set(keys),
        key=lambda k: (k.rpartition("/")[0], order.get(k.rpartition("/")[2], len(order)), k),
    )
    keys = keys[:8] + extra + keys[8:]  # text figures, then axis scores, then the rest
    rows = []
    for key in keys:
        meta = known.get(key) or _prefixed_meta(key, known)
        cells = []
        for checkpoint in results["checkpoints"]:
            figure = checkpoint["summary"].get(key, {"value": None, "ci": [None, None]})
            cells.append(
                {
                    "text": format_value(figure["value"], meta["percent"]),
                    "ci": format_interval(figure["ci"], meta["percent"]),
                    "best": checkpoint["name"] in results["best"].get(key, []),
                }
            )
        arrow = "↑" if meta["higher_is_better"] else "↓"
        rows.append({"key": key, "label": f"{meta['label']} {arrow}", "cells": cells})
    return rows


def _prefixed_meta(key: str, known: dict[str, Any]) -> dict[str, Any]:
    """How to show a figure without an entry of its own: ``kind/figure`` (a figure over one kind of
    prompt) as that figure, labelled with the kind; anything else as a plain number."""
    prefix, _, name = key.rpartition("/")
    if prefix and name in known and prefix not in ("rules", "reward"):
        return dict(known[name], label=f"{prefix.replace('_', ' ')}: {known[name]['label']}")
    return {"label": key.replace("/", ": ").replace("_", " "), "higher_is_better": True, "percent": False}


def format_value(value: float | None, percent: bool) -> str:
    """A figure for people: percent with one decimal, or three significant digits; "–" if none."""
    if value is None:
        return "–"
    return f"{100 * value:.1f} %" if percent else f"{value:.3g}"


def format_interval(ci: list[float | None], percent: bool) -> str:
    """An interval as "[low, high]", or "" when there is none."""
    if ci is None or ci[0] is None:
        return ""
    low, high = (100 * v for v in ci) if percent else ci
    return f"[{low:.1f}, {high:.1f}]" if percent else f"[{low:.3g}, {high:.3g}]"


def marked_reading(reading: str, targets: list[str]) -> list[dict[str, Any]]:
    """The OCR reading as words, each marked as matching a target word or not (a multiset match
    after the metrics' normalisation, so a word read twice but asked once is marked once)."""
    wanted = Counter(w for t in targets for w in DEFAULT_NORMALIZATION.words(t))
    words = []
    for word in reading.split():
        normalised = DEFAULT_NORMALIZATION.words(word)
        key = normalised[0] if normalised else ""
        ok = bool(targets) and wanted[key] > 0
        if ok:
            wanted[key] -= 1
        words.append({"word": word, "ok": ok})
    return words


def step_label(checkpoint: dict[str, Any]) -> str:
    """The training step of a checkpoint as its training's record gives it, with what trained it
    ("grpo step 120", "pretrain step 1200"); "" when it has no record."""
    if checkpoint.get("step") is None:
        return ""
    method = (checkpoint.get("training") or {}).get("method")
    return f"{method} step {checkpoint['step']}" if method and method != "trainer" else f"step {checkpoint['step']}"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _plot_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _same_run(checkpoints: list[dict[str, Any]]) -> bool:
    """Whether every checkpoint comes from one training run (so their steps share one axis)."""
    runs = {(c.get("training") or {}).get("run") for c in checkpoints}
    return len(runs) == 1 and None not in runs


def plots(results: dict[str, Any]) -> list[dict[str, str]]:
    """Matplotlib plots as data URIs: text figures per checkpoint with their intervals, and the
    same along training steps when the checkpoints are distinct steps of one training run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


GRID_PAGE = 10  # prompts per page of the image grid: the first page is open, the rest a click away


def _image_view(image: dict[str, Any], targets: list[str], out: Path) -> dict[str, Any]:
    """One image as the grid shows it: the picture, the OCR reading with each word marked as
    asked for or not, each read word's box, and what the glyph world's rules flag on it."""
    from PIL import Image

    path = out / image["image"]
    with Image.open(path) as picture:
        width, height = picture.size
    words = marked_reading(image["reading"], targets)
    boxes, position = [], 0
    for text, confidence, (left, top, right, bottom) in image.get("ocr_words") or []:
        # The reading is the read words joined by spaces, so its marked words follow the boxes.
        marks = words[position : position + len(text.split())]
        position += len(marks)
        boxes.append(
            {
                "x": left,
                "y": top,
                "width": max(right - left, 1),
                "height": max(bottom - top, 1),
                "ok": bool(marks) and all(w["ok"] for w in marks),
                "title": f"{text} (confidence {confidence:.2f})",
            }
        )
    findings = image.get("rule_findings") or {}
    source = None
    if image.get("source_image"):
        # An edit: the source it started from, shown before the result, and the edit rules' verdict.
        rules = image.get("rules") or {}
        source = {
            "uri": _data_uri(out / image["source_image"]),
            "alt": f"{image['prompt_id']} source",
            "fidelity": rules.get("instruction_fidelity"),
            "preservation": rules.get("preservation"),
            "success": rules.get("success"),
        }
    flags = []
    if findings.get("wrong_colour"):
        flags.append({"kind": "colour", "text": f"ink {findings['ink_colour']}, asked {findings['asked_colour']}"})
    marks = findings.get("forbidden_boxes") or []
    if marks:
        flags.append(
            {"kind": "forbidden", "text": "forbidden mark" if len(marks) == 1 else f"{len(marks)} forbidden marks"}
        )
    return {
        "uri": _data_uri(path),
        "width": width,
        "height": height,
        "alt": f"{image['prompt_id']} sample {image['sample']}",
        "words": words,
        "exact": image["text"]["exact_match"],
        "boxes": boxes,
        "marks": [
            {"x": left, "y": top, "width": right - left, "height": bottom - top} for left, top, right, bottom in marks
        ],
        "flags": flags,
        "source": source,
    }


def image_grid(results: dict[str, Any], out: Path, limit: int) -> list[dict[str, Any]]:
    """The per-prompt grid of the first ``limit`` prompts in pages of ``GRID_PAGE`` prompts, as
    ``{first, last, rows}``: each row a prompt with, per checkpoint, its first image shown and its
    other images (``more``) a click away."""
    by_prompt: list[dict[str, list[dict[str, Any]]]] = []
    for checkpoint in results["checkpoints"]:
        images: dict[str, list[dict[str, Any]]] = {}
        for image in sorted(checkpoint["images"], key=lambda i: i["sample"]):
            images.setdefault(image["prompt_id"], []).append(image)
        by_prompt.append(images)
    rows = []
    for prompt in results["prompts"][:limit]:
        cells = []
        for images in by_prompt:
            views = [_image_view(i, prompt["targets"], out) for i in images.get(prompt["prompt_id"], [])]
            cells.append({"first": views[0] if views else None, "more": views[1:]})
        rows.append({"prompt": prompt, "cells": cells})
    return [
        {"first": start + 1, "last": min(start + GRID_PAGE, len(rows)), "rows": rows[start : start + GRID_PAGE]}
        for start in range(0, len(rows), GRID_PAGE)
    ]


def target_rows(results: dict[str, Any], limit: int = TARGET_ROWS) -> tuple[list[dict[str, Any]], int]:
    """Per quoted target (a prompt's pieces joined by " | "; prompts sharing a target are pooled):
    each checkpoint's exact matches over its images and its commonest misreading. The baseline's
    worst targets come first, so a word no checkpoint can write stands out from one that alignment
    fixed. Returns the first ``limit`` rows and how many were left out."""
    prompts = {p["prompt_id"]: p for p in results["prompts"]}
    names = [c["name"] for c in results["checkpoints"]]
    tallies: dict[str, list[tuple[list[int], Counter]]] = {}
    for column, checkpoint in enumerate(results["checkpoints"]):
        for image in checkpoint["images"]:
            targets = prompts[image["prompt_id"]]["targets"]
            if not targets:
                continue
            counts, misses = tallies.setdefault(" | ".join(targets), [([0, 0], Counter()) for _ in names])[column]
            counts[1] += 1
            if image["text"]["exact_match"]:
                counts[0] += 1
            else:
                misses[image["reading"].strip() or "(nothing read)"] += 1
    baseline = names.index(results["settings"]["baseline"]) if results["settings"]["baseline"] in names else 0
    rows = []
    for target, cells in tallies.items():
        row = []
        for (hits, total), misses in cells:
            common = misses.most_common(1)
            row.append(
                {
                    "hits": hits,
                    "total": total,
                    "rate": hits / total if total else None,
                    "misreading": common[0][0] if common else "",
                    "misread": common[0][1] if common else 0,
                }
            )
        rows.append({"target": target, "cells": row})
    rows.sort(
        key=lambda r: (r["cells"][baseline]["rate"] if r["cells"][baseline]["rate"] is not None else 2.0, r["target"])
    )
    return rows[:limit], max(0, len(rows) - limit)


def _letter_hits(target: str, matched: str) -> list[tuple[str, bool]]:
    """Each letter of ``target`` and whether the reading ``matched`` has it in place: the letters
    that the edit alignment of reading to target neither replaces nor deletes."""
    from rapidfuzz.distance import Levenshtein

    target, matched = target.replace(" ", ""), matched.replace(" ", "")
    wrong = {op.src_pos for op in Levenshtein.editops(target, matched) if op.tag in ("replace", "delete")}
    return [(char.upper(), position not in wrong) for position, char in enumerate(target)]


def breakdown_rows(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Where checkpoints fail, per quoted piece: ``length`` (pieces spelled exactly, by the piece's
    length in characters) and ``letter`` (each target letter drawn in place, by letter, through the
    edit alignment of the reading to the piece). Each row has one ``{hits, total, rate}`` cell per
    checkpoint."""
    names = [c["name"] for c in results["checkpoints"]]
    tallies: dict[str, dict[Any, list[list[int]]]] = {"length": {}, "letter": {}}
    for column, checkpoint in enumerate(results["checkpoints"]):
        for image in checkpoint["images"]:
            for piece in image["text"].get("pieces") or []:
                length = len(piece["target"].replace(" ", ""))
                cell = tallies["length"].setdefault(length, [[0, 0] for _ in names])[column]
                cell[0] += bool(piece["exact"])
                cell[1] += 1
                for letter, hit in _letter_hits(piece["target"], piece["matched"]):
                    cell = tallies["letter"].setdefault(letter, [[0, 0] for _ in names])[column]
                    cell[0] += hit
                    cell[1] += 1
    return {
        kind: [
            {"group": str(group), "cells": [{"hits": h, "total": t, "rate": h / t if t else None} for h, t in cells]}
            for group, cells in sorted(table.items())
        ]
        for kind, table in tallies.items()
    }


def _rate_cell(cell: dict[str, Any]) -> str:
    if not cell["total"]:
        return "–"
    return f"{100 * cell['rate']:.1f} % ({cell['hits']}/{cell['total']})"


BREAKDOWN_TITLES = {
    "length": ("By word length", "length", "Quoted pieces spelled exactly, by their length in characters."),
    "letter": (
        "By letter",
        "letter",
        "Target letters drawn in place (edit alignment of the reading to the target), by letter.",
    ),
}


def _target_cell(cell: dict[str, Any]) -> str:
    if not cell["total"]:
        return "–"
    text = f"{cell['hits']}/{cell['total']}"
    return text + (f" · {cell['misreading']} ×{cell['misread']}" if cell["misread"] else "")


def paired_changes(results: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """For each checkpoint but the baseline, its headline lines against the baseline: the change,
    the interval of the paired difference and whether it is beyond noise
    (``figures.summary_lines``)."""
    checkpoints = results["checkpoints"]
    baseline = next((c for c in checkpoints if c["name"] == results["settings"].get("baseline")), None)
    if baseline is None or not all("images" in c for c in checkpoints):
        return []
    return [(c["name"], summary_lines(results, baseline, c)) for c in checkpoints if c is not baseline]


def markdown_summary(results: dict[str, Any], by_target: bool = True) -> str:
    """The summary table as markdown, the best value of each figure in bold, the win rates, and
    (``by_target``) the table by target."""
    return _markdown(results, target_rows(results) if by_target else None)


def _markdown(results: dict[str, Any], targets: tuple[list[dict[str, Any]], int] | None) -> str:
    names = [c["name"] for c in results["checkpoints"]]
    lines = [
        f"# Evaluation: {', '.join(names)}",
        "",
        f"Prompt set `{results['prompt_set']['name']}`: {results['prompt_set']['prompts']} prompts "
        f"({results['prompt_set']['with_target']} with a target), {results['settings']['samples']} images each, "
        f"seed {results['settings']['seed']}. OCR: {_engine_line(results['ocr'])}. Intervals: 95 %, a bootstrap over prompts for means, Wilson on the effective number of images for shares.",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for row in figure_rows(results):
        cells = [f"**{c['text']}** {c['ci']}" if c["best"] else f"{c['text']} {c['ci']}" for c in row["cells"]]
        lines.append(f"| {row['label']} | " + " | ".join(cell.strip() for cell in cells) + " |")
    baseline = results["settings"]["baseline"]
    lines.append("")
    for checkpoint in results["checkpoints"]:
        for axis, rate in checkpoint["win_rates"].items():
            lines.append(
                f"- {checkpoint['name']} vs {baseline}, {axis} ({checkpoint['win_rate_source']}): win rate "
                f"{format_value(rate['value'], True)} {format_interval(rate['ci'], True)} "
                f"({rate['wins']} wins, {rate['ties']} ties, {rate['losses']} losses)"
            )
    for name, changes in paired_changes(results):
        lines += ["", f"## {name} against {baseline}: paired differences", ""]
        lines += [f"- {line}" for line in changes]
    rows, left_out = targets or ([], 0)
    if targets is not None:
        for kind, table in breakdown_rows(results).items():
            if not table:
                continue
            title, column, note = BREAKDOWN_TITLES[kind]
            lines += [
                "",
                f"## {title}",
                "",
                note,
                "",
                f"| {column} | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names),
            ]
            lines += [_markdown_cells([row["group"], *(_rate_cell(c) for c in row["cells"])]) for row in table]
    if rows:
        lines += [
            "",
            "## By target",
            "",
            "Images spelling every quoted piece exactly, and the commonest misreading; the baseline's worst first.",
            "",
            "| target | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        lines += [_markdown_cells([row["target"], *(_target_cell(c) for c in row["cells"])]) for row in rows]
        if left_out:
            lines.append(f"\n{left_out} more target(s) are in results.json.")
    return "\n".join(lines) + "\n"


def _markdown_cells(cells: list[str]) -> str:
    """A markdown table row; a "|" inside a cell (a target's pieces, a misreading) is escaped."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _engine_line(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def write_reports(results: dict[str, Any], out: Path) -> None:
    """Write ``results.json``, ``summary.md`` and ``report.html`` into ``out``."""
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("imagepref.eval").joinpath(name).read_text(encoding="utf-8")
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    targets = target_rows(results)
    html = environment.get_template("report.html.j2").render(
        results=results,
        rows=figure_rows(results),
        plots=plots(results),
        training_plots=training_plots(results),
        pages=image_grid(results, out, results["settings"]["grid_prompts"]),
        targets=targets,
        target_cell=_target_cell,
        breakdowns=[(BREAKDOWN_TITLES[kind], table) for kind, table in breakdown_rows(results).items() if table],
        rate_cell=_rate_cell,
        paired=paired_changes(results),
        step_label=step_label,
        grid_page=GRID_PAGE,
        engine=_engine_line(results["ocr"]),
        format_value=format_value,
        format_interval=format_interval,
    )
    write_text_atomically(out / "results.json", json.dumps(results, indent=1, ensure_ascii=False))
    write_text_atomically(out / "summary.md", _markdown(results, targets))
    write_text_atomically(out / "report.html", html)
