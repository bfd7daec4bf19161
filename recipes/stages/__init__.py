"""The stages a recipe runs (``recipes.loop`` calls them in order); each takes a ``StageContext``
and returns its outputs, which the runner records in the manifest."""

from __future__ import annotations

from typing import Any

from imagepref.recipes.runner import PlannedStage
from imagepref.recipes.stages.generation import pretrain_inputs


def external_inputs(stage: PlannedStage, recipe) -> dict[str, Any]:
    """What a stage reads from outside the run folder, folded into its input hash."""
    if stage.kind in ("pretrain", "generate", "eval"):
        return pretrain_inputs(recipe)
    return {}
