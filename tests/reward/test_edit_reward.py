"""Reward models of edits: trained on preference data about edits, a token model reads each result
with its source's codes and the instruction, one head per edit axis; scoring an edit needs the
source and the instruction, and an image model refuses them."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from imagepref.errors import BadInputError
from imagepref.formats import CANDIDATES_FILE, EDIT_AXES, read_candidate_set, read_pairs
from imagepref.reward import RewardConfig, evaluate_reward_model, load_reward_model, read_preferences, split_by_prompt
from imagepref.reward.model import RewardModel, score_candidates
from imagepref.reward.scoring import candidate_scores, pair_scores
from imagepref.reward.train import train_reward_model

# Chance is 50 % on decided pairs; the edit model must clear it by this much on held-out edits.
MARGIN = 0.15


@pytest.fixture(scope="module")
def edit_prefs(tmp_path_factory, glyph_generator):
    """Preference data about 150 training-like glyph-world edits, 3 results each (450 pairs), two
    simulated annotators applying the edit rules and erring 10 % of the time."""
    from imagepref.eval.ocr import get_engine
    from imagepref.reward.synthetic import glyph_edit_preference_data

    out = tmp_path_factory.mktemp("edit-reward") / "prefs"
    counts = glyph_edit_preference_data(
        out, glyph_generator.codec, get_engine("tesseract").read_text, edits=150, results_per_edit=3, seed=1
    )
    assert counts == {"candidates": 600, "pairs": 450, "annotations": 900}
    return out


@pytest.fixture(scope="module")
def edit_model(tmp_path_factory, edit_prefs, glyph_generator):
    out = tmp_path_factory.mktemp("edit-reward") / "model"
    config = RewardConfig(backbone="token", val_fraction=0.25)
    return train_reward_model(edit_prefs, [], out, config, generator=glyph_generator, show_progress=False)


def held_out_accuracy(model, prefs_dir, config) -> dict[str, float]:
    """Per edit axis, the model's accuracy on the edits held out from its training."""
    prefs = read_preferences(prefs_dir, axes=model.axes, need_images=False)
    _, held_out = split_by_prompt(prefs, config.val_fraction, config.seed)
    report = evaluate_reward_model(model, held_out)
    return {axis: entry["accuracy"] for axis, entry in report["axes"].items()}


def test_the_data_compares_results_of_one_edit(edit_prefs):
    pairs = read_pairs(edit_prefs)
    candidates = read_candidate_set(edit_prefs / "candidates")
    assert {"source_candidate", "instruction"} <= set(pairs.columns)
    for pair in pairs.head(30).to_dict("records"):
        a, b = candidates.loc[pair["candidate_a"]], candidates.loc[pair["candidate_b"]]
        assert a["source_candidate"] == b["source_candidate"] == pair["source_candidate"]
        assert a["instruction"] == b["instruction"] == pair["instruction"]
    # Every axis has decided pairs to learn from.
    for axis in ("instruction_fidelity", "preservation", "aesthetics"):
        assert (pairs[f"{axis}_label"].isin(["a", "b"])).sum() >= 100


def test_an_edit_model_learns_the_edit_axes_from_the_source_and_the_instruction(edit_model, edit_prefs):
    model = edit_model.model
    assert model.config.edits and model.axes == list(EDIT_AXES)
    accuracy = held_out_accuracy(model, edit_prefs, model.config)
    assert accuracy["instruction_fidelity"] >= 0.5 + MARGIN, accuracy
    assert accuracy["preservation"] >= 0.5 + MARGIN, accuracy
    assert accuracy["aesthetics"] >= 0.5 + MARGIN, accuracy


def test_without_the_source_the_same_model_cannot_tell_preservation(edit_model, edit_prefs, glyph_generator, tmp_path):
    # The same data with every source drawn as one blank code: the model reads the result and
    # the instruction, and nothing of the image it started from.
    blind = tmp_path / "prefs"
    shutil.copytree(edit_prefs, blind)
    table = pd.read_parquet(blind / "candidates" / CANDIDATES_FILE)
    sources = table["source_candidate"].isna()
    blank = [0] * len(table["image_tokens"].iloc[0])
    table.loc[sources, "image_tokens"] = pd.Series([blank] * int(sources.sum()), index=table.index[sources])
    table.to_parquet(blind / "candidates" / CANDIDATES_FILE, index=False)
    config = edit_model.model.config
    result = train_reward_model(
        blind,
        [],
        tmp_path / "model",
        RewardConfig(backbone="token", val_fraction=0.25),
        glyph_generator,
        show_progress=False,
    )
    seeing = held_out_accuracy(edit_model.model, edit_prefs, config)["preservation"]
    blind_accuracy = held_out_accuracy(result.model, blind, config)["preservation"]
    # Some preservation shows without the source (a result that ignored the instruction kept
    # everything), but not enough to clear the margin, and far less than the source shows.
    assert blind_accuracy < 0.5 + MARGIN, blind_accuracy
    assert seeing - blind_accuracy >= 0.1, (seeing, blind_accuracy)
    print(f"preservation held out: with the source {seeing:.2f}, without {blind_accuracy:.2f}")


def test_scoring_an_edit_needs_its_source_and_instruction(edit_model, edit_prefs):
    model = load_reward_model(edit_model.out)
    prefs = read_preferences(edit_prefs, axes=model.axes, need_images=False)
    results = list(prefs.candidates.index[prefs.candidates["instruction"].notna()][:8])
    tokens, sources, instructions = prefs.tokens(results), prefs.source_tokens(results), prefs.instructions(results)
    scores = model.score(tokens=tokens, source_tokens=sources, instructions=instructions)
    assert set(scores) == set(EDIT_AXES)
    assert torch.allclose(torch.stack([scores[a] for a in model.axes], 1), score_candidates(model, prefs, results))
    reward = model.combined_reward(tokens=tokens, source_tokens=sources, instructions=instructions)
    assert reward.shape == (8,) and torch.isfinite(reward).all()
    # Another source changes the scores: the model reads it.
    other = model.score(tokens=tokens, source_tokens=sources[::-1], instructions=instructions)
    assert not torch.allclose(other["preservation"], scores["preservation"])
    with pytest.raises(BadInputError, match="scores edits: pass"):
        model.score(tokens=tokens, prompts=["a sign"] * 8)
    with pytest.raises(BadInputError, match="scores edits: pass"):
        model.combined_reward(tokens=tokens, source_tokens=sources)
    with pytest.raises(BadInputError, match="one source and one instruction per result"):
        model.score(tokens=tokens, source_tokens=sources[:3], instructions=instructions)


def test_candidate_and_pair_scores_of_an_edit_set_score_the_results(edit_model, edit_prefs):
    model = load_reward_model(edit_model.out)
    table = read_candidate_set(edit_prefs / "candidates")
    scored = candidate_scores(model, [edit_prefs / "candidates"])
    assert set(scored["candidate_id"]) == set(table.index[table["instruction"].notna()])
    pairs = pair_scores(model, [edit_prefs / "candidates"])
    assert len(pairs) == 150 * 3  # three pairs of each edit's three results, never a source
    assert (
        pairs["candidate_a"].map(table["source_candidate"]) == pairs["candidate_b"].map(table["source_candidate"])
    ).all()


def test_an_image_model_refuses_a_source_and_an_edit_set(glyph_generator, edit_prefs):
    model = RewardModel.create(RewardConfig(backbone="token"), generator=glyph_generator)
    tokens = [[0] * model.config.tokens_per_image]
    with pytest.raises(BadInputError, match="scores images, not edits"):
        model.score(tokens=tokens, prompts=["a sign"], source_tokens=tokens, instructions=["make the ink blue"])
    with pytest.raises(BadInputError, match="holds edits"):
        candidate_scores(model, [edit_prefs / "candidates"])
    with pytest.raises(BadInputError, match="holds edits"):
        evaluate_reward_model(model, read_preferences(edit_prefs, need_images=False))


def test_edit_data_and_a_backbone_without_a_source_input_are_refused(edit_prefs, tmp_path):
    with pytest.raises(BadInputError, match="pixel reward backbone cannot read"):
        train_reward_model(edit_prefs, [], tmp_path / "model", RewardConfig(backbone="pixel"), show_progress=False)
    assert not (tmp_path / "model").exists()
    with pytest.raises(ValueError, match="backbone=token"):
        RewardConfig(edits=True)


def test_train_eval_and_score_edits_through_the_cli(edit_prefs, glyph_generator, tmp_path):
    import json
    import subprocess
    import sys

    def reward(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "imagepref.recipes.cli", "reward", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )

    glyph_generator.save_pretrained(tmp_path / "generator")
    model = tmp_path / "rm"
    done = reward(
        "train",
        "--prefs",
        str(edit_prefs),
        "--out",
        str(model),
        "--backbone",
        "token",
        "--generator",
        str(tmp_path / "generator"),
        "--set",
        "epochs=2",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    config = json.loads((model / "config.json").read_text())
    assert config["edits"] and config["axes"] == list(EDIT_AXES)
    assert "preservation" in done.stderr  # the validation figures name the edit axes
    done = reward("eval", "--model", str(model), "--prefs", str(edit_prefs), "--out", str(tmp_path / "eval.json"))
    assert done.returncode == 0, done.stderr
    assert set(json.loads((tmp_path / "eval.json").read_text())["axes"]) == set(EDIT_AXES)
    out = tmp_path / "pairs.parquet"
    done = reward(
        "score", "--model", str(model), "--candidates", str(edit_prefs / "candidates"), "--out", str(out), "--pairs"
    )
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(out)) == 150 * 3
