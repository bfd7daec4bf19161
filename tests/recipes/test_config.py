"""Recipe parsing, overrides and the command line's one-line errors."""

from __future__ import annotations

import json

import pytest
import yaml

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.recipes.config import (
    RECIPES_DIR,
    Recipe,
    apply_overrides,
    field_paths,
    load_recipe,
    nearest_key,
    validate_recipe,
)


def test_every_field_has_a_default_and_a_help_text():
    recipe = Recipe()
    assert recipe.stages[0] == "pretrain" and recipe.rounds == 1
    missing = [key for key, text in field_paths().items() if not text]
    assert missing == []


def test_shipped_recipes_validate():
    names = {path.stem for path in RECIPES_DIR.glob("*.yaml")}
    assert "quickstart" in names
    for path in RECIPES_DIR.glob("*.yaml"):
        assert load_recipe(path).name


def test_overrides_parse_values_as_yaml_and_nest(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nlabel: {annotators: 2}\n")
    recipe = load_recipe(
        path,
        ["rounds=3", "label.annotators=5", "align.methods=[dpo]", "align.dpo.beta=0.2", "generator.path=/models/x"],
    )
    assert recipe.rounds == 3 and recipe.label.annotators == 5 and recipe.align.methods == ["dpo"]
    # A package's settings are typed; the resolved recipe records them as given (the seed: the recipe's).
    assert recipe.align.dpo.beta == 0.2 and recipe.generator.path == "/models/x"
    assert recipe.model_dump(mode="json")["align"]["dpo"] == {"beta": 0.2, "seed": 0}


def test_misspelled_override_suggests_the_nearest_key():
    with pytest.raises(BadInputError, match=r"unknown key label\.anotators; did you mean label\.annotators\?"):
        apply_overrides({}, ["label.anotators=3"])
    assert nearest_key("rouns") == "rounds"
    assert nearest_key("eval.sampels") == "eval.samples"


def test_misspelled_key_in_the_file_suggests_the_nearest_key():
    with pytest.raises(BadInputError, match=r"unknown key generate\.num_promts; did you mean generate\.num_prompts\?"):
        validate_recipe({"generate": {"num_promts": 4}})


def test_package_settings_are_checked_when_the_recipe_loads():
    with pytest.raises(BadInputError, match=r"unknown key align\.dpo\.stepz; did you mean align\.dpo\.steps\?"):
        validate_recipe({"align": {"dpo": {"stepz": 3}}})
    with pytest.raises(BadInputError, match=r"reward\.settings\.backbone: Input should be 'pixel', 'token' or 'clip'"):
        validate_recipe({"reward": {"settings": {"backbone": "resnet"}}})
    assert (
        validate_recipe({"align": {"grpo": {"steps": 3, "rewards": {"weights": {"ocr": 1.0}}}}}).align.grpo.max_steps
        == 3
    )


def test_bad_values_and_unknown_stages():
    with pytest.raises(BadInputError, match=r"rounds: Input should be greater than or equal to 1"):
        validate_recipe({"rounds": 0})
    with pytest.raises(UnknownNameError, match=r"unknown stage 'algin'; did you mean align\?"):
        validate_recipe({"stages": ["generate", "algin"]})
    with pytest.raises(BadInputError, match="is not key.path=value"):
        apply_overrides({}, ["rounds"])


def test_cli_refuses_a_file_that_is_not_yaml(cli, tmp_path, one_line_error):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n  stages: {\n")
    one_line_error(cli("run", path), "not valid YAML")
    path.write_text("- just\n- a list\n")
    one_line_error(cli("run", path), "must be a YAML mapping")
    one_line_error(cli("run", tmp_path / "absent.yaml"), "does not exist")


def test_cli_refuses_unknown_stage_key_and_from(cli, micro_recipe, one_line_error):
    path = micro_recipe()
    one_line_error(cli("run", path, "stages=[generate,lable]"), "unknown stage 'lable'", "did you mean label")
    one_line_error(cli("run", path, "label.anotators=3"), "did you mean label.annotators")
    one_line_error(cli("run", path, "--from", "align"), "no stage 'align'", "pretrain, r1/generate")


def test_cli_refuses_a_stage_whose_input_cannot_be_produced(cli, micro_recipe, tmp_path, one_line_error):
    path = micro_recipe(stages=["reward"])
    one_line_error(cli("run", path), "r1/reward needs the output of r1/generate", "add generate to stages")
    path = micro_recipe(stages=["eval"], pretrain={"reuse_shipped": False})
    one_line_error(cli("run", path), "no generator to start from")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["eval"]["status"] == "failed"


def test_cli_refuses_a_run_folder_of_another_recipe_unless_forced(cli, micro_recipe, tmp_path, one_line_error):
    first = micro_recipe("first", stages=["pretrain"])
    assert cli("run", first)[0] == 0
    second = micro_recipe("second", stages=["pretrain"])
    one_line_error(cli("run", second), "was made by recipe 'first'", "--force")
    code, out, err = cli("run", second, "--force")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["recipe"] == "second"
    resolved = yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())
    assert resolved["name"] == "second" and resolved["pretrain"]["settings"]["steps"] == 4


def test_recipes_list_and_show(cli):
    code, out, _ = cli("recipes", "list")
    assert code == 0 and "recipes/quickstart.yaml" in out
    code, out, _ = cli("recipes", "show")
    assert code == 0 and "label.annotators" in out and "Simulated annotators." in out
    code, out, _ = cli("run", "--help")
    assert code == 0 and "quickstart.yaml" in out and "pretrain, generate, label" in out


def test_a_loop_of_edits_starts_from_the_shipped_generator_taught_to_edit():
    from imagepref.policy.generator import read_config
    from imagepref.policy.glyphworld import shipped_edit_generator, shipped_generator
    from imagepref.recipes.stages.generation import _shipped, pretrain_inputs

    edits = load_recipe(RECIPES_DIR / "edit-quickstart.yaml")
    assert _shipped(edits) == shipped_edit_generator() and pretrain_inputs(edits)["shipped"]
    assert "edit_training" in str(sorted(p.name for p in shipped_edit_generator().iterdir()))
    read_config(shipped_edit_generator())  # a generator folder the loop can load
    assert _shipped(load_recipe(RECIPES_DIR / "quickstart.yaml")) == shipped_generator()
