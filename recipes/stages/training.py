"""The reward and align stages: train the multi-head reward model on every round's preferences so
far, then move the generator with each configured aligner in turn (LoRA, merged after each)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imagepref.errors import ImagePrefError
from imagepref.recipes.runner import StageContext
from imagepref.recipes.stages.generation import round_generator


def preference_rounds(context: StageContext) -> list[tuple[Path, Path]]:
    """(preferences, candidates) folders of every labeled round up to this one."""
    found = []
    for round_ in range(1, (context.stage.round or 1) + 1):
        preferences = context.output("label", "preferences", round_)
        candidates = context.output("label", "candidates", round_)
        if preferences is not None and candidates is not None:
            found.append((preferences, candidates))
    return found


def combined_preferences(context: StageContext, data: list[tuple[Path, Path]]) -> Path:
    """One preference-data folder holding every round's pairs and annotations (candidate ids are
    unique across rounds, so the rows simply stack); a single round is used as it is."""
    import pandas as pd

    from imagepref.formats import read_annotations, read_pairs, write_annotations, write_pairs

    if len(data) == 1:
        return data[0][0]
    out = context.out / "preferences-all"
    write_pairs(pd.concat([read_pairs(folder) for folder, _ in data], ignore_index=True), out)
    write_annotations(pd.concat([read_annotations(folder) for folder, _ in data], ignore_index=True), out)
    return out


def run_reward(context: StageContext) -> dict[str, Any]:
    """Train the multi-head reward model on the preferences of rounds 1..r; its held-out figures
    (per-axis accuracy on prompts it never saw) are the stage's evaluation."""
    from imagepref.reward import train_reward_model

    config = context.recipe.reward.settings  # checked when the recipe loaded; its seed is the recipe's unless set
    data = preference_rounds(context)
    preferences = combined_preferences(context, data)
    generator = None
    if config.backbone == "token":
        from imagepref.recipes.stages.generation import base_generator, load_policy

        generator = load_policy(context, base_generator(context))
    context.log(f"training the {config.backbone} reward model on {len(data)} round(s) of preferences")
    out = context.out / "model"
    # The per-epoch training state lives in the stage folder, so a killed stage resumes from its last epoch.
    result = train_reward_model(
        preferences,
        [c for _, c in data],
        out,
        config,
        generator=generator,
        show_progress=False,
        log=context.log,
        checkpoint=context.out / "checkpoint",
        on_epoch=lambda record: context.step(
            record["member"] * config.epochs + record["epoch"],
            config.members * config.epochs,
            {k: round(v, 4) for k, v in record.items() if k not in ("epoch", "step", "member")},
        ),
    )
    report = _evaluate(context, result.model, preferences, [c for _, c in data], config)
    accuracy = {axis: round(entry["accuracy"], 4) for axis, entry in report["axes"].items()}
    context.log(
        f"best epoch {', '.join(map(str, result.best_epochs))}: held-out accuracy "
        + ", ".join(f"{axis} {value:.2f}" for axis, value in accuracy.items())
        + f" on {report['pairs']} held-out pairs ({result.train_pairs} trained); {context.relative(context.out / 'eval.json')}"
    )
    return {
        "model": context.relative(out),
        "eval": context.relative(context.out / "eval.json"),
        "val_loss": round(result.best_val_loss, 4),
        "val_accuracy": accuracy,
        "train_pairs": result.train_pairs,
        "val_pairs": result.val_pairs,
    }


def _evaluate(context: StageContext, model, preferences: Path, candidates: list[Path], config) -> dict[str, Any]:
    """The reward package's figures on the prompts held out from training (all pairs when too few)."""
    import json

    from imagepref.files import write_text_atomically
    from imagepref.reward import evaluate_reward_model, read_preferences, split_by_prompt

    prefs = read_preferences(preferences, candidates, axes=model.axes)
    _, held_out = split_by_prompt(prefs, config.val_fraction, config.seed)
    report = evaluate_reward_model(model, held_out if len(held_out.pairs) else prefs, seed=config.seed)
    write_text_atomically(context.out / "eval.json", json.dumps(report, indent=1, default=float))
    return report


def run_align(context: StageContext) -> dict[str, Any]:
    """Run the configured aligners in order, each from the previous one's merged generator."""
    from imagepref.policy.align.pipeline import run_aligner

    source = round_generator(context)
    section = context.recipe.align
    reward_model = context.output("reward", "model", context.stage.round)
    rounds = preference_rounds(context)
    preferences = [p for p, _ in rounds][-1:]
    candidates = [c for _, c in rounds]
    outputs: dict[str, Any] = {}
    for method in section.methods:
        out = context.out / method
        merged = out / "merged"
        if (merged / "imagepref.json").is_file():
            context.log(f"{method}: already finished")
        else:
            given = getattr(section, method)  # checked when the recipe loaded; its seed is the recipe's unless set
            settings = {
                "report_to": context.recipe.logging.report_to,
                **given.model_dump(mode="json", exclude_unset=True),
            }
            if method != "dpo" and reward_model is not None and "rewards" not in given.model_fields_set:
                settings["rewards"] = {"weights": dict(section.rewards), "reward_model": str(reward_model)}
            context.log(f"{method}: from {source}")
            generator = context.recipe.generator
            spec = {
                "method": method,
                "base": str(source),
                "out": str(out),
                "settings": settings,
                "preferences": [str(p) for p in preferences] or None,
                "candidates": [str(c) for c in candidates],
                "reward_model": str(reward_model) if reward_model else None,
                "prompts": section.prompts,
                "num_prompts": section.num_prompts,
                "ocr_engine": section.ocr_engine,
                "monitor": section.monitor,
                "dtype": generator.dtype,
                "device": generator.device,
                "trust_remote_code": generator.trust_remote_code,
            }
            launch = context.recipe.launch
            if launch.accelerate_config or launch.num_processes > 1:
                result = launched_aligner(context, spec, merged)
            else:
                result = run_aligner(**spec, merge=True, log=context.log, step_log=step_lines(context))
            context.log(f"{method}: {result.get('steps')} steps, merged generator in {context.relative(merged)}")
        outputs[method] = context.relative(out)
        source = merged
    outputs["generator"] = context.relative(source)
    return outputs


def step_lines(context: StageContext):
    """Where the aligner's per-step lines go: every metric to the run log as each step happens;
    the step's summary to the console every ``logging.console_every``-th step, on the last step
    and on the steps that measured held-out figures."""
    every = context.recipe.logging.console_every

    def write(line) -> None:  # a policy.align.steps.StepLine
        show = line.kind == "step" and (line.step % every == 0 or line.step == line.max_steps or line.measured)
        context.log(str(line), console=show, summary=line.summary)

    return write


def launched_aligner(context: StageContext, spec: dict[str, Any], merged: Path) -> dict[str, Any]:
    """Run one aligner under ``accelerate launch`` (``recipes.launch`` in every process), then
    merge its adapter here, once."""
    import json
    import subprocess
    import sys

    from imagepref.files import write_text_atomically
    from imagepref.policy.align import merge_run
    from imagepref.policy.align.checkpoints import read_run

    launch = context.recipe.launch
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    spec_file = out / "launch.json"
    if launch.num_processes > 1:
        spec = {**spec, "device": None}  # each process's trainer places its copy on its own device
    # The processes append their step lines to the run log themselves, as they happen.
    write_text_atomically(
        spec_file,
        json.dumps(
            {
                **spec,
                "record_ranks": launch.record_ranks,
                "run_log": {"root": str(context.run.root), "stage": context.stage.key},
            },
            indent=1,
        ),
    )
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if launch.accelerate_config:
        if not Path(launch.accelerate_config).is_file():
            raise ImagePrefError(
                f"launch.accelerate_config {launch.accelerate_config} does not exist; "
                "use one of recipes/accelerate/*.yaml"
            )
        command += ["--config_file", launch.accelerate_config]
    if launch.num_processes > 1 or not launch.accelerate_config:
        command += ["--num_processes", str(launch.num_processes)]
    command += ["--module", "imagepref.recipes.launch", str(spec_file)]
    log_file = out / "launch.log"
    context.log(
        f"{spec['method']}: accelerate launch with {launch.num_processes} process(es); output in {context.relative(log_file)}"
    )
    with open(log_file, "ab") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise ImagePrefError(
            f"{spec['method']} under accelerate launch failed (status {done.returncode}: "
            f"{failure_line(log_file.read_text(errors='replace'))[:300]}); see {log_file}"
        )
    if not (merged / "imagepref.json").is_file():
        import shutil

        shutil.rmtree(merged, ignore_errors=True)
        merge_run(out, merged, base=spec["base"])
    return {"steps": read_run(out).get("finished", {}).get("steps"), "merged": str(merged)}


_EXCEPTION_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b.*|error: .*)$")


def failure_line(log: str) -> str:
    """The line of a failed launch's log that says what went wrong: the last exception a process
    raised (``ValueError: ...``, with torch's ``[rankN]:`` prefix dropped) or an ``error:`` line,
    rather than the launcher's closing banner; else the last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    causes = [m.group(1) for line in lines if (m := _EXCEPTION_LINE.match(line))]
    causes = [c for c in causes if not c.startswith(("torch.distributed.elastic", "ChildFailedError"))]
    return (causes or lines or ["no output"])[-1]
