"""The command line's help: `--version`, and `--help` of the commands that take key=value settings lists every one with its default and bounds."""

import os
import subprocess
import sys

import pytest


def help_text(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", *args, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    "method, expected",
    [
        ("dpo", ["beta = ", "max_steps = 100 (> 0)", "lr_scheduler_type = 'constant'", "warmup_steps = "]),
        ("grpo", ["num_generations = ", "learning_rate = 0.0005 (> 0)", "gradient_accumulation_steps = "]),
    ],
)
def test_align_help_lists_every_setting(method, expected):
    text = help_text("align", method)
    settings = text.split("Settings, as key=value")[1]
    for fragment in expected:
        assert fragment in settings, fragment


def test_reward_train_help_lists_reward_config_fields():
    text = help_text("reward", "train")
    settings = text.split("Settings, as key=value")[1]
    assert "lr = " in settings and "members = None (>= 1)" in settings and "backbone = " in settings


def test_version_prints_the_installed_version():
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == f"imagepref {version('imagepref')}"


def test_flags_show_no_value_type_and_options_keep_theirs():
    text = help_text("eval")
    quiet = next(line for line in text.splitlines() if "--quiet" in line)
    samples = next(line for line in text.splitlines() if "--samples" in line)
    assert "<bool>" not in text, quiet
    assert "<int>" in samples


def test_help_into_a_pipe_closed_early_ends_without_a_traceback():
    """`imagepref run --help | head -1`: the reader goes away; the command stops quietly."""
    command = [sys.executable, "-m", "imagepref.recipes.cli", "run", "--help"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"}
    )
    process.stdout.readline()
    process.stdout.close()  # like head after its first line
    stderr = process.stderr.read().decode()
    process.wait(timeout=300)
    assert "Traceback" not in stderr, stderr
