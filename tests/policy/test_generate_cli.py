"""`imagepref generate` end to end, and its bad inputs: one line, exit status 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from imagepref.policy.pretrain import micro_generator


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "model"
    micro_generator(seed=0).save_pretrained(path)
    return path


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "a red sign that says \\"OPEN\\"", "prompt_id": "open"}\n\n{"prompt": "the word \\"HI\\" in blue"}\n'
    )
    return path


def test_generate_writes_the_candidate_set_contract(model, prompts, tmp_path):
    out = tmp_path / "cands"
    result = run(
        "generate", "--model", str(model), "--prompts", str(prompts), "--out", str(out), "--n", "3", "--seed", "4"
    )
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out / "candidates.parquet")
    assert len(table) == 6 and table["candidate_id"].is_unique
    for column in ("candidate_id", "prompt_id", "prompt", "image_path", "image_tokens", "generator", "seed"):
        assert column in table.columns
    assert set(table["prompt_id"]) == {"open", "p3"}
    assert all((out / p).is_file() for p in table["image_path"])
    assert all(len(t) == 66 for t in table["image_tokens"])
    assert json.loads((out / "manifest.json").read_text())["images_per_prompt"] == 3
    # Same seed, same tokens.
    again = tmp_path / "again"
    run("generate", "--model", str(model), "--prompts", str(prompts), "--out", str(again), "--n", "3", "--seed", "4")
    assert (
        pd.read_parquet(again / "candidates.parquet")["image_tokens"].map(list).tolist()
        == table["image_tokens"].map(list).tolist()
    )


def _foreign_family(model, tmp_path):
    folder = tmp_path / "foreign"
    subprocess.run(["cp", "-r", str(model), str(folder)], check=True)
    config = json.loads((folder / "imagepref.json").read_text())
    config["family"] = "dalle9"
    (folder / "imagepref.json").write_text(json.dumps(config))
    return folder


def _mismatched_codec(model, tmp_path):
    folder = tmp_path / "mismatch"
    subprocess.run(["cp", "-r", str(model), str(folder)], check=True)
    config = json.loads((folder / "imagepref.json").read_text())
    config["num_image_tokens"] += 5
    (folder / "imagepref.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing model", "does not exist"),
        ("foreign folder", "not an imagepref generator folder"),
        ("unknown family", "unknown generator family"),
        ("codec mismatch", "codec has"),
        ("empty prompts", "has no prompts"),
        ("malformed prompts", "is not a JSON object"),
        ("n zero", "--n must be at least 1"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(model, prompts, tmp_path, case, message, one_line_error):
    model_arg, prompts_arg, n = str(model), str(prompts), "2"
    if case == "missing model":
        model_arg = str(tmp_path / "nothing")
    elif case == "foreign folder":
        (tmp_path / "some").mkdir()
        model_arg = str(tmp_path / "some")
    elif case == "unknown family":
        model_arg = str(_foreign_family(model, tmp_path))
    elif case == "codec mismatch":
        model_arg = str(_mismatched_codec(model, tmp_path))
    elif case == "empty prompts":
        prompts_arg = str(tmp_path / "empty.txt")
        (tmp_path / "empty.txt").write_text("\n  \n")
    elif case == "malformed prompts":
        prompts_arg = str(tmp_path / "bad.jsonl")
        (tmp_path / "bad.jsonl").write_text('{"text": "no prompt key"}\n')
    elif case == "n zero":
        n = "0"
    out = tmp_path / "out"
    result = run("generate", "--model", model_arg, "--prompts", prompts_arg, "--out", str(out), "--n", n)
    one_line_error(result, message)
    assert not out.exists() and not list(tmp_path.glob(".out.partial"))
