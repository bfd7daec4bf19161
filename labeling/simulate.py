"""Simulated annotators: scripted judges that label through Label Studio exactly like people.

Each simulated annotator has its own account (made through the invite link), logs in with its
password, downloads the two images the way the browser does, asks the judge, and submits the
answer with its own token. The judge is any callable `judge(prompt, left, right) -> {axis:
"left" | "right" | "tie"}` (an axis may be left out); on a task of an edit it is called as
`judge(instruction, left, right, source=SOURCE_IMAGE, edit=EDIT)`, with the source image's file and
the glyph world's description of the edit (a JSON text, or None). With probability `error_rate` per axis the
answer is replaced by a different one, seeded per annotator and task so runs repeat. Tasks are
dealt so that each gets `overlap` different annotators, because open-source Label Studio does not
assign overlap itself.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from imagepref.errors import BadInputError
from imagepref.labeling.accounts import AccountError, invite, login_token, stored_password
from imagepref.labeling.config import CHOICES
from imagepref.labeling.connection import LabelStudioConnection
from imagepref.labeling.export import axes_of
from imagepref.labeling.project import PAGE_SIZE, require_project
from imagepref.labeling.pull import SIMULATED_DOMAIN

Judge = Callable[[str, Path, Path], dict[str, str]]


@dataclass
class SimulationReport:
    """How many judgments the simulated annotators submitted, and how many were already there."""

    submitted: int = 0
    already_done: int = 0
    per_annotator: dict[str, int] = field(default_factory=dict)


def simulated_email(index: int) -> str:
    """The e-mail of simulated annotator number `index` (pull marks these rows source=simulated)."""
    return f"sim-{index:02d}{SIMULATED_DOMAIN}"


def apply_errors(answers: dict[str, str], axes: list[str], error_rate: float, rng: random.Random) -> dict[str, str]:
    """The judge's answers with each axis flipped to another choice with probability `error_rate`."""
    noisy = {}
    for axis in axes:
        if axis not in answers:
            continue
        answer = answers[axis]
        if answer not in CHOICES:
            raise BadInputError(f"the judge answered {answer!r} on {axis}; a judge must answer left, right or tie")
        if rng.random() < error_rate:
            answer = rng.choice([choice for choice in CHOICES if choice != answer])
        noisy[axis] = answer
    return noisy


def _all_tasks(connection: LabelStudioConnection, project_id: int) -> list[dict]:
    tasks, page = [], 1
    while True:
        answer = connection.request(
            "GET",
            "/api/tasks/",
            expect=(200, 404),
            params={"project": project_id, "page": page, "page_size": PAGE_SIZE, "fields": "all"},
        )
        if answer.status_code == 404:
            break
        batch = answer.json().get("tasks", [])
        tasks.extend(batch)
        if not batch or len(tasks) >= answer.json().get("total", 0):
            break
        page += 1
    return sorted(tasks, key=lambda task: task["id"])


def simulate(
    connection: LabelStudioConnection,
    title: str,
    judge: Judge,
    credentials_file: Path,
    annotators: int = 2,
    error_rate: float = 0.1,
    seed: int = 0,
    limit: int | None = None,
) -> SimulationReport:
    """Let `annotators` simulated people label project `title` with `judge`, each task by
    min(overlap, annotators) of them; tasks they already labeled are left alone, so a re-run
    only fills gaps. `limit` caps the tasks looked at (the first ones by id)."""
    if annotators < 1:
        raise BadInputError("simulate needs at least one annotator")
    if not 0.0 <= error_rate <= 1.0:
        raise BadInputError(f"error rate {error_rate} must lie between 0 and 1")
    project = require_project(connection, title)
    axes = axes_of(project.label_config)
    emails = [simulated_email(index + 1) for index in range(annotators)]
    invite(connection, emails, credentials_file)
    people = []
    for email in emails:
        password = stored_password(credentials_file, connection.url, email)
        if password is None:
            raise AccountError(f"{email} exists on {connection.url} but its password is not in {credentials_file}")
        token = login_token(connection.url, email, password)
        person = LabelStudioConnection(connection.url, token)
        people.append((email, person, person.check()["id"]))
    report = SimulationReport(per_annotator={email: 0 for email in emails})
    tasks = _all_tasks(connection, project.id)[:limit]
    per_task = min(project.overlap, annotators)
    with tempfile.TemporaryDirectory(prefix="imagepref-sim-") as scratch:
        images: dict[str, Path] = {}
        for index, task in enumerate(tasks):
            done_by = {annotation.get("completed_by") for annotation in task.get("annotations") or []}
            for turn in range(per_task):
                email, person, user_id = people[(index + turn) % annotators]
                if user_id in done_by:
                    report.already_done += 1
                    continue
                data = task["data"]
                left = _download(person, data["image_left"], Path(scratch), images)
                right = _download(person, data["image_right"], Path(scratch), images)
                rng = random.Random(f"{seed}:{email}:{data.get('pair_id', task['id'])}")
                if "instruction" in data:
                    source = _download(person, data["image_source"], Path(scratch), images)
                    verdicts = judge(data["instruction"], left, right, source=source, edit=data.get("edit"))
                else:
                    verdicts = judge(data.get("prompt", ""), left, right)
                answers = apply_errors(verdicts or {}, axes, error_rate, rng)
                result = [
                    {"from_name": axis, "to_name": "left", "type": "choices", "value": {"choices": [answer]}}
                    for axis, answer in answers.items()
                ]
                person.request(
                    "POST",
                    f"/api/tasks/{task['id']}/annotations/",
                    retry=False,
                    json={"result": result, "lead_time": round(rng.uniform(2.0, 12.0), 2)},
                )
                report.submitted += 1
                report.per_annotator[email] += 1
    for _, person, _ in people:
        person.close()
    return report


def _download(person: LabelStudioConnection, url: str, scratch: Path, cache: dict[str, Path]) -> Path:
    if url not in cache:
        try:
            answer = person.request("GET", url)
        except httpx.InvalidURL:
            raise BadInputError(f"task image {url!r} is not a URL the server serves") from None
        target = scratch / f"{len(cache)}{Path(url.split('?d=')[-1]).suffix or '.png'}"
        target.write_bytes(answer.content)
        cache[url] = target
    return cache[url]
