"""The align stage under ``accelerate launch`` with 2 CPU processes (gloo) on the micro model."""

from __future__ import annotations

import json

import pytest

from imagepref.recipes.config import RECIPES_DIR
from imagepref.recipes.stages.training import failure_line


@pytest.mark.slow
@pytest.mark.integration
def test_two_processes_see_different_data_and_end_with_the_same_weights(cli, micro_recipe, tmp_path):
    path = micro_recipe(
        "two-processes",
        stages=["pretrain", "align"],
        launch={
            "accelerate_config": str(RECIPES_DIR / "accelerate" / "cpu-2proc.yaml"),
            "num_processes": 2,
            "record_ranks": True,
        },
        align={
            "methods": ["dpo", "grpo"],
            "num_prompts": 4,
            "ocr_engine": "tesseract",
            "monitor": False,
            "dpo": {"steps": 3, "batch_size": 2, "save_every": 2, "lora_r": 4, "report_to": []},
            "grpo": {
                "steps": 2,
                "batch_size": 2,
                "num_generations": 2,
                "save_every": 10,
                "lora_r": 4,
                "report_to": [],
                "rewards": {"weights": {"rule_prompt_fidelity": 1.0}},
            },
        },
    )
    code, out, err = cli("run", path)
    run = tmp_path / "run"
    # On a failure, show what each process printed: the launch logs lie in the test's temp folder.
    assert code == 0, err + "".join(
        f"\n--- {log}\n{log.read_text(errors='replace')[-4000:]}"
        for log in sorted(run.glob("stages/*/align/*/launch.log"))
    )
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["r1/align"]["status"] == "done"
    for method, steps in (("dpo", 3), ("grpo", 2)):
        folder = run / "stages" / "r1" / "align" / method
        ranks = [json.loads((folder / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["world_size"] for r in ranks] == [2, 2]
        assert len(ranks[0]["batches"]) >= steps and len(ranks[1]["batches"]) >= steps
        assert not set(ranks[0]["batches"]) & set(ranks[1]["batches"]), (
            f"{method}: both processes trained on the same batch"
        )
        assert ranks[0]["weights"] == ranks[1]["weights"], f"{method}: the processes ended with different weights"
        assert ranks[0]["weights"] != ranks[0]["weights_at_start"], f"{method}: training did not change the weights"
        assert (folder / "merged" / "imagepref.json").is_file()
    assert manifest["stages"]["r1/align"]["outputs"]["generator"].endswith("grpo/merged")
    # One shared run folder: the main process wrote the shared checkpoint files, each process its
    # own RNG state, all without pickle; and the main process logged each step once, as it ran.
    checkpoint = run / "stages" / "r1" / "align" / "dpo" / "checkpoint-2"
    names = {p.name for p in checkpoint.iterdir()}
    assert {"optimizer.safetensors", "rng_state_0.json", "rng_state_1.json", "training_args.json"} <= names, names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".bin"))], names
    assert not list((run / "stages" / "r1" / "align" / "dpo" / "ranks").glob("*scratch*"))
    log = (run / "run.log").read_text()
    assert [log.count(f"[r1/align] dpo step {s}/3 ") for s in (1, 2, 3)] == [1, 1, 1]
    assert [log.count(f"[r1/align] grpo step {s}/2 ") for s in (1, 2)] == [1, 1]


def test_a_failed_launch_is_reported_by_the_error_a_process_raised():
    log = """dpo: 28 pairs
[rank1]: Traceback (most recent call last):
[rank1]:   File "launch.py", line 3, in <module>
[rank1]: RuntimeError: Connection reset by peer
E1203 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: 1)
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
imagepref.recipes.launch FAILED
============================================================
"""
    assert failure_line(log) == "RuntimeError: Connection reset by peer"
    assert failure_line("dpo: 28 pairs\nKilled\n") == "Killed"
    assert failure_line("") == "no output"
