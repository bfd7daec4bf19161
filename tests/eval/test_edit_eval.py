"""`imagepref eval --prompts glyphworld-edits-heldout`: checkpoints edit the held-out sources, the
edit rules judge each result against its source, OCR reads the result, and the report shows
source -> result side by side per checkpoint (checked in Chromium)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "policy" / "glyphworld" / "pretrained"
EDIT_FIGURES = ("rules/instruction_fidelity", "rules/preservation", "rules/success", "rules/safety")
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


def run_eval(checkpoints: list[Path], out: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "imagepref"), "eval", "--quiet", "--workers", "1"]
    command += ["--checkpoints", *map(str, checkpoints), "--prompts", "glyphworld-edits-heldout"]
    command += ["--limit", "4", "--samples", "2", "--out", str(out)]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def edit_eval(micro_run, tmp_path_factory) -> Path:
    """The shipped base and a micro checkpoint evaluated on four held-out edits, two samples each."""
    out = tmp_path_factory.mktemp("edit-eval") / "eval"
    run_eval([SHIPPED, micro_run[1]], out)
    return out


def test_each_result_is_judged_against_its_source_by_the_edit_rules(edit_eval, micro_run):
    from imagepref.eval.prompts import load_prompts
    from imagepref.policy.glyphworld.edits import edit_from_record, heldout_edits, judge_edit

    results = json.loads((edit_eval / "results.json").read_text())
    edits = heldout_edits(4)
    prompts = load_prompts("glyphworld-edits-heldout")[:4]
    assert [p["prompt"] for p in results["prompts"]] == [e.instruction for e in edits]
    assert [p["targets"] for p in results["prompts"]] == [[e.target.text] for e in edits]
    assert [p["edit_kind"] for p in results["prompts"]] == [e.kind for e in edits]
    by_id = {p.prompt_id: p for p in prompts}
    for checkpoint in results["checkpoints"]:
        assert len(checkpoint["images"]) == 8  # results only: the sources are not scored as images
        for image in checkpoint["images"]:
            edit = edit_from_record(by_id[image["prompt_id"]].metadata["edit"])
            source = Image.open(edit_eval / image["source_image"]).convert("RGB")
            result = Image.open(edit_eval / image["image"]).convert("RGB")
            # The same rules on the saved images with the result's OCR reading give the same scores.
            assert image["rules"] == judge_edit(edit, source, result, lambda _image, text=image["reading"]: text)
            assert image["text"]["has_target"]
        summary = checkpoint["summary"]
        for key in EDIT_FIGURES:
            low, high = summary[key]["ci"]
            assert low <= summary[key]["value"] <= high
        success = [image["rules"]["success"] for image in checkpoint["images"]]
        assert summary["rules/success"]["value"] == pytest.approx(sum(success) / len(success))
        assert {"exact_match", "cer", "safety_violation_rate"} <= set(summary)
        assert {"unseen_phrasing/exact_match", "unseen_word/exact_match"} <= set(summary)
    # The sources are the held-out source signs as each checkpoint's codec draws them: the base's
    # codec reproduces them closely.
    base = results["checkpoints"][0]
    first = next(image for image in base["images"] if image["prompt_id"] == "e0000")
    from imagepref.policy.glyphworld.world import render

    drawn = np.asarray(render(edits[0].source), dtype=int)
    shown = np.asarray(Image.open(edit_eval / first["source_image"]).convert("RGB"), dtype=int)
    assert (np.abs(shown - drawn).max(axis=-1) < 60).mean() > 0.9
    # Paired comparisons against the baseline on every edit axis.
    assert set(results["checkpoints"][1]["win_rates"]) == {
        "aesthetics",
        "instruction_fidelity",
        "preservation",
        "safety",
        "success",
    }
    summary_md = (edit_eval / "summary.md").read_text()
    assert "Edit success (rule)" in summary_md and "rules: preservation" in summary_md
    # A second evaluation with the same inputs reuses the edited images.
    again = edit_eval.parent / "again"
    import shutil

    shutil.copytree(edit_eval / "images", again / "images")
    run_eval([SHIPPED, micro_run[1]], again)
    rerun = json.loads((again / "results.json").read_text())
    assert [c["images_reused"] for c in rerun["checkpoints"]] == [True, True]
    assert rerun["checkpoints"][0]["images"] == base["images"]


@pytest.mark.browser
def test_the_report_shows_source_and_result_side_by_side_in_chromium(edit_eval):
    from playwright.sync_api import sync_playwright

    results = json.loads((edit_eval / "results.json").read_text())
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto((edit_eval / "report.html").as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        cells = page.locator("#grid tr[data-prompt] td .edit")
        first_cells = page.locator("#grid tr[data-prompt] > td > .edit")
        sources = page.locator("#grid img.source").count()
        verdicts = page.locator("#grid .verdict").all_text_contents()  # some are behind a click
        instruction = page.locator("#grid tr[data-prompt='e0000'] td").first.inner_text()
        success_row = page.locator("#figures tr[data-figure='rules/success']").count()
        layout = first_cells.first.evaluate(
            "e => [...e.children].filter(c => c.matches('.before, .shot')).map(c => c.getBoundingClientRect().left)"
        )
        cell_count = cells.count()
        browser.close()
    assert problems == []
    assert all(complete and width > 0 for complete, width in images), images
    # Every result (two per edit and checkpoint) with its source before it.
    assert sources == cell_count == 4 * 2 * 2
    assert len(verdicts) == sources and all("preservation" in text for text in verdicts)
    assert results["prompts"][0]["prompt"] in instruction and "source:" in instruction
    assert success_row == 1
    # Side by side: the source sits left of the result.
    assert len(layout) == 2 and layout[0] < layout[1]


def test_a_reward_model_of_edits_scores_each_result_with_its_source_and_instruction(tmp_path):
    """With --reward-model, a (tiny, untrained) token reward model of edits scores every result
    with its source's codes and its instruction: results.json holds what the model gives them."""
    from imagepref.formats import read_candidate_set
    from imagepref.policy.generator import load_generator
    from imagepref.reward import RewardConfig, RewardModel, load_reward_model

    model_dir = tmp_path / "edit-reward"
    config = RewardConfig(backbone="token", edits=True, width=16, layers=1, heads=2)
    RewardModel.create(config, generator=load_generator(SHIPPED)).save_pretrained(model_dir)
    out = tmp_path / "eval"
    command = [str(Path(sys.executable).parent / "imagepref"), "eval", "--quiet", "--workers", "1"]
    command += ["--checkpoints", str(SHIPPED), "--prompts", "glyphworld-edits-heldout", "--limit", "3"]
    command += ["--samples", "2", "--reward-model", str(model_dir), "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=600)
    checkpoint = json.loads((out / "results.json").read_text())["checkpoints"][0]
    table = read_candidate_set(out / checkpoint["image_folder"])
    results = [table.loc[image["candidate_id"]] for image in checkpoint["images"]]
    assert len(results) == 6 and all(isinstance(r["instruction"], str) and r["instruction"] for r in results)
    model = load_reward_model(model_dir)
    expected = model.score(
        tokens=[list(r["image_tokens"]) for r in results],
        source_tokens=[list(table.at[r["source_candidate"], "image_tokens"]) for r in results],
        instructions=[r["instruction"] for r in results],
    )
    for axis in model.axes:
        scores = [image["reward"][axis] for image in checkpoint["images"]]
        assert scores == pytest.approx(expected[axis].tolist(), abs=1e-5)
