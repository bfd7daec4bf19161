"""`imagepref reward ...`: train, evaluate and apply multi-head reward models; make glyph-world
preference data. Each command is a thin layer over `reward`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import Field
from rich.console import Console
from rich.table import Table

from imagepref.errors import BadInputError
from imagepref.files import write_text_atomically
from imagepref.formats import write_scores
from imagepref.recipes.commands.settings_help import settings_help_command
from imagepref.recipes.config import LabelSection
from imagepref.settings import Seed, option_bounds

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)

Candidates = typer.Option(
    None, "--candidates", help="Candidate set the pairs came from (repeatable); default <prefs>/candidates."
)


def _load_config(config_file: Path | None, overrides: list[str]):
    import yaml

    from imagepref.reward.config import RewardConfig, config_with_overrides, validated_config

    config = RewardConfig()
    if config_file is not None:
        if not config_file.is_file():
            raise BadInputError(f"reward config {config_file} does not exist")
        try:
            data = yaml.safe_load(config_file.read_text()) or {}
        except yaml.YAMLError as error:
            raise BadInputError(f"{config_file} is not valid YAML: {str(error).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise BadInputError(f"{config_file} must hold a mapping of RewardConfig fields")
        config = validated_config(data)
    return config_with_overrides(config, overrides)


def _reward_settings_help() -> str:
    from imagepref.reward.config import RewardConfig
    from imagepref.settings import settings_listing

    return settings_listing(RewardConfig)


@app.command("train", cls=settings_help_command(lambda: _reward_settings_help()))
def train(
    prefs: Path = typer.Option(
        ..., "--prefs", help="Preference data folder (pairs.parquet) from `imagepref label pull`."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for config.json, model.safetensors, training.json, tensorboard/."
    ),
    candidates: list[Path] | None = Candidates,
    config: Path | None = typer.Option(None, "--config", help="YAML of RewardConfig fields."),
    backbone: str | None = typer.Option(None, help="pixel | token | clip (overrides the config)."),
    generator: Path | None = typer.Option(None, help="Generator folder whose embeddings the token backbone reads."),
    backbone_path: Path | None = typer.Option(
        None, "--backbone-path", help="Local CLIP/SigLIP folder (backbone clip)."
    ),
    override: list[str] | None = typer.Option(
        None, "--set", help="key=value override of a RewardConfig field (repeatable)."
    ),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: cuda when present)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Train a multi-head reward model; validation is split by prompt; the best epoch is saved."""
    from imagepref.devices import check_device
    from imagepref.files import check_output
    from imagepref.formats import check_images, read_candidate_sets, read_pairs
    from imagepref.policy.config import check_generator_folder
    from imagepref.reward.config import refuse_edits_on

    # Checked before torch is imported: a bad input fails in about a second.
    check_output(out, inputs=[prefs, *(candidates or [])])
    overrides = list(override or [])
    if backbone:
        overrides.append(f"backbone={backbone}")
    if backbone_path:
        overrides.append(f"backbone_path={backbone_path}")
    cfg = _load_config(config, overrides)
    if cfg.backbone == "token":
        if generator is None:
            raise BadInputError("the token backbone reads a generator's image tokens: pass --generator DIR")
        check_generator_folder(generator)
    if "instruction" in read_pairs(prefs).columns:
        refuse_edits_on(cfg.backbone)
    default_set = prefs / "candidates"
    sets = candidates or ([default_set] if (default_set / "candidates.parquet").is_file() else [])
    token = cfg.backbone == "token"
    table = read_candidate_sets(sets, ("image_tokens",) if token else (), "(the token backbone reads them)")
    if not token:
        check_images(table)
    check_device(device)

    from imagepref.reward.train import train_reward_model

    loaded = None
    if cfg.backbone == "token":
        from imagepref.policy.generator import load_generator

        loaded = load_generator(generator)
        cfg = cfg.model_copy(update={"backbone_path": str(generator)})
    result = train_reward_model(
        prefs,
        candidates or [],
        out,
        cfg,
        generator=loaded,
        device=device,
        show_progress=not quiet,
        log=lambda m: console.print(m),
    )
    figures = ", ".join(f"{a} {result.validation[f'val_accuracy_{a}']:.1%}" for a in result.model.axes)
    epochs = ", ".join(str(e) for e in result.best_epochs)
    which = f"epoch {epochs}" if len(result.best_epochs) == 1 else f"{len(result.best_epochs)} members, epochs {epochs}"
    console.print(
        f"saved {out} ({which}, validation loss {result.best_val_loss:.4f}; validation "
        f"accuracy {figures}; {result.train_pairs} train / {result.val_pairs} validation pairs, "
        f"{result.seconds:.0f} s)"
    )


@app.command("eval")
def evaluate(
    model: Path = typer.Option(..., "--model", help="Reward model folder."),
    prefs: Path = typer.Option(..., "--prefs", help="Preference data folder to evaluate on (held-out pairs)."),
    candidates: list[Path] | None = Candidates,
    out: Path | None = typer.Option(None, help="Write the figures as JSON here."),
    resamples: int = typer.Option(
        1000, help="Bootstrap resamples for the 95 % intervals.", callback=option_bounds(Annotated[int, Field(ge=1)])
    ),
) -> None:
    """Per-head pairwise accuracy (bootstrap 95 % CI), calibration (ECE), ties, and single-human agreement."""
    from imagepref.reward.data import read_preferences
    from imagepref.reward.evaluation import evaluate_reward_model
    from imagepref.reward.model import load_reward_model

    reward_model = load_reward_model(model)
    data = read_preferences(
        prefs,
        candidates or [],
        axes=reward_model.axes,
        need_images=reward_model.config.backbone != "token",
        require_decisive=True,
    )
    report = evaluate_reward_model(reward_model, data, resamples=resamples)
    table = Table(title=f"{model} on {prefs} ({report['pairs']} pairs)")
    for column in (
        "axis",
        "accuracy [95% CI]",
        "unanimous pairs: accuracy",
        "single human",
        "ECE",
        "tie rate",
        "P(tie) ties / decided",
        "3-way acc.",
    ):
        table.add_column(column)
    for axis, e in report["axes"].items():
        human = (
            f"{e['single_human_accuracy']:.1%} (model {e['model_accuracy_same_references']:.1%})"
            if "single_human_accuracy" in e
            else "-"
        )
        table.add_row(
            axis,
            f"{e['accuracy']:.1%} [{e['accuracy_ci95'][0]:.1%}, {e['accuracy_ci95'][1]:.1%}] n={e['decided_pairs']}",
            f"{e['accuracy_unanimous']:.1%} n={e['unanimous_pairs']}",
            human,
            f"{e['ece']:.3f}",
            f"{e['tie_rate']:.1%}",
            f"{e['p_tie_on_ties']:.2f} / {e['p_tie_on_decided']:.2f}",
            f"{e['three_way_accuracy']:.1%}",
        )
    Console(width=170).print(table)
    if out is not None:
        write_text_atomically(out, json.dumps(report, indent=1))


@app.command("score")
def score(
    model: Path = typer.Option(..., "--model", help="Reward model folder."),
    candidates: Path = typer.Option(..., "--candidates", help="Candidate set to score."),
    out: Path = typer.Option(..., "--out", help="Parquet (or .csv) for labeling's --scores-file."),
    pairs: bool = typer.Option(
        False,
        "--pairs",
        help="One row per pair of candidates of a prompt (P(a preferred) per "
        "axis, uncertainty, and the ensemble members' disagreement) instead of one per candidate.",
    ),
    device: str | None = typer.Option(None, help="cpu, cuda ..."),
) -> None:
    """Score every candidate of a set: per candidate, raw per-axis head scores, normalised ones and
    the combined reward; with --pairs, per pair, what labeling's uncertainty pairing ranks by."""
    from imagepref.devices import check_device
    from imagepref.files import check_output
    from imagepref.formats import check_images, read_candidate_set
    from imagepref.reward.config import check_scored_set, read_model_config

    # Checked before torch is imported: a bad input fails in about a second.
    check_output(out, inputs=[model, candidates], folder=False)
    model_config = read_model_config(model)
    if model_config.backbone == "token":
        table = read_candidate_set(candidates, ("image_tokens",), "(the token backbone reads them)")
    else:
        table = read_candidate_set(candidates)
        check_images(table)
    check_scored_set(model_config, "instruction" in table.columns)
    check_device(device)

    from imagepref.reward.model import load_reward_model
    from imagepref.reward.scoring import candidate_scores, pair_scores

    reward_model = load_reward_model(model, device=device)
    frame = (pair_scores if pairs else candidate_scores)(reward_model, [candidates])
    write_scores(frame, out, reward_model.axes)
    console.print(f"scored {len(frame)} {'pairs' if pairs else 'candidates'} into {out}")


@app.command("glyph-data")
def glyph_data(
    out: Path = typer.Option(..., "--out", help="Folder for pairs.parquet, annotations.parquet and candidates/."),
    prompts: int = typer.Option(
        200, help="Prompts (one clean sign each, then variants).", callback=option_bounds(Annotated[int, Field(ge=1)])
    ),
    variants: int = typer.Option(
        4, help="Images per prompt; every pair of them is judged.", callback=option_bounds(Annotated[int, Field(ge=2)])
    ),
    annotators: int = typer.Option(
        3, help="Simulated annotators per pair.", callback=option_bounds(LabelSection, "annotators")
    ),
    error_rate: float = typer.Option(
        0.1,
        "--error-rate",
        help="Chance that a simulated annotator errs on an axis.",
        callback=option_bounds(LabelSection, "error_rate"),
    ),
    generator: str | None = typer.Option(
        None,
        help="Generator folder whose codec makes the image tokens "
        "(default: the shipped glyph generator, so the tokens are the ones it "
        "writes); 'fresh' fits a small codec now.",
    ),
    ocr: str = typer.Option(
        "rapidocr",
        help="OCR engine the simulated annotators read with: rapidocr | tesseract.",
        callback=option_bounds(LabelSection, "ocr_engine"),
    ),
    seed: int = typer.Option(0, help="Seed of the signs, variants and annotator errors.", callback=option_bounds(Seed)),
) -> None:
    """Make glyph-world preference data without Label Studio (simulated annotators, the contract's tables)."""
    from imagepref.files import check_output
    from imagepref.formats import refuse_existing_preferences

    refuse_existing_preferences(out)  # the more telling line for a second run into the same --out
    check_output(out)

    from imagepref.eval.ocr import text_reader
    from imagepref.reward.synthetic import glyph_preference_data

    if generator == "fresh":
        from imagepref.policy.pretrain import PretrainConfig, fit_codec

        codec = fit_codec(PretrainConfig(seed=seed, num_shapes=256, codec_images=600, codec_iterations=4))
    else:
        from imagepref.policy.generator import load_generator
        from imagepref.policy.glyphworld import shipped_generator

        folder = generator or shipped_generator()
        if folder is None:
            raise BadInputError(
                "the shipped glyph generator is missing (run `make quickstart` once to pretrain it); "
                "or pass --generator DIR, or --generator fresh to fit a codec now"
            )
        codec = load_generator(folder).codec
    counts = glyph_preference_data(
        out,
        codec,
        text_reader(ocr),
        prompts=prompts,
        variants_per_prompt=variants,
        annotators=annotators,
        error_rate=error_rate,
        seed=seed,
    )
    console.print(
        f"wrote {counts['pairs']} pairs ({counts['annotations']} judgments) over {counts['candidates']} "
        f"candidates into {out}"
    )
