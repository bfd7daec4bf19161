"""Comparing edits through a real Label Studio: the source and the instruction above two results,
simulated annotators that judge by the glyph world's edit rules, a person with hotkeys in Chromium,
and the pulled tables carrying each pair's source and instruction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imagepref.errors import BadInputError
from imagepref.formats import EDIT_AXES, read_annotations, read_candidate_set, read_pairs
from imagepref.labeling.accounts import invite, stored_password
from imagepref.labeling.config import LabelingConfig
from imagepref.labeling.project import create_project, list_task_data
from imagepref.labeling.pull import pull
from imagepref.labeling.push import push

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policy" / "glyphworld" / "pretrained"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def drawn_edit_set(folder: Path) -> Path:
    """An edit set in the contract format, drawn with PIL: one grey source, two results of
    "make it red" (a red and a blue square)."""
    (folder / "images").mkdir(parents=True)
    colours = {"source": (128, 128, 128), "red": (230, 30, 30), "blue": (30, 30, 230)}
    for name, colour in colours.items():
        Image.new("RGB", (16, 16), colour).save(folder / "images" / f"{name}.png")
    rows = [{"candidate_id": "source", "prompt_id": "s", "prompt": "a grey square", "image_path": "images/source.png"}]
    rows += [
        {
            "candidate_id": f"e0-{name}",
            "prompt_id": "e0",
            "prompt": "a grey square",
            "image_path": f"images/{name}.png",
            "source_candidate": "source",
            "instruction": "make it red",
        }
        for name in ("red", "blue")
    ]
    pd.DataFrame(rows).to_parquet(folder / "candidates.parquet")
    return folder


def label(*args: str) -> str:
    """`imagepref label ARGS` against the test's managed server; its output."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "imagepref"), "label", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_simulated_annotators_judge_glyph_edits_by_the_edit_rules(label_server, tmp_path):
    from imagepref.eval.ocr import text_reader
    from imagepref.policy.glyphworld.edits import compare_edits, edit_from_record, judge_edit

    folder = label_server.files_root / "edits"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "imagepref"),
            "generate",
            "--model",
            str(SHIPPED),
            "--edits",
            "glyphworld-edits",
            "--limit",
            "4",
            "--n",
            "2",
            "--out",
            str(folder),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    candidates = read_candidate_set(folder)
    # The path a user takes: create a project of edits, push, simulated annotators, pull.
    state = ["--state-dir", str(label_server.state_dir)]
    title = ["--title", "edits-simulated"]
    label("create", "--edits", "--overlap", "2", *title, *state)
    assert "pushed 4 new pair(s)" in label("push", str(folder), *title, *state)  # sources are shown, never paired
    project = next(
        p for p in label_server.connection.json("GET", "/api/projects/")["results"] if p["title"] == title[1]
    )
    task = list_task_data(label_server.connection, project["id"])[0]["data"]
    assert label_server.connection.request("GET", task["image_source"]).headers["content-type"].startswith("image/")
    assert task["source_candidate"] == candidates.at[task["candidate_a"], "source_candidate"]
    assert "8 judgment(s) submitted" in label(
        "simulate", "--judge", "glyph", "--annotators", "2", "--error-rate", "0", *title, *state
    )
    assert "8 judgment(s) on 4 pair(s)" in label("pull", "--out", str(tmp_path / "prefs"), *title, *state)
    pairs = read_pairs(tmp_path / "prefs")
    annotations = read_annotations(tmp_path / "prefs")
    assert {"source_candidate", "instruction"} <= set(pairs.columns) & set(annotations.columns)
    read_text = text_reader()
    for pair in pairs.to_dict("records"):
        a, b = candidates.loc[pair["candidate_a"]], candidates.loc[pair["candidate_b"]]
        assert pair["source_candidate"] == a["source_candidate"] == b["source_candidate"]
        assert pair["instruction"] == a["instruction"]
        # Without errors both annotators answer what the rules say, so each label is the rules' verdict.
        edit = edit_from_record(json.loads(a["edit"]))
        source = Image.open(candidates.at[a["source_candidate"], "image_file"]).convert("RGB")
        scores = [judge_edit(edit, source, Image.open(row["image_file"]).convert("RGB"), read_text) for row in (a, b)]
        expected = compare_edits(*scores)
        assert {axis: pair[f"{axis}_label"] for axis in EDIT_AXES} == expected
        assert all(pair[f"{axis}_votes_{expected[axis]}"] == 2 for axis in EDIT_AXES)


def test_an_edit_set_and_a_project_of_images_are_refused_either_way(label_server, candidate_set):
    edits = drawn_edit_set(label_server.files_root / "drawn-edits-refused")
    images = candidate_set(label_server.files_root / "images-refused", prompts=1, colours=("red", "blue"))
    plain = LabelingConfig(title="images-not-edits")
    create_project(label_server.connection, plain)
    with pytest.raises(BadInputError, match="holds edits"):
        push(label_server.connection, edits, plain, label_server.files_root)
    edit_project = LabelingConfig(title="edits-not-images", edits=True)
    create_project(label_server.connection, edit_project)
    with pytest.raises(BadInputError, match="holds no edits"):
        push(label_server.connection, images, edit_project, label_server.files_root)


@pytest.mark.browser
def test_a_person_compares_two_edits_with_hotkeys_in_chromium(label_server, tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.fail("Debian's chromium is missing; run scripts/install-system-deps")
    folder = drawn_edit_set(label_server.files_root / "drawn-edits")
    config = LabelingConfig(title="edits-browser", edits=True, overlap=1)
    project = create_project(label_server.connection, config)
    push(label_server.connection, folder, config, label_server.files_root)
    task = list_task_data(label_server.connection, project.id)[0]
    email = "edit-annotator@example.org"
    invite(label_server.connection, [email], label_server.state_dir / "annotators.json")
    password = stored_password(label_server.state_dir / "annotators.json", label_server.url, email)
    # One hotkey row per axis, in left / right / tie order (1 2 3, q w e, a s d, z x c).
    keys = {"instruction_fidelity": ("2", "right"), "preservation": ("e", "tie"), "aesthetics": ("a", "left")}
    keys["safety"] = ("x", "right")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(f"{label_server.url}/user/login/")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(lambda url: "/user/login" not in url, timeout=60_000)
            page.goto(f"{label_server.url}/projects/{project.id}/data?labeling=1")
            groups = page.locator("div.lsf-choices")
            groups.nth(3).wait_for(timeout=120_000)
            # The instruction, the source prompt and three images: the source and the two results.
            body = page.locator("body").inner_text()
            assert "make it red" in body and "a grey square" in body
            images = page.locator("img[src*='local-files']")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                images.count() < 3
                or not all(images.evaluate_all("els => els.map(e => e.complete && e.naturalWidth > 0)"))
            ):
                time.sleep(0.5)
            sources = sorted(src.split("?d=")[-1] for src in images.evaluate_all("els => els.map(e => e.src)"))
            assert len(sources) == 3 and any(src.endswith("source.png") for src in sources), sources
            for axis in config.axes:
                page.keyboard.press(keys[axis][0])
            # Each key marks its choice as the annotator sees it (the checked radio's label).
            for index, axis in enumerate(config.axes):
                checked = groups.nth(index).locator("label.ant-radio-wrapper-checked")
                checked.wait_for(timeout=10_000)
                assert checked.inner_text().startswith(keys[axis][1].capitalize()), axis
            page.get_by_test_id("bottombar-submit-button").click()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if label_server.connection.json("GET", f"/api/tasks/{task['id']}").get("total_annotations"):
                    break
                time.sleep(0.5)
        finally:
            browser.close()
    pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (pulled.written, pulled.quarantined) == (1, 0)
    row = read_annotations(tmp_path / "out").iloc[0]
    assert row["annotator"] == email and row["source"] == "human"
    assert (row["source_candidate"], row["instruction"]) == ("source", "make it red")
    assert {axis: row[axis] for axis in config.axes} == {axis: answer for axis, (_, answer) in keys.items()}
    pair = read_pairs(tmp_path / "out").iloc[0]
    assert (pair["source_candidate"], pair["instruction"]) == ("source", "make it red")
