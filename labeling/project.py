"""The Label Studio project of a comparison study: create it, find it, read its tasks.

A project is found by its title, so every command can name it from the config alone. Open-source
Label Studio has no per-task overlap assignment, but it does honour `maximum_annotations` in its
label stream (breadth first: tasks stay in the queue until k people labeled them, and nobody
gets a task twice), so the overlap k is set there, on 100 % of the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagepref.errors import ImagePrefError
from imagepref.labeling.config import LabelingConfig, label_config_xml
from imagepref.labeling.connection import LabelStudioConnection

PAGE_SIZE = 1000


class MissingProjectError(ImagePrefError):
    """No project with the requested title exists on the server."""


@dataclass(frozen=True)
class ProjectInfo:
    """The server's view of a project: id, title, label config XML and overlap."""

    id: int
    title: str
    label_config: str
    overlap: int


def _info(payload: dict) -> ProjectInfo:
    return ProjectInfo(
        payload["id"], payload["title"], payload["label_config"], payload.get("maximum_annotations") or 1
    )


def find_project(connection: LabelStudioConnection, title: str) -> ProjectInfo | None:
    """The project titled `title`, or None when there is none."""
    found = connection.json("GET", "/api/projects/", params={"title": title, "page_size": 100})
    for project in found.get("results", found if isinstance(found, list) else []):
        if project["title"] == title:
            return _info(project)
    return None


def require_project(connection: LabelStudioConnection, title: str) -> ProjectInfo:
    """The project titled `title`; a one-line error naming the fix when it is missing."""
    project = find_project(connection, title)
    if project is None:
        raise MissingProjectError(
            f"no project titled {title!r} on {connection.url}; create it with `imagepref label create`"
        )
    return project


def create_project(connection: LabelStudioConnection, config: LabelingConfig) -> ProjectInfo:
    """Create the comparison project, or bring an existing one with the same title up to date.

    The project shows the prompt, the two images side by side, one required left/right/tie
    question per axis with hotkeys and an optional comment; the instructions markdown is shown
    before labeling; each task is labeled by `config.overlap` annotators.
    """
    settings = {
        "title": config.title,
        "label_config": label_config_xml(config),
        "expert_instruction": config.instructions_html(),
        "show_instruction": config.instructions is not None,
        "maximum_annotations": config.overlap,
        "overlap_cohort_percentage": 100,
        "show_skip_button": True,
        "enable_empty_annotation": False,
        "description": f"imagepref pairwise comparisons on {', '.join(config.axes)}",
    }
    existing = find_project(connection, config.title)
    if existing is None:
        return _info(connection.json("POST", "/api/projects/", json=settings))
    return _info(connection.json("PATCH", f"/api/projects/{existing.id}/", json=settings))


def ensure_image_storage(connection: LabelStudioConnection, project_id: int, images_dir: Path) -> None:
    """Make sure the project has a local-files storage for exactly `images_dir`.

    Label Studio serves a local file only when a storage of the project covers its folder, so
    this restricts what the project can show to the candidate set's images.
    """
    storages = connection.json("GET", "/api/storages/localfiles", params={"project": project_id})
    if any(Path(storage["path"]) == images_dir for storage in storages):
        return
    connection.request(
        "POST",
        "/api/storages/localfiles",
        json={
            "project": project_id,
            "path": str(images_dir),
            "title": f"images {images_dir.parent.name}",
            "use_blob_urls": False,
            "regex_filter": r".*\.(png|jpg|jpeg|webp)$",
        },
    )


def list_task_data(connection: LabelStudioConnection, project_id: int) -> list[dict]:
    """Every task of the project as `{"id": ..., "data": {...}}`, page by page."""
    tasks: list[dict] = []
    page = 1
    while True:
        answer = connection.request(
            "GET",
            "/api/tasks/",
            params={"project": project_id, "page": page, "page_size": PAGE_SIZE, "include": "id,data"},
            expect=(200, 404),
        )
        if answer.status_code == 404:  # Label Studio answers 404 past the last page
            break
        body = answer.json()
        batch = body.get("tasks", [])
        tasks.extend(batch)
        if not batch or len(tasks) >= body.get("total", 0):
            break
        page += 1
    return tasks


def existing_pairs(connection: LabelStudioConnection, project_id: int) -> dict[str, dict]:
    """The data of each pair already imported into the project, by pair id (the server is the
    record, not a local file)."""
    return {
        task["data"]["pair_id"]: task["data"]
        for task in list_task_data(connection, project_id)
        if task["data"].get("pair_id") is not None
    }


def existing_pair_ids(connection: LabelStudioConnection, project_id: int) -> set[str]:
    """The pair ids already imported into the project."""
    return set(existing_pairs(connection, project_id))
