"""Push a candidate set into the comparison project as pair tasks, exactly once.

The server is the record of what is in: before importing, push reads the pair ids already in the
project and imports only the rest, in batches that Label Studio saves atomically. A batch whose
answer was lost is checked against the server again before it is retried, so a retry or a re-run
never imports a pair twice. A pair id that is already there but shows other image files is a
clash of candidate ids between two sets, and push refuses it before importing anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from imagepref.errors import BadInputError
from imagepref.labeling.candidates import CandidateSet, load_candidate_set, load_pair_scores
from imagepref.labeling.config import LabelingConfig, shows_edits
from imagepref.labeling.connection import LabelStudioConnection, LabelStudioUnavailableError, retry_delays
from imagepref.labeling.pairing import PlannedPair, plan_gold_pairs, plan_pairs, prediction_result
from imagepref.labeling.project import ensure_image_storage, existing_pair_ids, existing_pairs, require_project

BATCH_SIZE = 500


@dataclass(frozen=True)
class PushReport:
    """What a push did: pairs planned, added and already there, gold pairs among the added."""

    project_id: int
    planned: int
    added: int
    already_present: int
    gold_added: int
    seconds: float


def local_file_url(image: Path, document_root: Path) -> str:
    """The URL under which Label Studio's local-files serving shows `image`."""
    relative = image.resolve().relative_to(document_root.resolve())
    return "/data/local-files/?d=" + quote(relative.as_posix(), safe="/")


def task_payload(
    pair: PlannedPair, candidates: CandidateSet, document_root: Path, pre_annotate: bool, model_version: str
) -> dict:
    """One Label Studio task for a pair: what the annotator sees plus the recorded side mapping."""
    task: dict = {
        "data": {
            "prompt": pair.prompt,
            "prompt_id": pair.prompt_id,
            "image_left": local_file_url(candidates.image(pair.candidate_left), document_root),
            "image_right": local_file_url(candidates.image(pair.candidate_right), document_root),
            "pair_id": pair.pair_id,
            "candidate_a": pair.candidate_a,
            "candidate_b": pair.candidate_b,
            "candidate_left": pair.candidate_left,
            "candidate_right": pair.candidate_right,
            "is_gold": pair.is_gold,
            "gold": pair.gold,
        }
    }
    if candidates.has_edits:
        row = candidates.table.loc[pair.candidate_a]
        task["data"] |= {
            "image_source": local_file_url(candidates.image(row["source_candidate"]), document_root),
            "source_candidate": row["source_candidate"],
            "instruction": row["instruction"],
            # The glyph world's description of the edit, for judges that check it by its rules.
            "edit": row["edit"] if isinstance(row.get("edit"), str) else None,
        }
    if pre_annotate and pair.p_a and not pair.is_gold:
        confidence = sum(max(p, 1.0 - p) for p in pair.p_a.values()) / len(pair.p_a)
        task["predictions"] = [
            {"result": prediction_result(pair), "score": round(confidence, 4), "model_version": model_version}
        ]
    return task


def push(
    connection: LabelStudioConnection,
    candidate_dir: Path,
    config: LabelingConfig,
    document_root: Path | None,
    pre_annotate: bool = False,
    batch_size: int = BATCH_SIZE,
) -> PushReport:
    """Make pairs from a candidate set and import the ones the project does not have yet.

    `document_root` is the folder the server serves local files from (a managed server's
    `--files-root`); the candidate set must lie inside it. Pairs come from `config.pairing`,
    gold pairs are mixed in at `config.gold_rate`, and with `pre_annotate` each regular pair
    carries the reward model's choice per axis from `config.scores_file` as a prediction.
    """
    started = time.monotonic()
    candidates = load_candidate_set(Path(candidate_dir))
    scores = load_pair_scores(config.scores_file, config.axes) if config.scores_file else None
    if pre_annotate and scores is None:
        raise BadInputError(
            "pre-annotations need a scores file (scores_file / --scores) with per-axis probabilities or scores"
        )
    regular = plan_pairs(candidates, config, scores)
    planned = regular + plan_gold_pairs(candidates, config, len(regular))
    if document_root is None:
        raise BadInputError(
            "the folder Label Studio serves images from is unknown: start the managed server "
            "(`imagepref label server start`) or, with --url, pass --document-root"
        )
    document_root = Path(document_root).resolve()
    if document_root not in candidates.images_dir.parents:
        raise BadInputError(
            f"candidate set {candidates.root} is outside the folder Label Studio serves ({document_root}); "
            "move it there or restart the server with --files-root"
        )
    project = require_project(connection, config.title)
    if candidates.has_edits != shows_edits(project.label_config):
        raise BadInputError(
            f"candidate set {candidate_dir} holds edits; push it into a project of edits "
            "(`imagepref label create --edits`, or edits: true)"
            if candidates.has_edits
            else f"candidate set {candidate_dir} holds no edits (no source_candidate and instruction); "
            f"project {config.title!r} compares edits"
        )
    ensure_image_storage(connection, project.id, candidates.images_dir)
    present = existing_pairs(connection, project.id)
    for pair in planned:
        if pair.pair_id in present:
            _refuse_clash(pair, present[pair.pair_id], candidates, document_root, config.title)
    todo = [pair for pair in planned if pair.pair_id not in present]
    model_version = f"scores:{Path(config.scores_file).name}" if config.scores_file else ""
    tasks = {pair.pair_id: task_payload(pair, candidates, document_root, pre_annotate, model_version) for pair in todo}
    for start in range(0, len(todo), batch_size):
        _import_batch(connection, project.id, [pair.pair_id for pair in todo[start : start + batch_size]], tasks)
    return PushReport(
        project.id,
        len(planned),
        len(todo),
        len(planned) - len(todo),
        sum(pair.is_gold for pair in todo),
        time.monotonic() - started,
    )


def _refuse_clash(pair: PlannedPair, existing: dict, candidates: CandidateSet, document_root: Path, title: str) -> None:
    """Raise unless the pair already in the project shows the same image files as `pair` would."""
    shown = {
        existing.get("candidate_left"): existing.get("image_left"),
        existing.get("candidate_right"): existing.get("image_right"),
    }
    for candidate in (pair.candidate_a, pair.candidate_b):
        url = local_file_url(candidates.image(candidate), document_root)
        if shown.get(candidate) != url:
            raise BadInputError(
                f"candidate id {candidate!r} of {candidates.root} is already in project {title!r} with another "
                f"image ({shown.get(candidate) or 'none'}, not {url}): candidate ids must be unique across "
                "candidate sets; make sets with `imagepref generate` (its ids end in a digest of each image) "
                "or rename this set's candidates"
            )


def _import_batch(
    connection: LabelStudioConnection, project_id: int, pair_ids: list[str], tasks: dict[str, dict]
) -> None:
    for delay in [*retry_delays(), None]:
        try:
            connection.request(
                "POST", f"/api/projects/{project_id}/import", retry=False, json=[tasks[pair_id] for pair_id in pair_ids]
            )
            return
        except LabelStudioUnavailableError:
            if delay is None:
                raise LabelStudioUnavailableError(
                    f"push stopped: Label Studio at {connection.url} stopped answering; the pairs already in stay, "
                    "and running the same push again adds only the missing ones"
                ) from None
            time.sleep(delay)
            # The lost answer may belong to a batch the server did save: ask before resending.
            try:
                present = existing_pair_ids(connection, project_id)
            except LabelStudioUnavailableError:
                continue
            pair_ids = [pair_id for pair_id in pair_ids if pair_id not in present]
            if not pair_ids:
                return
