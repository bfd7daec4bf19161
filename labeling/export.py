"""Getting a project's annotations out of Label Studio, or out of a saved export file.

The snapshot export (`POST /api/projects/<id>/exports/`, then download) is used rather than the
quick export: the quick one times out on large projects (Label Studio issues 5873 and 5811) and
names annotators only by id. The snapshot is deleted after download, because every export
otherwise stays as a file in the server's data dir.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from imagepref.errors import BadInputError
from imagepref.formats import AXES
from imagepref.labeling.connection import LabelStudioConnection, LabelStudioRequestError
from imagepref.labeling.project import require_project

SNAPSHOT_TIMEOUT_S = 600.0


def fetch_snapshot_export(connection: LabelStudioConnection, title: str) -> tuple[list[dict], str]:
    """All tasks of project `title` with their annotations (annotators by e-mail), and its label config."""
    project = require_project(connection, title)
    snapshot = connection.json(
        "POST",
        f"/api/projects/{project.id}/exports/",
        json={
            "title": "imagepref pull",
            "serialization_options": {
                "annotations__completed_by": {"only_id": False},
                "drafts": {"only_id": True},
                "predictions": {"only_id": True},
            },
        },
    )
    try:
        deadline = time.monotonic() + SNAPSHOT_TIMEOUT_S
        while snapshot.get("status") != "completed":
            if snapshot.get("status") == "failed":
                raise LabelStudioRequestError(
                    f"Label Studio failed to build the export of project {title!r}; see its log"
                )
            if time.monotonic() > deadline:
                raise LabelStudioRequestError(
                    f"the export of project {title!r} took over {SNAPSHOT_TIMEOUT_S:.0f} s; retry later"
                )
            time.sleep(0.5)
            snapshot = connection.json("GET", f"/api/projects/{project.id}/exports/{snapshot['id']}")
        answer = connection.request(
            "GET", f"/api/projects/{project.id}/exports/{snapshot['id']}/download", params={"exportType": "JSON"}
        )
        tasks = answer.json()
    finally:
        connection.request("DELETE", f"/api/projects/{project.id}/exports/{snapshot['id']}", expect=(200, 204, 404))
    return tasks, project.label_config


def read_export_file(path: Path) -> list[dict]:
    """Tasks from a saved Label Studio JSON export; a one-line error when it is anything else."""
    if not path.is_file():
        raise BadInputError(f"export file {path} does not exist")
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise BadInputError(f"{path} is not Label Studio JSON (not JSON at all); export the project as JSON") from None
    if not isinstance(tasks, list) or not all(isinstance(task, dict) and "data" in task for task in tasks):
        raise BadInputError(
            f"{path} is not Label Studio JSON (expected a list of tasks with 'data'); export the project as JSON"
        )
    return tasks


def axes_of(label_config: str | None) -> list[str]:
    """The axes a project asks about: its `<Choices>` names, or the default axes without a config."""
    if not label_config:
        return list(AXES)
    root = ElementTree.fromstring(label_config)
    return [element.get("name") for element in root.iter("Choices") if element.get("name")]
