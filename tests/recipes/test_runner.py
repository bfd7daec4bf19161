"""The stage runner: skipping unchanged stages, reruns on change, --from, and resuming a killed stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

IMAGEPREF = Path(sys.executable).with_name("imagepref")


def _manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def _finished(run: Path) -> dict[str, int]:
    return {key: entry["attempts"] for key, entry in _manifest(run)["stages"].items()}


@pytest.mark.slow
def test_unchanged_stages_are_skipped_and_changes_rerun_only_downstream(cli, micro_recipe, tmp_path):
    run = tmp_path / "run"
    path = micro_recipe()
    code, out, err = cli("run", path)
    assert code == 0, err
    stages = _manifest(run)["stages"]
    assert [k for k, e in stages.items() if e["status"] == "done"] == ["pretrain", "r1/generate", "eval", "report"]
    candidates = run / stages["r1/generate"]["outputs"]["candidates"]
    assert len(list((candidates / "images").glob("*.png"))) == 6
    results = json.loads((run / stages["eval"]["outputs"]["results"]).read_text())
    assert [c["name"] for c in results["checkpoints"]] == ["base"]
    assert (run / "summary.md").read_text().count("OCR word accuracy:") == 1
    assert "[r1/generate] step 6/6" in (run / "run.log").read_text()
    first = _finished(run)

    code, out, err = cli("run", path)
    assert code == 0, err
    assert out.count("unchanged, skipped") == 4
    assert _finished(run) == first

    # A generate setting reruns generate (and what reads its output), not pretrain, and not eval,
    # which samples its own held-out images.
    code, out, err = cli("run", path, "generate.num_prompts=2")
    assert code == 0, err
    after = _finished(run)
    assert after["r1/generate"] == first["r1/generate"] + 1
    assert all(after[k] == first[k] for k in ("pretrain", "eval", "report"))
    # An eval setting reruns eval and report only.
    code, out, err = cli("run", path, "generate.num_prompts=2", "eval.limit=2")
    assert code == 0, err
    changed = _finished(run)
    assert [k for k in changed if changed[k] != after[k]] == ["eval", "report"]
    after = changed
    assert len(list((candidates / "images").glob("*.png"))) == 4

    # --from forces a stage and those after it, even with nothing changed.
    code, out, err = cli("run", path, "generate.num_prompts=2", "eval.limit=2", "--from", "eval")
    assert code == 0, err
    forced = _finished(run)
    assert forced["r1/generate"] == after["r1/generate"] and forced["eval"] != after["eval"]
    assert "restarting (--from)" in out


@pytest.mark.slow
def test_a_stage_killed_midway_resumes_from_its_checkpoint(micro_recipe, tmp_path):
    settings = {"steps": 10, "checkpoint_every": 1}
    path = micro_recipe(stages=["pretrain"], pretrain={"settings": settings})
    run = tmp_path / "run"
    state = run / "stages" / "pretrain" / "generator" / "checkpoint" / "state.json"
    process = subprocess.Popen(
        [str(IMAGEPREF), "run", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if state.is_file() and json.loads(state.read_text())["step"] >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 2 <= killed_at < 10
    assert _manifest(run)["stages"]["pretrain"]["status"] == "running"

    done = subprocess.run([str(IMAGEPREF), "run", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming (last status: running)" in done.stdout
    assert "resuming from" in done.stdout
    assert _manifest(run)["stages"]["pretrain"]["status"] == "done"
    resumed = json.loads((run / "stages" / "pretrain" / "generator" / "pretrain.json").read_text())["losses"]

    # The resumed run ends where an uninterrupted one ends.
    straight = micro_recipe(
        "straight", stages=["pretrain"], run_dir=str(tmp_path / "straight"), pretrain={"settings": settings}
    )
    done = subprocess.run([str(IMAGEPREF), "run", str(straight)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = json.loads((tmp_path / "straight" / "stages" / "pretrain" / "generator" / "pretrain.json").read_text())[
        "losses"
    ]
    assert len(resumed) == 10 and resumed == expected
