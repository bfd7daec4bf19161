"""``imagepref eval``: generate (or reuse) each checkpoint's images, read them, score them, compare
the checkpoints, and write ``results.json``, ``summary.md`` and ``report.html``.

Everything a user can get wrong is checked before the first image is sampled: the checkpoint
folders, the OCR engine and its packages, the prompts, the baseline. Outputs are written under a
temporary name and renamed, so a failed run never leaves a half-written report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from imagepref.errors import BadInputError
from imagepref.eval.config import EvalSettings
from imagepref.eval.figures import (
    OTHER_FIGURES,
    TEXT_FIGURES,
    UNSAFE_KEY,
    axis_figures,
    best_checkpoints,
    diversity,
    kind_figures,
    reward_safety_violation_rate,
    safety_violation_rate,
    text_figures,
    win_rates,
)
from imagepref.eval.generation import ImageSet, generate_image_set
from imagepref.eval.metrics import score_text
from imagepref.eval.ocr import drop_noise, get_engine
from imagepref.eval.ocr_pool import OCRPool
from imagepref.eval.prompts import EvalPrompt

# A reward scorer: (images, prompts, tokens, source_tokens, instructions) -> {axis: one score per
# image}; the last two are None for images. ``reward_model_scorer`` makes one.
RewardScorer = Callable[..., dict[str, list[float]]]


def reward_model_scorer(path: Path) -> RewardScorer:
    """The reward model in the folder ``path`` as a scorer: each head's raw score per image, plus
    under ``UNSAFE_KEY`` whether its safety head calls the image unsafe (when it has one). A token
    reward model reads the images' codes, a model of edits each result with its source's codes and
    its instruction."""
    from imagepref.reward import load_reward_model

    model = load_reward_model(path)
    reads_tokens = model.config.backbone == "token"

    def score(images, prompts, tokens, source_tokens=None, instructions=None):
        raw = model.raw_scores(
            None if reads_tokens else images,
            prompts,
            tokens if reads_tokens else None,
            source_tokens=source_tokens,
            instructions=instructions,
        )
        scores = {axis: [float(v) for v in raw[:, i]] for i, axis in enumerate(model.axes)}
        unsafe = model.unsafe_from_scores(raw)
        if unsafe is not None:
            scores[UNSAFE_KEY] = [float(v) for v in unsafe]
        return scores

    return score


# The folder an alignment run's adapter is merged into by the recipes and ``run_aligner(merge=True)``.
MERGED_DIR = "merged"


def checkpoint_training(path: Path) -> dict[str, Any] | None:
    """What trained the generator folder ``path``, from that training's own record, as
    ``{"method", "steps", "run", "base"}``; None when the folder carries no record (a folder's
    name is never read as a step: the recipes' ``aligned-round-1`` is not step 1).

    - The merged generator of an alignment run (``RUN/merged``) or a full fine-tune's
      ``RUN/adapter``: the method and the steps finished in ``RUN/align.json``, and the
      generator the run started from.
    - A transformers checkpoint: ``trainer_state.json``'s ``global_step``.
    - The output of ``imagepref pretrain``: the steps ``pretrain.json`` records."""
    from imagepref.policy.align.checkpoints import ADAPTER_DIR, RUN_FILE

    folder = Path(path).resolve()
    state = folder / "trainer_state.json"
    if state.is_file():
        try:
            steps = int(json.loads(state.read_text())["global_step"])
        except (ValueError, KeyError, TypeError):
            steps = None
        return {"method": "trainer", "steps": steps, "run": str(folder.parent), "base": None}
    run = folder.parent
    if folder.name in (MERGED_DIR, ADAPTER_DIR) and (run / RUN_FILE).is_file():
        record = json.loads((run / RUN_FILE).read_text())
        return {
            "method": record.get("method"),
            "steps": (record.get("finished") or {}).get("steps"),
            "run": str(run),
            "base": record.get("base"),
        }
    pretrained = folder / "pretrain.json"
    if pretrained.is_file():
        record = json.loads(pretrained.read_text())
        steps = len(record["losses"]) if "losses" in record else record.get("config", {}).get("steps")
        return {"method": "pretrain", "steps": steps, "run": str(folder), "base": None}
    return None


def training_curve(path: Path) -> list[dict[str, Any]]:
    """The held-out figures the aligners logged while training the generator folder ``path``:
    one segment per alignment run, oldest first, following each run's base back while it is
    another run's merged generator (the quickstart's GRPO starts from DPO's). Each segment is
    ``{"method", "run", "steps", "base", "monitor_prompts", "records"}``, ``records`` as
    ``policy.align.monitoring.heldout_history`` reads them (empty for a run that monitored
    nothing); no segments when no run logged any."""
    from imagepref.policy.align.checkpoints import RUN_FILE
    from imagepref.policy.align.monitoring import heldout_history

    segments: list[dict[str, Any]] = []
    seen: set[str] = set()
    training = checkpoint_training(path)
    while training is not None and training["method"] not in ("trainer", "pretrain") and training["run"] not in seen:
        seen.add(training["run"])
        settings = json.loads((Path(training["run"]) / RUN_FILE).read_text()).get("settings") or {}
        records = heldout_history(Path(training["run"]))
        segments.append(training | {"monitor_prompts": settings.get("monitor_prompts"), "records": records})
        base = Path(training["base"]) if training["base"] else None
        training = checkpoint_training(base) if base is not None and base.is_dir() else None
    # Runs that logged nothing stay in, so the later runs' steps keep their place on the axis.
    return segments[::-1] if any(segment["records"] for segment in segments) else []


def checkpoint_names(paths: list[Path]) -> list[str]:
    """Short unique names: the folder names, or parent/folder where folder names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(names)) < len(names):
        raise BadInputError("the same checkpoint is given twice; pass each checkpoint folder once")
    return names


def check_inputs(checkpoints: list[Path], prompts: list[EvalPrompt], settings: EvalSettings) -> list[str]:
    """Everything checked before any work: returns the checkpoint names, or raises one error."""
    from imagepref.policy.generator import read_config

    if not checkpoints:
        raise BadInputError("no checkpoints given: pass --checkpoints DIR [DIR ...]")
    for path in checkpoints:
        if not path.is_dir():
            raise BadInputError(
                f"checkpoint folder {path} does not exist; pass folders made by `imagepref pretrain` or an aligner"
            )
        read_config(path)
    if not prompts:
        raise BadInputError("the prompt set is empty; pass a file with at least one prompt")
    if settings.samples < 1:
        raise BadInputError(f"--samples must be at least 1, not {settings.samples}")
    names = checkpoint_names(checkpoints)
    if settings.baseline is not None and settings.baseline not in names:
        baseline = Path(settings.baseline)
        if baseline in checkpoints:
            settings.baseline = names[checkpoints.index(baseline)]
        else:
            raise BadInputError(f"baseline {settings.baseline!r} is not one of the checkpoints ({', '.join(names)})")
    if any(p.is_edit for p in prompts):
        # Every checkpoint must edit: a family that cannot is refused before any image is drawn.
        import importlib

        from imagepref.policy.config import GENERATOR_FAMILIES
        from imagepref.policy.editing import check_can_edit

        for path in checkpoints:
            module, _, name = GENERATOR_FAMILIES[read_config(path).family].partition(":")
            check_can_edit(getattr(importlib.import_module(module), name))  # the family's class says
    get_engine(settings.ocr_engine)  # an unknown engine or a missing package fails here, not after sampling
    return names


def _score_images(
    image_set: ImageSet,
    readings: list[list[Any]],
    prompts: dict[str, EvalPrompt],
    family: str,
    out: Path,
    reward_scorer: RewardScorer | None,
) -> list[dict[str, Any]]:
    from imagepref.eval.ocr import load_image

    rows = image_set.candidates.to_dict("records")
    rule_judge = rule_findings = edit_judge = None
    if family == "glyph" and image_set.sources is not None:
        from imagepref.policy.glyphworld.edits import edit_from_record
        from imagepref.policy.glyphworld.edits import judge_edit as edit_judge
    elif family == "glyph":
        from imagepref.policy.glyphworld.rules import findings as rule_findings
        from imagepref.policy.glyphworld.rules import judge_image as rule_judge
    rewards: dict[str, list[float]] = {}
    unsafe = None
    if reward_scorer is not None:
        images = [load_image(p) for p in image_set.image_paths()]
        tokens = [list(r["image_tokens"]) for r in rows]
        edits = {}
        if image_set.sources is not None:
            sources = image_set.sources["image_tokens"]
            edits = {
                "source_tokens": [list(sources.at[r["source_candidate"]]) for r in rows],
                "instructions": [r["instruction"] for r in rows],
            }
        rewards = {
            axis: [float(v) for v in values]
            for axis, values in reward_scorer(images, [r["prompt"] for r in rows], tokens, **edits).items()
        }
        unsafe = rewards.pop(UNSAFE_KEY, None)
    scored = []
    for index, (row, words) in enumerate(zip(rows, readings)):
        words = drop_noise(words)
        reading = " ".join(w.text for w in words)
        prompt = prompts[row["prompt_id"]]
        record: dict[str, Any] = {
            "candidate_id": row["candidate_id"],
            "prompt_id": row["prompt_id"],
            "sample": int(row["sample"]),
            "image": str((image_set.folder / row["image_path"]).relative_to(out)),
            "reading": reading,
            "ocr_words": [[w.text, round(w.confidence, 4), list(w.box)] for w in words],
            "text": score_text(prompt.targets, reading).to_dict(),
        }
        if image_set.sources is not None:
            source = image_set.folder / image_set.sources.at[row["source_candidate"], "image_path"]
            record["source_image"] = str(source.relative_to(out))
        if edit_judge is not None:
            # The edit rules on the result against the source as the generator saw it (its codes
            # decoded); the result's text is the reading above.
            with Image.open(source) as before, Image.open(image_set.folder / row["image_path"]) as after:
                record["rules"] = edit_judge(
                    edit_from_record(prompt.metadata["edit"]),
                    before.convert("RGB"),
                    after.convert("RGB"),
                    lambda _image, text=reading: text,
                )
        if rule_judge is not None:
            with Image.open(image_set.folder / row["image_path"]) as image:
                record["rules"] = rule_judge(image, prompt.prompt, lambda _image, text=reading: text)
                record["rule_findings"] = rule_findings(image, prompt.prompt)
        if rewards:
            record["reward"] = {axis: values[index] for axis, values in rewards.items()}
        if unsafe is not None:
            record["reward_unsafe"] = unsafe[index]
        scored.append(record)
    return scored


def _summary(
    images: list[dict[str, Any]],
    tokens: list[list[int]],
    seconds: float,
    seed: int,
    kinds: dict[str, str] | None = None,
) -> dict[str, Any]:
    summary = text_figures(images, seed=seed)
    summary.update(kind_figures(images, kinds or {}, seed=seed))
    for source in ("rules", "reward"):
        for axis, figure in axis_figures(images, source, seed=seed).items():
            summary[f"{source}/{axis}"] = figure
    if any(i.get("rules") for i in images):
        summary["safety_violation_rate"] = safety_violation_rate(images, seed=seed)
    if any(i.get("reward_unsafe") is not None for i in images):
        summary["reward_safety_violation_rate"] = reward_safety_violation_rate(images, seed=seed)
    summary["diversity"] = diversity(images, tokens, seed=seed)
    summary["seconds_per_image"] = {"value": seconds, "ci": [None, None], "n": len(images)}
    return summary


def evaluate(
    checkpoints: list[Path],
    prompts: list[EvalPrompt],
    out: Path,
    settings: EvalSettings | None = None,
    prompt_set: str = "custom",
    reward_scorer: RewardScorer | None = None,
    progress: bool = True,
    on_step: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoints`` on ``prompts`` into ``out``; returns what ``results.json`` holds.

    ``on_step(what, done, total)`` hears of each batch of work as it finishes (the images of each
    checkpoint, then the OCR readings), for a log beside or instead of the progress bars."""
    from rich.progress import Progress

    from imagepref.eval.report import write_reports
    from imagepref.policy.generator import read_config

    settings = settings or EvalSettings()
    checkpoints = [Path(c) for c in checkpoints]
    names = check_inputs(checkpoints, prompts, settings)
    baseline = settings.baseline or names[0]
    engine = get_engine(settings.ocr_engine)
    out.mkdir(parents=True, exist_ok=True)
    image_sets: list[ImageSet] = []
    with Progress(disable=not progress, transient=False) as bar:
        for name, path in zip(names, checkpoints):
            task = bar.add_task(f"images {name}", total=len(prompts) * settings.samples)
            image_sets.append(
                generate_image_set(
                    path,
                    prompts,
                    out / "images",
                    settings.samples,
                    settings.seed,
                    settings.sampler(),
                    settings.batch_size,
                    on_progress=lambda done, total, task=task, name=name: (
                        bar.update(task, completed=done),
                        on_step and on_step(f"images {name}", done, total),
                    ),
                    dtype=settings.dtype,
                    device=settings.device,
                )
            )
            bar.update(task, completed=len(prompts) * settings.samples)
    paths = [p for s in image_sets for p in s.image_paths()]
    with OCRPool(engine, workers=settings.workers, images=len(paths)) as pool:
        if on_step is None:
            readings = pool.read_many(paths, progress=f"OCR ({pool.choice})" if progress else None)
        else:
            readings = []
            for reading in pool.iter_read(paths):
                readings.append(reading)
                if len(readings) % settings.batch_size == 0 or len(readings) == len(paths):
                    on_step("ocr", len(readings), len(paths))
    by_id = {p.prompt_id: p for p in prompts}
    kinds = {p.prompt_id: str(p.metadata["kind"]) for p in prompts if p.metadata.get("kind") is not None}
    results_checkpoints = []
    offset = 0
    for name, path, image_set in zip(names, checkpoints, image_sets):
        count = len(image_set.candidates)
        family = read_config(path).family
        images = _score_images(image_set, readings[offset : offset + count], by_id, family, out, reward_scorer)
        offset += count
        tokens = [list(t) for t in image_set.candidates["image_tokens"]]
        training = checkpoint_training(path)
        results_checkpoints.append(
            {
                "name": name,
                "path": str(path),
                "step": training["steps"] if training else None,
                "training": training,
                "training_curve": training_curve(path),
                "family": family,
                "images_reused": image_set.reused,
                "no_target_images": sum(not i["text"]["has_target"] for i in images),
                "image_folder": str(image_set.folder.relative_to(out)),
                "summary": _summary(images, tokens, image_set.seconds_per_image, settings.bootstrap_seed, kinds),
                "images": images,
            }
        )
    base = next(c for c in results_checkpoints if c["name"] == baseline)
    for checkpoint in results_checkpoints:
        source = "reward" if reward_scorer is not None else "rules"
        checkpoint["win_rates"] = (
            {}
            if checkpoint is base
            else win_rates(checkpoint["images"], base["images"], source, settings.bootstrap_seed)
        )
        checkpoint["win_rate_source"] = source
    results = {
        "format": "imagepref-eval/1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "prompt_set": {"name": prompt_set, "prompts": len(prompts), "with_target": sum(p.has_target for p in prompts)},
        "ocr": engine.settings,
        "settings": settings.model_dump() | {"baseline": baseline},
        "figures": {
            f.key: {"label": f.label, "higher_is_better": f.higher_is_better, "percent": f.percent}
            for f in TEXT_FIGURES + OTHER_FIGURES
        },
        "best": best_checkpoints(results_checkpoints, settings.bootstrap_seed),
        "prompts": [
            {"prompt_id": p.prompt_id, "prompt": p.prompt, "targets": p.targets}
            | ({"kind": kinds[p.prompt_id]} if p.prompt_id in kinds else {})
            | (
                {"edit_kind": p.metadata.get("edit_kind"), "source_prompt": p.metadata.get("source_prompt")}
                if p.is_edit
                else {}
            )
            for p in prompts
        ],
        "checkpoints": results_checkpoints,
    }
    write_reports(results, out)
    return results
