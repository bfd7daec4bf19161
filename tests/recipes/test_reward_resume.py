"""A reward stage killed midway resumes from its last epoch's checkpoint and ends where an
uninterrupted stage ends. The model is a two-member ensemble, killed while the second member
trains, so the finished first member is kept and the second resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

IMAGEPREF = Path(sys.executable).with_name("imagepref")
REWARD = {
    "settings": {"epochs": 6, "patience": 6, "members": 2, "width": 32, "layers": 1, "batch_size": 4, "image_size": 32}
}


@pytest.fixture(scope="module")
def preferences(tmp_path_factory) -> Path:
    """Glyph-world preference data (candidates included), as a label stage would leave it."""
    from imagepref.eval.ocr import get_engine
    from imagepref.policy.pretrain import micro_generator
    from imagepref.reward.synthetic import glyph_preference_data

    out = tmp_path_factory.mktemp("reward-resume") / "preferences"
    glyph_preference_data(
        out,
        micro_generator().codec,
        get_engine("tesseract").read_text,
        prompts=24,
        variants_per_prompt=3,
        annotators=2,
        seed=5,
    )
    return out


def labeled_run(root: Path, name: str, preferences: Path) -> Path:
    """A run folder whose round 1 is generated and labeled, and a recipe that trains its reward model."""
    labeled = {
        "status": "done",
        "input_hash": "labeled",
        "outputs": {"candidates": str(preferences / "candidates"), "preferences": str(preferences)},
    }
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(
        json.dumps(
            {"format": "imagepref-run/1", "recipe": name, "stages": {"r1/generate": labeled, "r1/label": labeled}}
        )
    )
    recipe = root.parent / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump({"name": name, "run_dir": str(root), "stages": ["reward"], "reward": REWARD}))
    return recipe


def manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


@pytest.mark.slow
def test_a_killed_reward_stage_resumes_from_its_last_epoch(preferences, tmp_path):
    run = tmp_path / "killed"
    recipe = labeled_run(run, "reward-resume", preferences)
    checkpoint = run / "stages" / "r1" / "reward" / "checkpoint" / "member-1"

    def saved_epochs() -> list[int]:
        # One folder per epoch's state, older ones removed once the newer is whole.
        return (
            sorted(int(p.parent.name) for p in checkpoint.glob("*/training_state.json")) if checkpoint.is_dir() else []
        )

    process = subprocess.Popen(
        [str(IMAGEPREF), "run", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if saved_epochs() and saved_epochs()[-1] >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = saved_epochs()[-1]
    assert 2 <= killed_after < 6
    assert manifest(run)["stages"]["r1/reward"]["status"] == "running"
    assert (checkpoint / str(killed_after) / "training_state.safetensors").is_file()
    assert (
        json.loads((checkpoint / str(killed_after) / "training_state.json").read_text())["__dict__"]["epoch"]
        == killed_after
    )

    done = subprocess.run([str(IMAGEPREF), "run", str(recipe)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming (last status: running)" in done.stdout
    assert f"resuming reward training after epoch {killed_after}" in done.stdout
    assert manifest(run)["stages"]["r1/reward"]["status"] == "done"
    assert saved_epochs() == [6]
    log = (run / "run.log").read_text()
    # Every epoch has its line in the run log, the ones before the kill once.
    assert [log.count(f"[r1/reward] step {e}/12 ") for e in range(1, 13)] == [1] * 12
    assert "resuming reward training after epoch 6" in done.stdout  # the first member, finished before the kill
    assert not (run / "stages" / "r1" / "reward" / "model" / ".members").exists()  # staging removed

    # The resumed stage ends with the same model as an uninterrupted one.
    straight = tmp_path / "straight"
    done = subprocess.run(
        [str(IMAGEPREF), "run", str(labeled_run(straight, "reward-straight", preferences))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    resumed_model = load_file(str(run / "stages" / "r1" / "reward" / "model" / "model.safetensors"))
    straight_model = load_file(str(straight / "stages" / "r1" / "reward" / "model" / "model.safetensors"))
    assert resumed_model.keys() == straight_model.keys()
    assert all((resumed_model[k] == straight_model[k]).all() for k in resumed_model)
    assert (
        manifest(run)["stages"]["r1/reward"]["outputs"]["val_loss"]
        == manifest(straight)["stages"]["r1/reward"]["outputs"]["val_loss"]
    )
