"""The align and eval stages load the generator in the recipe's dtype, and every training step
reaches the run log as it happens."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open

from imagepref.policy.align.pipeline import run_aligner
from imagepref.policy.pretrain import micro_generator

DPO = {"steps": 3, "batch_size": 2, "save_every": 10, "lora_r": 4, "report_to": []}


@pytest.mark.slow
def test_bfloat16_recipe_aligns_and_evaluates_in_bfloat16_with_a_log_line_per_step(cli, micro_recipe, tmp_path):
    path = micro_recipe(
        stages=["pretrain", "align", "eval"],
        generator={"dtype": "bfloat16"},
        align={"methods": ["dpo"], "ocr_engine": "tesseract", "monitor": False, "dpo": {**DPO, "save_every": 2}},
    )
    code, out, err = cli("run", path)
    assert code == 0, err
    run = tmp_path / "run"
    dpo = run / "stages" / "r1" / "align" / "dpo"
    assert json.loads((dpo / "align.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(dpo / "adapter" / "adapter_model.safetensors"), "pt") as adapter:
        dtypes = {adapter.get_tensor(name).dtype for name in adapter.keys()}
    assert {str(d) for d in dtypes} == {"torch.float32"}  # peft keeps LoRA weights (and so AdamW's state) fp32
    with safe_open(str(dpo / "checkpoint-2" / "optimizer.safetensors"), "pt") as optimizer:
        moments = [optimizer.get_tensor(name) for name in optimizer.keys() if name.endswith(("exp_avg", "exp_avg_sq"))]
    assert moments and {m.dtype for m in moments} == {torch.float32}
    log = (run / "run.log").read_text()
    assert re.search(r"\[r1/align\] dpo: \S+ loaded in bfloat16 on cpu", log)
    steps = [int(m) for m in re.findall(r"\[r1/align\] dpo step (\d+)/3 .*loss=", log)]
    assert steps == [1, 2, 3]
    # The console shows the last step's summary; TRL's token accuracy stays in the run log.
    assert re.search(r"^\[r1/align\] dpo step 3/3  loss \S+  margin \S+  accuracy \S+$", out, re.M), out
    assert "mean_token_accuracy" in log and "mean_token_accuracy" not in out and "dpo step 1/3" not in out
    # Eval sampled both checkpoints in bfloat16 (each image set's manifest records how it loaded).
    manifests = [
        json.loads(p.read_text()) for p in (run / "stages" / "eval" / "report" / "images").glob("*/manifest.json")
    ]
    assert len(manifests) == 2 and {m["dtype"] for m in manifests} == {"bfloat16"}
    # ... and logged its batches of work as they finished: each checkpoint's images, then the OCR.
    assert re.search(r"\[eval\] step 3/3 work=images:base", log) and re.search(
        r"\[eval\] step 3/3 work=images:aligned-round-1", log
    )
    assert re.search(r"\[eval\] step 6/6 work=ocr", log)


@pytest.mark.parametrize(
    "command", [["align", "dpo", "--out", "{tmp}/run"], ["eval", "--checkpoints", "{tmp}", "--out", "{tmp}/eval"]]
)
def test_an_unknown_dtype_is_a_one_line_error(cli, tmp_path, command):
    code, out, err = cli(*[part.format(tmp=tmp_path) for part in command], "--dtype", "float8")
    assert code == 2
    assert err.strip() == "error: --dtype must be one of float32, bfloat16, float16; got 'float8'"


def test_step_lines_arrive_while_training_runs(tmp_path):
    base = tmp_path / "base"
    micro_generator(seed=0).save_pretrained(base)
    out = tmp_path / "run"
    seen: list[tuple[str, bool]] = []
    result = run_aligner(
        "dpo",
        base,
        out,
        {**DPO, "steps": 4},
        ocr_engine="tesseract",
        monitor=False,
        merge=False,
        log=lambda line: None,
        step_log=lambda line: seen.append(
            (str(line), (out / "align.json").is_file() and "finished" in (out / "align.json").read_text())
        ),
    )
    assert result["steps"] == 4
    steps = [int(re.match(r"dpo step (\d+)/4 ", line).group(1)) for line, _ in seen if " step " in line]
    assert steps == [1, 2, 3, 4]
    assert seen[-1][0].startswith("dpo finished 4/4 ")
    assert not any(finished for _, finished in seen), "a step line came only after training had finished"
    assert all(re.search(r"loss=\S+", line) for line, _ in seen)
