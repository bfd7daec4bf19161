"""The label stage: push the round's pairs to Label Studio, get them labeled (simulated annotators,
or people the run waits for), pull the preference data.

The Label Studio connection and the judge of the simulated annotators come from the run's
services (``recipes.services``): a managed server keeps its state in ``<run>/label-studio``, serves
images from ``<run>/stages``, where every candidate set lies, and is started on first use and
stopped when the run ends. From round 2 on (``label.flywheel``) the previous round's reward model scores the new
candidates, its choices go in as pre-annotations and the pairs it is least sure of come first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from imagepref.errors import BadInputError
from imagepref.formats import AXES, EDIT_AXES, write_scores
from imagepref.recipes.runner import StageContext


def project_title(context: StageContext) -> str:
    """One project per recipe, run folder and round."""
    return f"{context.recipe.name} {context.run.root.name} round {context.stage.round}"


def _reward_scores(context: StageContext, candidates: Path) -> Path | None:
    """The previous round's reward model's view of every pair of the new candidates (the labeling
    scores format, per pair: P(a preferred), uncertainty and its members' disagreement)."""
    model_dir = context.output("reward", "model", (context.stage.round or 1) - 1)
    if model_dir is None:
        return None
    from imagepref.reward import load_reward_model
    from imagepref.reward.scoring import pair_scores

    model = load_reward_model(model_dir)
    table = pair_scores(model, [candidates])
    path = context.out / "reward_scores.parquet"
    write_scores(table, path, model.axes)
    context.log(f"reward model {context.relative(model_dir)} scored {len(table)} pairs for pre-annotation")
    return path


def run_label(context: StageContext) -> dict[str, Any]:
    """Push, label (simulated or human), pull; returns the preference data folder."""
    from imagepref.labeling import LabelingConfig, create_project, pull, push, simulate

    section = context.recipe.label
    label_studio = context.services.label_studio
    candidates = context.output("generate", "candidates")
    if candidates is None:
        raise BadInputError(f"stage {context.stage.key} has no candidate set; run generate first")
    from imagepref.labeling.candidates import load_candidate_set

    edits = load_candidate_set(candidates).has_edits
    connection = label_studio.connection()
    title = project_title(context)
    scores = _reward_scores(context, candidates) if section.flywheel and (context.stage.round or 1) > 1 else None
    settings = LabelingConfig(
        title=title,
        edits=edits,
        overlap=section.overlap,
        seed=context.recipe.seed + (context.stage.round or 1),
        pairing="uncertainty" if scores is not None else section.pairing,
        pairs_per_prompt=section.pairs_per_prompt,
        max_pairs=section.max_pairs,
        scores_file=scores,
        instructions=Path(section.instructions) if section.instructions else None,
    )
    project = create_project(connection, settings)
    pushed = push(connection, candidates, settings, label_studio.document_root, pre_annotate=scores is not None)
    context.log(
        f"project {title!r} (id {project.id}): pushed {pushed.added} new pairs, {pushed.already_present} already there"
        + (" with reward-model pre-annotations, least certain first" if scores is not None else "")
    )
    pairs_total = pushed.added + pushed.already_present
    credentials = context.run.label_studio_dir / "annotators.json"
    if section.mode == "simulated":
        judge = context.services.judge(EDIT_AXES if edits else AXES)
        counted = {"done": 0}

        def judge_and_log(prompt, left, right, **edit):
            # An edit's task also hands over its source image and the edit (labeling.simulate).
            answers = judge(prompt, left, right, **edit)
            counted["done"] += 1
            context.step(
                counted["done"], pairs_total * min(section.overlap, section.annotators), {"judgment": counted["done"]}
            )
            return answers

        report = simulate(
            connection,
            title,
            judge_and_log,
            credentials,
            annotators=section.annotators,
            error_rate=section.error_rate,
            seed=context.recipe.seed + (context.stage.round or 1),
        )
        context.log(
            f"{section.annotators} simulated annotators submitted {report.submitted} judgments "
            f"({report.already_done} already there)"
        )
    else:
        waiting = _wait_for_people(context, connection, title, credentials, pairs_total * section.overlap)
        if waiting:
            return {"waiting": True, "project": title}
    out = context.out / "preferences"
    report = pull(out, connection=connection, title=title)
    if report.written == 0:
        raise BadInputError(
            f"project {title!r} has no usable judgments yet; label some pairs, then rerun with --continue"
        )
    context.log(f"pulled {report.written} judgments on {report.pairs} pairs ({report.quarantined} quarantined)")
    return {
        "preferences": context.relative(out),
        "candidates": context.relative(candidates),
        "project": title,
        "judgments": report.written,
        "pairs": report.pairs,
    }


def labeling_progress(agreement: dict, needed: int) -> str:
    """One line: done / needed per axis and the live agreement (Krippendorff's alpha)."""
    parts = []
    for axis, figures in agreement.get("axes", {}).items():
        alpha = figures.get("krippendorff_alpha")
        parts.append(
            f"{axis} {figures.get('answers', 0)}/{needed}" + (f" (alpha {alpha:.2f})" if alpha is not None else "")
        )
    return ", ".join(parts) or f"0/{needed} on every axis"


def _wait_for_people(context: StageContext, connection, title: str, credentials: Path, default_quota: int) -> bool:
    """Invite people, print where to label, show progress until the quota is met or --continue.
    Returns True when the run should stop and wait (interrupted before the quota)."""
    import json
    import tempfile

    from imagepref.labeling import invite, pull

    section = context.recipe.label
    for person in invite(connection, section.invite, credentials):
        how = (
            f"password in {person.password_file} (0600; hand it over privately)"
            if person.created
            else "existing account"
        )
        context.log(f"invited {person.email}: {person.login_url}, {how}")
    quota = section.quota or default_quota
    context.log(
        f"label at {connection.url}/projects/ (project {title!r}); the run goes on at {quota} judgments per axis, "
        "or when you run the same command with --continue"
    )
    if context.continue_labeling:
        return False
    try:
        while True:
            with tempfile.TemporaryDirectory(dir=context.out) as scratch:
                pull(Path(scratch) / "live", connection=connection, title=title)
                agreement = json.loads((Path(scratch) / "live" / "agreement.json").read_text())
            context.log(f"progress: {labeling_progress(agreement, quota)}")
            if all(
                figures.get("answers", 0) >= quota for figures in agreement.get("axes", {}).values()
            ) and agreement.get("axes"):
                return False
            if context.run.continue_file.exists():
                context.log("continuing with the labels so far (--continue)")
                return False
            time.sleep(section.poll_seconds)
    except KeyboardInterrupt:
        context.log("stopped waiting; the labels stay in Label Studio. Rerun with --continue to go on with them")
        return True
