"""The edit quickstart recipe in miniature: edit candidates, a real Label Studio whose simulated
annotators compare edits by the edit rules, a reward model of edits, DPO then GRPO on edit turns,
and the evaluation of base and aligned on held-out edits."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file

from imagepref.formats import EDIT_AXES, read_annotations, read_candidate_set, read_pairs
from imagepref.recipes.config import RECIPES_DIR


@pytest.mark.slow
@pytest.mark.integration
def test_micro_edit_quickstart_runs_every_stage_with_real_label_studio(
    cli, micro_recipe, label_studio_state, unused_port, tmp_path
):
    shipped = yaml.safe_load((RECIPES_DIR / "edit-quickstart.yaml").read_text())
    micro = yaml.safe_load(micro_recipe("edit-quickstart").read_text())
    recipe = {**shipped, **{key: micro[key] for key in ("run_dir", "pretrain")}}
    recipe["stages"] = ["pretrain", *shipped["stages"]]
    recipe["generate"] = {**shipped["generate"], "num_prompts": 3}
    recipe["label"] = {**shipped["label"], "port": unused_port, "ocr_engine": "tesseract"}
    grpo = {**shipped["align"]["grpo"], "steps": 2, "batch_size": 4, "num_generations": 2, "report_to": []}
    recipe["align"] = {
        **shipped["align"],
        "num_prompts": 4,
        "ocr_engine": "tesseract",
        "dpo": {"steps": 2, "batch_size": 2, "report_to": []},
        "grpo": grpo,
    }
    recipe["eval"] = {
        **micro["eval"],
        "prompts": "glyphworld-edits-heldout",
        "limit": 4,
        "use_reward_model": shipped["eval"]["use_reward_model"],
    }
    path = tmp_path / "edit-quickstart-micro.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run = tmp_path / "run"
    shutil.copytree(label_studio_state, run / "label-studio")

    code, out, err = cli("run", path)
    assert code == 0, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert {key: entry["status"] for key, entry in manifest["stages"].items()} == {
        key: "done" for key in ["pretrain", "r1/generate", "r1/label", "r1/reward", "r1/align", "eval", "report"]
    }
    outputs = {key: entry["outputs"] for key, entry in manifest["stages"].items()}
    candidates = read_candidate_set(run / outputs["r1/generate"]["candidates"])
    results = candidates[candidates["source_candidate"].notna()]
    assert len(candidates) == 3 + 6 and len(results) == 6 and results["edit"].notna().all()
    preferences = run / outputs["r1/label"]["preferences"]
    pairs, annotations = read_pairs(preferences), read_annotations(preferences)
    assert len(pairs) == 3 and len(annotations) == 6
    assert pairs["source_candidate"].tolist() == [candidates.at[a, "source_candidate"] for a in pairs["candidate_a"]]
    assert pairs["instruction"].tolist() == [candidates.at[a, "instruction"] for a in pairs["candidate_a"]]
    for axis in EDIT_AXES:
        assert set(annotations[axis]) <= {"left", "right", "tie"}
    # The reward model of edits: one head per edit axis, reading the source and the instruction.
    reward_config = json.loads((run / outputs["r1/reward"]["model"] / "config.json").read_text())
    assert reward_config["edits"] and reward_config["axes"] == list(EDIT_AXES)
    # DPO trained on the pulled pairs about edits, GRPO on edit turns from DPO's generator: each moved it.
    align = run / "stages" / "r1" / "align"
    base = load_file(run / outputs["pretrain"]["generator"] / "model.safetensors")
    dpo, grpo = (load_file(align / method / "merged" / "model.safetensors") for method in ("dpo", "grpo"))
    assert any(not torch.equal(base[name], dpo[name]) for name in base)
    assert any(not torch.equal(dpo[name], grpo[name]) for name in dpo)
    evaluation = json.loads((run / outputs["eval"]["results"]).read_text())
    assert [c["name"] for c in evaluation["checkpoints"]] == ["base", "aligned-round-1"]
    for checkpoint in evaluation["checkpoints"]:
        assert all(image["source_image"] and "success" in image["rules"] for image in checkpoint["images"])
    summary = (run / "summary.md").read_text()
    assert "edit success (rule)" in summary or "edit success (rule)" in out
