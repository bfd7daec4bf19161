"""Fixtures for the recipe tests: the command line run in-process, and micro recipes.

A micro recipe pretrains a one-layer, 32-wide glyph generator for a few steps, so every stage
runs for real in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MICRO_PRETRAIN = {
    "num_shapes": 48,
    "codec_images": 120,
    "codec_iterations": 2,
    "hidden_size": 32,
    "layers": 1,
    "heads": 2,
    "steps": 4,
    "batch_size": 4,
    "checkpoint_every": 2,
    "warmup": 1,
    "letter_init": False,
}


@pytest.fixture
def cli(capsys):
    """Run ``imagepref ARGS`` in this process; returns (exit status, stdout, stderr)."""
    from imagepref.recipes.cli import main

    def invoke(*args: str) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def merge(target: dict, changes: dict) -> dict:
    """Merge ``changes`` into ``target`` section by section (nested dicts are merged, not replaced)."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


@pytest.fixture
def micro_recipe(tmp_path):
    """Write a micro recipe (stages without Label Studio by default) and return its path."""

    def write(name: str = "micro", **sections) -> Path:
        recipe = {
            "name": name,
            "run_dir": str(tmp_path / "run"),
            "stages": ["pretrain", "generate", "eval", "report"],
            "pretrain": {"reuse_shipped": False, "settings": dict(MICRO_PRETRAIN)},
            "generate": {"num_prompts": 3, "images_per_prompt": 2, "batch_size": 8},
            "eval": {"limit": 3, "samples": 1, "ocr_engine": "tesseract", "workers": 1},
        }
        merge(recipe, sections)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


def free_port() -> int:
    """A loopback port nothing listens on at the moment."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


@pytest.fixture(scope="session")
def label_studio_state(tmp_path_factory) -> Path:
    """A migrated, stopped Label Studio state folder to copy into a run folder, so the server
    starts in seconds instead of migrating for about 70 s (IMAGEPREF_TEST_LS_TEMPLATE keeps it)."""
    import os

    from imagepref.labeling.server import install_label_studio, start_server, stop_server

    install_label_studio()
    kept = os.environ.get("IMAGEPREF_TEST_LS_TEMPLATE")
    template = Path(kept) if kept else tmp_path_factory.mktemp("ls-template") / "state"
    if not (template / "data" / "label_studio.sqlite3").is_file():
        try:
            start_server(template, free_port(), template.parent / "template-files")
        finally:
            stop_server(template)
        (template / "server.log").unlink(missing_ok=True)
    return template
