"""The quickstart recipe in miniature: every stage, end to end, against a real Label Studio."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from recipes.config import RECIPES_DIR

# Stages of the quickstart that this installation can run: reward and align join when their
# packages land (see the README's recipe section).
MICRO_STAGES = ["pretrain", "generate", "label", "eval", "report"]


@pytest.mark.slow
@pytest.mark.integration
def test_micro_quickstart_runs_every_stage_with_real_label_studio(cli, micro_recipe, label_studio_state, unused_port, tmp_path):
    shipped = yaml.safe_load((RECIPES_DIR / "quickstart.yaml").read_text())
    micro = yaml.safe_load(micro_recipe("quickstart").read_text())
    recipe = {**shipped, **{key: micro[key] for key in ("run_dir", "pretrain", "eval")}, "stages": MICRO_STAGES}
    recipe["generate"] = {**shipped["generate"], "num_prompts": 3, "images_per_prompt": 2}
    recipe["label"] = {**shipped["label"], "port": unused_port, "ocr_engine": "tesseract"}
    path = tmp_path / "quickstart-micro.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    shutil.copytree(label_studio_state, run / "label-studio")

    code, out, err = cli("run", path)
    assert code == 0, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert {key: entry["status"] for key, entry in manifest["stages"].items()} == {
        "pretrain": "done", "r1/generate": "done", "r1/label": "done", "eval": "done", "report": "done"}

    candidates_dir = run / manifest["stages"]["r1/generate"]["outputs"]["candidates"]
    candidates = pd.read_parquet(candidates_dir / "candidates.parquet")
    assert len(candidates) == 6 and candidates["candidate_id"].is_unique
    assert all((candidates_dir / p).is_file() for p in candidates["image_path"])
    assert {len(t) for t in candidates["image_tokens"]} == {66}

    label = manifest["stages"]["r1/label"]["outputs"]
    preferences = run / label["preferences"]
    annotations = pd.read_parquet(preferences / "annotations.parquet")
    pairs = pd.read_parquet(preferences / "pairs.parquet")
    assert len(pairs) == 3 and len(annotations) == 6 == label["judgments"]
    assert set(annotations["source"]) == {"simulated"} and annotations["annotator"].nunique() == 2
    ids = set(candidates["candidate_id"])
    assert set(pairs["candidate_a"]) | set(pairs["candidate_b"]) <= ids
    for axis in ("aesthetics", "prompt_fidelity", "safety"):
        assert set(annotations[axis]) <= {"left", "right", "tie"}
        assert (pairs[f"{axis}_votes_a"] + pairs[f"{axis}_votes_b"] + pairs[f"{axis}_votes_tie"]).eq(2).all()
    assert not (run / "label-studio" / "server.json").exists(), "the run's server must be stopped at the end"

    results = json.loads((run / manifest["stages"]["eval"]["outputs"]["results"]).read_text())
    assert results["checkpoints"][0]["name"] == "base" and results["prompt_set"]["prompts"] == 3
    assert (run / manifest["stages"]["eval"]["outputs"]["report"]).is_file()
    summary = (run / "summary.md").read_text()
    assert "OCR word accuracy" in summary and "r1/label | done" in summary
    assert "report.html" in out and out.count("points") == 3
    log = (run / "run.log").read_text()
    assert "[r1/label] step 6/6" in log and "[label-studio] stopped" in log
    assert "secrets" not in summary and json.loads((run / "label-studio" / "secrets.json").read_text())["api_token"] not in log

    # A second run skips everything, without starting the server.
    code, out, err = cli("run", path)
    assert code == 0, err
    assert out.count("unchanged, skipped") == 5 and "label-studio" not in out
