"""The stage runner: plan a recipe's stages, skip the ones whose inputs did not change, run the rest
(``recipes.loop`` calls the stages in order; this module keeps the books).

A stage's input hash covers its kind, round, its recipe section and the input hashes of the
stages it reads from, so a change anywhere upstream reaches every stage below it and nothing
else. A stage whose hash matches a finished entry of the manifest is skipped; one that started
with the same hash but did not finish (killed, failed) is run again in the same folder, where it
resumes from its own checkpoint; one whose hash changed starts from an empty folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError
from imagepref.recipes.config import Recipe
from imagepref.recipes.run_folder import RunFolder

# The recipe sections each stage kind depends on; runtime-only settings (device, trackers,
# launcher, poll interval) are left out so changing them never reruns a finished stage. The
# generator's dtype is not one of them: generate, align and eval all load the generator in it.
SECTIONS = {
    "pretrain": ("generator", "pretrain"),
    "generate": ("generator", "generate"),
    "label": ("label",),
    "reward": ("reward",),
    "align": ("generator", "align"),
    "eval": ("generator", "eval"),
    "report": (),
}
RUNTIME_ONLY = {"generator": {"device"}, "label": {"poll_seconds", "url", "token_env", "port", "invite"}}


@dataclass
class PlannedStage:
    """One stage of the plan: its key in the manifest, kind, round, and the keys it reads from."""

    key: str
    kind: str
    round: int | None = None
    needs: list[str] = field(default_factory=list)
    input_hash: str = ""


@dataclass
class StageContext:
    """What a stage function gets: the recipe, the run folder, its own folder and its inputs."""

    recipe: Recipe
    run: RunFolder
    stage: PlannedStage
    out: Path
    inputs: dict[str, dict[str, Any]]
    continue_labeling: bool = False
    services: Any = None  # what the loop built for every stage (``recipes.services.Services``)

    def log(self, message: str, console: bool = True, summary: str | None = None) -> None:
        """One line in the run log under this stage's key (``summary``: the console's shorter form)."""
        self.run.log(self.stage.key, message, console=console, summary=summary)

    def step(self, done: int | None, total: int | None, info: dict | None = None) -> None:
        """One line per step or batch of work."""
        self.run.step_logger(self.stage.key)(done, total, info)

    def path(self, value: str) -> Path:
        """An output path recorded in the manifest (relative ones are under the run folder)."""
        path = Path(value)
        return path if path.is_absolute() else self.run.root / path

    def relative(self, path: Path) -> str:
        """``path`` as recorded in the manifest: relative to the run folder when inside it."""
        path = Path(path).resolve()
        try:
            return str(path.relative_to(self.run.root.resolve()))
        except ValueError:
            return str(path)

    def output(self, kind: str, name: str, round_: int | None = None) -> Path | None:
        """The output ``name`` of the newest input stage of ``kind`` (of round ``round_`` if given)."""
        for key in reversed(self.stage.needs):
            kind_of_key = key.rsplit("/", 1)[-1]
            if (
                kind_of_key == kind
                and (round_ is None or key == f"r{round_}/{kind}")
                and name in self.inputs.get(key, {})
            ):
                return self.path(self.inputs[key][name])
        return None


def plan(recipe: Recipe) -> list[PlannedStage]:
    """The stages of ``recipe`` in order, each with the keys of the stages it reads from."""
    wanted = set(recipe.stages)
    stages: list[PlannedStage] = []
    if "pretrain" in wanted:
        stages.append(PlannedStage("pretrain", "pretrain"))
    base = ["pretrain"]
    for r in range(1, recipe.rounds + 1):
        source = base if r == 1 else [f"r{r - 1}/align"]
        if "generate" in wanted:
            stages.append(PlannedStage(f"r{r}/generate", "generate", r, list(source)))
        if "label" in wanted:
            previous_reward = [f"r{r - 1}/reward"] if r > 1 and recipe.label.flywheel else []
            stages.append(PlannedStage(f"r{r}/label", "label", r, [f"r{r}/generate", *previous_reward]))
        if "reward" in wanted:
            stages.append(
                PlannedStage(
                    f"r{r}/reward",
                    "reward",
                    r,
                    # pretrain: the token backbone reads the base generator's embeddings.
                    [
                        "pretrain",
                        *(f"r{i}/generate" for i in range(1, r + 1)),
                        *(f"r{i}/label" for i in range(1, r + 1)),
                    ],
                )
            )
        if "align" in wanted:
            stages.append(
                PlannedStage(f"r{r}/align", "align", r, [*source, f"r{r}/generate", f"r{r}/label", f"r{r}/reward"])
            )
    if "eval" in wanted:
        aligned = [f"r{r}/align" for r in range(1, recipe.rounds + 1)]
        stages.append(PlannedStage("eval", "eval", None, ["pretrain", *aligned, f"r{recipe.rounds}/reward"]))
    if "report" in wanted:
        stages.append(PlannedStage("report", "report", None, ["eval"]))
    return stages


# Inputs a stage can do without: eval without a reward model or an aligned policy (it then
# compares what it has), label without the previous reward model (no pre-annotations), align
# without labels or a reward model (DPO on policy, GRPO on its rule and OCR rewards).
OPTIONAL_NEEDS = {
    ("eval", "reward"),
    ("eval", "align"),
    ("label", "reward"),
    ("align", "generate"),
    ("align", "label"),
    ("align", "reward"),
}


def _section_record(recipe: Recipe, kind: str) -> dict[str, Any]:
    record: dict[str, Any] = {"seed": recipe.seed}
    for name in SECTIONS[kind]:
        section = getattr(recipe, name).model_dump(mode="json")
        for key in RUNTIME_ONLY.get(name, ()):
            section.pop(key, None)
        record[name] = section
    if kind in ("eval", "report"):
        record["rounds"] = recipe.rounds
    return record


def stage_hash(stage: PlannedStage, recipe: Recipe, upstream: dict[str, str], extra: dict[str, Any]) -> str:
    """The input hash of ``stage``: kind, round, its sections, external inputs, upstream hashes."""
    record = {
        "kind": stage.kind,
        "round": stage.round,
        "sections": _section_record(recipe, stage.kind),
        "upstream": {key: upstream.get(key) for key in stage.needs},
        "extra": extra,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolve_from(stages: list[PlannedStage], name: str) -> int:
    """The index of the stage ``--from`` names: a key (``r2/generate``) or a kind (its first round)."""
    for index, stage in enumerate(stages):
        if name in (stage.key, stage.kind):
            return index
    keys = ", ".join(stage.key for stage in stages)
    raise UnknownNameError(f"--from {name}: this recipe has no stage {name!r}; its stages are {keys}")


def _check_inputs(stages: list[PlannedStage], run: RunFolder) -> None:
    planned = {stage.key for stage in stages}
    for stage in stages:
        for need in stage.needs:
            kind = need.rsplit("/", 1)[-1]
            if need in planned or (stage.kind, kind) in OPTIONAL_NEEDS or kind == "pretrain":
                continue
            if run.stage(need).get("status") == "done":
                continue
            raise BadInputError(
                f"stage {stage.key} needs the output of {need}, which this run folder lacks and this recipe "
                f"does not produce; add {kind} to stages (or run the full recipe once in {run.root})"
            )


class Runner:
    """The bookkeeping of one run of a recipe: the plan, the run folder's lock and manifest, and
    for each stage whether to skip it, resume it or start it afresh. ``recipes.loop`` says which
    stage runs when; ``stage`` runs one with the services the loop built."""

    def __init__(
        self,
        recipe: Recipe,
        external_inputs: Callable[[PlannedStage, Recipe], dict[str, Any]] | None = None,
        from_stage: str | None = None,
        continue_labeling: bool = False,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.recipe = recipe
        self.external_inputs = external_inputs
        self.continue_labeling = continue_labeling
        self.planned = plan(recipe)
        if not self.planned:
            raise BadInputError("the recipe runs no stages; list some under stages:")
        self.start_index = resolve_from(self.planned, from_stage) if from_stage else None
        self.folder = RunFolder(recipe.run_path(), console_every=recipe.logging.console_every, echo=echo)
        self.services: Any = None
        self._next = 0
        self._hashes: dict[str, str] = {}

    def tell_waiting_runner(self) -> bool:
        """With ``--continue`` while another runner of this folder waits for labels: tell it to go
        on with the labels it has, and return True (this process then has nothing to do)."""
        holder = self.folder.holder()
        if not self.continue_labeling or holder is None:
            return False
        self.folder.continue_file.touch()
        self.folder.echo(
            f"told the runner waiting in {self.folder.root} (pid {holder}) to continue with the labels it has"
        )
        return True

    @contextlib.contextmanager
    def open(self, services: Any, force: bool = False) -> Iterator[Runner]:
        """Hold the run folder while the block runs its stages; ``services`` (anything with a
        ``close()``) reach every stage through ``StageContext.services`` and are closed at the end."""
        run = self.folder
        run.open(self.recipe.name, force=force)
        run.acquire()
        self.services = services
        try:
            run.write_recipe(self.recipe.model_dump(mode="json"))
            _check_inputs(self.planned, run)
            self._hashes = {key: entry.get("input_hash") for key, entry in run.manifest["stages"].items()}
            run.log("run", f"recipe {self.recipe.name}: {len(self.planned)} stages in {run.root}")
            yield self
        finally:
            services.close()
            run.release()

    def stage(self, key: str, function: Callable[[StageContext], dict[str, Any]]) -> bool:
        """Run the stage ``key`` with ``function`` unless it finished with the same inputs; a key
        the recipe does not plan is passed over. False when the stage waits for labels (the run
        stops there until ``--continue``)."""
        index = next((i for i, planned in enumerate(self.planned) if planned.key == key), None)
        if index is None:
            return True
        if index != self._next:
            raise RuntimeError(f"stage {key} run out of the plan's order ({', '.join(s.key for s in self.planned)})")
        self._next += 1
        stage, run, recipe = self.planned[index], self.folder, self.recipe
        extra = self.external_inputs(stage, recipe) if self.external_inputs else {}
        stage.input_hash = stage_hash(stage, recipe, self._hashes, extra)
        self._hashes[stage.key] = stage.input_hash
        entry = run.stage(stage.key)
        forced = self.start_index is not None and index >= self.start_index
        out = run.stage_dir(stage.key)
        if entry.get("status") == "done" and entry.get("input_hash") == stage.input_hash and not forced:
            run.log(stage.key, "unchanged, skipped")
            return True
        if forced or entry.get("input_hash") != stage.input_hash:
            shutil.rmtree(out, ignore_errors=True)
            how = "restarting (--from)" if forced else "starting"
        else:
            how = f"resuming (last status: {entry.get('status')})"
        out.mkdir(parents=True, exist_ok=True)
        run.set_stage(
            stage.key,
            status="running",
            input_hash=stage.input_hash,
            kind=stage.kind,
            round=stage.round,
            attempts=entry.get("attempts", 0) + 1,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            outputs={},
            error=None,
        )
        run.log(stage.key, how)
        inputs = {
            need: run.stage(need).get("outputs", {}) for need in stage.needs if run.stage(need).get("status") == "done"
        }
        context = StageContext(recipe, run, stage, out, inputs, self.continue_labeling, self.services)
        started = time.monotonic()
        try:
            outputs = function(context)
        except ImagePrefError as error:
            run.set_stage(stage.key, status="failed", error=str(error))
            run.log(stage.key, f"failed: {error}", console=False)
            raise
        except BaseException as error:
            run.set_stage(stage.key, status="failed", error=f"{type(error).__name__}: {error}")
            raise
        if outputs.get("waiting"):
            run.set_stage(stage.key, status="waiting", outputs=outputs)
            run.log(stage.key, "waiting for labels; run the same command with --continue to go on with what is there")
            return False
        seconds = round(time.monotonic() - started, 1)
        run.set_stage(
            stage.key, status="done", outputs=outputs, seconds=seconds, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z")
        )
        run.log(stage.key, f"done in {seconds} s")
        return True
