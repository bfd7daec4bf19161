"""`imagepref generate` and `imagepref eval` on tiny Emu3, Janus and causal-VQ folders, and the families'
bad inputs through the real command line: one line, exit status 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imagepref.policy.families.causal_vq import CausalVQGenerator
from imagepref.policy.families.emu3 import Emu3Generator
from imagepref.policy.families.janus import JanusGenerator

pytestmark = pytest.mark.integration

BUILDERS = {"emu3": Emu3Generator, "janus": JanusGenerator, "causal-vq": CausalVQGenerator}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    paths = {}
    for family, builder in BUILDERS.items():
        paths[family] = root / family
        builder.tiny(seed=1).save_pretrained(paths[family])
    return paths


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text('a sign that says "OPEN"\nthe word "HI" in blue\n')
    return path


@pytest.mark.slow
@pytest.mark.parametrize("family", list(BUILDERS))
def test_generate_writes_a_candidate_set(family, folders, prompts, tmp_path):
    out = tmp_path / "candidates"
    result = run("generate", "--model", str(folders[family]), "--prompts", str(prompts), "--out", str(out), "--n", "2")
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out / "candidates.parquet")
    generator = BUILDERS[family].tiny(seed=1)
    assert len(table) == 4 and table["generator"].str.startswith(f"{family}:").all()
    assert {len(tokens) for tokens in table["image_tokens"]} == {generator.num_codes}
    assert all((out / path).is_file() for path in table["image_path"])


@pytest.mark.slow
def test_eval_scores_a_family_checkpoint(folders, prompts, tmp_path):
    out = tmp_path / "eval"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "imagepref.recipes.cli",
            "eval",
            "--quiet",
            "--workers",
            "1",
            "--checkpoints",
            str(folders["janus"]),
            str(folders["emu3"]),
            "--prompts",
            str(prompts),
            "--samples",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert [c["name"] for c in results["checkpoints"]] == ["janus", "emu3"]
    assert all(len(c["images"]) == 4 for c in results["checkpoints"])
    assert (out / "report.html").is_file()


def test_a_plain_text_model_folder_is_no_known_family(tmp_path, prompts, one_line_error):
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "text-only"
    LlamaForCausalLM(
        LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(folder)
    result = run("generate", "--model", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    one_line_error(result, "llama", "no known generator family", "causal_vq")
    assert not (tmp_path / "out").exists()


def test_an_unknown_family_name_is_refused(folders, tmp_path, prompts, one_line_error):
    folder = tmp_path / "renamed"
    folder.mkdir()
    config = json.loads((folders["causal-vq"] / "imagepref.json").read_text())
    (folder / "imagepref.json").write_text(json.dumps({**config, "family": "dalle"}))
    result = run("generate", "--model", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    one_line_error(result, "dalle", "causal-vq", "emu3", "janus")


def test_a_codec_with_another_code_count_is_refused(folders, tmp_path, prompts, one_line_error):
    import shutil

    from diffusers import VQModel

    folder = tmp_path / "mismatch"
    shutil.copytree(folders["causal-vq"], folder)
    codec_config = json.loads((folder / "codec" / "config.json").read_text())
    codec_config = {k: v for k, v in codec_config.items() if not k.startswith("_")}
    shutil.rmtree(folder / "codec")
    VQModel(**{**codec_config, "num_vq_embeddings": 32}).save_pretrained(folder / "codec")
    result = run("generate", "--model", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    one_line_error(result, "32 codes", "64")
    assert not (tmp_path / "out").exists()


def test_remote_code_needs_the_flag(folders, tmp_path, prompts, one_line_error):
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(folders["causal-vq"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModelForCausalLM": "x.Model"}}))
    result = run("generate", "--model", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "out"))
    one_line_error(result, "--trust-remote-code")


def test_a_janus_folder_without_imagepref_json_loads_from_its_transformers_config(folders, tmp_path):
    import shutil

    from imagepref.policy.generator import load_generator

    folder = tmp_path / "plain-janus"
    shutil.copytree(folders["janus"], folder)
    (folder / "imagepref.json").unlink()
    generator = load_generator(folder)
    assert generator.family == "janus" and generator.config == load_generator(folders["janus"]).config


def test_an_emu3_folder_without_imagepref_json_gets_the_processor_default_grid(folders, tmp_path):
    import shutil

    from imagepref.policy.generator import load_generator

    folder = tmp_path / "plain-emu3"
    shutil.copytree(folders["emu3"], folder)
    (folder / "imagepref.json").unlink()
    generator = load_generator(folder)
    # Emu3's processor default: 518,400 pixels at 1:1, here with a VQ that downsamples 8x.
    assert generator.family == "emu3" and generator.config.grid == (90, 90)
    assert generator.config.image_size == (720, 720)
    assert len(generator.block_layout()) == 90 * 91 + 3
    assert generator.config.extra["negative_prompt"].startswith("lowres")


@pytest.mark.slow
def test_families_that_cannot_edit_are_refused_by_the_edit_commands(folders, tmp_path, one_line_error):
    out = tmp_path / "out"
    for family in ("emu3", "janus"):
        done = run(
            "generate",
            "--model",
            str(folders[family]),
            "--edits",
            "glyphworld-edits",
            "--limit",
            "1",
            "--out",
            str(out),
        )
        one_line_error(done, f"the {family} family cannot edit images")
        evaluated = run(
            "eval",
            "--checkpoints",
            str(folders[family]),
            "--prompts",
            "glyphworld-edits-heldout",
            "--limit",
            "1",
            "--out",
            str(out),
            "--quiet",
        )
        one_line_error(evaluated, f"the {family} family cannot edit images")
        assert not out.exists() or not any((out / "images").glob("*")), "nothing drawn before the refusal"
