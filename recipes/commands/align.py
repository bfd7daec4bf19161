"""`imagepref align dpo|grpo|ppo|merge`: move a generator toward preferences with LoRA.

This is the layer that joins ``policy.align`` (which imports no evaluation code) to the
evaluation suite's OCR engines and text metrics, passed in as callables. ``run_aligner`` is the
same entry point for the recipe runner's align stage.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from imagepref.errors import BadInputError

app = typer.Typer(no_args_is_help=True)

SHIPPED_BASE = Path(__file__).resolve().parents[2] / "policy" / "glyphworld" / "pretrained"
METHODS = ("dpo", "grpo", "ppo")


def settings_class(method: str):
    """The settings model of ``method``."""
    from imagepref.policy.align.config import DPOSettings, GRPOSettings, PPOSettings

    return {"dpo": DPOSettings, "grpo": GRPOSettings, "ppo": PPOSettings}[method]


def load_settings(method: str, config: Path | None, overrides: list[str], rewards: list[str] | None = None):
    """Settings from an optional YAML file, ``key.path=value`` overrides and ``--reward name=weight``."""
    import yaml
    from pydantic import ValidationError

    raw: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise BadInputError(f"config file {config} does not exist")
        try:
            raw = yaml.safe_load(config.read_text()) or {}
        except yaml.YAMLError as error:
            raise BadInputError(f"{config} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise BadInputError(f"{config} must hold a mapping of settings")
    for item in overrides:
        if item.startswith("-"):
            raise BadInputError(f"unknown option {item}; see imagepref align {method} --help")
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise BadInputError(f"override {item!r} is not key=value (for example steps=50 or pairs.ties=downweight)")
        target = raw
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = yaml.safe_load(text) if text.strip() else None
    if rewards:
        weights = {}
        for item in rewards:
            name, sep, weight = item.partition("=")
            try:
                weights[name] = float(weight) if sep else 1.0
            except ValueError:
                raise BadInputError(f"--reward {item!r}: the weight must be a number (for example ocr=1.0)") from None
        raw.setdefault("rewards", {})["weights"] = weights
    try:
        return settings_class(method).model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInputError(f"setting {where}: {first['msg']}; see imagepref align {method} --help") from None


def ocr_measures(engine: str) -> tuple[Callable, Callable, Callable]:
    """(read_text, Flow-GRPO text reward(prompt, reading), word accuracy(reading, target)) from the
    evaluation suite."""
    from imagepref.eval.metrics import extract_targets, score_text
    from imagepref.eval.ocr import get_engine

    reader = get_engine(engine)

    def text_reward(prompt: str, reading: str) -> float | None:
        return score_text(extract_targets(prompt), reading).flow_grpo_score

    def word_accuracy(reading: str, target: str) -> float:
        return score_text(target, reading).word_accuracy or 0.0

    return reader.read_text, text_reward, word_accuracy


def training_prompts(prompts: str, count: int, seed: int) -> list[str]:
    """``glyphworld`` (training-word prompts of the glyph world), ``glyphworld-align`` (mostly fresh
    letter strings, disjoint from the held-out prompts) or a prompts file."""
    if prompts == "glyphworld":
        from imagepref.policy.glyphworld import training_specs

        return [spec.prompt for spec in training_specs(count, seed)]
    if prompts == "glyphworld-align":
        from imagepref.policy.glyphworld.world import align_specs

        return [spec.prompt for spec in align_specs(count, seed)]
    from imagepref.policy.candidates import read_prompts

    return [row["prompt"] for row in read_prompts(prompts)][:count or None]


def _reward_model(path: Path | None):
    if path is None:
        return None
    try:
        from imagepref.reward import load_reward_model  # type: ignore[attr-defined]
    except ImportError:
        raise BadInputError("--reward-model needs reward.load_reward_model, which this installation does not have yet; "
                            "use rule or ocr rewards") from None
    return load_reward_model(path)


class _LineHandler(logging.Handler):
    """Hands each record's message to a function (the caller's log)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        self.write(record.getMessage())


@contextlib.contextmanager
def step_lines_to(write: Callable[[str], None]) -> Iterator[None]:
    """Route the trainers' per-step lines (``policy.align.checkpoints.StepLines``) to ``write``
    while the block runs: each line arrives as its step is logged, not after training."""
    from imagepref.policy.align.checkpoints import StepLines

    handler = _LineHandler(write)
    StepLines.logger.addHandler(handler)
    try:
        yield
    finally:
        StepLines.logger.removeHandler(handler)


def run_aligner(method: str, base: str | Path, out: str | Path, settings: dict | Any | None = None,
                preferences: list | None = None, candidates: list | None = None, reward_model: str | Path | None = None,
                prompts: str = "glyphworld", num_prompts: int = 256, ocr_engine: str = "rapidocr",
                monitor: bool = True, merge: bool = True, log: Callable[[str], None] = print,
                dtype: str | None = None, device: str | None = None, trust_remote_code: bool = False,
                step_log: Callable[[str], None] | None = None, **_ignored) -> dict:
    """Train ``method`` from the generator folder ``base`` into the run folder ``out`` (resuming a
    run already there) and, with ``merge``, write the merged generator to ``out/merged``.

    ``dtype`` (float32, bfloat16, float16) and ``device`` say how the base is loaded (LoRA
    adapters stay float32: peft upcasts them). ``step_log`` gets one line per training step as it
    happens (default: ``log``)."""
    from imagepref.dtypes import dtype_name, torch_dtype
    from imagepref.policy.align import Monitoring, build_rewards, merge_run, on_policy_examples, preference_examples
    from imagepref.policy.align import train_dpo, train_grpo, train_ppo
    from imagepref.policy.align.checkpoints import RUN_FILE
    from imagepref.policy.generator import load_generator

    if method not in METHODS:
        raise BadInputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(settings, settings_class(method)):
        settings = _validate(method, settings or {})
    out = Path(out)
    generator = load_generator(base, dtype=torch_dtype(dtype), device=device, trust_remote_code=trust_remote_code)
    log(f"{method}: {base} loaded in {dtype_name(generator.model.dtype)} on {generator.model.device}")
    model = _reward_model(Path(reward_model) if reward_model else None)
    read_text, text_reward, word_accuracy = ocr_measures(ocr_engine)
    monitoring = Monitoring(read_text=read_text, word_accuracy=word_accuracy) if monitor else None
    resume = (out / RUN_FILE).is_file()
    common = dict(base_path=str(base), resume=resume, monitoring=monitoring)
    with step_lines_to(lambda line: (step_log or log)(f"{method} {line}")):
        if method == "dpo":
            if preferences:
                examples = preference_examples(preferences[-1], candidates or [], generator, settings.pairs)
            else:
                from imagepref.policy.align.config import guidance_of
                from imagepref.policy.align.rewards import scorer

                pairs = settings.on_policy
                weights = {"reward_model": 1.0} if model is not None else pairs.rewards
                functions, mixed = build_rewards(weights, generator, read_text, text_reward, model)
                examples = on_policy_examples(generator, training_prompts(prompts, pairs.prompts, settings.seed),
                                              scorer(functions, mixed), pairs, settings.seed,
                                              {"guidance_scale": guidance_of(settings, generator)})
            log(f"dpo: {len(examples)} pairs")
            result = train_dpo(generator, examples, settings, out, **common)
        else:
            functions, mixed = build_rewards(settings.rewards.weights, generator, read_text, text_reward, model)
            train = train_grpo if method == "grpo" else train_ppo
            result = train(generator, training_prompts(prompts, num_prompts, settings.seed), functions, mixed, settings,
                           out, **common)
    if merge:
        merged = out / "merged"
        if not (merged / "imagepref.json").is_file():
            import shutil

            shutil.rmtree(merged, ignore_errors=True)
            merge_run(out, merged, base=base)
        result["merged"] = str(merged)
    return result


def _validate(method: str, settings: dict):
    from pydantic import ValidationError

    try:
        return settings_class(method).model_validate(settings)
    except ValidationError as error:
        first = error.errors()[0]
        raise BadInputError(f"align.{method}.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


# ----- the commands ------------------------------------------------------------------------
def _base(base: Optional[Path]) -> Path:
    if base is not None:
        return base
    if (SHIPPED_BASE / "imagepref.json").is_file():
        return SHIPPED_BASE
    raise BadInputError("no --base given and the shipped glyph-world generator is not installed; pass --base DIR")


BASE = typer.Option(None, "--base", help="Generator folder to align (default: the shipped glyph-world generator).")
OUT = typer.Option(..., "--out", help="Run folder: align.json, adapter/, checkpoints, metrics.jsonl, runs/ (TensorBoard).")
CONFIG = typer.Option(None, "--config", help="YAML file of settings; key=value arguments override it.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint.")
OCR = typer.Option("rapidocr", "--ocr-engine", help="OCR engine of the OCR reward and monitoring: rapidocr or tesseract.")
REWARD_MODEL = typer.Option(None, "--reward-model", help="Reward model folder (for reward_model rewards).")
PROMPTS = typer.Option("glyphworld", "--prompts", help="Training prompts: glyphworld (training words), glyphworld-align "
                       "(fresh letter strings, disjoint from the held-out set) or a prompts file.")
NO_MONITOR = typer.Option(False, "--no-monitor", help="Skip the held-out monitoring passes.")
DTYPE = typer.Option(None, "--dtype", help="Weights dtype of the base: float32, bfloat16 or float16 (default: the family's); "
                     "LoRA adapters stay float32.")
DEVICE = typer.Option(None, "--device", help="torch device to load the base on, e.g. cuda (default: the loader's).")
CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def _train(method: str, context: typer.Context, base, out, config, resume, ocr_engine, reward_model, prompts,
           num_prompts, no_monitor, dtype, device, rewards=None, preferences=None, candidates=None) -> None:
    from imagepref.dtypes import torch_dtype
    from imagepref.policy.align.checkpoints import RUN_FILE, read_run

    torch_dtype(dtype, "--dtype")  # a bad name fails before anything loads
    settings = load_settings(method, config, list(context.args), rewards)
    if not resume and (out / RUN_FILE).is_file():
        raise BadInputError(f"{out} already holds a run; pass --resume to continue it or choose a fresh --out")
    if resume:
        # Checked here too (prepare_run checks the base as well) so a wrong folder fails before any loading.
        record = read_run(out)
        if record.get("method") != method or record.get("settings") != settings.model_dump():
            raise BadInputError(f"{out} holds another run (a {record.get('method')} run with other settings); "
                                "resume with the same method and settings, or choose a fresh --out")
    from imagepref.policy.align.config import check_reward_names

    check_reward_names(settings.on_policy.rewards if method == "dpo" else settings.rewards.weights)
    result = run_aligner(method, _base(base), out, settings, preferences=[preferences] if preferences else None,
                         candidates=candidates, reward_model=reward_model, prompts=prompts, num_prompts=num_prompts,
                         ocr_engine=ocr_engine, monitor=not no_monitor, merge=False, log=typer.echo, dtype=dtype,
                         device=device)
    typer.echo(f"{method}: {result['steps']} steps; adapter in {result['adapter']}, metrics in {out / 'metrics.jsonl'}")


@app.command("dpo", context_settings=CONTEXT)
def dpo(context: typer.Context, base: Optional[Path] = BASE, out: Path = OUT, config: Optional[Path] = CONFIG,
        preferences: Optional[Path] = typer.Option(None, "--preferences", help="Preference folder (pairs.parquet); "
                                                   "without it, pairs are made on policy and ranked by the rewards."),
        candidates: Optional[list[Path]] = typer.Option(None, "--candidates", help="Candidate set(s) the pairs name."),
        resume: bool = RESUME, ocr_engine: str = OCR, reward_model: Optional[Path] = REWARD_MODEL,
        prompts: str = PROMPTS, no_monitor: bool = NO_MONITOR, dtype: Optional[str] = DTYPE,
        device: Optional[str] = DEVICE) -> None:
    """DPO (TRL DPOTrainer, LoRA) on preference pairs; settings as key=value (beta=0.1 pairs.ties=downweight ...)."""
    if preferences is not None and not candidates:
        raise BadInputError("--preferences needs --candidates: the candidate set(s) holding the pairs' image tokens")
    _train("dpo", context, base, out, config, resume, ocr_engine, reward_model, prompts, 0, no_monitor, dtype, device,
           preferences=preferences, candidates=candidates)


@app.command("grpo", context_settings=CONTEXT)
def grpo(context: typer.Context, base: Optional[Path] = BASE, out: Path = OUT, config: Optional[Path] = CONFIG,
         reward: Optional[list[str]] = typer.Option(None, "--reward", help="name=weight, repeatable: ocr, rule_aesthetics, "
                                                    "rule_prompt_fidelity, rule_safety, rule_ink_colour, "
                                                    "reward_model[:head]."),
         resume: bool = RESUME, ocr_engine: str = OCR, reward_model: Optional[Path] = REWARD_MODEL,
         prompts: str = PROMPTS, num_prompts: int = typer.Option(256, help="Training prompts used."),
         no_monitor: bool = NO_MONITOR, dtype: Optional[str] = DTYPE, device: Optional[str] = DEVICE) -> None:
    """GRPO (TRL GRPOTrainer, our sampler as rollout, LoRA, KL on); settings as key=value (beta=0.04 steps=100 ...)."""
    _train("grpo", context, base, out, config, resume, ocr_engine, reward_model, prompts, num_prompts, no_monitor, dtype,
           device, reward)


@app.command("ppo", context_settings=CONTEXT)
def ppo(context: typer.Context, base: Optional[Path] = BASE, out: Path = OUT, config: Optional[Path] = CONFIG,
        reward: Optional[list[str]] = typer.Option(None, "--reward", help="name=weight, repeatable (as for grpo)."),
        resume: bool = RESUME, ocr_engine: str = OCR, reward_model: Optional[Path] = REWARD_MODEL,
        prompts: str = PROMPTS, num_prompts: int = typer.Option(256, help="Training prompts used."),
        no_monitor: bool = NO_MONITOR, dtype: Optional[str] = DTYPE, device: Optional[str] = DEVICE) -> None:
    """PPO (value head, GAE, clipped surrogate, KL penalty) on TRL's GRPOTrainer machinery, LoRA."""
    _train("ppo", context, base, out, config, resume, ocr_engine, reward_model, prompts, num_prompts, no_monitor, dtype,
           device, reward)


@app.command("merge")
def merge(run: Path = typer.Argument(..., help="Run folder of imagepref align."),
          out: Path = typer.Option(..., "--out", help="Folder for the merged generator."),
          base: Optional[Path] = typer.Option(None, "--base", help="Base generator (default: the one the run records).")
          ) -> None:
    """Merge a run's LoRA adapter into its base and write a generator folder (load_generator loads it)."""
    from imagepref.policy.align import merge_run

    typer.echo(f"wrote the merged generator to {merge_run(run, out, base)}")
