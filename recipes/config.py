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
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from imagepref import settings
from imagepref.dtypes import DTYPE_NAMES
from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError
from imagepref.eval.config import OCREngineName
from imagepref.policy.config import PretrainConfig, SamplingConfig
from imagepref.settings import Seed

if TYPE_CHECKING:
    from imagepref.policy.align.config import DPOSettings, GRPOSettings, PPOSettings
    from imagepref.reward.config import RewardConfig

STAGES = ("pretrain", "generate", "label", "reward", "align", "eval", "report")
ROUND_STAGES = ("generate", "label", "reward", "align")
RECIPES_DIR = Path(__file__).parent


LISTING = "`imagepref recipes show` lists every key"


def _import_package_settings() -> None:
    # The reward and align packages import torch and TRL, and the command line imports this
    # module for every command: their settings models are imported when a recipe is first
    # validated or listed, and a package that fails to import is an error, never a skipped check.
    try:
        from imagepref.policy.align.config import DPOSettings, GRPOSettings, PPOSettings
        from imagepref.reward.config import RewardConfig
    except ImportError as error:
        raise ImagePrefError(
            f"the recipe's reward and align settings cannot be checked: {error}; "
            "reinstall imagepref with its dependencies (pip install -e .)"
        ) from None
    globals().update(
        DPOSettings=DPOSettings, GRPOSettings=GRPOSettings, PPOSettings=PPOSettings, RewardConfig=RewardConfig
    )


class Section(BaseModel):
    """A recipe section: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_rebuild(cls, **kwargs):
        """Pydantic finishes a model whose field types were not importable yet here, on first use."""
        _import_package_settings()
        return super().model_rebuild(**kwargs)


def _as_given(value: BaseModel, info) -> dict[str, Any]:
    # A package's settings are recorded as the recipe gives them (its seed filled in): a resolved
    # recipe then runs again as it ran, and a stage still tells a given setting from a default.
    return value.model_dump(mode=info.mode, exclude_unset=True)


class GeneratorSection(Section):
    path: str | None = Field(
        None,
        description="Generator folder to start from. Unset: the glyph world's generator "
        "(the shipped pretrained one when present, else the pretrain stage trains one).",
    )
    dtype: Literal[DTYPE_NAMES] = Field("float32", description="Weights' dtype while sampling and training.")
    device: str | None = Field(
        None, description="Torch device (cpu, cuda, cuda:1); unset: cuda when present, else cpu."
    )
    trust_remote_code: bool = Field(
        False, description="Allow a checkpoint's own Python code (off: only transformers' classes)."
    )


class PretrainSection(Section):
    reuse_shipped: bool = Field(
        True, description="Use the generator shipped in policy/glyphworld/pretrained/ when present."
    )
    settings: PretrainConfig = Field(
        default_factory=PretrainConfig,
        description="Pretraining settings (imagepref.policy.config.PretrainConfig); unset fields keep their defaults.",
    )

    @field_serializer("settings")
    def _record_as_given(self, value, info):
        return _as_given(value, info)


class GenerateSection(Section, SamplingConfig):
    """The sampling settings (guidance_scale, temperature, top_k, top_p, batch_size) come from ``SamplingConfig``."""

    prompts: str = Field(
        "glyphworld",
        description="'glyphworld' (seeded signs from the training words) or a prompts file "
        "(JSONL with a prompt field, or one prompt a line).",
    )
    num_prompts: int = Field(
        48, ge=1, description="Prompts per round ('glyphworld': how many to draw; a file: the first N)."
    )
    images_per_prompt: int = Field(4, ge=2, description="Candidates per prompt (pairs are made within a prompt).")
    edits: Literal["glyphworld-edits"] | None = Field(
        None,
        description="'glyphworld-edits': edit seeded glyph-world signs instead of drawing from prompts "
        "(num_prompts edits, images_per_prompt results each; labeled as edits).",
    )


class LabelSection(Section):
    mode: Literal["simulated", "human"] = Field(
        "simulated",
        description="simulated: annotators that judge by the glyph "
        "world's rules; human: invite people and wait for their labels.",
    )
    url: str | None = Field(
        None, description="An existing Label Studio deployment; unset: a managed server on 127.0.0.1."
    )
    token_env: str = Field("LABEL_STUDIO_API_KEY", description="Environment variable holding the API token for url.")
    document_root: str | None = Field(None, description="With url: the folder that server serves local files from.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the managed server on 127.0.0.1.")
    overlap: int = Field(2, ge=1, le=20, description="Annotators per pair.")
    pairing: Literal["random", "all", "uncertainty"] = Field(
        "random", description="How round-1 pairs are made within a prompt."
    )
    pairs_per_prompt: int | None = Field(None, ge=1, description="Pairs per prompt (default: candidates // 2).")
    max_pairs: int | None = Field(None, ge=1, description="Cap on pairs pushed per round.")
    flywheel: bool = Field(
        True,
        description="From round 2 on: the current reward model pre-annotates the tasks and the "
        "pairs it is least sure of are labeled first (uncertainty pairing).",
    )
    annotators: int = Field(2, ge=1, description="Simulated annotators.")
    error_rate: float = Field(
        0.1, ge=0, le=1, description="Simulated annotators: chance per axis that an answer is flipped."
    )
    judge: str = Field("glyph", description="Simulated judge: 'glyph' (the world's rules) or 'package.module:factory'.")
    ocr_engine: OCREngineName = Field(
        "rapidocr", description="OCR engine the glyph judge reads text with (rapidocr, tesseract)."
    )
    invite: list[str] = Field(default_factory=list, description="Human mode: e-mail addresses to invite.")
    quota: int | None = Field(
        None,
        ge=1,
        description="Human mode: judgments needed per axis before the run goes on "
        "(default: every pair times the overlap).",
    )
    poll_seconds: float = Field(20.0, gt=0, description="Human mode: seconds between progress checks.")
    instructions: str | None = Field(None, description="Markdown file with the annotators' instructions.")


class RewardSection(Section):
    settings: RewardConfig = Field(
        default_factory=lambda: RewardConfig(),
        description="Reward training settings (imagepref.reward.config.RewardConfig; seed: the recipe's unless set).",
    )

    @field_serializer("settings")
    def _record_as_given(self, value, info):
        return _as_given(value, info)


class AlignSection(Section):
    methods: list[Literal["dpo", "grpo", "ppo"]] = Field(
        ["dpo", "grpo"], description="Aligners run in order; each starts from the previous one's merged generator."
    )
    dpo: DPOSettings = Field(
        default_factory=lambda: DPOSettings(),
        description="DPO settings (see `imagepref align dpo --help`; seed: the recipe's unless set).",
    )
    grpo: GRPOSettings = Field(
        default_factory=lambda: GRPOSettings(),
        description="GRPO settings (see `imagepref align grpo --help`; seed: the recipe's unless set).",
    )
    ppo: PPOSettings = Field(
        default_factory=lambda: PPOSettings(),
        description="PPO settings (see `imagepref align ppo --help`; seed: the recipe's unless set).",
    )
    rewards: dict[str, float] = Field(
        {"reward_model": 1.0, "ocr": 1.0},
        description="GRPO/PPO reward weights when a "
        "reward model was trained this round (a method's own rewards setting wins).",
    )
    prompts: str = Field(
        "glyphworld",
        description="GRPO/PPO training prompts: glyphworld (training words), glyphworld-edits (edit turns: "
        "the loop of edits, generate.edits) or a prompts file.",
    )
    num_prompts: int = Field(256, ge=1, description="GRPO/PPO training prompts drawn.")
    ocr_engine: OCREngineName = Field("rapidocr", description="OCR engine of the OCR reward and of monitoring.")
    monitor: bool = Field(
        True, description="Held-out monitoring passes during training (reward per head, KL, OCR, safety)."
    )

    @field_serializer("dpo", "grpo", "ppo")
    def _record_as_given(self, value, info):
        return _as_given(value, info)


class EvalSection(Section, SamplingConfig):
    """The sampling settings (guidance_scale, temperature, top_k, top_p, batch_size) come from ``SamplingConfig``."""

    prompts: str = Field(
        "glyphworld-heldout",
        description="Prompt set: glyphworld-heldout, glyphworld-edits-heldout (edits), text-rendering or a file.",
    )
    limit: int = Field(0, ge=0, description="Only the first N prompts (0: all).")
    samples: int = Field(2, ge=1, description="Images per prompt and checkpoint.")
    ocr_engine: OCREngineName = Field("rapidocr", description="OCR engine: rapidocr or tesseract.")
    workers: int = Field(0, ge=0, description="OCR processes (0: chosen from the free cores and the images).")
    use_reward_model: bool = Field(True, description="Add the last reward model's per-axis scores to the report.")


class LaunchSection(Section):
    accelerate_config: str | None = Field(
        None,
        description="accelerate config file for the training stages (one GPU, "
        "DeepSpeed ZeRO-2/3, FSDP: see recipes/accelerate/); unset: in-process.",
    )
    num_processes: int = Field(1, ge=1, description="Training processes (`accelerate launch --num_processes`).")
    record_ranks: bool = Field(
        False,
        description="Each training process writes what it trained on and its final "
        "weights' digest to <align>/<method>/ranks/ (to check a multi-process run).",
    )


class LoggingSection(Section):
    report_to: list[str] = Field(
        ["tensorboard"], description="Trackers for the trainers (anything TRL supports, or none)."
    )
    console_every: int = Field(
        10,
        ge=1,
        description="Show every Nth training step's summary on the console (and the "
        "last and held-out ones); the run log gets every step with every metric.",
    )


class Recipe(Section):
    """One run of the loop: which stages, how many rounds, and each stage's settings."""

    name: str = Field(
        "recipe",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The recipe's name; a run folder belongs to one recipe name.",
    )
    description: str = Field("", description="What this recipe is for (shown by `imagepref recipes list`).")
    run_dir: str = Field("runs/{name}", description="Run folder ({name} is the recipe name).")
    seed: Seed = Field(0, description="Seed of every stage (each derives its own from it).")
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

    @model_validator(mode="after")
    def _stage_seeds_follow_the_recipe(self) -> Recipe:
        # A package seed the recipe leaves unset is the recipe's, so `seed=1` reseeds every stage.
        for package_settings in (self.reward.settings, self.align.dpo, self.align.grpo, self.align.ppo):
            if "seed" not in package_settings.model_fields_set:
                package_settings.seed = self.seed
        return self

    def run_path(self) -> Path:
        """The run folder, with ``{name}`` filled in."""
        return Path(self.run_dir.format(name=self.name))


def field_paths(model: type[BaseModel] = Recipe, prefix: str = "") -> dict[str, str]:
    """Every valid dotted key of ``model`` with its help text (nested sections and the packages'
    settings expanded)."""
    return settings.setting_paths(model, prefix)


def nearest_key(key: str) -> str | None:
    """The valid recipe key closest to a misspelled ``key`` (or None when nothing is close)."""
    return settings.nearest_key(key, list(field_paths()))


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to a raw recipe dict; the value is parsed as YAML."""
    return settings.apply_overrides(
        raw, overrides, Recipe, where="override", example="rounds=2 or label.annotators=3", listing=LISTING
    )


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
        raise BadInputError(
            f"recipe {path} is not valid YAML ({line}); fix the file or start from recipes/quickstart.yaml"
        ) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise BadInputError(
            f"recipe {path} must be a YAML mapping of settings (name:, stages:, ...), not a {type(raw).__name__}"
        )
    return raw


def validate_recipe(raw: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate a raw recipe mapping, the packages' settings included; the first problem becomes
    one line naming the key and fix (an unknown key: the nearest valid one)."""
    recipe = settings.validated(Recipe, raw, where, listing=LISTING)
    for stage in recipe.stages:
        if stage not in STAGES:
            close = difflib.get_close_matches(stage, STAGES, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise UnknownNameError(f"{where}: unknown stage {stage!r}; {hint}stages are {', '.join(STAGES)}")
    return recipe


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file. Relative paths in it stay relative to the
    working directory, like the command line's."""
    raw = read_recipe_file(path)
    raw = apply_overrides(raw, list(overrides or []))
    return validate_recipe(raw, where=str(path))


def _checked_prompts(value: str, key: str, names: tuple[str, ...], where: str) -> None:
    """A prompts setting names a built-in set or a prompts file that reads (encoding, ids, lines)."""
    if value in names:
        return
    from imagepref.formats import read_prompts

    path = Path(value)
    if not path.exists() and path.suffix == "" and "/" not in value:
        raise UnknownNameError(
            f"{where}: {key}: unknown prompt set {value!r}; choose one of {', '.join(names)} or a file"
        )
    try:
        read_prompts(path)
    except BadInputError as error:
        raise BadInputError(f"{where}: {key}: {error}") from None


def _check_edit_alignment(recipe: Recipe, stages: list[str], where: str) -> None:
    """A loop of edits (generate.edits) aligns on edit turns: DPO on the pulled preferences about
    edits, GRPO on ``glyphworld-edits``; PPO does not train on edits. A loop of images does not
    train GRPO on edit turns."""
    section = recipe.align
    edits = bool(recipe.generate.edits) if "generate" in stages else section.prompts == "glyphworld-edits"
    if edits and "ppo" in section.methods:
        raise BadInputError(
            f"{where}: align.methods: ppo does not train on edit turns; use dpo and grpo in a loop of edits"
        )
    if edits and "grpo" in section.methods and section.prompts != "glyphworld-edits":
        raise BadInputError(
            f"{where}: align.prompts: a loop of edits (generate.edits) trains GRPO on edit turns; "
            "set align.prompts: glyphworld-edits"
        )
    if not edits and section.prompts == "glyphworld-edits" and {"grpo", "ppo"} & set(section.methods):
        raise BadInputError(
            f"{where}: align.prompts: glyphworld-edits trains on edit turns, and this loop draws images; "
            "set generate.edits: glyphworld-edits, or align.prompts: glyphworld"
        )


def check_inputs(recipe: Recipe, where: str = "recipe") -> None:
    """Check what the recipe's stages will read, before the first stage starts (a GPU run would
    otherwise meet a wrong path hours in): the generator folder and device, every prompts file or
    set a stage in ``stages`` uses, the labeling instructions, the accelerate config, and that the
    run folder can be written. The first problem is one line naming its key."""
    from imagepref.devices import check_device
    from imagepref.files import check_output
    from imagepref.policy.config import check_generator_folder

    stages = set(recipe.stages)
    check_output(recipe.run_path(), "run_dir", may_hold_files=True)
    if recipe.generator.path is not None:
        try:
            check_generator_folder(recipe.generator.path)
        except BadInputError as error:
            raise BadInputError(f"{where}: generator.path: {error}") from None
    if "generate" in stages:
        _checked_prompts(recipe.generate.prompts, "generate.prompts", ("glyphworld",), where)
    if "label" in stages and recipe.label.instructions and not Path(recipe.label.instructions).is_file():
        raise BadInputError(
            f"{where}: label.instructions: {recipe.label.instructions} does not exist; pass a Markdown file"
        )
    if "align" in stages and {"grpo", "ppo"} & set(recipe.align.methods):
        _checked_prompts(
            recipe.align.prompts, "align.prompts", ("glyphworld", "glyphworld-align", "glyphworld-edits"), where
        )
    if "eval" in stages:
        _checked_prompts(
            recipe.eval.prompts,
            "eval.prompts",
            ("glyphworld-heldout", "glyphworld-edits-heldout", "text-rendering"),
            where,
        )
    if "align" in stages:
        _check_edit_alignment(recipe, stages, where)
    if "generate" in stages and recipe.generate.edits and "reward" in stages:
        # A reward model of edits reads the source's image tokens; only the token backbone does.
        from imagepref.reward.config import refuse_edits_on

        refuse_edits_on(recipe.reward.settings.backbone)
    accelerate = recipe.launch.accelerate_config
    if accelerate and ("align" in stages or "reward" in stages) and not Path(accelerate).is_file():
        raise BadInputError(
            f"{where}: launch.accelerate_config: {accelerate} does not exist; pass one of recipes/accelerate/*.yaml"
        )
    check_device(recipe.generator.device, f"{where}: generator.device")


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
