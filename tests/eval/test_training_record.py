"""A checkpoint's step and training curve come from its training's own record, never its name."""

from __future__ import annotations

import json
import shutil

import pytest

from imagepref.eval.plots import training_plots
from imagepref.eval.report import image_grid, step_label
from imagepref.eval.runner import checkpoint_training, training_curve


def test_the_step_is_the_runs_own_not_a_number_in_the_folder_name(quickstart_like, tmp_path):
    aligned = checkpoint_training(quickstart_like["aligned"])
    assert aligned["method"] == "grpo" and aligned["steps"] == 120  # not 1, from "aligned-round-1"
    assert aligned["base"] == str(quickstart_like["dpo"])
    assert step_label({"step": aligned["steps"], "training": aligned}) == "grpo step 120"
    base = checkpoint_training(quickstart_like["base"])
    assert base["method"] == "pretrain" and base["steps"] == 3  # pretrain.json's losses, one a step
    # Generator folders without a record: no step, whatever their names say.
    for name in ("aligned-round-3", "checkpoint-200", "merged"):
        shutil.copytree(quickstart_like["grpo"], tmp_path / "bare" / name)
        assert checkpoint_training(tmp_path / "bare" / name) is None, name
    # A transformers checkpoint records its step.
    state = tmp_path / "bare" / "checkpoint-200" / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 150}))
    assert checkpoint_training(state.parent)["steps"] == 150
    assert step_label({"step": 150, "training": checkpoint_training(state.parent)}) == "step 150"
    assert step_label({"step": None}) == ""


def test_a_merged_folder_of_an_unfinished_run_has_no_step(quickstart_like, tmp_path):
    run = tmp_path / "grpo"
    shutil.copytree(quickstart_like["grpo"], run / "merged")
    (run / "align.json").write_text(json.dumps({"method": "grpo", "settings": {}, "base": None}))
    assert checkpoint_training(run / "merged") == {"method": "grpo", "steps": None, "run": str(run), "base": None}


def test_training_curve_follows_the_runs_back_to_the_pretrained_base(quickstart_like):
    curve = training_curve(quickstart_like["aligned"])
    assert [(s["method"], s["steps"], s["monitor_prompts"]) for s in curve] == [("dpo", 30, 16), ("grpo", 120, 16)]
    assert [r["step"] for r in curve[0]["records"]] == [0, 25]
    # Training lines without held-out figures are left out; a step logged twice keeps its later record.
    assert [r["step"] for r in curve[1]["records"]] == [0, 25, 50, 75, 100]
    assert curve[1]["records"][3]["heldout/ocr_word_accuracy"] == pytest.approx(0.45)
    assert set(curve[1]["records"][0]) == {
        "step",
        "heldout/aesthetics",
        "heldout/prompt_fidelity",
        "heldout/safety",
        "heldout/ocr_word_accuracy",
        "heldout/safety_violation_rate",
        "heldout/kl",
    }
    assert training_curve(quickstart_like["base"]) == []


def test_a_curve_inside_a_later_rounds_curve_is_drawn_once(quickstart_like):
    curve = training_curve(quickstart_like["aligned"])
    checkpoints = [
        {"name": "base", "training_curve": []},
        {"name": "aligned-round-1", "training_curve": curve[:1]},
        {"name": "aligned-round-2", "training_curve": curve},
    ]
    plots = training_plots({"checkpoints": checkpoints})
    assert [p["checkpoint"] for p in plots] == ["aligned-round-2"]
    assert plots[0]["uri"].startswith("data:image/png;base64,")
    caption = plots[0]["title"]
    assert "dpo (30 steps) then grpo (120 steps)" in caption and "same 16 held-out prompts" in caption
    # Each checkpoint is marked where its runs end on the joined axis: DPO's 30, then 30 + 120.
    assert "where aligned-round-1, aligned-round-2 ended" in caption
    assert training_plots({"checkpoints": checkpoints[:1]}) == []


def test_the_grid_pages_prompts_and_shows_one_image_each_with_the_rest_folded(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (64, 48), "white").save(tmp_path / "images" / "a.png")
    prompts = [{"prompt_id": f"p{i}", "prompt": f'"WORD{i}"', "targets": [f"WORD{i}"]} for i in range(23)]

    def image(prompt_id: str, sample: int) -> dict:
        return {
            "prompt_id": prompt_id,
            "sample": sample,
            "image": "images/a.png",
            "reading": "WORD0 OPEN NOW",
            "ocr_words": [["WORD0", 0.9, [1, 2, 30, 12]], ["OPEN NOW", 0.8, [2, 20, 60, 40]]],
            "text": {"exact_match": False},
            "rule_findings": {
                "ink_colour": "blue",
                "asked_colour": "red",
                "wrong_colour": True,
                "forbidden_boxes": [[48, 0, 64, 16]],
            },
        }

    checkpoint = {"images": [image(p["prompt_id"], s) for p in prompts for s in (2, 0, 1)]}
    results = {"prompts": prompts, "checkpoints": [checkpoint, checkpoint]}
    pages = image_grid(results, tmp_path, limit=21)
    assert [(page["first"], page["last"], len(page["rows"])) for page in pages] == [
        (1, 10, 10),
        (11, 20, 10),
        (21, 21, 1),
    ]
    cell = pages[0]["rows"][0]["cells"][1]
    first = cell["first"]
    assert first["alt"] == "p0 sample 0" and [v["alt"] for v in cell["more"]] == ["p0 sample 1", "p0 sample 2"]
    assert (first["width"], first["height"]) == (64, 48)
    # A box per read word (or line), green when every word in it is asked for.
    assert [(b["x"], b["y"], b["width"], b["height"], b["ok"]) for b in first["boxes"]] == [
        (1, 2, 29, 10, True),
        (2, 20, 58, 20, False),
    ]
    assert [w["ok"] for w in first["words"]] == [True, False, False]
    assert first["marks"] == [{"x": 48, "y": 0, "width": 16, "height": 16}]
    assert [f["text"] for f in first["flags"]] == ["ink blue, asked red", "forbidden mark"]
