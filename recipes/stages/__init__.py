"""The stages a recipe can run, by kind; each takes a ``StageContext`` and returns its outputs."""

from __future__ import annotations

from typing import Any

from imagepref.recipes.runner import PlannedStage
from imagepref.recipes.stages.evaluation import run_eval, run_report
from imagepref.recipes.stages.generation import pretrain_inputs, run_generate, run_pretrain
from imagepref.recipes.stages.labeling import run_label
from imagepref.recipes.stages.training import run_align, run_reward

STAGE_FUNCTIONS = {
    "pretrain": run_pretrain,
    "generate": run_generate,
    "label": run_label,
    "reward": run_reward,
    "align": run_align,
    "eval": run_eval,
    "report": run_report,
}


def external_inputs(stage: PlannedStage, recipe) -> dict[str, Any]:
    """What a stage reads from outside the run folder, folded into its input hash."""
    if stage.kind in ("pretrain", "generate", "eval"):
        return pretrain_inputs(recipe)
    return {}
