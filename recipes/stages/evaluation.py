"""The eval and report stages: base vs aligned on the held-out prompts, then the run's summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imagepref.files import write_text_atomically
from imagepref.recipes.runner import StageContext
from imagepref.recipes.stages.generation import base_generator


def _link(target: Path, link: Path) -> Path:
    # Checkpoints are linked under readable names (base, round-1, ...) so the report's columns
    # say what they are; the eval's image cache fingerprints the folder's files, not the link.
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(Path(target).resolve(), link, target_is_directory=True)
    return link


def run_eval(context: StageContext) -> dict[str, Any]:
    """Evaluate the base generator and each round's aligned generator with ``eval.runner``."""
    from imagepref.eval.prompts import load_prompts
    from imagepref.eval.runner import EvalSettings, evaluate

    section = context.recipe.eval
    checkpoints = [_link(base_generator(context), context.out / "checkpoints" / "base")]
    for round_ in range(1, context.recipe.rounds + 1):
        aligned = context.output("align", "generator", round_)
        if aligned is not None:
            checkpoints.append(_link(aligned, context.out / "checkpoints" / f"aligned-round-{round_}"))
    if len(checkpoints) == 1:
        context.log("no aligned generator in this run: evaluating the base alone")
    prompts = load_prompts(section.prompts)
    if section.limit:
        prompts = prompts[: section.limit]
    scorer = None
    reward_model = context.output("reward", "model")
    if section.use_reward_model and reward_model is not None:
        scorer = context.services.reward_scorer(reward_model)
    settings = EvalSettings(
        samples=section.samples,
        seed=context.recipe.seed,
        **section.sampler(),
        batch_size=section.batch_size,
        ocr_engine=section.ocr_engine,
        workers=section.workers or None,
        dtype=context.recipe.generator.dtype,
        device=context.recipe.generator.device,
    )
    context.log(
        f"evaluating {', '.join(c.name for c in checkpoints)} on {len(prompts)} prompts x {section.samples} samples"
    )
    out = context.out / "report"
    results = evaluate(
        checkpoints,
        prompts,
        out,
        settings,
        prompt_set=section.prompts,
        reward_scorer=scorer,
        progress=False,
        on_step=lambda what, done, total: context.step(done, total, {"work": what.replace(" ", ":")}),
    )
    for checkpoint in results["checkpoints"]:
        from imagepref.eval.figures import EDIT_SUMMARY_FIGURES, SUMMARY_FIGURES

        headline = EDIT_SUMMARY_FIGURES if any(p.is_edit for p in prompts) else SUMMARY_FIGURES
        figures = {key: checkpoint["summary"].get(key, {}).get("value") for _, key, _ in headline}
        context.log(f"{checkpoint['name']}: " + ", ".join(f"{k}={v:.3f}" for k, v in figures.items() if v is not None))
    return {
        "results": context.relative(out / "results.json"),
        "report": context.relative(out / "report.html"),
        "checkpoints": [c["name"] for c in results["checkpoints"]],
    }


def run_report(context: StageContext) -> dict[str, Any]:
    """Write ``<run>/summary.md`` (gains, stage times, where everything is) and print the summary."""
    results_path = context.output("eval", "results")
    report_path = context.output("eval", "report")
    results = json.loads(results_path.read_text())
    from imagepref.eval.figures import summary_lines

    lines = summary_lines(results)
    stages = context.run.manifest["stages"]
    table = ["| stage | status | seconds |", "|---|---|---|"]
    table += [
        f"| {key} | {entry.get('status')} | {entry.get('seconds', '')} |"
        for key, entry in stages.items()
        if key != "report"
    ]
    text = "\n".join(
        [
            f"# Run {context.recipe.name} ({context.run.root})",
            "",
            "## Gains",
            "",
            *(f"- {line}" for line in lines),
            "",
            f"Report: {report_path}",
            "",
            "## Stages",
            "",
            *table,
            "",
        ]
    )
    write_text_atomically(context.run.root / "summary.md", text)
    context.log(f"report: {report_path.resolve()}")
    for line in lines:
        context.log(line)
    return {"summary": "summary.md", "report": str(report_path.relative_to(context.run.root)), "gains": lines}
