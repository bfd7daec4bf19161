"""The loop a recipe runs, top to bottom: generate candidates, get them labeled, train the reward
model, align the generator, once per round; then evaluate base against aligned and report.

Each stage is a function of ``recipes.stages`` taking a ``StageContext``; the runner
(``recipes.runner.Runner``) skips a stage whose inputs did not change, resumes one that was
killed, and records every stage's outputs in the run folder's manifest.
"""

from __future__ import annotations

from collections.abc import Callable

from imagepref.recipes.config import Recipe, check_inputs
from imagepref.recipes.run_folder import RunFolder
from imagepref.recipes.runner import Runner
from imagepref.recipes.services import Services
from imagepref.recipes.stages import external_inputs
from imagepref.recipes.stages.evaluation import run_eval, run_report
from imagepref.recipes.stages.generation import run_generate, run_pretrain
from imagepref.recipes.stages.labeling import run_label
from imagepref.recipes.stages.training import run_align, run_reward


def run(
    recipe: Recipe,
    from_stage: str | None = None,
    force: bool = False,
    continue_labeling: bool = False,
    echo: Callable[[str], None] = print,
) -> RunFolder:
    """Run ``recipe`` in its run folder; ``from_stage`` (a key such as ``r2/generate`` or a kind)
    reruns that stage and every later one. Returns the run folder."""
    check_inputs(recipe)  # a wrong path or name fails now, not when its stage starts hours in
    runner = Runner(recipe, external_inputs, from_stage=from_stage, continue_labeling=continue_labeling, echo=echo)
    if runner.tell_waiting_runner():
        return runner.folder

    # Setup: the services every stage shares, built once; Label Studio starts when first asked for.
    services = Services(runner.folder, recipe)
    with runner.open(services, force=force):
        runner.stage("pretrain", run_pretrain)
        for round_ in range(1, recipe.rounds + 1):
            runner.stage(f"r{round_}/generate", run_generate)
            if not runner.stage(f"r{round_}/label", run_label):
                return runner.folder  # people are labeling; `imagepref run ... --continue` goes on with their labels
            runner.stage(f"r{round_}/reward", run_reward)
            runner.stage(f"r{round_}/align", run_align)
        runner.stage("eval", run_eval)
        runner.stage("report", run_report)
    return runner.folder
