"""Human mode: the run invites people, shows progress, and goes on with --continue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

IMAGEPREF = Path(sys.executable).with_name("imagepref")


def _wait_for(path: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.is_file() else ""
        if text in content:
            return content
        assert process.poll() is None, process.communicate()[1]
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared in {path}")


@pytest.mark.slow
@pytest.mark.integration
def test_human_loop_shows_progress_and_continues_on_request(micro_recipe, label_studio_state, unused_port, tmp_path):
    from imagepref.labeling import connect, simulate
    from imagepref.labeling.server import stop_server

    run = tmp_path / "run"
    shutil.copytree(label_studio_state, run / "label-studio")
    path = micro_recipe(
        "people",
        stages=["pretrain", "generate", "label"],
        label={"mode": "human", "port": unused_port, "invite": ["ann@example.org"], "quota": 3, "poll_seconds": 0.5},
    )
    process = subprocess.Popen(
        [str(IMAGEPREF), "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        log = _wait_for(run / "run.log", "progress: aesthetics 0/3", process)
        assert "invited ann@example.org: http://127.0.0.1:" in log and "(0600; hand it over privately)" in log
        assert f"label at http://127.0.0.1:{unused_port}/projects/" in log
        # Someone labels one pair through the API, as the browser would.
        connection = connect(state_dir=run / "label-studio")
        simulate(
            connection,
            "people run round 1",
            lambda prompt, left, right: {"aesthetics": "left", "prompt_fidelity": "right", "safety": "tie"},
            run / "label-studio" / "people.json",
            annotators=1,
            error_rate=0.0,
            limit=1,
        )
        _wait_for(run / "run.log", "progress: aesthetics 1/3", process)
        told = subprocess.run(
            [str(IMAGEPREF), "run", str(path), "--continue"], capture_output=True, text=True, timeout=120
        )
        assert told.returncode == 0, told.stderr
        assert "to continue with the labels it has" in told.stdout
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
        stop_server(run / "label-studio")
    manifest = json.loads((run / "manifest.json").read_text())
    label = manifest["stages"]["r1/label"]
    assert label["status"] == "done" and label["outputs"]["judgments"] == 1
    assert "continuing with the labels so far (--continue)" in out
    assert "left running for the annotators" in out
