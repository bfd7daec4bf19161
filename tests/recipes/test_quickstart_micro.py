"""The quickstart recipe in miniature: every stage, end to end, against a real Label Studio."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from imagepref.recipes.config import RECIPES_DIR

MICRO_REWARD = {"settings": {"epochs": 2, "width": 32, "layers": 1, "batch_size": 4}}
MICRO_MONITOR = {"monitor_every": 1, "monitor_prompts": 4}
MICRO_ALIGN = {
    "num_prompts": 4,
    "ocr_engine": "tesseract",
    "monitor": True,
    # Held-out monitoring after every step on 4 prompts: the report's training curve, cheaply.
    "dpo": {"steps": 2, "batch_size": 2, "save_every": 1, "lora_r": 4, "report_to": [], **MICRO_MONITOR},
    "grpo": {
        "steps": 2,
        "batch_size": 2,
        "num_generations": 2,
        "save_every": 1,
        "lora_r": 4,
        "report_to": [],
        **MICRO_MONITOR,
    },
}


@pytest.mark.slow
@pytest.mark.integration
def test_micro_quickstart_runs_every_stage_with_real_label_studio(
    cli, micro_recipe, label_studio_state, unused_port, tmp_path
):
    shipped = yaml.safe_load((RECIPES_DIR / "quickstart.yaml").read_text())
    micro = yaml.safe_load(micro_recipe("quickstart").read_text())
    recipe = {
        **shipped,
        **{key: micro[key] for key in ("run_dir", "pretrain", "eval")},
        "rounds": 2,
        "reward": MICRO_REWARD,
        "align": {**shipped["align"], **MICRO_ALIGN},
    }
    recipe["generate"] = {**shipped["generate"], "num_prompts": 3, "images_per_prompt": 2}
    recipe["label"] = {**shipped["label"], "port": unused_port, "ocr_engine": "tesseract"}
    path = tmp_path / "quickstart-micro.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    shutil.copytree(label_studio_state, run / "label-studio")

    code, out, err = cli("run", path)
    assert code == 0, err
    manifest = json.loads((run / "manifest.json").read_text())
    rounds = [f"r{r}/{kind}" for r in (1, 2) for kind in ("generate", "label", "reward", "align")]
    assert {key: entry["status"] for key, entry in manifest["stages"].items()} == {
        key: "done" for key in ["pretrain", *rounds, "eval", "report"]
    }
    outputs = {key: entry["outputs"] for key, entry in manifest["stages"].items()}

    for round_ in (1, 2):
        candidates_dir = run / outputs[f"r{round_}/generate"]["candidates"]
        candidates = pd.read_parquet(candidates_dir / "candidates.parquet")
        assert len(candidates) == 6 and candidates["candidate_id"].str.startswith(f"r{round_}-").all()
        assert all((candidates_dir / p).is_file() for p in candidates["image_path"])
        assert {len(t) for t in candidates["image_tokens"]} == {66}
        label = outputs[f"r{round_}/label"]
        preferences = run / label["preferences"]
        annotations = pd.read_parquet(preferences / "annotations.parquet")
        pairs = pd.read_parquet(preferences / "pairs.parquet")
        assert len(pairs) == 3 and len(annotations) == 6 == label["judgments"]
        assert set(annotations["source"]) == {"simulated"} and annotations["annotator"].nunique() == 2
        assert set(pairs["candidate_a"]) | set(pairs["candidate_b"]) <= set(candidates["candidate_id"])
        for axis in ("aesthetics", "prompt_fidelity", "safety"):
            assert set(annotations[axis]) <= {"left", "right", "tie"}
            assert (pairs[f"{axis}_votes_a"] + pairs[f"{axis}_votes_b"] + pairs[f"{axis}_votes_tie"]).eq(2).all()
        reward_dir = run / outputs[f"r{round_}/reward"]["model"]
        assert (reward_dir / "config.json").is_file() and (reward_dir / "model.safetensors").is_file()
        assert set(outputs[f"r{round_}/reward"]["val_accuracy"]) == {"aesthetics", "prompt_fidelity", "safety"}
        aligned = outputs[f"r{round_}/align"]
        assert (run / aligned["generator"] / "imagepref.json").is_file() and aligned["generator"].endswith(
            "grpo/merged"
        )
        assert (run / aligned["dpo"] / "merged" / "imagepref.json").is_file()
    # The flywheel: round 2's tasks carry round 1's reward model's choices as pre-annotations,
    # and round 2 samples from round 1's aligned generator; round 2's reward model learns both rounds.
    export = json.loads((run / outputs["r2/label"]["preferences"] / "export.json").read_text())
    assert export and all(task.get("predictions") for task in export)
    # The model's view of each new pair, with its four members' disagreement, ordered the pushed tasks.
    scores = pd.read_parquet(run / "stages" / "r2" / "label" / "reward_scores.parquet")
    assert {"candidate_a", "candidate_b", "uncertainty", "disagreement"} <= set(scores.columns)
    assert len(scores) and (scores["disagreement"] > 0).all()
    assert outputs["r2/generate"]["generator"].endswith("r1/align/grpo/merged")
    assert (
        manifest["stages"]["r2/reward"]["outputs"]["train_pairs"]
        + manifest["stages"]["r2/reward"]["outputs"]["val_pairs"]
        == 6
    )
    assert not (run / "label-studio" / "server.json").exists(), "the run's server must be stopped at the end"

    results = json.loads((run / outputs["eval"]["results"]).read_text())
    assert [c["name"] for c in results["checkpoints"]] == ["base", "aligned-round-1", "aligned-round-2"]
    assert results["prompt_set"]["prompts"] == 3 and "reward/safety" in results["checkpoints"][1]["summary"]
    assert (run / outputs["eval"]["report"]).is_file()
    # Each checkpoint's step is its training's own: GRPO's 2 steps, not the 1 or 2 of aligned-round-N.
    assert [(c["training"]["method"], c["step"]) for c in results["checkpoints"][1:]] == [("grpo", 2), ("grpo", 2)]
    assert results["checkpoints"][0]["training"]["method"] == "pretrain"
    # The monitoring's curve reaches back through every run: DPO then GRPO, round after round.
    curve = results["checkpoints"][2]["training_curve"]
    assert [s["method"] for s in curve] == ["dpo", "grpo", "dpo", "grpo"]
    assert all([r["step"] for r in s["records"]] == [0, 1, 2] for s in curve)
    html = (run / outputs["eval"]["report"]).read_text()
    assert html.count('class="plot training-curve"') == 1  # round 1's runs are the first half of round 2's
    # Every word OCR read is boxed on its image, and word accuracy is given per held-out kind.
    words = sum(len(i["ocr_words"]) for c in results["checkpoints"] for i in c["images"])
    assert html.count('<rect class="box ') == words
    assert 'data-figure="unseen_word/word_accuracy"' in html and 'data-figure="unseen_template/word_accuracy"' in html
    summary = (run / "summary.md").read_text()
    assert "OCR word accuracy" in summary and "r2/align | done" in summary
    # Four headline figures, and word accuracy again for each held-out kind (unseen words, unseen templates).
    assert "report.html" in out and out.count("points,") == 6
    assert "aesthetics (rule):" in out
    assert "OCR word accuracy, unseen word:" in out and "OCR word accuracy, unseen template:" in out
    log = (run / "run.log").read_text()
    # The reward stage trains the pixel default, four members of 2 epochs each.
    for stage in (
        "r1/generate] step 6/6",
        "r1/label] step 6/6",
        "r1/reward] step 8/8",
        "r1/align] dpo step 2/2",
        "r2/align] grpo step 2/2",
        "[label-studio] stopped",
    ):
        assert stage in log, stage
    assert json.loads((run / "label-studio" / "secrets.json").read_text())["api_token"] not in log + summary

    # A second run skips everything, without starting the server.
    code, out, err = cli("run", path)
    assert code == 0, err
    assert out.count("unchanged, skipped") == 11 and "label-studio" not in out
