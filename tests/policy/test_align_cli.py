"""`imagepref align` through the real command line: bad inputs give one line and exit status 2
with nothing written; a small GRPO run writes its adapter, checkpoints, held-out monitoring and
TensorBoard events; merge writes a loadable generator."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from imagepref.policy.generator import load_generator
from imagepref.policy.pretrain import micro_generator

pytestmark = pytest.mark.integration


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", "align", *args], capture_output=True, text=True, timeout=900
    )


def test_unknown_reward_and_unknown_setting_are_refused(micro_folder, tmp_path, one_line_error):
    out = tmp_path / "run"
    one_line_error(
        run("grpo", "--base", str(micro_folder), "--out", str(out), "--reward", "rule_sharpness=1"), "rule_sharpness"
    )
    one_line_error(run("ppo", "--base", str(micro_folder), "--out", str(out), "stepz=3"), "stepz")
    one_line_error(
        run("ppo", "--base", str(micro_folder), "--out", str(out), "temperature=0.8"), "temperature", "raw policy"
    )
    one_line_error(
        run("dpo", "--base", str(micro_folder), "--out", str(out), "on_policy.rewards={rule_sharpness: 1}"),
        "rule_sharpness",
    )
    assert not out.exists()


def test_preferences_without_tokens_or_with_foreign_tokens_are_refused(
    micro_folder, tmp_path, preference_writer, one_line_error
):
    generator = load_generator(micro_folder)
    candidates = preference_writer(generator, tmp_path)
    for name, frame, word in (
        ("stripped", candidates.drop(columns=["image_tokens"]), "image_tokens"),
        (
            "foreign",
            candidates.assign(image_tokens=[[t + 10_000 for t in tokens] for tokens in candidates["image_tokens"]]),
            "outside",
        ),
    ):
        folder = tmp_path / name
        folder.mkdir()
        frame.to_parquet(folder / "candidates.parquet")
        out = tmp_path / f"run-{name}"
        one_line_error(
            run(
                "dpo",
                "--base",
                str(micro_folder),
                "--out",
                str(out),
                "--ocr-engine",
                "tesseract",
                "--preferences",
                str(tmp_path / "preferences"),
                "--candidates",
                str(folder),
            ),
            word,
        )
        assert not out.exists()


@pytest.mark.slow
def test_grpo_run_monitors_resumes_only_itself_and_merges(micro_folder, tmp_path, one_line_error):
    out = tmp_path / "run"
    result = run(
        "grpo",
        "--base",
        str(micro_folder),
        "--out",
        str(out),
        "--ocr-engine",
        "tesseract",
        "--reward",
        "ocr=1",
        "--reward",
        "rule_safety=0.5",
        "--num-prompts",
        "8",
        "steps=2",
        "batch_size=4",
        "num_generations=2",
        "save_every=1",
        "monitor_every=2",
        "monitor_prompts=4",
        "report_to=[tensorboard]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The console: one short line a step (held-out figures on the measured step), no library warnings.
    assert re.search(r"^grpo step 1/2  loss \S+  reward \S+  kl \S+$", result.stdout, re.M), result.stdout
    assert re.search(r"^grpo step 2/2  loss \S+  reward \S+  kl \S+  held-out ocr \S+ kl \S+$", result.stdout, re.M)
    assert "grad_norm" not in result.stdout and "Warning" not in result.stderr, result.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "checkpoint-1").is_dir() and (out / "checkpoint-2").is_dir()
    assert list((out / "runs").rglob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    monitored = [r for r in records if "heldout/ocr_word_accuracy" in r]
    assert [r["step"] for r in monitored] == [0, 2]
    for key in (
        "heldout/aesthetics",
        "heldout/prompt_fidelity",
        "heldout/safety",
        "heldout/kl",
        "heldout/safety_violation_rate",
    ):
        assert key in monitored[-1]
    assert abs(monitored[0]["heldout/kl"]) < 1e-4
    assert any("rewards/ocr/mean" in r for r in records)
    record = json.loads((out / "align.json").read_text())
    assert record["settings"]["rewards"]["weights"] == {"ocr": 1.0, "rule_safety": 0.5}

    # Another method's settings cannot resume this folder; without --resume it is not overwritten.
    one_line_error(run("ppo", "--base", str(micro_folder), "--out", str(out), "--resume"), "another run")
    one_line_error(run("grpo", "--base", str(micro_folder), "--out", str(out)), "already holds a run")

    other = tmp_path / "other-base"
    micro_generator(seed=0, model_seed=3).save_pretrained(other)
    one_line_error(run("merge", str(out), "--out", str(tmp_path / "bad"), "--base", str(other)), "another base")
    assert not (tmp_path / "bad").exists()
    merged = tmp_path / "merged"
    result = run("merge", str(out), "--out", str(merged))
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_generator(merged).num_codes == load_generator(micro_folder).num_codes
