"""Write an evaluation's ``results.json``, ``summary.md`` and a self-contained ``report.html``.

The HTML opens from disk with no server and no network: the plots (``eval/plots.py``) and the images are
embedded as base64 ``data:`` URIs, and the styles are inline.
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from imagepref.eval.figures import summary_lines
from imagepref.eval.metrics import DEFAULT_NORMALIZATION
from imagepref.eval.plots import plots, png_uri, training_plots
from imagepref.files import write_text_atomically

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
    return png_uri(path.read_bytes())


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
