"""Recipes: one YAML file describes a whole run, validated by the pydantic models below.

Every field has a default and a help text, so ``{name: x}`` is a complete recipe and
``imagepref run --help`` / ``imagepref recipes show`` can document every key. On the command
line ``key.path=value`` overrides a field, in the manner of torchtune; the value is read as YAML
(``rounds=2``, ``align.methods=[dpo]``). A key the models do not know is an error that names the
nearest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from imagepref.dtypes import DTYPE_NAMES
from imagepref.errors import BadInputError, UnknownNameError

STAGES = ("pretrain", "generate", "label", "reward", "align", "eval", "report")
ROUND_STAGES = ("generate", "label", "reward", "align")
RECIPES_DIR = Path(__file__).parent


class Section(BaseModel):
    """A recipe section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


class GeneratorSection(Section):
    path: str | None = Field(None, description="Generator folder to start from. Unset: the glyph world's generator "
                             "(the shipped pretrained one when present, else the pretrain stage trains one).")
    dtype: Literal[DTYPE_NAMES] = Field("float32", description="Weights' dtype while sampling and training.")
    device: str | None = Field(None, description="Torch device (cpu, cuda, cuda:1); unset: cuda when present, else cpu.")
    trust_remote_code: bool = Field(False, description="Allow a checkpoint's own Python code (off: only transformers' classes).")


class PretrainSection(Section):
    reuse_shipped: bool = Field(True, description="Use the generator shipped in policy/glyphworld/pretrained/ when present.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Pretraining settings (policy.pretrain.PretrainConfig "
                                     "fields: steps, batch_size, hidden_size, layers, num_shapes, ...); unset fields keep their defaults.")


class GenerateSection(Section):
    prompts: str = Field("glyphworld", description="'glyphworld' (seeded signs from the training words) or a prompts file "
                         "(JSONL with a prompt field, or one prompt a line).")
    num_prompts: int = Field(48, ge=1, description="Prompts per round ('glyphworld': how many to draw; a file: the first N).")
    images_per_prompt: int = Field(4, ge=2, description="Candidates per prompt (pairs are made within a prompt).")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance scale (default: the generator's own).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_k: int = Field(0, ge=0, description="Top-k sampling (0: off).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling (1: off).")
    batch_size: int = Field(32, ge=1, description="Images sampled per batch.")


class LabelSection(Section):
    mode: Literal["simulated", "human"] = Field("simulated", description="simulated: annotators that judge by the glyph "
                                                "world's rules; human: invite people and wait for their labels.")
    url: str | None = Field(None, description="An existing Label Studio deployment; unset: a managed server on 127.0.0.1.")
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="Environment variable holding the API token for url.")
    document_root: str | None = Field(None, description="With url: the folder that server serves local files from.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the managed server on 127.0.0.1.")
    overlap: int = Field(2, ge=1, description="Annotators per pair.")
    pairing: Literal["random", "all", "uncertainty"] = Field("random", description="How round-1 pairs are made within a prompt.")
    pairs_per_prompt: int | None = Field(None, ge=1, description="Pairs per prompt (default: candidates // 2).")
    max_pairs: int | None = Field(None, ge=1, description="Cap on pairs pushed per round.")
    flywheel: bool = Field(True, description="From round 2 on: the current reward model pre-annotates the tasks and the "
                           "pairs it is least sure of are labeled first (uncertainty pairing).")
    annotators: int = Field(2, ge=1, description="Simulated annotators.")
    error_rate: float = Field(0.1, ge=0, le=1, description="Simulated annotators: chance per axis that an answer is flipped.")
    judge: str = Field("glyph", description="Simulated judge: 'glyph' (the world's rules) or 'package.module:factory'.")
    ocr_engine: str = Field("rapidocr", description="OCR engine the glyph judge reads text with (rapidocr, tesseract).")
    invite: list[str] = Field(default_factory=list, description="Human mode: e-mail addresses to invite.")
    quota: int | None = Field(None, ge=1, description="Human mode: judgments needed per axis before the run goes on "
                              "(default: every pair times the overlap).")
    poll_seconds: float = Field(20.0, gt=0, description="Human mode: seconds between progress checks.")
    instructions: str | None = Field(None, description="Markdown file with the annotators' instructions.")


class RewardSection(Section):
    settings: dict[str, Any] = Field(default_factory=dict, description="Reward training settings, passed to the reward "
                                     "package's config (see `imagepref reward train --help`).")


class AlignSection(Section):
    methods: list[Literal["dpo", "grpo", "ppo"]] = Field(["dpo", "grpo"], description="Aligners run in order; each "
                                                         "starts from the previous one's merged generator.")
    dpo: dict[str, Any] = Field(default_factory=dict, description="DPO settings (see `imagepref align dpo --help`).")
    grpo: dict[str, Any] = Field(default_factory=dict, description="GRPO settings (see `imagepref align grpo --help`).")
    ppo: dict[str, Any] = Field(default_factory=dict, description="PPO settings (see `imagepref align ppo --help`).")
    rewards: dict[str, float] = Field({"reward_model": 1.0, "ocr": 1.0}, description="GRPO/PPO reward weights when a "
                                      "reward model was trained this round (a method's own rewards setting wins).")
    prompts: str = Field("glyphworld", description="GRPO/PPO training prompts: glyphworld (training words) or a prompts file.")
    num_prompts: int = Field(256, ge=1, description="GRPO/PPO training prompts drawn.")
    ocr_engine: str = Field("rapidocr", description="OCR engine of the OCR reward and of monitoring.")
    monitor: bool = Field(True, description="Held-out monitoring passes during training (reward per head, KL, OCR, safety).")


class EvalSection(Section):
    prompts: str = Field("glyphworld-heldout", description="Prompt set: glyphworld-heldout, text-rendering or a file.")
    limit: int = Field(0, ge=0, description="Only the first N prompts (0: all).")
    samples: int = Field(2, ge=1, description="Images per prompt and checkpoint.")
    guidance_scale: float | None = Field(None, description="Classifier-free guidance scale (default: the generator's own).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    ocr_engine: str = Field("rapidocr", description="OCR engine: rapidocr or tesseract.")
    workers: int = Field(0, ge=0, description="OCR processes (0: one per core).")
    use_reward_model: bool = Field(True, description="Add the last reward model's per-axis scores to the report.")


class LaunchSection(Section):
    accelerate_config: str | None = Field(None, description="accelerate config file for the training stages (one GPU, "
                                          "DeepSpeed ZeRO-2/3, FSDP: see recipes/accelerate/); unset: in-process.")
    num_processes: int = Field(1, ge=1, description="Training processes (`accelerate launch --num_processes`).")
    record_ranks: bool = Field(False, description="Each training process writes what it trained on and its final "
                               "weights' digest to <align>/<method>/ranks/ (to check a multi-process run).")


class LoggingSection(Section):
    report_to: list[str] = Field(["tensorboard"], description="Trackers for the trainers (anything TRL supports, or none).")
    console_every: int = Field(10, ge=1, description="Echo every Nth step line to the console (the run log gets all).")


class Recipe(Section):
    """One run of the loop: which stages, how many rounds, and each stage's settings."""

    name: str = Field("recipe", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="The recipe's name; a run folder "
                      "belongs to one recipe name.")
    description: str = Field("", description="What this recipe is for (shown by `imagepref recipes list`).")
    run_dir: str = Field("runs/{name}", description="Run folder ({name} is the recipe name).")
    seed: int = Field(0, description="Seed of every stage (each derives its own from it).")
    rounds: int = Field(1, ge=1, le=100, description="How many times generate -> label -> reward -> align repeats.")
    stages: list[str] = Field(list(STAGES), description=f"Stages to run, from {', '.join(STAGES)}.")
    generator: GeneratorSection = Field(default_factory=GeneratorSection, description="The generator to start from.")
    pretrain: PretrainSection = Field(default_factory=PretrainSection, description="Glyph-world pretraining.")
    generate: GenerateSection = Field(default_factory=GenerateSection, description="Candidate generation per round.")
    label: LabelSection = Field(default_factory=LabelSection, description="Labeling in Label Studio per round.")
    reward: RewardSection = Field(default_factory=RewardSection, description="Reward model training and evaluation.")
    align: AlignSection = Field(default_factory=AlignSection, description="Alignment with LoRA.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Evaluation of base vs aligned.")
    launch: LaunchSection = Field(default_factory=LaunchSection, description="Multi-process training.")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="Trackers and the run log.")

    def run_path(self) -> Path:
        """The run folder, with ``{name}`` filled in."""
        return Path(self.run_dir.format(name=self.name))


def field_paths(model: type[BaseModel] = Recipe, prefix: str = "") -> dict[str, str]:
    """Every valid dotted key of ``model`` with its help text (nested sections expanded)."""
    paths = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.update(field_paths(annotation, key + "."))
        else:
            paths[key] = field.description or ""
    return paths


def nearest_key(key: str) -> str | None:
    """The valid key closest to a misspelled ``key`` (or None when nothing is close)."""
    paths = list(field_paths())
    found = difflib.get_close_matches(key, paths, n=1, cutoff=0.6)
    if not found:
        # A key under the right section but misspelled in its last part: compare last parts only.
        tail = key.rsplit(".", 1)[-1]
        tails = {p.rsplit(".", 1)[-1]: p for p in paths if p.startswith(key.rsplit(".", 1)[0] + ".") or "." not in key}
        close = difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.6)
        found = [tails[close[0]]] if close else []
    return found[0] if found else None


def _unknown_key_error(key: str, where: str) -> BadInputError:
    suggestion = nearest_key(key)
    hint = f"; did you mean {suggestion}?" if suggestion else "; `imagepref recipes show` lists every key"
    return BadInputError(f"{where}: unknown key {key}{hint}")


def _is_free_form(path: list[str]) -> bool:
    # Dict-valued fields (stage settings passed on to a package) take any sub-key.
    model: type[BaseModel] = Recipe
    for index, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return index < len(path) - 1 or getattr(annotation, "__origin__", None) is dict
    return False


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw recipe dict; the value is parsed as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInputError(f"override {item!r} is not key.path=value (for example rounds=2 or label.annotators=3)")
        parts = key.split(".")
        if key not in field_paths() and not _is_free_form(parts):
            raise _unknown_key_error(key, "override")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        target = raw
        for part in parts[:-1]:
            existing = target.get(part)
            target = target.setdefault(part, {}) if existing is None else existing
            if not isinstance(target, dict):
                raise BadInputError(f"override {key}: {part} is not a section")
        target[parts[-1]] = value
    return raw


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The raw mapping of a recipe YAML file, with one-line errors for a missing or non-YAML file."""
    path = Path(path)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECIPES_DIR.glob("*.yaml")))
        raise BadInputError(f"recipe {path} does not exist; pass a YAML file (shipped: {known} in {RECIPES_DIR})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        line = str(error).replace("\n", " ")[:160]
        raise BadInputError(f"recipe {path} is not valid YAML ({line}); fix the file or start from recipes/quickstart.yaml") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadInputError(f"recipe {path} must be a YAML mapping of settings (name:, stages:, ...), not a {type(raw).__name__}")
    return raw


def validate_recipe(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a raw recipe mapping; the first problem becomes one line naming the key and fix."""
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":
            raise _unknown_key_error(key, where) from None
        raise BadInputError(f"{where}: {key}: {first['msg']}") from None
    _check_package_settings(recipe, where)
    for stage in recipe.stages:
        if stage not in STAGES:
            close = difflib.get_close_matches(stage, STAGES, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UnknownNameError(f"{where}: unknown stage {stage!r}; {hint}stages are {', '.join(STAGES)}")
    return recipe


def _package_models() -> dict[str, type[BaseModel]]:
    """The packages' own settings models for the free-form recipe sections (imported lazily: a
    package that is not installed leaves its section to be checked when its stage runs)."""
    models: dict[str, type[BaseModel]] = {}
    try:
        from imagepref.policy.align.config import DPOSettings, GRPOSettings, PPOSettings

        models.update({"align.dpo": DPOSettings, "align.grpo": GRPOSettings, "align.ppo": PPOSettings})
    except ImportError:
        pass
    try:
        from imagepref.reward.config import RewardConfig

        models["reward.settings"] = RewardConfig
    except ImportError:
        pass
    return models


def _check_package_settings(recipe: Recipe, where: str) -> None:
    # The stage settings are handed to their packages as they are; checking them here makes a
    # typo fail at once, not after an hour of earlier stages.
    for path, model in _package_models().items():
        section, name = path.split(".")
        data = getattr(getattr(recipe, section), name)
        try:
            model.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            if first["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(model.model_fields), n=1, cutoff=0.6)
                hint = f"; did you mean {path}.{close[0]}?" if close else f"; see {model.__name__}'s fields"
                raise BadInputError(f"{where}: unknown key {path}.{key}{hint}") from None
            raise BadInputError(f"{where}: {path}.{key}: {first['msg']}") from None


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file. Relative paths in it stay relative to the
    working directory, like the command line's."""
    raw = read_recipe_file(path)
    raw = apply_overrides(raw, list(overrides or []))
    return validate_recipe(raw, where=str(path))


def shipped_recipes() -> list[tuple[Path, str]]:
    """The recipes shipped in ``recipes/`` with their descriptions."""
    found = []
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        found.append((path, str(raw.get("description", "")).strip().splitlines()[0] if raw.get("description") else ""))
    return found
