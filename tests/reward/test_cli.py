"""`imagepref reward ...` through the real command line: a train/eval/score run, and every bad
input as one line with exit status 2, nothing half-written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest


def run_reward(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", "reward", *args], capture_output=True, text=True, timeout=600
    )


def copy_prefs(source, target, change=None):
    shutil.copytree(source, target)
    if change is not None:
        pairs = pd.read_parquet(target / "pairs.parquet")
        change(pairs).to_parquet(target / "pairs.parquet", index=False)
    return target


def all_ties(pairs: pd.DataFrame) -> pd.DataFrame:
    for axis in ("aesthetics", "prompt_fidelity", "safety"):
        pairs[f"{axis}_votes_tie"] += pairs[f"{axis}_votes_a"] + pairs[f"{axis}_votes_b"]
        pairs[f"{axis}_votes_a"] = 0
        pairs[f"{axis}_votes_b"] = 0
    return pairs


def test_bad_preference_data_is_one_line(glyph_prefs, tmp_path, one_line_error):
    def train(prefs, *extra):
        return run_reward("train", "--prefs", str(prefs), "--out", str(tmp_path / "out"), "--quiet", *extra)

    extra_axis = copy_prefs(
        glyph_prefs,
        tmp_path / "extra",
        lambda p: p.assign(style_votes_a=1, style_votes_b=0, style_votes_tie=0, style_label="a"),
    )
    one_line_error(train(extra_axis), "axes the model lacks: style")
    one_line_error(train(copy_prefs(glyph_prefs, tmp_path / "empty", lambda p: p.iloc[:0])), "is empty")
    one_line_error(train(copy_prefs(glyph_prefs, tmp_path / "ties", all_ties)), "every vote is a tie")
    gone = copy_prefs(glyph_prefs, tmp_path / "gone")
    next((gone / "candidates" / "images").iterdir()).unlink()
    one_line_error(train(gone), "missing on disk")
    one_line_error(train(glyph_prefs, "--candidates", str(tmp_path / "nowhere")), "not a candidate set")
    (tmp_path / "not-clip").mkdir()
    one_line_error(
        train(glyph_prefs, "--backbone", "clip", "--backbone-path", str(tmp_path / "not-clip")), "does not load"
    )
    one_line_error(train(glyph_prefs, "--set", "epochs=many"), "epochs")
    one_line_error(train(glyph_prefs, "--backbone", "token"), "--generator")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    one_line_error(
        run_reward("eval", "--model", str(tmp_path / "nothing"), "--prefs", str(glyph_prefs)),
        "not a reward model folder",
    )


@pytest.mark.slow
def test_train_eval_and_score_through_the_cli(glyph_prefs, glyph_generator, tmp_path):
    glyph_generator.save_pretrained(tmp_path / "generator")
    model = tmp_path / "rm"
    done = run_reward(
        "train",
        "--prefs",
        str(glyph_prefs),
        "--out",
        str(model),
        "--backbone",
        "token",
        "--generator",
        str(tmp_path / "generator"),
        "--set",
        "epochs=2",
        "--set",
        "width=32",
        "--set",
        "heads=2",
        "--quiet",
    )
    assert done.returncode == 0, done.stderr
    assert "saved" in done.stderr and json.loads((model / "config.json").read_text())["backbone"] == "token"
    done = run_reward(
        "eval",
        "--model",
        str(model),
        "--prefs",
        str(glyph_prefs),
        "--out",
        str(tmp_path / "eval.json"),
        "--resamples",
        "100",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    for entry in report["axes"].values():
        assert 0 <= entry["accuracy"] <= 1 and entry["accuracy_ci95"][0] <= entry["accuracy_ci95"][1]
        assert 0 <= entry["single_human_accuracy"] <= 1 and entry["ece"] >= 0
    done = run_reward(
        "score",
        "--model",
        str(model),
        "--candidates",
        str(glyph_prefs / "candidates"),
        "--out",
        str(tmp_path / "scores.parquet"),
    )
    assert done.returncode == 0, done.stderr
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    candidates = pd.read_parquet(glyph_prefs / "candidates" / "candidates.parquet")
    assert list(scores["candidate_id"]) == list(candidates["candidate_id"])
    assert {"aesthetics", "safety_normalised", "combined"} <= set(scores.columns)
    # Per pair, as labeling's uncertainty pairing reads it: every pair within a prompt.
    done = run_reward(
        "score",
        "--model",
        str(model),
        "--candidates",
        str(glyph_prefs / "candidates"),
        "--out",
        str(tmp_path / "pairs.csv"),
        "--pairs",
    )
    assert done.returncode == 0, done.stderr
    pairs = pd.read_csv(tmp_path / "pairs.csv")
    sizes = candidates.groupby("prompt_id").size()
    assert len(pairs) == int((sizes * (sizes - 1) // 2).sum())
    assert (pairs["candidate_a"] < pairs["candidate_b"]).all() and pairs["uncertainty"].between(0, 1).all()
    assert "disagreement" not in pairs.columns  # one member has no spread
    from imagepref.labeling.candidates import load_pair_scores

    read = load_pair_scores(tmp_path / "pairs.csv", ["safety"])
    row = pairs.iloc[0]
    assert read.get(row["candidate_a"], row["candidate_b"]).p_a["safety"] == pytest.approx(row["safety_p_a"])


@pytest.mark.slow
def test_glyph_data_writes_the_preference_contract(tmp_path, one_line_error):
    from imagepref.labeling.preferences import annotation_columns, pair_columns

    out = tmp_path / "prefs"
    args = (
        "glyph-data",
        "--out",
        str(out),
        "--prompts",
        "3",
        "--variants",
        "3",
        "--annotators",
        "2",
        "--ocr",
        "tesseract",
    )
    done = run_reward(*args)
    assert done.returncode == 0, done.stderr
    axes = ["aesthetics", "prompt_fidelity", "safety"]
    pairs = pd.read_parquet(out / "pairs.parquet")
    annotations = pd.read_parquet(out / "annotations.parquet")
    assert list(pairs.columns) == pair_columns(axes) and len(pairs) == 3 * 3
    assert list(annotations.columns) == annotation_columns(axes) and len(annotations) == 2 * len(pairs)
    votes = sum(pairs[f"safety_votes_{o}"] for o in ("a", "b", "tie"))
    assert (votes == 2).all()
    candidates = pd.read_parquet(out / "candidates" / "candidates.parquet")
    assert set(pairs["candidate_a"]) | set(pairs["candidate_b"]) <= set(candidates["candidate_id"])
    assert all(len(tokens) == 66 for tokens in candidates["image_tokens"])
    # The tokens are the shipped generator's: its codec writes the same codes for the saved pixels.
    from PIL import Image

    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import SHIPPED_GENERATOR

    first = candidates.iloc[0]
    with Image.open(out / "candidates" / first["image_path"]) as image:
        codes = load_generator(SHIPPED_GENERATOR).codec.encode([image.convert("RGB")]).reshape(-1)
    assert codes.tolist() == list(first["image_tokens"])
    one_line_error(run_reward(*args), "already holds preference data")
