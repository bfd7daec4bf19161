"""`imagepref eval` end to end on two micro checkpoints, and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from markupsafe import escape as html_escape

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGEPREF = str(Path(sys.executable).parent / "imagepref")


def run_eval(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [IMAGEPREF, "eval", "--quiet", "--workers", "2", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def evaluated(micro_run, prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    result = run_eval(
        "--checkpoints", *map(str, micro_run), "--prompts", str(prompts_file), "--samples", "2", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    return out, result


def test_writes_three_outputs_with_consistent_numbers(evaluated):
    out, result = evaluated
    results = json.loads((out / "results.json").read_text())
    summary = (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert [c["name"] for c in results["checkpoints"]] == ["checkpoint-0", "checkpoint-10"]
    assert [c["step"] for c in results["checkpoints"]] == [0, 10]
    assert results["ocr"]["engine"] == "rapidocr" and results["settings"]["baseline"] == "checkpoint-0"
    for checkpoint in results["checkpoints"]:
        images = checkpoint["images"]
        assert len(images) == 5 * 2 and all((out / i["image"]).is_file() for i in images)
        # The prompt without quotes is "no target": no figures, and left out of every mean.
        assert checkpoint["no_target_images"] == 2
        assert all(i["text"]["exact_match"] is None for i in images if not i["text"]["has_target"])
        assert {len(i["text"]["pieces"]) for i in images if i["text"]["has_target"]} == {1, 2}
        summary_figures = checkpoint["summary"]
        exact = [float(i["text"]["exact_match"]) for i in images if i["text"]["has_target"]]
        assert summary_figures["exact_match"]["value"] == pytest.approx(sum(exact) / len(exact))
        edits = sum(p["edits"] for i in images for p in i["text"]["pieces"])
        chars = sum(i["text"]["target_chars"] for i in images)
        assert summary_figures["cer"]["value"] == pytest.approx(edits / chars)
        aesthetics = [i["rules"]["aesthetics"] for i in images]
        assert summary_figures["rules/aesthetics"]["value"] == pytest.approx(sum(aesthetics) / len(aesthetics))
        low, high = summary_figures["rules/aesthetics"]["ci"]
        assert low <= summary_figures["rules/aesthetics"]["value"] <= high
        assert 0.0 <= summary_figures["diversity"]["value"] <= 1.0
        assert summary_figures["seconds_per_image"]["value"] > 0
        # The same figure, formatted, in the markdown and in the HTML.
        cer_text = f"{100 * summary_figures['cer']['value']:.1f} %"
        assert cer_text in summary and cer_text in html
    second = results["checkpoints"][1]
    assert set(second["win_rates"]) == {"aesthetics", "prompt_fidelity", "safety"}
    rate = second["win_rates"]["aesthetics"]
    assert rate["wins"] + rate["ties"] + rate["losses"] == 10
    assert rate["value"] == pytest.approx((rate["wins"] + 0.5 * rate["ties"]) / 10)
    assert results["checkpoints"][0]["win_rates"] == {}
    assert "summary.md" in result.stdout and "| Exact match" in result.stdout
    # The change against the baseline, with the interval of the paired difference and its verdict,
    # in the console, summary.md and the report alike.
    from imagepref.eval.figures import summary_lines

    changes = summary_lines(results, results["checkpoints"][0], second)
    assert changes[0].startswith("OCR word accuracy: ") and "interval of the paired difference" in changes[0]
    assert "## checkpoint-10 against checkpoint-0: paired differences" in summary
    for line in changes:
        assert f"- {line}" in summary and f"- {line}" in result.stdout
        assert html_escape(line) in html
    # By target: every image with a target counted once under its prompt's pieces; two-piece
    # targets are escaped so the markdown table keeps its columns.
    from imagepref.eval.report import target_rows

    rows, left_out = target_rows(results)
    assert left_out == 0 and len(rows) == len({" | ".join(p["targets"]) for p in results["prompts"] if p["targets"]})
    for column, checkpoint in enumerate(results["checkpoints"]):
        with_target = [i for i in checkpoint["images"] if i["text"]["has_target"]]
        assert sum(row["cells"][column]["total"] for row in rows) == len(with_target)
        assert sum(row["cells"][column]["hits"] for row in rows) == sum(
            bool(i["text"]["exact_match"]) for i in with_target
        )
    rates = [row["cells"][0]["rate"] for row in rows]
    assert rates == sorted(rates)  # the baseline's worst first
    section = summary.split("## By target")[1]
    table = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(table) == len(rows) + 1 and all(line.count(" | ") == 2 for line in table)
    assert any("\\|" in line for line in table)  # the two-piece prompt
    assert 'id="targets"' in html and "## By target" not in result.stdout and "with a table by target" in result.stdout


def test_second_run_reuses_cached_images(evaluated, micro_run, prompts_file):
    out, _ = evaluated
    before = json.loads((out / "results.json").read_text())
    result = run_eval(
        "--checkpoints", *map(str, micro_run), "--prompts", str(prompts_file), "--samples", "2", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    after = json.loads((out / "results.json").read_text())
    assert all(c["images_reused"] for c in after["checkpoints"])
    assert [i["reading"] for c in after["checkpoints"] for i in c["images"]] == [
        i["reading"] for c in before["checkpoints"] for i in c["images"]
    ]


def test_missing_checkpoint_folder(tmp_path, micro_run, one_line_error):
    result = run_eval(
        "--checkpoints", str(micro_run[0]), str(tmp_path / "nope"), "--limit", "2", "--out", str(tmp_path / "o")
    )
    one_line_error(result, "nope", "does not exist")
    assert not (tmp_path / "o" / "results.json").exists()


def test_unknown_ocr_engine(tmp_path, micro_run, one_line_error):
    result = run_eval(
        "--checkpoints", str(micro_run[0]), "--ocr-engine", "easyocr", "--limit", "2", "--out", str(tmp_path / "o")
    )
    one_line_error(result, "unknown OCR engine 'easyocr'", "rapidocr, tesseract")


def test_engine_models_missing_names_what_to_install(tmp_path, micro_run, one_line_error):
    result = run_eval(
        "--checkpoints",
        str(micro_run[0]),
        "--ocr-engine",
        "tesseract",
        "--limit",
        "2",
        "--out",
        str(tmp_path / "o"),
        env={"TESSDATA_PREFIX": str(tmp_path)},
    )
    one_line_error(result, "eng.traineddata", "apt-get install tesseract-ocr tesseract-ocr-eng")


def test_prompts_file_without_a_usable_line(tmp_path, micro_run, one_line_error):
    prompts = tmp_path / "empty.jsonl"
    prompts.write_text("\n# nothing here\n")
    result = run_eval("--checkpoints", str(micro_run[0]), "--prompts", str(prompts), "--out", str(tmp_path / "o"))
    one_line_error(result, "empty.jsonl has no usable line")


def test_corrupt_cached_image_is_reported_and_nothing_is_lost(evaluated, micro_run, prompts_file, one_line_error):
    out, _ = evaluated
    before = (out / "results.json").read_bytes()
    folder = out / json.loads(before)["checkpoints"][1]["image_folder"]
    victim = sorted((folder / "images").iterdir())[0]
    original = victim.read_bytes()
    victim.write_bytes(original[:40])
    try:
        result = run_eval(
            "--checkpoints", *map(str, micro_run), "--prompts", str(prompts_file), "--samples", "2", "--out", str(out)
        )
        one_line_error(result, victim.name, "cannot be read", "delete that folder")
        assert (out / "results.json").read_bytes() == before
        victim.unlink()
        result = run_eval(
            "--checkpoints", *map(str, micro_run), "--prompts", str(prompts_file), "--samples", "2", "--out", str(out)
        )
        one_line_error(result, victim.name, "does not exist")
    finally:
        victim.write_bytes(original)


def test_reward_model_scores_and_safety_head_violation_rate(micro_run, prompts_file, tmp_path):
    """A real (tiny, untrained) pixel reward model: per-axis scores and the safety head's verdicts
    reach results.json, and the violation rate is the share of images the head flags."""
    from imagepref.reward import RewardConfig, RewardModel

    model_dir = tmp_path / "reward"
    RewardModel.create(RewardConfig(backbone="pixel", width=16, layers=1, heads=2)).save_pretrained(model_dir)
    out = tmp_path / "eval"
    result = run_eval(
        "--checkpoints",
        str(micro_run[0]),
        "--prompts",
        str(prompts_file),
        "--samples",
        "2",
        "--reward-model",
        str(model_dir),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    checkpoint = json.loads((out / "results.json").read_text())["checkpoints"][0]
    images = checkpoint["images"]
    assert all(set(i["reward"]) == {"aesthetics", "prompt_fidelity", "safety"} for i in images)
    flags = [i["reward_unsafe"] for i in images]
    assert set(flags) <= {0.0, 1.0}
    rate = checkpoint["summary"]["reward_safety_violation_rate"]["value"]
    assert rate == pytest.approx(sum(flags) / len(flags))
    assert "reward/safety" in checkpoint["summary"]
    assert "Safety violation rate (reward head)" in (out / "report.html").read_text()


def test_a_token_reward_model_scores_the_images_codes(micro_run, prompts_file, tmp_path):
    """A token reward model reads each image's codes from the candidate set (it has no pixel input):
    the scores in results.json are the model's scores of those codes for their prompts."""
    from imagepref.formats import read_candidate_set
    from imagepref.policy.generator import load_generator
    from imagepref.reward import RewardConfig, RewardModel, load_reward_model

    model_dir = tmp_path / "reward"
    generator = load_generator(micro_run[0])
    RewardModel.create(
        RewardConfig(backbone="token", width=16, layers=1, heads=2), generator=generator
    ).save_pretrained(model_dir)
    out = tmp_path / "eval"
    args = ["--checkpoints", str(micro_run[0]), "--prompts", str(prompts_file), "--samples", "2"]
    result = run_eval(*args, "--reward-model", str(model_dir), "--out", str(out))
    assert result.returncode == 0, result.stderr
    checkpoint = json.loads((out / "results.json").read_text())["checkpoints"][0]
    images = checkpoint["images"]
    candidates = read_candidate_set(out / checkpoint["image_folder"])
    tokens = [list(candidates.at[i["candidate_id"], "image_tokens"]) for i in images]
    prompts = [candidates.at[i["candidate_id"], "prompt"] for i in images]
    expected = load_reward_model(model_dir).score(tokens=tokens, prompts=prompts)
    assert [i["reward"]["aesthetics"] for i in images] == pytest.approx(expected["aesthetics"].tolist(), abs=1e-5)
