"""Pull what annotators submitted and write the preference data of the contract.

The export comes from Label Studio's snapshot export (which also serves projects too large for
the quick export, and names each annotator by e-mail), or from a saved export file. Every
annotation is checked against the project's labeling config, because the server stores whatever
the API sends: unknown axes, bogus values and empty results go to `quarantine.jsonl` with the
reason, skipped (cancelled) annotations are counted, an annotator's older versions of the same
judgment are superseded by the latest (by time: Label Studio writes `10:00:00Z` without a fraction
when the microseconds are 0, so timestamps are compared parsed, never as text), and gold pairs
are written apart (`gold.parquet`).

Judged pairs whose image files are gone from the served folder are kept (the judgments were made
on the images people saw, and training reads the candidate set, which checks its own images), but
pull says so in one warning line and counts them in `pull_report.json`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from imagepref.errors import BadInputError
from imagepref.files import staged_folder
from imagepref.formats import EDIT_AXES, GOLD_FILE, write_annotations, write_pairs, write_table
from imagepref.labeling.agreement import agreement_report
from imagepref.labeling.config import CHOICES, COMMENT_FIELD
from imagepref.labeling.connection import LabelStudioConnection
from imagepref.labeling.export import axes_of, fetch_snapshot_export, read_export_file
from imagepref.labeling.preferences import annotation_frame, pair_frame, to_ab

SIMULATED_DOMAIN = "@simulated.imagepref.test"
LOCAL_FILES_PREFIX = "/data/local-files/?d="
IMAGE_FIELDS = ("image_left", "image_right", "image_source")
log = logging.getLogger(__name__)


@dataclass
class PullReport:
    """Counts of what a pull found and wrote."""

    tasks: int = 0
    annotations: int = 0
    written: int = 0
    gold: int = 0
    skipped: int = 0
    superseded: int = 0
    partial: int = 0
    quarantined: int = 0
    pairs: int = 0
    missing_images: int = 0
    first_missing_image: str | None = None
    seconds: float = 0.0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


def annotator_name(completed_by: object) -> str:
    """The annotator's e-mail from an export (an id when the export carries only ids)."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id"))
    return f"user-{completed_by}"


def annotation_time(annotation: dict) -> pd.Timestamp:
    """When an annotation was last saved (`updated_at`, else `created_at`), parsed; the earliest
    possible time when it carries neither or an unreadable one."""
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    parsed = pd.to_datetime(stamp, utc=True, errors="coerce", format="ISO8601") if stamp else pd.NaT
    return pd.Timestamp.min.tz_localize("UTC") if pd.isna(parsed) else parsed


def _newer(annotation: dict, than: dict) -> bool:
    # Equal times fall back to the annotation id, which Label Studio hands out in order.
    return (annotation_time(annotation), annotation.get("id") or 0) > (annotation_time(than), than.get("id") or 0)


def check_result(result: object, axes: list[str], validator) -> tuple[dict[str, str | None], str | None, str | None]:
    """Axis choices, comment, and the reason the result is invalid (None when it is valid)."""
    if not isinstance(result, list):
        return {}, None, "result is not a list"
    choices: dict[str, str | None] = {axis: None for axis in axes}
    comment = None
    for region in result:
        if not isinstance(region, dict):
            return {}, None, "a result entry is not an object"
        name, value = region.get("from_name"), region.get("value") or {}
        if name == COMMENT_FIELD:
            text = value.get("text")
            comment = " ".join(text) if isinstance(text, list) else (str(text) if text is not None else None)
            continue
        if name not in axes:
            return {}, None, f"unknown axis {name!r}"
        picked = value.get("choices")
        if not isinstance(picked, list) or len(picked) != 1 or picked[0] not in CHOICES:
            return {}, None, f"{name}: {picked!r} is not exactly one of left/right/tie"
        if choices[name] is not None:
            return {}, None, f"{name} answered twice"
        choices[name] = picked[0]
    if validator is not None and not validator.validate_annotation({"result": result}):
        return {}, None, "does not match the labeling config"
    if all(value is None for value in choices.values()):
        return {}, None, "no axis answered"
    return choices, comment, None


def parse_export(
    tasks: list, axes: list[str], label_config: str | None
) -> tuple[list[dict], list[dict], list[dict], list[dict], PullReport]:
    """Split an export into regular rows, gold rows, comments and quarantined entries."""
    validator = None
    if label_config:
        from label_studio_sdk.label_interface import LabelInterface

        validator = LabelInterface(label_config)
    report = PullReport(tasks=len(tasks))
    rows, gold_rows, comments, quarantine = [], [], [], []
    for task in tasks:
        data = task.get("data") or {}
        missing = [
            key
            for key in ("pair_id", "candidate_left", "candidate_right", "candidate_a", "candidate_b")
            if key not in data
        ]
        annotations = task.get("annotations") or []
        report.annotations += len(annotations)
        if missing:
            for annotation in annotations:
                quarantine.append(
                    {
                        "task": task.get("id"),
                        "annotation": annotation.get("id"),
                        "reason": f"task lacks {', '.join(missing)} (not pushed by imagepref)",
                        "raw": annotation,
                    }
                )
            continue
        latest: dict[str, dict] = {}
        for annotation in annotations:
            who = annotator_name(annotation.get("completed_by"))
            if who in latest:
                report.superseded += 1
                if not _newer(annotation, latest[who]):
                    continue
            latest[who] = annotation
        for who, annotation in latest.items():
            if annotation.get("was_cancelled"):
                report.skipped += 1
                continue
            choices, comment, problem = check_result(annotation.get("result"), axes, validator)
            if problem:
                quarantine.append(
                    {
                        "task": task.get("id"),
                        "annotation": annotation.get("id"),
                        "pair_id": data["pair_id"],
                        "annotator": who,
                        "reason": problem,
                        "raw": annotation.get("result"),
                    }
                )
                continue
            report.partial += any(value is None for value in choices.values())
            row = {
                "pair_id": data["pair_id"],
                "prompt": data.get("prompt"),
                "candidate_left": data["candidate_left"],
                "candidate_right": data["candidate_right"],
                "candidate_a": data["candidate_a"],
                "candidate_b": data["candidate_b"],
                **(
                    {"source_candidate": data.get("source_candidate"), "instruction": data["instruction"]}
                    if "instruction" in data
                    else {}
                ),
                "annotator": who,
                "source": "simulated" if who.endswith(SIMULATED_DOMAIN) else "human",
                **choices,
                "lead_time": annotation.get("lead_time"),
                "created_at": annotation.get("created_at"),
            }
            if comment:
                comments.append({"pair_id": data["pair_id"], "annotator": who, "comment": comment})
            if data.get("is_gold"):
                gold = data.get("gold") or {}
                gold_rows.append({**row, **{f"{axis}_gold": gold.get(axis) for axis in axes}})
            else:
                rows.append(row)
    report.quarantined = len(quarantine)
    for entry in quarantine:
        key = entry["reason"].split(":")[0]
        report.quarantine_reasons[key] = report.quarantine_reasons.get(key, 0) + 1
    report.written, report.gold = len(rows), len(gold_rows)
    return rows, gold_rows, comments, quarantine, report


def missing_images(rows: list[dict], document_root: Path) -> list[str]:
    """The image files of judged pairs (`rows` with the tasks' image URLs) that are not on disk
    under `document_root`, each once, in order; URLs that are not local files are not checked."""
    missing: dict[str, None] = {}
    for row in rows:
        for name in IMAGE_FIELDS:
            url = row.get(name)
            if isinstance(url, str) and url.startswith(LOCAL_FILES_PREFIX):
                path = document_root / unquote(url[len(LOCAL_FILES_PREFIX) :]).lstrip("/")
                if not path.is_file():
                    missing.setdefault(str(path))
    return list(missing)


def pull(
    out_dir: Path,
    axes: list[str] | None = None,
    connection: LabelStudioConnection | None = None,
    title: str | None = None,
    from_file: Path | None = None,
    document_root: Path | None = None,
) -> PullReport:
    """Write the preference data (annotations.parquet, pairs.parquet, gold.parquet, comments,
    quarantine.jsonl, agreement.json, pull_report.json, export.json) into `out_dir`.

    Reads the live project `title` through `connection`, or a saved export `from_file` (then
    `axes` says which axes to expect; default: the built-in study's, or `EDIT_AXES` when its tasks
    are edits). Everything is written into a temporary sibling folder
    first and renamed into place, so a failed pull leaves no half-written output. The judged
    pairs' images are looked for under `document_root` (default: the folder a managed server
    serves, when `connection` is one); missing ones are counted and named in one warning.
    """
    started = time.monotonic()
    if from_file is not None:
        tasks, label_config = read_export_file(Path(from_file)), None
        # A saved export has no labeling config: its tasks say whether it compared edits.
        edit_tasks = any("instruction" in (task.get("data") or {}) for task in tasks)
        axes = axes or (list(EDIT_AXES) if edit_tasks else axes_of(None))
    else:
        if connection is None or title is None:
            raise BadInputError("pull needs a server connection and a project title, or --from-file")
        tasks, label_config = fetch_snapshot_export(connection, title)
        axes = axes_of(label_config)
    rows, gold_rows, comments, quarantine, report = parse_export(tasks, axes, label_config)
    document_root = document_root or (connection.files_root if connection is not None else None)
    if document_root is not None:
        judged = {row["pair_id"] for row in (*rows, *gold_rows)}
        shown = [task.get("data") or {} for task in tasks]
        absent = missing_images(
            [data for data in shown if data.get("pair_id") in judged], Path(document_root).resolve()
        )
        if absent:
            report.missing_images, report.first_missing_image = len(absent), absent[0]
            log.warning(
                "warning: %d image file(s) of judged pairs are missing (first: %s); their judgments are kept; "
                "restore the candidate set's images/ before training on the images",
                len(absent),
                absent[0],
            )
    # A project of edits: every pushed task carries its instruction (and the tables their columns).
    edits = any("instruction" in (task.get("data") or {}) for task in tasks)
    annotations = annotation_frame(rows, axes, edits=edits)
    pairs = pair_frame(rows, axes, edits)
    report.pairs = len(pairs)
    gold = annotation_frame(
        gold_rows, axes, extra=["candidate_a", "candidate_b", *(f"{axis}_gold" for axis in axes)], edits=edits
    )
    agreement = agreement_report(to_ab(rows, axes), to_ab(gold_rows, axes), axes)
    # A pull replaces the folder whole: the old output is moved aside before the new one is
    # renamed in, so one of them is always whole.
    with staged_folder(Path(out_dir).resolve(), existing="replace") as staging:
        write_annotations(annotations, staging)
        write_pairs(pairs, staging)
        write_annotations(gold, staging, GOLD_FILE)
        write_table(pd.DataFrame(comments, columns=["pair_id", "annotator", "comment"]), staging / "comments.parquet")
        with open(staging / "quarantine.jsonl", "w", encoding="utf-8") as handle:
            for entry in quarantine:
                handle.write(json.dumps(entry, default=str) + "\n")
        (staging / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
        (staging / "agreement.json").write_text(json.dumps(agreement, indent=1), encoding="utf-8")
        report.seconds = round(time.monotonic() - started, 3)
        (staging / "pull_report.json").write_text(json.dumps(asdict(report), indent=1), encoding="utf-8")
    return report
