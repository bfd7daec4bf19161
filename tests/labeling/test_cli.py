"""`imagepref label ...` on bad input: one line naming the problem, exit status 2, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest


def run_label(*args: str, token: str = "not-used", cwd=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "LABEL_STUDIO_API_KEY": token, "IMAGEPREF_LS_RETRIES": "1"}
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", "label", *args],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=120,
    )


def test_candidate_set_problems_are_reported_before_any_server_call(
    tmp_path, candidate_set, unused_port, one_line_error
):
    url = f"http://127.0.0.1:{unused_port}"
    one = candidate_set(tmp_path / "one", colours=("red",))
    one_line_error(run_label("push", str(one), "--url", url, "--document-root", str(tmp_path)), "nothing to pair")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    pd.DataFrame(columns=["candidate_id", "prompt_id", "prompt", "image_path"]).to_parquet(empty / "candidates.parquet")
    one_line_error(run_label("push", str(empty), "--url", url, "--document-root", str(tmp_path)), "empty")
    gone = candidate_set(tmp_path / "gone")
    (gone / "images" / "c0-red.png").unlink()
    one_line_error(run_label("push", str(gone), "--url", url, "--document-root", str(tmp_path)), "missing on disk")


def test_unreachable_server_fails_after_retrying(tmp_path, candidate_set, unused_port, one_line_error):
    good = candidate_set(tmp_path / "good")
    done = run_label("push", str(good), "--url", f"http://127.0.0.1:{unused_port}", "--document-root", str(tmp_path))
    one_line_error(done, "unreachable")


def test_an_export_that_is_not_label_studio_json(tmp_path, one_line_error):
    for name, text in (("garbage.json", "not json at all"), ("other.json", json.dumps({"rows": [1, 2]}))):
        path = tmp_path / name
        path.write_text(text)
        one_line_error(
            run_label("pull", "--out", str(tmp_path / "out"), "--from-file", str(path)), "not Label Studio JSON"
        )
    assert not (tmp_path / "out").exists()


def test_bogus_results_in_an_export_are_quarantined_and_reported(tmp_path, one_line_error):
    data = {
        "pair_id": "p-1",
        "prompt": "x",
        "candidate_left": "b",
        "candidate_right": "a",
        "candidate_a": "a",
        "candidate_b": "b",
    }

    def annotation(number, who, axis, value, **extra):
        return {
            "id": number,
            "completed_by": {"id": number, "email": who},
            "created_at": f"2026-01-0{number}T00:00:00Z",
            "updated_at": f"2026-01-0{number}T00:00:00Z",
            "lead_time": 1.5,
            "result": [{"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [value]}}],
            **extra,
        }

    export = [
        {
            "id": 1,
            "data": data,
            "annotations": [
                annotation(1, "ann@x.org", "aesthetics", "left"),
                annotation(2, "bob@x.org", "aesthetics", "BOGUS"),
                annotation(3, "cy@x.org", "vibes", "left"),
                annotation(4, "dee@x.org", "safety", "tie", was_cancelled=True),
            ],
        }
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    out = tmp_path / "out"
    one_line_error(
        run_label("pull", "--out", str(out), "--from-file", str(path)), "2 annotation(s)", "quarantine.jsonl"
    )
    quarantined = [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]
    assert sorted(entry["annotator"] for entry in quarantined) == ["bob@x.org", "cy@x.org"]
    annotations = pd.read_parquet(out / "annotations.parquet")
    assert annotations["annotator"].tolist() == ["ann@x.org"] and annotations["aesthetics"].tolist() == ["left"]
    assert json.loads((out / "pull_report.json").read_text())["skipped"] == 1
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert pairs.at[0, "aesthetics_label"] == "b"  # left showed candidate b
    accepted = run_label("pull", "--out", str(out), "--from-file", str(path), "--allow-quarantine")
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_wrong_token_and_missing_project_against_a_real_server(label_server, tmp_path, one_line_error):
    one_line_error(run_label("create", "--url", label_server.url, token="0" * 40), "refused the token")
    token = json.loads((label_server.state_dir / "secrets.json").read_text())["api_token"]
    done = run_label(
        "pull", "--out", str(tmp_path / "out"), "--title", "no such project", "--url", label_server.url, token=token
    )
    one_line_error(done, "no project titled 'no such project'")
    assert not (tmp_path / "out").exists()
    done = run_label("server", "status", "--state-dir", str(label_server.state_dir))
    assert done.returncode == 0 and label_server.url in done.stdout and "healthy" in done.stdout
