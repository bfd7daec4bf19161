"""Micro checkpoints of the glyph family for evaluation tests: random weights, built in code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> list[Path]:
    """Two tiny untrained glyph generators saved as ``run/checkpoint-0`` and ``run/checkpoint-10``
    (one 32-wide layer), with the step transformers records in each, as one training run would
    leave them."""
    from imagepref.policy.pretrain import micro_generator

    root = tmp_path_factory.mktemp("run")
    paths = []
    for step, seed in ((0, 0), (10, 1)):
        path = root / f"checkpoint-{step}"
        micro_generator(seed=0, model_seed=seed).save_pretrained(path)
        # transformers writes the step of every checkpoint it saves into trainer_state.json.
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        paths.append(path)
    return paths


def heldout_record(step: int, accuracy: float, kl: float) -> dict:
    """One held-out monitoring line of ``metrics.jsonl``, with the keys ``HeldoutMonitor`` logs."""
    return {
        "step": step,
        "time": 1.0e9 + step,
        "heldout/aesthetics": 0.9,
        "heldout/prompt_fidelity": 0.3 + accuracy / 2,
        "heldout/safety": 0.9,
        "heldout/ocr_word_accuracy": accuracy,
        "heldout/safety_violation_rate": 0.1,
        "heldout/kl": kl,
    }


def write_aligned_run(run: Path, method: str, base: Path, steps: int | None, lines: list[dict], save) -> Path:
    """An alignment run folder as the aligners leave it after merging: ``align.json`` (its
    ``finished`` entry only when ``steps`` is given), ``metrics.jsonl`` and the merged generator,
    written by ``save(folder)``, in ``merged/``. Returns the merged folder."""
    run.mkdir(parents=True)
    record = {"method": method, "settings": {"monitor_prompts": 16}, "base": str(base), "base_fingerprint": "0"}
    if steps is not None:
        record["finished"] = {"steps": steps, "seconds": 1.0, "train_loss": 0.0, "adapter": "adapter"}
    (run / "align.json").write_text(json.dumps(record))
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    save(run / "merged")
    return run / "merged"


def quickstart_folders(root: Path, save_base, save_aligned) -> dict[str, Path]:
    """The checkpoints of a quickstart run under ``root``, as its eval stage links them: ``base``
    (the pretrained generator, ``save_base(folder)``) and ``aligned-round-1``, a link to GRPO's
    merged generator; GRPO (120 steps, monitored at 0, 25, ... 100) started from DPO's merged
    generator (30 steps, monitored at 0 and 25), each written by ``save_aligned(folder, seed)``.
    A training log line without held-out figures and a step logged twice (a resumed run) are in
    GRPO's log too."""
    base = root / "stages" / "pretrain" / "generator"
    save_base(base)
    align = root / "stages" / "r1" / "align"
    dpo_lines = [heldout_record(0, 0.25, 0.0), heldout_record(25, 0.3, 0.5)]
    dpo = write_aligned_run(align / "dpo", "dpo", base, 30, dpo_lines, lambda path: save_aligned(path, 1))
    grpo_lines = [heldout_record(step, 0.3 + step / 500, step / 100) for step in (0, 25, 50, 75)]
    grpo_lines += [{"step": 80, "time": 1.0e9, "loss": 0.01, "reward": 0.7}, heldout_record(75, 0.45, 0.8)]
    grpo_lines.append(heldout_record(100, 0.5, 1.1))
    grpo = write_aligned_run(align / "grpo", "grpo", dpo, 120, grpo_lines, lambda path: save_aligned(path, 2))
    links = root / "stages" / "eval" / "checkpoints"
    links.mkdir(parents=True)
    (links / "base").symlink_to(base, target_is_directory=True)
    (links / "aligned-round-1").symlink_to(grpo, target_is_directory=True)
    return {"base": links / "base", "aligned": links / "aligned-round-1", "dpo": dpo, "grpo": grpo}


@pytest.fixture(scope="session")
def quickstart_like(tmp_path_factory) -> dict[str, Path]:
    """``quickstart_folders`` of micro glyph generators (random weights); the base's
    ``pretrain.json`` records 3 steps."""
    from imagepref.policy.pretrain import micro_generator

    def save_base(path: Path) -> None:
        micro_generator(seed=0, model_seed=0).save_pretrained(path)
        (path / "pretrain.json").write_text(json.dumps({"seed": 0, "losses": [3.0, 2.0, 1.5], "config": {"steps": 3}}))

    def save_aligned(path: Path, seed: int) -> None:
        micro_generator(seed=0, model_seed=seed).save_pretrained(path)

    return quickstart_folders(tmp_path_factory.mktemp("quickstart"), save_base, save_aligned)


@pytest.fixture(scope="session")
def shipped_quickstart(tmp_path_factory) -> dict[str, Path]:
    """``quickstart_folders`` of copies of the shipped pretrained glyph generator (base and
    aligned alike), which draws readable signs, so OCR finds words and boxes."""
    import shutil

    from imagepref.policy.glyphworld import SHIPPED_GENERATOR

    def save_aligned(path: Path, seed: int) -> None:
        # A merged generator carries no pretrain.json: only the pretraining's own folder does.
        shutil.copytree(SHIPPED_GENERATOR, path, ignore=shutil.ignore_patterns("pretrain.json"))

    return quickstart_folders(
        tmp_path_factory.mktemp("shipped-quickstart"),
        lambda path: shutil.copytree(SHIPPED_GENERATOR, path),
        save_aligned,
    )


PROMPTS = [
    'a poster with "OPEN" in red letters',
    'a sign that says "Cafe" in blue letters',
    'a label reading "42"',
    'two signs: "IN" and "OUT"',
    "a plain sign with no words",
]


@pytest.fixture(scope="session")
def prompts_file(tmp_path_factory) -> Path:
    """Five prompts in the user JSONL format: four with targets (one with two pieces), one without."""
    import json

    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path
