"""Push and pull rates against a real Label Studio, next to what a user would do instead.

Push: 1,000 pairs through `labeling.push` (batched import, one server read for idempotency)
versus one import request per task (the plain SDK loop), timed on 50 tasks and extrapolated.
Pull: 2,004 annotations (1,002 tasks, each judged by two different people) through `labeling.pull`
(snapshot export, validation, parquet, agreement), every one of them written, versus the quick
export endpoint alone (download only, no checking).

    .venv/bin/python benchmarks/labeling.py            # fresh server state (first start migrates, ~70 s)
    .venv/bin/python benchmarks/labeling.py --large    # also a 10,000-task project, pushed and pulled
    IMAGEPREF_TEST_LS_TEMPLATE=DIR .venv/bin/python benchmarks/labeling.py   # reuse a migrated template
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from imagepref.formats import write_candidate_table
from imagepref.labeling.accounts import invite, login_token, stored_password
from imagepref.labeling.candidates import load_candidate_set
from imagepref.labeling.config import LabelingConfig
from imagepref.labeling.connection import LabelStudioConnection, connect
from imagepref.labeling.pairing import plan_pairs
from imagepref.labeling.project import create_project
from imagepref.labeling.pull import pull
from imagepref.labeling.push import push, task_payload
from imagepref.labeling.server import start_server, stop_server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def candidate_set(folder: Path, prompts: int) -> Path:
    (folder / "images").mkdir(parents=True)
    rows = []
    for prompt in range(prompts):
        for index in range(4):
            candidate = f"c{prompt:04d}-{index}"
            Image.new("RGB", (8, 8), (index * 60, 0, 0)).save(folder / "images" / f"{candidate}.png")
            rows.append(
                {
                    "candidate_id": candidate,
                    "prompt_id": f"p{prompt}",
                    "prompt": f"prompt {prompt}",
                    "image_path": f"images/{candidate}.png",
                }
            )
    write_candidate_table(rows, folder)
    return folder


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="imagepref-bench-"))
    state, files = scratch / "state", scratch / "files"
    template = os.environ.get("IMAGEPREF_TEST_LS_TEMPLATE")
    if template:
        shutil.copytree(template, state)
    try:
        start_server(state, free_port(), files)
        connection = connect(state_dir=state)
        candidates = candidate_set(files / "bench", prompts=167)  # 167 prompts x C(4,2) = 1,002 pairs
        config = LabelingConfig(title="benchmark", pairing="all", overlap=2)
        project = create_project(connection, config)
        started = time.monotonic()
        report = push(connection, candidates, config, files)
        push_seconds = time.monotonic() - started
        loop_config = LabelingConfig(title="benchmark-loop", pairing="all")
        loop_project = create_project(connection, loop_config)
        pairs = plan_pairs(load_candidate_set(candidates), loop_config)[:50]
        loaded = load_candidate_set(candidates)
        started = time.monotonic()
        for pair in pairs:
            connection.request(
                "POST", f"/api/projects/{loop_project.id}/import", json=[task_payload(pair, loaded, files, False, "")]
            )
        loop_seconds = (time.monotonic() - started) / len(pairs) * report.added
        print(
            f"push: {report.added} pairs in {push_seconds:.1f} s ({report.added / push_seconds:.0f} pairs/s); "
            f"one request per task: ~{loop_seconds:.1f} s; ratio {loop_seconds / push_seconds:.1f}x"
        )
        # Seed 2,004 annotations: the same pairs again, imported with two annotations each, by two
        # different people (one person's second annotation of a task would supersede the first).
        pull_config = LabelingConfig(title="benchmark-pull", pairing="all", overlap=2)
        pull_project = create_project(connection, pull_config)
        admin = connection.check()["id"]
        credentials = scratch / "annotators.json"
        (second,) = invite(connection, ["bench-annotator@example.org"], credentials)
        password = stored_password(credentials, connection.url, second.email)
        person = LabelStudioConnection(connection.url, login_token(connection.url, second.email, password))
        other = person.check()["id"]
        person.close()
        seeded = []
        for pair in plan_pairs(loaded, pull_config):
            task = task_payload(pair, loaded, files, False, "")
            task["annotations"] = [
                {
                    "completed_by": who,
                    "lead_time": 1.0,
                    "result": [
                        {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [answer]}}
                        for axis in config.axes
                    ],
                }
                for who, answer in ((admin, "left"), (other, "right"))
            ]
            seeded.append(task)
        connection.request("POST", f"/api/projects/{pull_project.id}/import", json=seeded)
        project = pull_project
        config = pull_config
        started = time.monotonic()
        pulled = pull(scratch / "out", connection=connection, title=config.title)
        pull_seconds = time.monotonic() - started
        started = time.monotonic()
        connection.request("GET", f"/api/projects/{project.id}/export", params={"exportType": "JSON"})
        quick_seconds = time.monotonic() - started
        written = pulled.written
        print(
            f"pull: {written} of {pulled.annotations} annotations validated and written in {pull_seconds:.1f} s "
            f"({written / pull_seconds:.0f} annotations/s; {pulled.superseded} superseded, "
            f"{pulled.quarantined} quarantined); quick export download alone: {quick_seconds:.1f} s; "
            f"ratio {pull_seconds / quick_seconds:.1f}x"
        )
        if "--large" in sys.argv:
            # A 10,002-task project (with a few hundred annotations): push, then pull through the snapshot export.
            large = candidate_set(files / "large", prompts=1667)
            large_config = LabelingConfig(title="benchmark-large", pairing="all", overlap=1)
            large_project = create_project(connection, large_config)
            started = time.monotonic()
            large_report = push(connection, large, large_config, files)
            large_push = time.monotonic() - started
            loaded_large = load_candidate_set(large)
            annotated = []
            for pair in plan_pairs(loaded_large, large_config)[:300]:
                task = task_payload(pair, loaded_large, files, False, "")
                task["annotations"] = [
                    {
                        "completed_by": admin,
                        "lead_time": 1.0,
                        "result": [
                            {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": ["left"]}}
                            for axis in large_config.axes
                        ],
                    }
                ]
                annotated.append(task)
            connection.request("POST", f"/api/projects/{large_project.id}/import", json=annotated)
            started = time.monotonic()
            large_pull = pull(scratch / "large-out", connection=connection, title=large_config.title)
            print(
                f"large project: pushed {large_report.added} tasks in {large_push:.1f} s; pulled "
                f"{large_pull.annotations} annotations from {large_report.added + len(annotated)} tasks in "
                f"{time.monotonic() - started:.1f} s without a time-out"
            )
    finally:
        stop_server(state)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
