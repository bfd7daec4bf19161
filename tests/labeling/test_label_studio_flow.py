"""The whole labeling loop through a real Label Studio: create, push (twice), simulate, pull, stats."""

from __future__ import annotations

import json
import os
import stat

import httpx
import pandas as pd
import pytest

from imagepref.labeling.accounts import invite, login_token, stored_password
from imagepref.labeling.config import LabelingConfig
from imagepref.labeling.connection import LabelStudioAuthError, LabelStudioConnection
from imagepref.labeling.project import create_project, list_task_data
from imagepref.labeling.pull import pull
from imagepref.labeling.push import push
from imagepref.labeling.server import StatePaths, server_status, start_server
from imagepref.labeling.simulate import simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_push_is_idempotent_and_pull_maps_sides_back(label_server, tmp_path, candidate_set, judge):
    candidates = candidate_set(label_server.files_root / "set1")
    gold = tmp_path / "gold.csv"
    pd.DataFrame(
        [{"candidate_a": "c0-red", "candidate_b": "c0-blue", "aesthetics": "a", "prompt_fidelity": "", "safety": "tie"}]
    ).to_csv(gold, index=False)
    config = LabelingConfig(title="flow-all", pairing="all", gold_rate=0.1, gold_file=gold, overlap=2)
    project = create_project(label_server.connection, config)
    assert project.overlap == 2

    first = push(label_server.connection, candidates, config, label_server.files_root)
    assert (first.added, first.gold_added, first.already_present) == (19, 1, 0)  # 3 prompts x C(4,2) + 1 gold
    second = push(label_server.connection, candidates, config, label_server.files_root)
    assert (second.added, second.already_present) == (0, 19)
    tasks = list_task_data(label_server.connection, project.id)
    assert len(tasks) == 19
    # The images are served through the project's local-files storage.
    image = label_server.connection.request("GET", tasks[0]["data"]["image_left"])
    assert image.headers["content-type"].startswith("image/")

    report = simulate(
        label_server.connection,
        config.title,
        judge,
        label_server.state_dir / "annotators.json",
        annotators=3,
        error_rate=0.0,
    )
    assert report.submitted == 38 and sorted(report.per_annotator.values()) == [12, 13, 13]
    again = simulate(
        label_server.connection,
        config.title,
        judge,
        label_server.state_dir / "annotators.json",
        annotators=3,
        error_rate=0.0,
    )
    assert again.submitted == 0 and again.already_done == 38

    out = tmp_path / "prefs"
    pulled = pull(out, connection=label_server.connection, title=config.title)
    assert (pulled.written, pulled.gold, pulled.quarantined, pulled.pairs) == (36, 2, 0, 18)
    annotations = pd.read_parquet(out / "annotations.parquet")
    assert list(annotations.columns) == [
        "pair_id",
        "prompt",
        "candidate_left",
        "candidate_right",
        "annotator",
        "source",
        "aesthetics",
        "prompt_fidelity",
        "safety",
        "lead_time",
        "created_at",
    ]
    assert set(annotations["source"]) == {"simulated"}
    # With no errors, the redder candidate wins aesthetics whichever side it was shown on.
    pairs = pd.read_parquet(out / "pairs.parquet")
    red_rank = {"red": 230, "grey": 128, "green": 30, "blue": 30}
    for row in pairs.itertuples():
        a, b = red_rank[row.candidate_a.split("-")[1]], red_rank[row.candidate_b.split("-")[1]]
        expected = "a" if a > b else "b" if b > a else "tie"
        assert row.aesthetics_label == expected
        assert row.aesthetics_votes_a + row.aesthetics_votes_b + row.aesthetics_votes_tie == 2
    sides = {(row.candidate_left, row.candidate_right) for row in annotations.itertuples()}
    assert any(left > right for left, right in sides) and any(left < right for left, right in sides)
    agreement = json.loads((out / "agreement.json").read_text())["axes"]["aesthetics"]
    assert agreement["pairwise_agreement"] == 1.0 and agreement["krippendorff_alpha"] == 1.0
    gold_rows = pd.read_parquet(out / "gold.parquet")
    assert len(gold_rows) == 2 and set(gold_rows["aesthetics_gold"]) == {"b"}  # red is candidate_b of (blue, red)


def test_invalid_results_are_quarantined_skips_counted_updates_latest(label_server, tmp_path, candidate_set):
    candidates = candidate_set(label_server.files_root / "set2", prompts=4, colours=("red", "blue"))
    config = LabelingConfig(title="flow-bogus", overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    bogus_task, unknown_task, skipped_task, updated_task = [
        task["id"] for task in list_task_data(label_server.connection, project.id)
    ]

    def choice(axis, value):
        return {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [value]}}

    post = label_server.connection.request
    post("POST", f"/api/tasks/{bogus_task}/annotations/", json={"result": [choice("aesthetics", "BOGUS")]})
    post("POST", f"/api/tasks/{unknown_task}/annotations/", json={"result": [choice("vibes", "left")]})
    post("POST", f"/api/tasks/{skipped_task}/annotations/", json={"result": [], "was_cancelled": True})
    first = post(
        "POST", f"/api/tasks/{updated_task}/annotations/", json={"result": [choice("aesthetics", "left")]}
    ).json()
    post(
        "PATCH",
        f"/api/annotations/{first['id']}/",
        json={"result": [choice("aesthetics", "right"), choice("safety", "tie")]},
    )

    pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (pulled.quarantined, pulled.skipped, pulled.written, pulled.partial) == (2, 1, 1, 1)
    reasons = sorted(
        json.loads(line)["reason"] for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()
    )
    assert reasons[0].startswith("aesthetics: ['BOGUS']") and reasons[1] == "unknown axis 'vibes'"
    row = pd.read_parquet(tmp_path / "out" / "annotations.parquet").iloc[0]
    assert (row["aesthetics"], row["safety"]) == ("right", "tie") and pd.isna(row["prompt_fidelity"])


def test_invited_annotators_can_log_in_and_passwords_stay_in_a_private_file(label_server):
    credentials = label_server.state_dir / "annotators.json"
    people = invite(label_server.connection, ["Ann@Example.org", "bob@example.org"], credentials)
    assert [person.created for person in people] == [True, True]
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    password = stored_password(credentials, label_server.url, "ann@example.org")
    token = login_token(label_server.url, "ann@example.org", password)
    assert LabelStudioConnection(label_server.url, token).check()["email"] == "ann@example.org"
    assert [person.created for person in invite(label_server.connection, ["ann@example.org"], credentials)] == [False]
    log = StatePaths(label_server.state_dir).log_file.read_text(errors="replace")
    secrets = json.loads(StatePaths(label_server.state_dir).secrets_file.read_text())
    assert password not in log and secrets["api_token"] not in log and secrets["admin_password"] not in log
    assert stat.S_IMODE(os.stat(StatePaths(label_server.state_dir).secrets_file).st_mode) == 0o600


def test_wrong_token_busy_port_and_status(label_server, monkeypatch):
    with pytest.raises(LabelStudioAuthError):
        LabelStudioConnection(label_server.url, "0" * 40).check()
    status = server_status(label_server.state_dir)
    assert status.healthy and status.url == label_server.url
    assert server_status(url=label_server.url).healthy
    other = label_server.state_dir.parent / "other"
    with pytest.raises(Exception, match="taken"):
        start_server(other / "state", label_server.port, other / "files")
    assert not (other / "state" / "server.json").exists()
    assert httpx.get(f"{label_server.url}/health").status_code == 200
