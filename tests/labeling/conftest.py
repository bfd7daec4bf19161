"""Fixtures for the labeling tests: tiny candidate sets drawn with PIL, and real Label Studio servers.

The first start of a fresh data dir runs Label Studio's migrations (about 70 s), so one migrated
state folder is built per test session and copied for each server, which then starts in seconds.
Set IMAGEPREF_TEST_LS_TEMPLATE to a folder to keep that template between sessions.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imagepref.labeling.connection import connect
from imagepref.labeling.server import install_label_studio, start_server, stop_server

COLOURS = {"red": (230, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 230), "grey": (128, 128, 128)}


def free_port() -> int:
    """A port nothing listens on at the moment, on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_candidate_set(folder: Path, prompts: int = 3, colours: tuple[str, ...] = tuple(COLOURS)) -> Path:
    """A candidate set in the contract format: one coloured square per (prompt, colour)."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for prompt in range(prompts):
        for seed, colour in enumerate(colours):
            candidate = f"c{prompt}-{colour}"
            Image.new("RGB", (16, 16), COLOURS[colour]).save(folder / "images" / f"{candidate}.png")
            rows.append(
                {
                    "candidate_id": candidate,
                    "prompt_id": f"p{prompt}",
                    "prompt": f'a sign that says "word{prompt}"',
                    "image_path": f"images/{candidate}.png",
                    "image_tokens": [1, 2, 3],
                    "generator": "test:0",
                    "seed": seed,
                    "temperature": 1.0,
                }
            )
    pd.DataFrame(rows).to_parquet(folder / "candidates.parquet")
    return folder


def red_judge(prompt: str, left: Path, right: Path) -> dict[str, str]:
    """A judge that prefers the redder image on aesthetics, the greener on fidelity, ties safety."""
    first, second = Image.open(left).getpixel((0, 0)), Image.open(right).getpixel((0, 0))

    def pick(a: int, b: int) -> str:
        return "left" if a > b else "right" if b > a else "tie"

    return {"aesthetics": pick(first[0], second[0]), "prompt_fidelity": pick(first[1], second[1]), "safety": "tie"}


@pytest.fixture(scope="session")
def label_studio_template(tmp_path_factory) -> Path:
    """A migrated, stopped server state folder (data dir + secrets) to copy for each server."""
    install_label_studio()
    kept = os.environ.get("IMAGEPREF_TEST_LS_TEMPLATE")
    template = Path(kept) if kept else tmp_path_factory.mktemp("ls-template") / "state"
    if (template / "data" / "label_studio.sqlite3").is_file():
        return template
    files = template.parent / "template-files"
    try:
        start_server(template, free_port(), files)
    finally:
        stop_server(template)
    (template / "server.log").unlink(missing_ok=True)
    return template


class RunningServer:
    """A started copy of the template: its state folder, files root and admin connection."""

    def __init__(self, state_dir: Path, files_root: Path, port: int) -> None:
        self.state_dir, self.files_root, self.port = state_dir, files_root, port
        self.connection = connect(state_dir=state_dir)
        self.url = self.connection.url

    def restart(self) -> None:
        stop_server(self.state_dir)
        start_server(self.state_dir, self.port, self.files_root)


def start_copy(template: Path, where: Path) -> RunningServer:
    """Copy the template into `where` and start it on a free port."""
    state = where / "state"
    shutil.copytree(template, state)
    files = where / "files"
    files.mkdir(parents=True)
    port = free_port()
    start_server(state, port, files, timeout_s=180)
    return RunningServer(state, files, port)


@pytest.fixture(scope="module")
def label_server(label_studio_template, tmp_path_factory):
    """One running Label Studio shared by the tests of a module (each uses its own project title)."""
    server = start_copy(label_studio_template, tmp_path_factory.mktemp("ls"))
    try:
        yield server
    finally:
        server.connection.close()
        stop_server(server.state_dir)


@pytest.fixture
def candidate_set():
    """`make_candidate_set` as a fixture (test modules cannot import conftest under importlib mode)."""
    return make_candidate_set


@pytest.fixture
def judge():
    """The red/green judge as a fixture."""
    return red_judge


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()
