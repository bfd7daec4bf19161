"""One strict settings system: a misspelled key anywhere, in a file or a key=value override, is one
error naming the nearest valid key, and a value out of its declared bounds is one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from imagepref.errors import BadInputError, ImagePrefError
from imagepref.recipes.config import RECIPES_DIR, Recipe, apply_overrides, field_paths, load_recipe, validate_recipe
from imagepref.settings import setting_paths

QUICKSTART = RECIPES_DIR / "quickstart.yaml"


def _misspelled(name: str) -> str:
    """``name`` with its next-to-last letter left out (``annotators`` -> ``annotatos``)."""
    return name[:-2] + name[-1]


def _nested(dotted: str, value) -> dict:
    """``a.b.c`` as ``{"a": {"b": {"c": value}}}``: the key as a recipe file writes it."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def _misspelled_key_per_section() -> list[tuple[str, str]]:
    """(misspelled key, valid key) for every settings model a recipe holds: the recipe itself, each
    section, each package's settings and the models nested in them. Each model's longest field is
    misspelled, so the nearest key is that field and nothing else."""
    sections: dict[str, str] = {}
    for path in field_paths():
        section, _, name = path.rpartition(".")
        if len(name) > len(sections.get(section, "").rpartition(".")[2]):
            sections[section] = path
    table = []
    for section, path in sorted(sections.items()):
        name = path.rpartition(".")[2]
        table.append(((f"{section}." if section else "") + _misspelled(name), path))
    return table


SECTIONS = _misspelled_key_per_section()


def test_the_table_covers_every_section_and_every_nested_settings_model():
    covered = {valid.rpartition(".")[0] for _, valid in SECTIONS}
    expected = {
        "",
        "generator",
        "pretrain",
        "pretrain.settings",
        "generate",
        "label",
        "reward.settings",
        "align",
        "align.dpo",
        "align.dpo.pairs",
        "align.dpo.on_policy",
        "align.grpo",
        "align.grpo.rewards",
        "align.ppo",
        "align.ppo.rewards",
        "eval",
        "launch",
        "logging",
    }
    assert expected <= covered, expected - covered


@pytest.mark.parametrize("typo, valid", SECTIONS, ids=[valid for _, valid in SECTIONS])
def test_a_misspelled_key_in_a_recipe_file_names_the_nearest_key(typo, valid):
    with pytest.raises(BadInputError) as error:
        validate_recipe(_nested(typo, 1), where="r.yaml")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"r.yaml: unknown key {typo}; did you mean {valid}?"), message


@pytest.mark.parametrize("typo, valid", SECTIONS, ids=[valid for _, valid in SECTIONS])
def test_a_misspelled_override_names_the_nearest_key(typo, valid):
    with pytest.raises(BadInputError) as error:
        apply_overrides(yaml.safe_load(QUICKSTART.read_text()), [f"{typo}=1"])
    assert str(error.value) == f"override: unknown key {typo}; did you mean {valid}?"


OUT_OF_RANGE = [
    ("pretrain.settings.steps=0", "pretrain.settings.steps", "greater than or equal to 1"),
    ("pretrain.settings.layers=0", "pretrain.settings.layers", "greater than or equal to 1"),
    ("pretrain.settings.hidden_size=30", "pretrain.settings", "must be a multiple of 2 x heads"),
    ("generate.top_p=1.5", "generate.top_p", "less than or equal to 1"),
    ("generate.temperature=0", "generate.temperature", "greater than 0"),
    ("generate.guidance_scale=-2", "generate.guidance_scale", "greater than or equal to 0"),
    ("generate.top_k=-5", "generate.top_k", "greater than or equal to 0"),
    ("generate.batch_size=0", "generate.batch_size", "greater than or equal to 1"),
    ("eval.temperature=0", "eval.temperature", "greater than 0"),
    ("eval.top_p=1.5", "eval.top_p", "less than or equal to 1"),
    ("eval.limit=-1", "eval.limit", "greater than or equal to 0"),
    ("label.error_rate=2", "label.error_rate", "less than or equal to 1"),
    ("label.port=70000", "label.port", "less than or equal to 65535"),
    ("label.overlap=0", "label.overlap", "greater than or equal to 1"),
    ("reward.settings.lr=-1", "reward.settings.lr", "greater than 0"),
    ("reward.settings.batch_size=0", "reward.settings.batch_size", "greater than or equal to 1"),
    ("reward.settings.epochs=0", "reward.settings.epochs", "greater than or equal to 1"),
    ("reward.settings.val_fraction=1.5", "reward.settings.val_fraction", "less than 1"),
    ("reward.settings.width=30", "reward.settings", "must be a multiple of heads"),
    ("align.dpo.lora_r=0", "align.dpo.lora_r", "greater than or equal to 1"),
    ("align.grpo.learning_rate=-1", "align.grpo.learning_rate", "greater than 0"),
    ("align.grpo.steps=0", "align.grpo.max_steps", "greater than 0"),
    ("seed=18446744073709551616", "seed", "less than or equal to 4294967295"),
    ("reward.settings.seed=-1", "reward.settings.seed", "greater than or equal to 0"),
]


@pytest.mark.parametrize("override, key, bound", OUT_OF_RANGE, ids=[o for o, _, _ in OUT_OF_RANGE])
def test_a_value_out_of_range_is_one_line_naming_the_key(override, key, bound):
    with pytest.raises(BadInputError) as error:
        load_recipe(QUICKSTART, [override])
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{QUICKSTART}: {key}: "), message
    assert bound in message, message


def test_package_settings_left_unset_take_the_recipe_seed_and_are_recorded_as_given():
    recipe = validate_recipe({"seed": 7, "reward": {"settings": {"epochs": 3}}, "align": {"grpo": {"seed": 1}}})
    assert recipe.reward.settings.seed == 7 and recipe.align.dpo.seed == 7 and recipe.align.grpo.seed == 1
    record = recipe.model_dump(mode="json")
    assert record["reward"]["settings"] == {"epochs": 3, "seed": 7}
    assert validate_recipe(record).model_dump(mode="json") == record  # the record runs again as it ran


def test_the_sampling_keys_recipes_write_today_still_load():
    recipe = load_recipe(QUICKSTART, ["generate.top_k=5", "eval.batch_size=8"])
    assert recipe.generate.sampler() == {"guidance_scale": None, "temperature": 1.0, "top_k": 5, "top_p": 1.0}
    assert recipe.eval.batch_size == 8
    for path in RECIPES_DIR.glob("*.yaml"):
        assert load_recipe(path).name


def test_every_key_has_a_help_text_and_recipes_show_lists_the_package_settings():
    paths = field_paths()
    assert {"reward.settings.lr", "pretrain.settings.hidden_size", "align.grpo.lora_r", "generate.top_p"} <= set(paths)
    assert setting_paths(Recipe) == paths


def test_reward_config_overrides_and_files_name_the_nearest_key():
    from imagepref.reward.config import RewardConfig, config_with_overrides, validated_config

    with pytest.raises(BadInputError, match=r"^reward config: unknown key patiense; did you mean patience\?$"):
        config_with_overrides(RewardConfig(), ["patiense=3"])
    with pytest.raises(BadInputError, match=r"^reward config: unknown key max_grad_nom; did you mean max_grad_norm\?$"):
        validated_config({"max_grad_nom": 2})
    with pytest.raises(BadInputError, match=r"^reward config: lr: Input should be greater than 0$"):
        config_with_overrides(RewardConfig(), ["lr=-1"])
    assert config_with_overrides(RewardConfig(), ["lr=1e-3", "lora_targets=[q_proj]"]).lr == 0.001


def test_labeling_config_files_name_the_nearest_key(tmp_path):
    from imagepref.labeling.config import LabelingConfig

    path = tmp_path / "labeling.yaml"
    path.write_text("overlapp: 3\n")
    with pytest.raises(BadInputError, match=r"^labeling config: unknown key overlapp; did you mean overlap\?$"):
        LabelingConfig.load(path)
    path.write_text("gold_rate: 2\n")
    with pytest.raises(BadInputError, match=r"^labeling config: gold_rate: Input should be less than or equal to 1$"):
        LabelingConfig.load(path)


def test_align_settings_files_and_overrides_name_the_nearest_key(tmp_path):
    from imagepref.recipes.commands.align import load_settings

    with pytest.raises(BadInputError, match=r"unknown key lora_rr; did you mean lora_r\?"):
        load_settings("grpo", None, ["lora_rr=8"])
    path = tmp_path / "dpo.yaml"
    path.write_text("pairs: {tie_wieght: 0.5}\n")
    with pytest.raises(BadInputError, match=r"unknown key pairs\.tie_wieght; did you mean pairs\.tie_weight\?"):
        load_settings("dpo", path, [])
    with pytest.raises(BadInputError, match=r"lora_r: Input should be greater than or equal to 1"):
        load_settings("dpo", None, ["lora_r=0"])


def test_pretrain_and_sampling_configs_check_their_bounds():
    from pydantic import ValidationError

    from imagepref.policy.config import PretrainConfig, SamplingConfig

    for bad in ({"hidden_size": 30}, {"layers": 0}, {"steps": 0}, {"lr": 0}, {"unconditional_rate": 2}, {"typo": 1}):
        with pytest.raises(ValidationError):
            PretrainConfig(**bad)
    for bad in (
        {"top_p": 0},
        {"top_p": 1.5},
        {"temperature": 0},
        {"top_k": -1},
        {"guidance_scale": -2},
        {"batch_size": 0},
        {"tempreature": 1},
    ):
        with pytest.raises(ValidationError):
            SamplingConfig(**bad)
    assert PretrainConfig(hidden_size=32, heads=2).hidden_size == 32


def test_a_package_that_fails_to_import_is_an_error_not_a_skipped_check(monkeypatch):
    import imagepref.recipes.config as recipes_config

    monkeypatch.setitem(sys.modules, "imagepref.reward.config", None)  # importing it now raises ImportError
    with pytest.raises(ImagePrefError, match="reward and align settings cannot be checked"):
        recipes_config.Recipe.model_rebuild(force=True)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_refuses_a_misspelled_recipe_setting_in_one_line(one_line_error, tmp_path):
    one_line_error(
        _cli("run", str(QUICKSTART), "reward.settings.lerning_rate=1"),
        "unknown key reward.settings.lerning_rate",
        "did you mean reward.settings.",
    )


def test_cli_refuses_an_option_out_of_range_in_one_line(one_line_error, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('a sign that says "HI"\n')
    out = tmp_path / "out"
    one_line_error(
        _cli(
            "generate",
            "--model",
            str(tmp_path / "model"),
            "--prompts",
            str(prompts),
            "--out",
            str(out),
            "--top-p",
            "1.5",
        ),
        "--top-p must be at most 1",
    )
    assert not out.exists()
