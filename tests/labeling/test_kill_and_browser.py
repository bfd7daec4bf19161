"""Nothing is lost when the server is killed, and a person in a real browser is pulled exactly."""

from __future__ import annotations

import json
import os
import signal
import time

import pandas as pd
import pytest

from imagepref.labeling.accounts import invite, stored_password
from imagepref.labeling.config import LabelingConfig
from imagepref.labeling.project import create_project, list_task_data
from imagepref.labeling.pull import pull
from imagepref.labeling.push import push
from imagepref.labeling.server import StatePaths, start_server
from imagepref.labeling.simulate import simulate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


def test_sigkill_in_a_labeling_session_loses_no_submitted_annotation(label_server, tmp_path, candidate_set, judge):
    candidates = candidate_set(label_server.files_root / "killset")
    config = LabelingConfig(title="kill-restart", pairing="all", overlap=2)
    create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    credentials = label_server.state_dir / "annotators.json"
    first = simulate(label_server.connection, config.title, judge, credentials, annotators=2, error_rate=0.2, limit=10)
    assert first.submitted == 20
    pid = json.loads(StatePaths(label_server.state_dir).server_file.read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    time.sleep(0.5)
    started = time.monotonic()
    start_server(label_server.state_dir, label_server.port, label_server.files_root)
    restart_seconds = time.monotonic() - started
    pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert pulled.written == 20 and pulled.quarantined == 0
    # The session goes on after the restart: the same annotators fill in the rest, nothing twice.
    rest = simulate(label_server.connection, config.title, judge, credentials, annotators=2, error_rate=0.2)
    assert (rest.submitted, rest.already_done) == (16, 20)
    assert pull(tmp_path / "out", connection=label_server.connection, title=config.title).written == 36
    assert restart_seconds < 120


@pytest.mark.browser
def test_an_invited_annotator_labels_in_chromium_and_the_pull_holds_that_judgment(
    label_server, tmp_path, candidate_set
):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists("/usr/bin/chromium"):
        pytest.fail("Debian's chromium is missing; run scripts/install-system-deps")
    candidates = candidate_set(label_server.files_root / "browserset", prompts=1, colours=("red", "blue"))
    instructions = tmp_path / "instructions.md"
    instructions.write_text("# Compare\nPick the better image on each axis.\n")
    config = LabelingConfig(title="browser-test", overlap=1, instructions=instructions)
    project = create_project(label_server.connection, config)
    push(label_server.connection, candidates, config, label_server.files_root)
    email = "annotator@example.org"
    invite(label_server.connection, [email], label_server.state_dir / "annotators.json")
    password = stored_password(label_server.state_dir / "annotators.json", label_server.url, email)
    clicks = {"aesthetics": "Right", "prompt_fidelity": "Tie", "safety": "Left"}
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
            groups.nth(2).wait_for(timeout=120_000)
            # The instructions from the config open first, in a modal; the annotator reads and closes it.
            modal = page.locator("div.lsf-modal-ls_visible")
            modal.wait_for(timeout=30_000)
            assert "Pick the better image" in modal.inner_text()
            page.keyboard.press("Escape")
            modal.wait_for(state="hidden", timeout=30_000)
            for index, axis in enumerate(config.axes):
                # Each choice is a radio input named after its visible value, with the hotkey hint beside it.
                groups.nth(index).locator(f"input[name={clicks[axis]}]").check()
            page.get_by_test_id("bottombar-submit-button").click()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                task = label_server.connection.json(
                    "GET", f"/api/tasks/{list_task_data(label_server.connection, project.id)[0]['id']}"
                )
                if task.get("total_annotations"):
                    break
                time.sleep(0.5)
        finally:
            browser.close()
    pulled = pull(tmp_path / "out", connection=label_server.connection, title=config.title)
    assert (pulled.written, pulled.quarantined) == (1, 0)
    row = pd.read_parquet(tmp_path / "out" / "annotations.parquet").iloc[0]
    assert row["annotator"] == email and row["source"] == "human"
    assert {axis: row[axis] for axis in config.axes} == {axis: value.lower() for axis, value in clicks.items()}
