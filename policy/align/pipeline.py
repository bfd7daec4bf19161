"""The align pipeline: load a generator, build its rewards and monitoring, train one method with
LoRA, merge the adapter. ``imagepref align`` and the recipe's align stage both call ``run_aligner``.

The trainers in ``policy.align`` take the text reader and the text metrics as callables; this
module is where they are joined to the evaluation suite's OCR engines and metrics (imported when
a run starts, so importing it stays light).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imagepref.errors import BadInputError
from imagepref.policy.align.config import settings_class, settings_from_mapping

if TYPE_CHECKING:
    from imagepref.policy.align.steps import StepLine

METHODS = ("dpo", "grpo", "ppo")


def ocr_measures(engine: str) -> tuple[Callable, Callable, Callable]:
    """(read_text, text reward(prompt, reading), word accuracy(reading, target)) from the evaluation
    suite; the text reward is its reading similarity, which charges stray text (not Flow-GRPO's
    reward, which gives full marks once the target occurs anywhere in the reading)."""
    from imagepref.eval.metrics import extract_targets, score_text
    from imagepref.eval.ocr import text_reader

    read_text = text_reader(engine)

    def text_reward(prompt: str, reading: str) -> float | None:
        return score_text(extract_targets(prompt), reading).reading_similarity

    def word_accuracy(reading: str, target: str) -> float:
        return score_text(target, reading).word_accuracy or 0.0

    return read_text, text_reward, word_accuracy


def training_prompts(prompts: str, count: int, seed: int) -> list[str]:
    """``glyphworld`` (training-word prompts of the glyph world), ``glyphworld-align`` (mostly fresh
    letter strings, disjoint from the held-out prompts), ``glyphworld-edits`` (seeded training
    edits as edit records, ``policy.align.edit_turns``) or a prompts file."""
    if prompts == "glyphworld-edits":
        from imagepref.policy.align.edit_turns import training_edit_prompts

        return training_edit_prompts(count)
    if prompts == "glyphworld":
        from imagepref.policy.glyphworld import training_specs

        return [spec.prompt for spec in training_specs(count, seed)]
    if prompts == "glyphworld-align":
        from imagepref.policy.glyphworld.world import align_specs

        return [spec.prompt for spec in align_specs(count, seed)]
    from imagepref.formats import read_prompts

    return [prompt.prompt for prompt in read_prompts(prompts)][: count or None]


class _LineHandler(logging.Handler):
    """Hands each record's ``StepLine`` to a function (the caller's log)."""

    def __init__(self, write: Callable[[StepLine], None]) -> None:
        super().__init__()
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        self.write(record.msg)


@contextlib.contextmanager
def step_lines_to(write: Callable[[StepLine], None]) -> Iterator[None]:
    """Route the trainers' per-step lines (``policy.align.steps.StepLines``) to ``write``
    while the block runs: each line arrives as its step is logged, not after training."""
    from imagepref.policy.align.steps import StepLines

    handler = _LineHandler(write)
    StepLines.logger.addHandler(handler)
    try:
        yield
    finally:
        StepLines.logger.removeHandler(handler)


def run_aligner(
    method: str,
    base: str | Path,
    out: str | Path,
    settings: dict | Any | None = None,
    preferences: list | None = None,
    candidates: list | None = None,
    reward_model: str | Path | None = None,
    prompts: str = "glyphworld",
    num_prompts: int = 256,
    ocr_engine: str = "rapidocr",
    monitor: bool = True,
    merge: bool = True,
    log: Callable[[str], None] = print,
    dtype: str | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    step_log: Callable[[StepLine], None] | None = None,
) -> dict:
    """Train ``method`` from the generator folder ``base`` into the run folder ``out`` (resuming a
    run already there) and, with ``merge``, write the merged generator to ``out/merged``.

    ``dtype`` (float32, bfloat16, float16) and ``device`` say how the base is loaded (LoRA
    adapters stay float32: peft upcasts them). ``step_log`` gets a ``StepLine`` per training step
    as it happens (``str(line)``: every metric, for a log; ``line.summary``: the few a person
    reads); without it, ``log`` gets each step's summary."""
    if method not in METHODS:
        raise BadInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(settings, settings_class(method)):
        settings = settings_from_mapping(method, settings, where=f"align.{method}")
    if preferences:  # preference data says itself whether it compares edits
        from imagepref.formats import compares_edits, read_pairs

        edits = compares_edits(read_pairs(preferences[-1]))
    else:
        edits = prompts == "glyphworld-edits"
    if edits and method == "ppo":
        refuse_edit_turns(method)
    out = Path(out)
    with _removed_unless_started(out):
        from imagepref.dtypes import dtype_name, torch_dtype
        from imagepref.policy.align import (
            Monitoring,
            build_rewards,
            merge_run,
            on_policy_examples,
            preference_examples,
            train_dpo,
            train_grpo,
            train_ppo,
        )
        from imagepref.policy.align.checkpoints import RUN_FILE
        from imagepref.policy.generator import load_generator

        generator = load_generator(base, dtype=torch_dtype(dtype), device=device, trust_remote_code=trust_remote_code)
        log(f"{method}: {base} loaded in {dtype_name(generator.model.dtype)} on {generator.model.device}")
        if reward_model is not None:
            from imagepref.reward import load_reward_model

            reward_model = load_reward_model(Path(reward_model))
        read_text, text_reward, word_accuracy = ocr_measures(ocr_engine)
        # The held-out monitoring draws text-to-image prompts: nothing an edit run trains.
        monitoring = Monitoring(read_text=read_text, word_accuracy=word_accuracy) if monitor and not edits else None
        resume = (out / RUN_FILE).is_file()
        common = dict(base_path=str(base), resume=resume, monitoring=monitoring)

        def write_step(line: StepLine) -> None:
            line = replace(line, prefix=method)
            if step_log is not None:
                step_log(line)
            else:
                log(line.summary)

        with step_lines_to(write_step):
            if method == "dpo":
                if preferences:
                    examples = preference_examples(preferences[-1], candidates or [], generator, settings.pairs)
                else:
                    from imagepref.policy.align.config import guidance_of
                    from imagepref.policy.align.edit_turns import EditSources
                    from imagepref.policy.align.rewards import scorer

                    pairs = settings.on_policy
                    edit_sources = EditSources(generator) if edits else None  # edit records as prompts
                    weights = {"reward_model": 1.0} if reward_model is not None else pairs.reward_weights(edits)
                    functions, mixed = build_rewards(
                        weights, generator, read_text, text_reward, reward_model, edit_sources
                    )
                    examples = on_policy_examples(
                        generator,
                        training_prompts(prompts, pairs.prompts, settings.seed),
                        scorer(functions, mixed),
                        pairs,
                        settings.seed,
                        {"guidance_scale": guidance_of(settings, generator)},
                        edit_sources,
                    )
                log(f"dpo: {len(examples)} pairs")
                result = train_dpo(generator, examples, settings, out, **common)
            else:
                from imagepref.policy.align.edit_turns import EditSources

                edit_sources = EditSources(generator) if edits else None
                functions, mixed = build_rewards(
                    settings.rewards.weights, generator, read_text, text_reward, reward_model, edit_sources
                )
                if edits:
                    common["edit_sources"] = edit_sources
                train = train_grpo if method == "grpo" else train_ppo
                result = train(
                    generator,
                    training_prompts(prompts, num_prompts, settings.seed),
                    functions,
                    mixed,
                    settings,
                    out,
                    **common,
                )
        if merge:
            merged = out / "merged"
            if not (merged / "imagepref.json").is_file():
                shutil.rmtree(merged, ignore_errors=True)
                merge_run(out, merged, base=base)
            result["merged"] = str(merged)
        return result


def refuse_edit_turns(method: str) -> None:
    """One line: GRPO and DPO train on edit turns; PPO's trainer takes no edit sources."""
    raise BadInputError(
        f"{method} cannot train on edit turns (--prompts glyphworld-edits); use imagepref align grpo or dpo"
    )


@contextlib.contextmanager
def _removed_unless_started(out: Path) -> Iterator[None]:
    """A run that fails before its first checkpoint leaves nothing behind: its ``align.json`` would
    make the corrected retry refuse the folder (``--resume`` has nothing to resume), so what this
    attempt created goes; a folder that held a run or a checkpoint before stays as it was."""
    from imagepref.policy.align.checkpoints import RUN_FILE

    existed, had_run = out.exists(), (out / RUN_FILE).is_file()
    try:
        yield
    except BaseException:
        if not had_run and not any(out.glob("checkpoint-*")):
            if existed:
                (out / RUN_FILE).unlink(missing_ok=True)
            else:
                shutil.rmtree(out, ignore_errors=True)
        raise
