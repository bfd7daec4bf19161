"""`imagepref align dpo|grpo|ppo|merge`: move a generator toward preferences with LoRA.

The commands parse their arguments and call ``policy.align.pipeline.run_aligner``, the same entry
point as the recipe's align stage (imported inside the commands: it brings TRL and transformers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import Field

from imagepref.errors import BadInputError
from imagepref.eval.config import OCREngineName
from imagepref.recipes.commands.settings_help import settings_help_command
from imagepref.settings import option_bounds

app = typer.Typer(no_args_is_help=True)


def load_settings(method: str, config: Path | None, overrides: list[str], rewards: list[str] | None = None):
    """Settings from an optional YAML file, ``key.path=value`` overrides and ``--reward name=weight``."""
    import yaml

    from imagepref.policy.align.config import settings_class
    from imagepref.settings import apply_overrides, validated

    model = settings_class(method)
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
    apply_overrides(
        raw,
        overrides,
        model,
        where=f"align {method} setting",
        example="steps=50 or pairs.ties=downweight",
        listing=f"see imagepref align {method} --help",
    )
    if rewards:
        weights = {}
        for item in rewards:
            name, sep, weight = item.partition("=")
            try:
                weights[name] = float(weight) if sep else 1.0
            except ValueError:
                raise BadInputError(f"--reward {item!r}: the weight must be a number (for example ocr=1.0)") from None
        raw.setdefault("rewards", {})["weights"] = weights
    return validated(model, raw, f"align {method} setting", listing=f"see imagepref align {method} --help")


def _settings_help(method: str) -> str:
    from imagepref.policy.align.config import settings_help

    return settings_help(method)


# ----- the commands ------------------------------------------------------------------------
def _base(base: Path | None) -> Path:
    if base is not None:
        return base
    from imagepref.policy.glyphworld import shipped_generator

    if shipped_generator() is not None:
        return shipped_generator()
    raise BadInputError("no --base given and the shipped glyph-world generator is not installed; pass --base DIR")


BASE = typer.Option(None, "--base", help="Generator folder to align (default: the shipped glyph-world generator).")
OUT = typer.Option(
    ..., "--out", help="Run folder: align.json, adapter/, checkpoints, metrics.jsonl, runs/ (TensorBoard)."
)
CONFIG = typer.Option(None, "--config", help="YAML file of settings; key=value arguments override it.")
RESUME = typer.Option(False, "--resume", help="Continue the run in --out from its newest checkpoint.")
OCR = typer.Option(
    "rapidocr",
    "--ocr-engine",
    help="OCR engine of the OCR reward and monitoring: rapidocr or tesseract.",
    callback=option_bounds(OCREngineName),
)
REWARD_MODEL = typer.Option(None, "--reward-model", help="Reward model folder (for reward_model rewards).")
PROMPTS = typer.Option(
    "glyphworld",
    "--prompts",
    help="Training prompts: glyphworld (training words), glyphworld-align "
    "(fresh letter strings, disjoint from the held-out set), glyphworld-edits (GRPO or on-policy DPO on edit "
    "turns of seeded training edits; rewards edit_rules, edit_success, ...) or a prompts file.",
)
NUM_PROMPTS = typer.Option(256, help="Training prompts used.", callback=option_bounds(Annotated[int, Field(ge=1)]))
NO_MONITOR = typer.Option(False, "--no-monitor", help="Skip the held-out monitoring passes.")
DTYPE = typer.Option(
    None,
    "--dtype",
    help="Weights dtype of the base: float32, bfloat16 or float16 (default: the family's); LoRA adapters stay float32.",
)
DEVICE = typer.Option(None, "--device", help="torch device to load the base on, e.g. cuda (default: the loader's).")
CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


def _train(
    method: str,
    context: typer.Context,
    base,
    out,
    config,
    resume,
    ocr_engine,
    reward_model,
    prompts,
    num_prompts,
    no_monitor,
    dtype,
    device,
    rewards=None,
    preferences=None,
    candidates=None,
) -> None:
    from imagepref.devices import check_device
    from imagepref.dtypes import check_dtype
    from imagepref.files import check_output
    from imagepref.formats import read_candidate_sets, read_pairs, read_prompts
    from imagepref.policy.config import check_generator_folder
    from imagepref.reward.config import read_model_config

    # The inputs are checked before the settings: those need TRL's config classes, and torch.
    check_dtype(dtype, "--dtype")
    base = _base(base)
    check_generator_folder(base)
    if not resume and (out / "align.json").is_file():
        raise BadInputError(f"{out} already holds a run; pass --resume to continue it or choose a fresh --out")
    if resume and not (out / "align.json").is_file():
        raise BadInputError(f"--resume given but {out} holds no run (align.json missing); drop --resume to start one")
    check_output(out, inputs=[base, preferences, *(candidates or [])], may_hold_files=resume)
    if preferences is not None:
        read_pairs(preferences)
        read_candidate_sets(candidates, ("image_tokens",), "(the image tokens DPO trains on)")
    elif method != "dpo" and prompts not in ("glyphworld", "glyphworld-align", "glyphworld-edits"):
        read_prompts(prompts)
    if prompts == "glyphworld-edits" and method == "ppo":
        from imagepref.policy.align.pipeline import refuse_edit_turns

        refuse_edit_turns(method)
    reward_config = read_model_config(reward_model) if reward_model is not None else None
    check_device(device)

    from imagepref.policy.align.checkpoints import read_run
    from imagepref.policy.align.pipeline import run_aligner

    settings = load_settings(method, config, list(context.args), rewards)
    if resume:
        # Checked here too (prepare_run checks the base as well) so a wrong folder fails before any loading.
        record = read_run(out)
        if record.get("method") != method or record.get("settings") != settings.model_dump():
            raise BadInputError(
                f"{out} holds another run (a {record.get('method')} run with other settings); "
                "resume with the same method and settings, or choose a fresh --out"
            )
    from imagepref.policy.align.config import check_reward_names

    check_reward_names(settings.on_policy.rewards if method == "dpo" else settings.rewards.weights)
    from imagepref.policy.align.rewards import check_edit_turn_rewards, check_reward_model_turns, uses_reward_model

    edits = prompts == "glyphworld-edits"
    if method != "dpo":
        check_edit_turn_rewards(settings.rewards.weights, edits=edits)
    elif preferences is None and reward_model is None:  # on-policy pairs ranked by the rewards
        check_edit_turn_rewards(settings.on_policy.reward_weights(edits), edits=edits)
    # The reward model scores what the run draws (on-policy DPO ranks by it): a model of edits on
    # edit turns, a model of images on text prompts; checked before the generator loads.
    model_used = preferences is None if method == "dpo" else any(map(uses_reward_model, settings.rewards.weights))
    if reward_config is not None and model_used:
        check_reward_model_turns(reward_config, edits=edits)
    result = run_aligner(
        method,
        base,
        out,
        settings,
        preferences=[preferences] if preferences else None,
        candidates=candidates,
        reward_model=reward_model,
        prompts=prompts,
        num_prompts=num_prompts,
        ocr_engine=ocr_engine,
        monitor=not no_monitor,
        merge=False,
        log=typer.echo,
        dtype=dtype,
        device=device,
    )
    typer.echo(f"{method}: {result['steps']} steps; adapter in {result['adapter']}, metrics in {out / 'metrics.jsonl'}")


@app.command("dpo", context_settings=CONTEXT, cls=settings_help_command(lambda: _settings_help("dpo")))
def dpo(
    context: typer.Context,
    base: Path | None = BASE,
    out: Path = OUT,
    config: Path | None = CONFIG,
    preferences: Path | None = typer.Option(
        None,
        "--preferences",
        help="Preference folder (pairs.parquet); without it, pairs are made on policy and ranked by the rewards.",
    ),
    candidates: list[Path] | None = typer.Option(None, "--candidates", help="Candidate set(s) the pairs name."),
    resume: bool = RESUME,
    ocr_engine: str = OCR,
    reward_model: Path | None = REWARD_MODEL,
    prompts: str = PROMPTS,
    no_monitor: bool = NO_MONITOR,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """DPO (TRL DPOTrainer, LoRA) on preference pairs; settings as key=value (beta=0.1 pairs.ties=downweight ...)."""
    if preferences is not None and not candidates:
        raise BadInputError("--preferences needs --candidates: the candidate set(s) holding the pairs' image tokens")
    _train(
        "dpo",
        context,
        base,
        out,
        config,
        resume,
        ocr_engine,
        reward_model,
        prompts,
        0,
        no_monitor,
        dtype,
        device,
        preferences=preferences,
        candidates=candidates,
    )


@app.command("grpo", context_settings=CONTEXT, cls=settings_help_command(lambda: _settings_help("grpo")))
def grpo(
    context: typer.Context,
    base: Path | None = BASE,
    out: Path = OUT,
    config: Path | None = CONFIG,
    reward: list[str] | None = typer.Option(
        None,
        "--reward",
        help="name=weight, repeatable: ocr, rule_aesthetics, "
        "rule_prompt_fidelity, rule_safety, rule_ink_colour, "
        "reward_model[:head]; on edit turns edit_rules, edit_success, edit_fidelity, edit_preservation, "
        "rule_aesthetics, rule_safety, ocr (the result against the edited sign's text) and a reward "
        "model of edits.",
    ),
    resume: bool = RESUME,
    ocr_engine: str = OCR,
    reward_model: Path | None = REWARD_MODEL,
    prompts: str = PROMPTS,
    num_prompts: int = NUM_PROMPTS,
    no_monitor: bool = NO_MONITOR,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """GRPO (TRL GRPOTrainer, our sampler as rollout, LoRA, KL on); settings as key=value (beta=0.04 steps=100 ...)."""
    _train(
        "grpo",
        context,
        base,
        out,
        config,
        resume,
        ocr_engine,
        reward_model,
        prompts,
        num_prompts,
        no_monitor,
        dtype,
        device,
        reward,
    )


@app.command("ppo", context_settings=CONTEXT, cls=settings_help_command(lambda: _settings_help("ppo")))
def ppo(
    context: typer.Context,
    base: Path | None = BASE,
    out: Path = OUT,
    config: Path | None = CONFIG,
    reward: list[str] | None = typer.Option(None, "--reward", help="name=weight, repeatable (as for grpo)."),
    resume: bool = RESUME,
    ocr_engine: str = OCR,
    reward_model: Path | None = REWARD_MODEL,
    prompts: str = PROMPTS,
    num_prompts: int = NUM_PROMPTS,
    no_monitor: bool = NO_MONITOR,
    dtype: str | None = DTYPE,
    device: str | None = DEVICE,
) -> None:
    """PPO (separate value model, GAE, clipped surrogate, KL penalty) on TRL's GRPOTrainer machinery, LoRA."""
    _train(
        "ppo",
        context,
        base,
        out,
        config,
        resume,
        ocr_engine,
        reward_model,
        prompts,
        num_prompts,
        no_monitor,
        dtype,
        device,
        reward,
    )


@app.command("merge")
def merge(
    run: Path = typer.Argument(..., help="Run folder of imagepref align."),
    out: Path = typer.Option(..., "--out", help="Folder for the merged generator."),
    base: Path | None = typer.Option(None, "--base", help="Base generator (default: the one the run records)."),
) -> None:
    """Merge a run's LoRA adapter into its base and write a generator folder (load_generator loads it)."""
    from imagepref.files import check_output

    check_output(out, inputs=[run / "adapter", *sorted(run.glob("checkpoint-*"))])  # RUN/merged is the usual place
    if not (run / "align.json").is_file():
        raise BadInputError(
            f"{run} is not an alignment run folder (no align.json); pass the --out of `imagepref align`"
        )

    from imagepref.policy.align import merge_run

    typer.echo(f"wrote the merged generator to {merge_run(run, out, base)}")
