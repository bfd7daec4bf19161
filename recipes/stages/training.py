"""The reward and align stages: train the multi-head reward model on every round's preferences so
far, then move the generator with each configured aligner in turn (LoRA, merged after each)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from imagepref.errors import ImagePrefError
from recipes.runner import StageContext
from recipes.stages.generation import round_generator


def require(module: str, name: str, stage: str, issue: str):
    """``module.name``, or a one-line error saying which part is missing and how to run without it."""
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise ImagePrefError(
            f"stage {stage} needs {module}.{name} ({issue}), which this installation of imagepref does not have yet; "
            f"leave {stage} out of stages (for example stages=[pretrain,generate,label,eval,report])") from None


def preference_rounds(context: StageContext) -> list[tuple[Path, Path]]:
    """(preferences, candidates) folders of every labeled round up to this one."""
    found = []
    for round_ in range(1, (context.stage.round or 1) + 1):
        preferences = context.output("label", "preferences", round_)
        candidates = context.output("label", "candidates", round_)
        if preferences is not None and candidates is not None:
            found.append((preferences, candidates))
    return found


def run_reward(context: StageContext) -> dict[str, Any]:
    """Train and evaluate the reward model on the preferences of rounds 1..r."""
    train = require("reward", "train_reward_model", "reward", "the reward issue")
    data = preference_rounds(context)
    out = context.out / "model"
    context.log(f"training the reward model on {len(data)} round(s) of preferences")
    result = train(out, [p for p, _ in data], [c for _, c in data], settings=dict(context.recipe.reward.settings),
                   log=context.log, progress=context.step)
    figures = {key: value for key, value in (result or {}).items() if isinstance(value, (int, float, str))}
    return {"model": context.relative(out), **figures}


def run_align(context: StageContext) -> dict[str, Any]:
    """Run the configured aligners in order, each from the previous one's merged generator."""
    align = require("policy.align", "run_aligner", "align", "the align issue")
    source = round_generator(context)
    section = context.recipe.align
    reward_model = context.output("reward", "model", context.stage.round)
    preferences = [p for p, _ in preference_rounds(context)][-1:]
    candidates = [c for _, c in preference_rounds(context)][-1:]
    outputs: dict[str, Any] = {}
    for method in section.methods:
        out = context.out / method
        merged = out / "merged"
        if (merged / "imagepref.json").is_file():
            context.log(f"{method}: already finished")
        else:
            settings = dict(getattr(section, method))
            settings.setdefault("report_to", context.recipe.logging.report_to)
            context.log(f"{method}: from {context.relative(source)}")
            align(method, source, out, settings=settings, preferences=preferences, candidates=candidates,
                  reward_model=reward_model, launch=context.recipe.launch, log=context.log, progress=context.step)
        outputs[method] = context.relative(out)
        source = merged
    outputs["generator"] = context.relative(source)
    return outputs
