"""Against one real Label Studio: candidate ids across sets, the private state folder, export
snapshots, timestamps without a fraction, what the images folder serves, images gone before a
pull, and a restart on another port (last: it moves the shared server)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat

import pandas as pd
import pytest

from imagepref.errors import BadInputError
from imagepref.labeling.config import LabelingConfig
from imagepref.labeling.connection import connect
from imagepref.labeling.project import create_project, list_task_data
from imagepref.labeling.pull import pull
from imagepref.labeling.push import push
from imagepref.labeling.server import StatePaths, start_server, stop_server
from imagepref.labeling.simulate import simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def choice(axis: str, value: str) -> dict:
    return {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [value]}}


def loose_modes(root) -> list[str]:
    """Everything under `root` that others could read: folders not 0700, files not 0600."""
    loose = []
    for folder, _folders, files in os.walk(root):
        if stat.S_IMODE(os.stat(folder).st_mode) != 0o700:
            loose.append(folder)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and stat.S_IMODE(os.stat(path).st_mode) != 0o600:
                loose.append(path)
    return loose


def export_files(state_dir) -> list[str]:
    """The files Label Studio's exports left in its data folder."""
    data = StatePaths(state_dir).data_dir
    folders = (data / "media" / "export", data / "export")
    return sorted(str(path) for folder in folders for path in folder.rglob("*") if not path.is_dir())


def test_generated_sets_get_distinct_ids_and_a_clash_of_ids_is_refused(label_server, candidate_set, tmp_path):
    from imagepref.policy.candidates import write_candidate_set
    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import SHIPPED_GENERATOR

    # Two prompts files, line for line the same ids (p1, p2), sampled with the same seed.
    generator = load_generator(SHIPPED_GENERATOR)
    sets = []
    for name, words in (("gen-a", ("CAT", "DOG")), ("gen-b", ("SUN", "MAP"))):
        prompts = [
            {"prompt_id": f"p{line}", "prompt": f'a sign that says "{word}"'} for line, word in enumerate(words, 1)
        ]
        rows = write_candidate_set(generator, prompts, label_server.files_root / name, images_per_prompt=2, seed=0)
        sets.append((label_server.files_root / name, set(rows["candidate_id"])))
    assert not sets[0][1] & sets[1][1]
    config = LabelingConfig(title="ids-generated", pairing="all", overlap=1)
    create_project(label_server.connection, config)
    first = push(label_server.connection, sets[0][0], config, label_server.files_root)
    second = push(label_server.connection, sets[1][0], config, label_server.files_root)
    assert (first.added, second.added, second.already_present) == (2, 2, 0)

    # Hand-made sets may still reuse ids: the second push refuses, naming the id, and adds nothing.
    clash = LabelingConfig(title="ids-clash", pairing="all", overlap=1)
    project = create_project(label_server.connection, clash)
    push(
        label_server.connection,
        candidate_set(label_server.files_root / "hand-a", prompts=1),
        clash,
        label_server.files_root,
    )
    other = candidate_set(label_server.files_root / "hand-b", prompts=1)
    with pytest.raises(BadInputError, match="candidate id 'c0-.*' of .*hand-b is already in project 'ids-clash'"):
        push(label_server.connection, other, clash, label_server.files_root)
    assert len(list_task_data(label_server.connection, project.id)) == 6
    # The same set again is still a no-op.
    again = push(label_server.connection, label_server.files_root / "hand-a", clash, label_server.files_root)
    assert (again.added, again.already_present) == (0, 6)


def test_state_stays_private_and_a_pull_leaves_no_export_snapshot(label_server, candidate_set, tmp_path):
    candidates = candidate_set(label_server.files_root / "private-set", prompts=1, colours=("red", "blue"))
    config = LabelingConfig(title="private-export", overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    (task,) = list_task_data(label_server.connection, project.id)
    label_server.connection.request(
        "POST", f"/api/tasks/{task['id']}/annotations/", json={"result": [choice("aesthetics", "left")]}
    )
    before = export_files(label_server.state_dir)
    for _ in range(2):
        assert pull(tmp_path / "out", connection=label_server.connection, title=config.title).written == 1
    assert export_files(label_server.state_dir) == before == []
    assert label_server.connection.json("GET", f"/api/projects/{project.id}/exports/") == []
    # The database (every user's API token), the log and whatever the server wrote while running.
    assert stat.S_IMODE(os.stat(StatePaths(label_server.state_dir).data_dir / "label_studio.sqlite3").st_mode) == 0o600
    assert loose_modes(label_server.state_dir) == []


def test_the_latest_version_is_chosen_by_time_when_label_studio_omits_the_fraction(
    label_server, candidate_set, tmp_path
):
    candidates = candidate_set(label_server.files_root / "stamps-set", prompts=2, colours=("red", "blue"))
    config = LabelingConfig(title="stamps", overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    first_task, second_task = (task["id"] for task in list_task_data(label_server.connection, project.id))
    post = label_server.connection.request
    newer = post("POST", f"/api/tasks/{first_task}/annotations/", json={"result": [choice("aesthetics", "left")]})
    older = post("POST", f"/api/tasks/{first_task}/annotations/", json={"result": [choice("aesthetics", "right")]})
    single = post("POST", f"/api/tasks/{second_task}/annotations/", json={"result": [choice("safety", "tie")]})
    # Label Studio writes a time whose microseconds are 0 as 10:00:00Z, other times with a fraction.
    stamps = {newer.json()["id"]: "10:00:00.500000", older.json()["id"]: "10:00:00", single.json()["id"]: "10:00:00"}
    with sqlite3.connect(StatePaths(label_server.state_dir).data_dir / "label_studio.sqlite3", timeout=30) as database:
        for annotation, time_of_day in stamps.items():
            database.execute(
                "UPDATE task_completion SET created_at = ?, updated_at = ? WHERE id = ?",
                (f"2026-01-01 {time_of_day}", f"2026-01-01 {time_of_day}", annotation),
            )
    exported = label_server.connection.json("GET", f"/api/tasks/{first_task}/annotations/")
    assert {row["updated_at"] for row in exported} == {"2026-01-01T10:00:00Z", "2026-01-01T10:00:00.500000Z"}

    pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (pulled.written, pulled.superseded) == (2, 1)
    rows = pd.read_parquet(tmp_path / "out" / "annotations.parquet").set_index("safety", drop=False)
    assert rows["aesthetics"].dropna().tolist() == ["left"]  # the version saved half a second later
    assert sorted(rows["created_at"].tolist()) == [
        pd.Timestamp("2026-01-01T10:00:00Z"),
        pd.Timestamp("2026-01-01T10:00:00.5Z"),
    ]


def test_the_images_folder_serves_only_its_own_image_files(label_server, candidate_set, tmp_path):
    candidates = candidate_set(label_server.files_root / "served", prompts=1, colours=("red", "blue"))
    config = LabelingConfig(title="served", overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for annotators")
    images = candidates / "images"
    (images / "leak.png").symlink_to(secret)
    (images / "escape.png").symlink_to(label_server.files_root / "served" / "candidates.parquet")
    (images / "same-folder.png").symlink_to(images / "c0-red.png")
    (images / "notes.txt").write_text("not an image")
    (images / "folder.png").mkdir()
    (images / "linked").symlink_to(tmp_path, target_is_directory=True)

    def get(relative: str):
        return label_server.connection.request(
            "GET", "/data/local-files/", params={"d": relative}, expect=(200, 400, 403, 404, 500)
        )

    image = get("served/images/c0-red.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert get("served/images/same-folder.png").content == image.content
    for refused in (
        "served/images/leak.png",
        "served/images/escape.png",
        "served/images/notes.txt",
        "served/images/folder.png",
        "served/images/linked/secret.png",
        "../secret.png",
        "served/images/../../../secret.png",
        f"..{tmp_path}/secret.png",
    ):
        answer = get(refused)
        assert answer.status_code in (403, 404), refused
        assert str(tmp_path) not in answer.text and str(label_server.files_root) not in answer.text
        assert b"not for annotators" not in answer.content
    # The task's own images are what an annotator's browser loads.
    (task,) = list_task_data(label_server.connection, project.id)
    assert label_server.connection.request("GET", task["data"]["image_left"]).headers["content-type"] == "image/png"


def test_a_pull_warns_once_about_judged_pairs_whose_images_are_gone(label_server, candidate_set, tmp_path, caplog):
    candidates = candidate_set(label_server.files_root / "vanishing", prompts=2, colours=("red", "blue"))
    config = LabelingConfig(title="vanishing", overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    for task in list_task_data(label_server.connection, project.id):
        label_server.connection.request(
            "POST", f"/api/tasks/{task['id']}/annotations/", json={"result": [choice("aesthetics", "tie")]}
        )
    with caplog.at_level(logging.WARNING, logger="imagepref.labeling.pull"):
        complete = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (complete.missing_images, caplog.records) == (0, [])
    (candidates / "images" / "c1-blue.png").unlink()
    with caplog.at_level(logging.WARNING, logger="imagepref.labeling.pull"):
        pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (pulled.written, pulled.missing_images) == (2, 1)
    assert pulled.first_missing_image == str((candidates / "images" / "c1-blue.png").resolve())
    (warning,) = caplog.records
    assert warning.getMessage().startswith("warning: 1 image file(s) of judged pairs are missing (first: ")
    assert "c1-blue.png" in warning.getMessage() and "\n" not in warning.getMessage()
    report = (tmp_path / "out" / "pull_report.json").read_text()
    assert '"missing_images": 1' in report


def test_a_restart_on_another_port_keeps_the_annotators_and_tightens_old_modes(
    label_server, candidate_set, judge, unused_port
):
    candidates = candidate_set(label_server.files_root / "moving", prompts=1, colours=("red", "blue", "grey"))
    config = LabelingConfig(title="moving", pairing="all", overlap=1)
    create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    credentials = label_server.state_dir / "annotators.json"
    assert simulate(label_server.connection, config.title, judge, credentials, annotators=1, limit=1).submitted == 1
    # A state folder left readable by an older start is tightened by the next one.
    database = StatePaths(label_server.state_dir).data_dir / "label_studio.sqlite3"
    os.chmod(database, 0o644)
    os.chmod(StatePaths(label_server.state_dir).data_dir, 0o755)
    stop_server(label_server.state_dir)
    start_server(label_server.state_dir, unused_port, label_server.files_root)
    label_server.connection.close()
    label_server.connection = connect(state_dir=label_server.state_dir)
    label_server.port, label_server.url = unused_port, label_server.connection.url
    assert label_server.url.endswith(f":{unused_port}")
    assert loose_modes(label_server.state_dir) == []
    rest = simulate(label_server.connection, config.title, judge, credentials, annotators=1)
    assert (rest.submitted, rest.already_done) == (2, 1)
