"""Bad input across every command, through the real command line: each case ends in one
``error:`` line, exit status 2, no traceback and no new file anywhere in the workspace or the
temporary folder; the cheap ones fail before torch is imported.

Every case runs ``imagepref.recipes.cli.main`` in its own process. The processes are forked from
one interpreter that has imported the command line (what ``imagepref`` imports before it parses
anything) and nothing else, so a case costs milliseconds instead of a second of start-up, and
``torch`` in a case's ``sys.modules`` means that case imported it. ``test_the_fork_runner_matches
_the_installed_command`` checks that a forked case prints what the installed command prints.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "policy" / "glyphworld" / "pretrained"
HEAVY = ("torch", "transformers", "trl", "peft")
WIDE_SEED = str(2**64)

# The process every case is forked from: it reads one JSON request a line, forks, runs the command
# line in the child with the request's working folder, environment and output files, and answers
# the child's exit status and the heavy modules it imported.
FORK_RUNNER = r"""
import json, os, sys, tempfile, traceback
import imagepref.recipes.cli as cli

HEAVY = ("torch", "transformers", "trl", "peft")
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.chdir(request["cwd"])
            os.environ.update(request["env"])
            tempfile.tempdir = None
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            sys.argv = ["imagepref", *request["args"]]
            try:
                cli.main(request["args"])
                status = 0
            except SystemExit as stop:
                code = stop.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                status = code if isinstance(code, int) else (0 if code is None else 1)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
                with open(request["imports"], "w") as file:
                    json.dump([name for name in HEAVY if name in sys.modules], file)
            finally:
                os._exit(status)
    _, wait_status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(wait_status)), flush=True)
"""


@dataclass(frozen=True)
class Case:
    """One bad input: the command line (``{ws}``: the shared workspace, ``{out}``: a path that must
    stay untouched), a fragment the error line must hold, and whether the case may import torch
    before it fails (it has to look at a device)."""

    name: str
    args: str
    says: str
    torch: bool = False
    without_gpu: bool = False  # bad only on a machine without a GPU


# Align settings and recipes are validated against TRL's config classes, which import torch.
SETTINGS_NEED_TORCH = True

GEN = "generate --model {ws}/gen --prompts {ws}/prompts.txt --out {out}"
EDITS = "generate --model {ws}/gen --out {out}"
EVAL = "eval --checkpoints {ws}/gen --prompts {ws}/prompts.txt --out {out} --quiet"
PRETRAIN = "pretrain --out {out}"
REWARD = "reward train --prefs {ws}/prefs --candidates {ws}/cands --out {out} --quiet"
SCORE = "reward score --model {ws}/rm --candidates {ws}/cands --out {out}/scores.parquet"
DPO = "align dpo --base {ws}/gen --preferences {ws}/prefs --candidates {ws}/cands --out {out} --no-monitor"
GRPO = "align grpo --base {ws}/gen --prompts {ws}/prompts.txt --out {out} --no-monitor"
PPO = "align ppo --base {ws}/gen --prompts {ws}/prompts.txt --out {out} --no-monitor"
RUN = "run {ws}/recipe.yaml run_dir={out}"

CASES = [
    # --- generate: prompts files ---
    Case("generate-prompts-latin1", f"{GEN.replace('prompts.txt', 'latin1.txt')}", "not UTF-8"),
    Case("generate-prompts-png", f"{GEN.replace('prompts.txt', 'image.png')}", "not UTF-8"),
    Case("generate-prompts-nul-bytes", f"{GEN.replace('prompts.txt', 'nul.txt')}", "NUL"),
    Case("generate-prompts-duplicate-ids", f"{GEN.replace('prompts.txt', 'duplicate.jsonl')}", "appears twice"),
    Case("generate-prompts-missing", f"{GEN.replace('prompts.txt', 'absent.txt')}", "does not exist"),
    Case("generate-prompts-folder", f"{GEN.replace('prompts.txt', 'empty-folder')}", "is a folder"),
    Case("generate-prompts-empty", f"{GEN.replace('prompts.txt', 'blank.txt')}", "no prompts"),
    Case("generate-prompts-not-json-lines", f"{GEN.replace('prompts.txt', 'broken.jsonl')}", "not valid JSON"),
    # --- generate: model folders ---
    Case("generate-model-missing", f"{GEN.replace('/gen ', '/absent ')}", "does not exist"),
    Case("generate-model-without-config-json", f"{GEN.replace('/gen ', '/gen-no-config ')}", "config.json"),
    Case("generate-weights-truncated", f"{GEN.replace('/gen ', '/gen-truncated ')}", "gen-truncated"),
    Case("generate-weights-random", f"{GEN.replace('/gen ', '/gen-random ')}", "gen-random"),
    Case("generate-weights-missing", f"{GEN.replace('/gen ', '/gen-no-weights ')}", "model.safetensors"),
    Case("generate-imagepref-json-not-json", f"{GEN.replace('/gen ', '/gen-bad-json ')}", "imagepref.json"),
    Case("generate-model-is-a-file", f"{GEN.replace('/gen ', '/prompts.txt ')}", "not a folder"),
    # --- generate: settings ---
    Case("generate-device-cuda", f"{GEN} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("generate-device-cuda-9", f"{GEN} --device cuda:9", "cuda:9", torch=True),
    Case("generate-device-unknown", f"{GEN} --device gpu0", "gpu0"),
    Case("generate-batch-size-0", f"{GEN} --batch-size 0", "--batch-size must be at least 1"),
    Case("generate-batch-size-negative", f"{GEN} --batch-size -4", "--batch-size must be at least 1"),
    Case("generate-top-k-negative", f"{GEN} --top-k -5", "--top-k must be at least 0"),
    Case("generate-seed-beyond-64-bits", f"{GEN} --seed {WIDE_SEED}", "--seed must be at most"),
    Case("generate-seed-negative", f"{GEN} --seed -1", "--seed must be at least 0"),
    Case("generate-seed-not-a-number", f"{GEN} --seed abc", "--seed"),
    Case("generate-temperature-0", f"{GEN} --temperature 0", "--temperature must be greater than 0"),
    Case("generate-temperature-negative", f"{GEN} --temperature -1", "--temperature must be greater than 0"),
    Case("generate-guidance-negative", f"{GEN} --guidance-scale -2", "--guidance-scale must be at least 0"),
    Case("generate-top-p-above-1", f"{GEN} --top-p 1.5", "--top-p must be at most 1"),
    Case("generate-top-p-0", f"{GEN} --top-p 0", "--top-p must be greater than 0"),
    Case("generate-n-0", f"{GEN} --n 0", "--n must be at least 1"),
    Case("generate-dtype-unknown", f"{GEN} --dtype float8", "--dtype must be one of"),
    Case("generate-unknown-option", f"{GEN} --bogus 1", "--bogus"),
    Case("generate-missing-option", "generate --model {ws}/gen --out {out}", "--prompts"),
    # --- generate: output paths ---
    Case("generate-out-existing-file", GEN.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    Case("generate-out-below-a-file", GEN.replace("{out}", "{ws}/prompts.txt/cands"), "is a file"),
    Case("generate-out-unwritable", GEN.replace("{out}", "/proc/imagepref-bad-input/cands"), "cannot write"),
    Case("generate-out-not-empty", GEN.replace("{out}", "{ws}/cands"), "not empty"),
    Case("generate-out-inside-the-model", GEN.replace("{out}", "{ws}/gen/cands"), "inside"),
    # --- generate --edits ---
    Case("generate-edits-and-prompts", f"{GEN} --edits glyphworld-edits", "one of them"),
    Case("generate-edits-unknown-set", f"{EDITS} --edits glyphworld-edit", "unknown edit set"),
    Case("generate-edits-file-without-sources", f"{EDITS} --edits {{ws}}/edits.jsonl", "--sources"),
    Case(
        "generate-edits-instruction-without-source",
        f"{EDITS} --edits {{ws}}/edits-no-source.jsonl --sources {{ws}}/cands",
        "an instruction needs a source",
    ),
    Case(
        "generate-edits-source-not-in-the-set",
        f"{EDITS} --edits {{ws}}/edits-absent-source.jsonl --sources {{ws}}/cands",
        "not a candidate of --sources",
    ),
    Case(
        "generate-edits-source-of-another-codec",
        f"{EDITS} --edits {{ws}}/edits.jsonl --sources {{ws}}/cands-other-codec",
        "another codec",
    ),
    Case(
        "generate-edits-sources-without-tokens",
        f"{EDITS} --edits {{ws}}/edits.jsonl --sources {{ws}}/cands-text-tokens",
        "image_tokens",
    ),
    Case(
        "generate-edits-sources-with-a-built-in-set",
        f"{EDITS} --edits glyphworld-edits --sources {{ws}}/cands",
        "--sources goes with",
    ),
    Case("generate-edits-limit-negative", f"{EDITS} --edits glyphworld-edits --limit -1", "--limit must be at least 0"),
    # --- chat scripts: checked before the model loads, without torch ---
    Case(
        "chat-script-unknown-edit-kind",
        "chat --model {ws}/gen --script {ws}/chat-sparkle.txt --out {out}",
        "sparkle",
    ),
    Case(
        "chat-script-instruction-without-source",
        "chat --model {ws}/gen --script {ws}/chat-no-source.txt --out {out}",
        "needs a source image",
    ),
    # --- eval on edits ---
    Case(
        "eval-edits-limit-negative",
        EVAL.replace("{ws}/prompts.txt", "glyphworld-edits-heldout") + " --limit -1",
        "--limit must be at least 0",
    ),
    # --- eval ---
    Case("eval-limit-negative", f"{EVAL} --limit -1", "--limit must be at least 0"),
    Case("eval-samples-0", f"{EVAL} --samples 0", "--samples must be at least 1"),
    Case("eval-temperature-0", f"{EVAL} --temperature 0", "--temperature must be greater than 0"),
    Case("eval-guidance-negative", f"{EVAL} --guidance-scale -2", "--guidance-scale must be at least 0"),
    Case("eval-workers-negative", f"{EVAL} --workers -1", "--workers must be at least 0"),
    Case("eval-seed-beyond-64-bits", f"{EVAL} --seed {WIDE_SEED}", "--seed must be at most"),
    Case("eval-unknown-prompt-set", EVAL.replace("{ws}/prompts.txt", "glyphworld-heldot"), "unknown prompt set"),
    Case("eval-prompts-latin1", EVAL.replace("prompts.txt", "latin1.txt"), "not UTF-8"),
    Case("eval-prompts-duplicate-ids", EVAL.replace("prompts.txt", "duplicate.jsonl"), "appears twice"),
    Case("eval-ocr-engine-unknown", f"{EVAL} --ocr-engine tesserakt", "rapidocr"),
    Case("eval-checkpoint-missing", EVAL.replace("/gen ", "/absent "), "does not exist"),
    Case("eval-checkpoint-without-config-json", EVAL.replace("/gen ", "/gen-no-config "), "config.json"),
    Case("eval-checkpoint-weights-truncated", EVAL.replace("/gen ", "/gen-truncated "), "gen-truncated"),
    Case("eval-second-checkpoint-missing", EVAL.replace("/gen ", "/gen {ws}/absent "), "absent"),
    Case("eval-reward-model-missing", f"{EVAL} --reward-model {{ws}}/absent", "reward model"),
    Case("eval-edit-reward-model-on-images", f"{EVAL} --reward-model {{ws}}/rm-edits", "scores edits, and --prompts"),
    Case(
        "eval-image-reward-model-on-edits",
        EVAL.replace("{ws}/prompts.txt", "glyphworld-edits-heldout") + " --reward-model {ws}/rm",
        "--prompts holds edits",
    ),
    Case("eval-device-cuda", f"{EVAL} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("eval-dtype-unknown", f"{EVAL} --dtype half", "--dtype must be one of"),
    Case("eval-out-existing-file", EVAL.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    Case("eval-out-below-a-file", EVAL.replace("{out}", "{ws}/prompts.txt/eval"), "is a file"),
    Case("eval-out-is-the-checkpoint", EVAL.replace("{out}", "{ws}/gen"), "inside"),
    Case("eval-out-inside-the-checkpoint", EVAL.replace("{out}", "{ws}/gen/eval"), "inside"),
    Case("eval-baseline-not-a-checkpoint", f"{EVAL} --baseline {{ws}}/other", "baseline", torch=True),
    # --- pretrain ---
    Case("pretrain-hidden-size-30", f"{PRETRAIN} --hidden-size 30", "--hidden-size"),
    Case("pretrain-layers-0", f"{PRETRAIN} --layers 0", "--layers must be at least 1"),
    Case("pretrain-steps-0", f"{PRETRAIN} --steps 0", "--steps must be at least 1"),
    Case("pretrain-batch-size-0", f"{PRETRAIN} --batch-size 0", "--batch-size must be at least 1"),
    Case("pretrain-random-share-2", f"{PRETRAIN} --random-share 2", "--random-share must be at most 1"),
    Case("pretrain-lr-restart-malformed", f"{PRETRAIN} --lr-restart soon", "--lr-restart"),
    Case("pretrain-seed-beyond-64-bits", f"{PRETRAIN} --seed {WIDE_SEED}", "--seed must be at most"),
    Case("pretrain-out-existing-file", PRETRAIN.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    Case("pretrain-out-below-a-file", PRETRAIN.replace("{out}", "{ws}/prompts.txt/gen"), "is a file"),
    Case("pretrain-out-unwritable", PRETRAIN.replace("{out}", "/proc/imagepref-bad-input/gen"), "cannot write"),
    Case("pretrain-out-another-folder", PRETRAIN.replace("{out}", "{ws}/cands"), "not a generator"),
    # --- reward train ---
    Case("reward-train-pairs-text", REWARD.replace("/prefs ", "/prefs-text "), "not a readable parquet"),
    Case("reward-train-pairs-lack-a-column", REWARD.replace("/prefs ", "/prefs-no-column "), "candidate_b"),
    Case("reward-train-prefs-missing", REWARD.replace("/prefs ", "/absent "), "does not exist"),
    Case("reward-train-candidates-missing", REWARD.replace("/cands ", "/absent "), "absent"),
    Case("reward-train-lr-negative", f"{REWARD} --set lr=-1", "lr"),
    Case("reward-train-epochs-0", f"{REWARD} --set epochs=0", "epochs"),
    Case("reward-train-unknown-key", f"{REWARD} --set pateince=3", "did you mean patience"),
    Case("reward-train-config-unknown-key", f"{REWARD} --config {{ws}}/reward-typo.yaml", "did you mean patience"),
    Case("reward-train-config-not-yaml", f"{REWARD} --config {{ws}}/not-yaml.yaml", "not valid YAML"),
    Case("reward-train-backbone-unknown", f"{REWARD} --backbone pixels", "backbone"),
    Case("reward-train-token-without-generator", f"{REWARD} --backbone token", "--generator"),
    Case(
        "reward-train-image-tokens-as-strings",
        REWARD.replace("/cands ", "/cands-text-tokens ") + " --backbone token --generator {ws}/gen",
        "image_tokens",
    ),
    Case("reward-train-images-not-images", REWARD.replace("/cands ", "/cands-not-images "), "not an image"),
    Case("reward-train-device-cuda", f"{REWARD} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("reward-train-out-is-the-prefs", REWARD.replace("{out}", "{ws}/prefs"), "inside"),
    Case("reward-train-out-inside-the-prefs", REWARD.replace("{out}", "{ws}/prefs/model"), "inside"),
    Case("reward-train-out-existing-file", REWARD.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    Case("reward-train-edits-pixel-backbone", REWARD.replace("/prefs ", "/prefs-edits "), "cannot read"),
    # --- reward score ---
    Case("reward-score-model-missing", SCORE.replace("/rm ", "/absent "), "reward model"),
    Case("reward-score-weights-truncated", SCORE.replace("/rm ", "/rm-truncated "), "rm-truncated"),
    Case("reward-score-config-not-json", SCORE.replace("/rm ", "/rm-bad-json "), "not valid JSON"),
    Case("reward-score-config-unknown-key", SCORE.replace("/rm ", "/rm-typo "), "did you mean patience"),
    Case("reward-score-candidates-not-a-set", SCORE.replace("/cands ", "/prefs "), "not a candidate set"),
    Case("reward-score-images-not-images", SCORE.replace("/cands ", "/cands-not-images "), "not an image"),
    Case("reward-score-out-is-a-folder", SCORE.replace("{out}/scores.parquet", "{ws}/empty-folder"), "is a folder"),
    Case("reward-score-out-below-a-file", SCORE.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    Case("reward-score-image-model-on-edits", SCORE.replace("/cands ", "/cands-edits "), "holds edits"),
    Case("reward-score-edit-model-on-images", SCORE.replace("/rm ", "/rm-edits "), "scores edits"),
    Case("reward-score-device-cuda", f"{SCORE} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("reward-glyph-data-error-rate-2", "reward glyph-data --out {out} --error-rate 2", "--error-rate"),
    Case("reward-glyph-data-ocr-unknown", "reward glyph-data --out {out} --ocr tesserakt", "rapidocr"),
    # --- align dpo ---
    Case("dpo-lora-r-0", f"{DPO} lora_r=0", "lora_r", torch=SETTINGS_NEED_TORCH),
    Case("dpo-learning-rate-negative", f"{DPO} learning_rate=-1", "learning_rate", torch=SETTINGS_NEED_TORCH),
    Case("dpo-steps-0", f"{DPO} steps=0", "max_steps", torch=SETTINGS_NEED_TORCH),
    Case("dpo-unknown-key", f"{DPO} lora_rr=8", "did you mean lora_r", torch=SETTINGS_NEED_TORCH),
    Case("dpo-config-not-yaml", f"{DPO} --config {{ws}}/not-yaml.yaml", "not valid YAML", torch=SETTINGS_NEED_TORCH),
    Case("dpo-pairs-text", DPO.replace("/prefs ", "/prefs-text "), "not a readable parquet"),
    Case("dpo-pairs-lack-a-column", DPO.replace("/prefs ", "/prefs-no-column "), "candidate_b"),
    Case("dpo-image-tokens-as-strings", DPO.replace("/cands ", "/cands-text-tokens "), "image_tokens"),
    Case("dpo-preferences-without-candidates", DPO.replace("--candidates {ws}/cands ", ""), "--candidates"),
    Case("dpo-base-without-config-json", DPO.replace("/gen ", "/gen-no-config "), "config.json"),
    Case("dpo-base-weights-random", DPO.replace("/gen ", "/gen-random "), "gen-random"),
    Case("dpo-device-cuda", f"{DPO} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("dpo-out-is-the-prefs", DPO.replace("{out}", "{ws}/prefs"), "inside"),
    Case("dpo-out-existing-file", DPO.replace("{out}", "{ws}/prompts.txt"), "is a file"),
    # Edit pairs judged on the image axes: the edit default weights find none of theirs.
    Case(
        "dpo-preferences-of-edits-on-image-axes", DPO.replace("/prefs ", "/prefs-edits "), "does not judge", torch=True
    ),
    Case(
        "dpo-preferences-of-edits-source-absent",
        DPO.replace("/prefs ", "/prefs-edits-absent-source ") + " pairs.weights.prompt_fidelity=1",
        "none of the candidate sets holds",
        torch=True,
    ),
    # --- align grpo / ppo ---
    Case("grpo-one-generation", f"{GRPO} num_generations=1", "num_generations", torch=SETTINGS_NEED_TORCH),
    # Fails after the run folder was made (the base is loaded first): the failed attempt leaves
    # no align.json that would make the corrected retry refuse the folder.
    Case("grpo-groups-do-not-fill-a-batch", f"{GRPO} num_generations=3", "multiple of num_generations", torch=True),
    Case("grpo-steps-negative", f"{GRPO} steps=-5", "max_steps", torch=SETTINGS_NEED_TORCH),
    Case("grpo-steps-0", f"{GRPO} steps=0", "max_steps", torch=SETTINGS_NEED_TORCH),
    Case("grpo-lora-r-0", f"{GRPO} lora_r=0", "lora_r", torch=SETTINGS_NEED_TORCH),
    Case("grpo-reward-unknown", f"{GRPO} --reward ocrr=1", "ocrr", torch=SETTINGS_NEED_TORCH),
    Case(
        "grpo-reward-weight-not-a-number",
        f"{GRPO} --reward ocr=much",
        "weight must be a number",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("grpo-ocr-engine-unknown", f"{GRPO} --ocr-engine tesserakt", "rapidocr"),
    Case("grpo-prompts-latin1", GRPO.replace("prompts.txt", "latin1.txt"), "not UTF-8"),
    Case("grpo-prompts-missing", GRPO.replace("prompts.txt", "absent.txt"), "does not exist"),
    Case("grpo-num-prompts-0", f"{GRPO} --num-prompts 0", "--num-prompts must be at least 1"),
    Case("grpo-base-weights-truncated", GRPO.replace("/gen ", "/gen-truncated "), "gen-truncated"),
    Case("grpo-device-cuda", f"{GRPO} --device cuda", "cuda", torch=True, without_gpu=True),
    Case("grpo-out-below-a-file", GRPO.replace("{out}", "{ws}/prompts.txt/run"), "is a file"),
    Case("grpo-resume-without-a-run", f"{GRPO} --resume", "holds no run"),
    Case(
        "grpo-resume-align-json-not-json",
        GRPO.replace("{out}", "{ws}/run-bad-json") + " --resume",
        "align.json",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "grpo-prompt-fidelity-on-edit-turns",
        GRPO.replace("{ws}/prompts.txt", "glyphworld-edits") + " --reward rule_prompt_fidelity=1",
        "cannot score an edit turn",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "grpo-image-reward-model-on-edit-turns",
        GRPO.replace("{ws}/prompts.txt", "glyphworld-edits") + " --reward reward_model=1 --reward-model {ws}/rm",
        "holds edits, and the reward model scores images",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "grpo-edit-reward-model-on-prompts",
        f"{GRPO} --reward reward_model:preservation=1 --reward-model {{ws}}/rm-edits",
        "scores edits, and the run's prompt set holds no edits",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "dpo-on-policy-edit-reward-model-on-prompts",
        "align dpo --base {ws}/gen --prompts {ws}/prompts.txt --reward-model {ws}/rm-edits --out {out} --no-monitor",
        "scores edits, and the run's prompt set holds no edits",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("grpo-edit-rule-on-prompts", f"{GRPO} --reward edit_success=1", "judges edits", torch=SETTINGS_NEED_TORCH),
    Case("ppo-on-edit-turns", PPO.replace("{ws}/prompts.txt", "glyphworld-edits"), "cannot train on edit turns"),
    Case(
        "dpo-on-policy-ink-rule-on-edit-turns",
        "align dpo --base {ws}/gen --prompts glyphworld-edits --out {out} --no-monitor on_policy.rewards.rule_ink_colour=1",
        "cannot score an edit turn",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("ppo-lora-r-0", f"{PPO} lora_r=0", "lora_r", torch=SETTINGS_NEED_TORCH),
    Case("ppo-unknown-key", f"{PPO} vf_coeff=0.1", "unknown key", torch=SETTINGS_NEED_TORCH),
    Case("ppo-reward-model-missing", f"{PPO} --reward reward_model=1 --reward-model {{ws}}/absent", "reward model"),
    # --- align merge ---
    Case(
        "merge-align-json-not-json",
        "align merge {ws}/run-bad-json --out {out}",
        "align.json",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("merge-run-missing", "align merge {ws}/absent --out {out}", "absent"),
    Case("merge-out-existing-file", "align merge {ws}/run-bad-json --out {ws}/prompts.txt", "is a file"),
    Case("merge-out-is-the-run", "align merge {ws}/run-bad-json --out {ws}/run-bad-json", "not empty"),
    # --- labeling (no server needed) ---
    Case("label-stats-on-a-text-file", "label stats --data {ws}/prompts.txt", "prompts.txt"),
    Case("label-stats-annotations-text", "label stats --data {ws}/prefs-text", "not a readable parquet"),
    Case("label-pull-export-not-json", "label pull --from-file {ws}/prompts.txt --out {out}", "JSON"),
    Case(
        "label-server-port-70000", "label server start --port 70000 --state-dir {out}", "--port must be at most 65535"
    ),
    Case("label-simulate-error-rate-2", "label simulate --error-rate 2 --state-dir {out}", "--error-rate"),
    Case(
        "label-create-config-unknown-key", "label create --config {ws}/labeling-typo.yaml --state-dir {out}", "overlap"
    ),
    Case("label-push-not-a-candidate-set", "label push {ws}/prefs --state-dir {out}", "not a candidate set"),
    # --- run RECIPE: every section checked when the recipe loads ---
    Case("run-recipe-missing", "run {ws}/absent.yaml", "does not exist"),
    Case("run-recipe-not-yaml", "run {ws}/not-yaml.yaml", "not valid YAML"),
    Case(
        "run-generator-path-missing", f"{RUN} generator.path={{ws}}/absent", "generator.path", torch=SETTINGS_NEED_TORCH
    ),
    Case(
        "run-generator-without-config-json",
        f"{RUN} generator.path={{ws}}/gen-no-config",
        "config.json",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-generator-device-cuda", f"{RUN} generator.device=cuda", "cuda", torch=True, without_gpu=True),
    Case(
        "run-generate-prompts-missing",
        f"{RUN} generate.prompts={{ws}}/absent.txt",
        "generate.prompts",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-generate-prompts-nul-bytes", f"{RUN} generate.prompts={{ws}}/nul.txt", "NUL", torch=SETTINGS_NEED_TORCH),
    Case("run-generate-top-p", f"{RUN} generate.top_p=1.5", "generate.top_p", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-label-ocr-engine-unknown",
        f"{RUN} label.ocr_engine=tesserakt",
        "label.ocr_engine",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-label-instructions-missing",
        f"{RUN} label.instructions={{ws}}/absent.md",
        "label.instructions",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-label-error-rate-2", f"{RUN} label.error_rate=2", "label.error_rate", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-reward-settings-unknown-key",
        f"{RUN} reward.settings.pateince=3",
        "did you mean reward.settings.patience",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-reward-settings-unknown-key-in-file",
        "run {ws}/recipe-reward-typo.yaml run_dir={out}",
        "patience",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-align-prompts-latin1", f"{RUN} align.prompts={{ws}}/latin1.txt", "not UTF-8", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-align-ocr-engine-unknown",
        f"{RUN} align.ocr_engine=tesserakt",
        "align.ocr_engine",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-align-grpo-one-generation",
        f"{RUN} align.grpo.num_generations=1",
        "num_generations",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-align-grpo-steps-negative", f"{RUN} align.grpo.steps=-5", "max_steps", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-eval-prompt-set-unknown",
        f"{RUN} eval.prompts=glyphworld-heldot",
        "eval.prompts",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-eval-ocr-engine-unknown", f"{RUN} eval.ocr_engine=tesserakt", "eval.ocr_engine", torch=SETTINGS_NEED_TORCH
    ),
    Case("run-eval-limit-negative", f"{RUN} eval.limit=-1", "eval.limit", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-launch-accelerate-config-missing",
        f"{RUN} launch.accelerate_config={{ws}}/absent.yaml",
        "accelerate",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-dir-below-a-file",
        "run {ws}/recipe.yaml run_dir={ws}/prompts.txt/run",
        "is a file",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-unknown-stage", f"{RUN} stages=[generat]", "did you mean generate", torch=SETTINGS_NEED_TORCH),
    Case(
        "run-generate-edits-grpo-on-image-prompts",
        f"{RUN} generate.edits=glyphworld-edits reward.settings.backbone=token",
        "set align.prompts: glyphworld-edits",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-generate-edits-ppo",
        f"{RUN} generate.edits=glyphworld-edits reward.settings.backbone=token align.methods=[ppo] "
        "align.prompts=glyphworld-edits",
        "ppo does not train on edit turns",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-edit-turn-prompts-in-a-loop-of-images",
        f"{RUN} align.methods=[grpo] align.prompts=glyphworld-edits",
        "this loop draws images",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-generate-edits-reward-pixel-backbone",
        f"{RUN} generate.edits=glyphworld-edits stages=[generate,label,reward]",
        "cannot read",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-generate-edits-unknown",
        f"{RUN} generate.edits=glyphworld-edit",
        "generate.edits",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case(
        "run-eval-edit-set-misspelt",
        f"{RUN} eval.prompts=glyphworld-edits-heldot",
        "eval.prompts",
        torch=SETTINGS_NEED_TORCH,
    ),
    Case("run-seed-beyond-64-bits", f"{RUN} seed={WIDE_SEED}", "seed", torch=SETTINGS_NEED_TORCH),
]


# --- the workspace every case reads -----------------------------------------------------------


def _candidate_set(folder: Path, tokens=None, images: bool = True) -> None:
    """A small candidate set: two prompts, two candidates each, real 64 x 64 PNGs (or text files
    named .png when not ``images``), ``tokens`` per row (default: 66 valid image codes)."""
    (folder / "images").mkdir(parents=True)
    rows = []
    for prompt_index, word in enumerate(("CAT", "DOG")):
        for sample in range(2):
            candidate = f"p{prompt_index}-{sample}"
            image = folder / "images" / f"{candidate}.png"
            if images:
                Image.new("RGB", (64, 64), (255, 255 - 40 * sample, 255)).save(image)
            else:
                image.write_text("not an image\n")
            rows.append(
                {
                    "candidate_id": candidate,
                    "prompt_id": f"p{prompt_index}",
                    "prompt": f'a sign that says "{word}"',
                    "image_path": f"images/{candidate}.png",
                    "image_tokens": list(range(sample, sample + 66)) if tokens is None else tokens,
                }
            )
    pd.DataFrame(rows).to_parquet(folder / "candidates.parquet", index=False)


def _preferences(folder: Path, drop: str | None = None, edits: bool = False, source: str = "p0-0") -> None:
    from imagepref.formats import AXES, pair_columns

    folder.mkdir(parents=True)
    rows = []
    for prompt_index, word in enumerate(("CAT", "DOG")):
        row = {
            "pair_id": f"pair{prompt_index}",
            "prompt": f'a sign that says "{word}"',
            "candidate_a": f"p{prompt_index}-0",
            "candidate_b": f"p{prompt_index}-1",
        }
        for axis in AXES:
            row.update({f"{axis}_votes_a": 2, f"{axis}_votes_b": 0, f"{axis}_votes_tie": 0, f"{axis}_label": "a"})
        rows.append(row)
    pairs = pd.DataFrame(rows, columns=pair_columns(AXES))
    if drop:
        pairs = pairs.drop(columns=[drop])
    if edits:
        pairs = pairs.assign(source_candidate=source, instruction="make the ink blue")
    pairs.to_parquet(folder / "pairs.parquet", index=False)


def _generator_copy(workspace: Path, name: str) -> Path:
    folder = workspace / name
    shutil.copytree(SHIPPED, folder)
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Good and bad inputs side by side; cases read them and must leave the folder as it is."""
    ws = tmp_path_factory.mktemp("bad-input") / "ws"
    ws.mkdir()
    (ws / "prompts.txt").write_text('a sign that says "HI"\na sign that says "OPEN"\n')
    (ws / "latin1.txt").write_bytes('a sign that says "CAF\u00c9"\n'.encode("latin-1"))
    Image.new("RGB", (8, 8)).save(ws / "image.png")
    (ws / "nul.txt").write_bytes(b'a sign that says "HI"\x00\x00\n')
    (ws / "duplicate.jsonl").write_text('{"prompt": "a", "prompt_id": "x"}\n{"prompt": "b", "prompt_id": "x"}\n')
    (ws / "broken.jsonl").write_text('{"prompt": "a"\n')
    (ws / "blank.txt").write_text("\n# only a comment\n")
    (ws / "empty-folder").mkdir()
    (ws / "not-yaml.yaml").write_text("key: [unclosed\n")
    (ws / "reward-typo.yaml").write_text("pateince: 3\n")
    (ws / "labeling-typo.yaml").write_text("overlapp: 3\n")
    (ws / "recipe.yaml").write_text("name: bad-input\nstages: [generate, label, reward, align, eval]\n")
    (ws / "recipe-reward-typo.yaml").write_text("name: bad-input\nreward:\n  settings:\n    pateince: 3\n")

    _generator_copy(ws, "gen")
    (_generator_copy(ws, "gen-no-config") / "config.json").unlink()
    (_generator_copy(ws, "gen-no-weights") / "model.safetensors").unlink()
    weights = _generator_copy(ws, "gen-truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (_generator_copy(ws, "gen-random") / "model.safetensors").write_bytes(os.urandom(4096))
    (_generator_copy(ws, "gen-bad-json") / "imagepref.json").write_text("{family: glyph")

    _candidate_set(ws / "cands")
    _candidate_set(ws / "cands-not-images", images=False)
    _candidate_set(ws / "cands-text-tokens", tokens="1 2 3")
    _candidate_set(ws / "cands-other-codec", tokens=list(range(64)))
    _candidate_set(ws / "cands-edits")
    edits = pd.read_parquet(ws / "cands-edits" / "candidates.parquet")
    edited = edits["candidate_id"].str.endswith("-1")
    edits["source_candidate"] = edits["candidate_id"].str.replace("-1", "-0").where(edited)
    edits["instruction"] = pd.Series("make the ink blue", index=edits.index).where(edited)
    edits.to_parquet(ws / "cands-edits" / "candidates.parquet", index=False)
    (ws / "chat-sparkle.txt").write_text("prompt: a sign\nsparkle: 3\n")
    (ws / "chat-no-source.txt").write_text("ink_colour: blue\n")
    (ws / "edits.jsonl").write_text('{"source": "p0-0", "instruction": "make the ink blue"}\n')
    (ws / "edits-no-source.jsonl").write_text('{"instruction": "make the ink blue"}\n')
    (ws / "edits-absent-source.jsonl").write_text('{"source": "p9-9", "instruction": "make the ink blue"}\n')
    _preferences(ws / "prefs")
    _preferences(ws / "prefs-no-column", drop="candidate_b")
    _preferences(ws / "prefs-edits", edits=True)
    _preferences(ws / "prefs-edits-absent-source", edits=True, source="p9-9")
    (ws / "prefs-text").mkdir()
    (ws / "prefs-text" / "pairs.parquet").write_text("pair_id,candidate_a\n")
    (ws / "prefs-text" / "annotations.parquet").write_text("pair_id,annotator\n")

    from imagepref.reward.config import RewardConfig
    from imagepref.reward.model import RewardModel

    RewardModel(RewardConfig()).save_pretrained(ws / "rm")
    RewardModel(
        RewardConfig(backbone="token", edits=True, num_image_tokens=128, tokens_per_image=66, embedding_dim=8)
    ).save_pretrained(ws / "rm-edits")
    config = RewardConfig().model_dump(mode="json")
    for name, text in (
        ("rm-truncated", json.dumps(config)),
        ("rm-bad-json", "{not json"),
        ("rm-typo", json.dumps({**config, "pateince": 3})),
    ):
        (ws / name).mkdir()
        (ws / name / "config.json").write_text(text)
        (ws / name / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    (ws / "run-bad-json").mkdir()
    (ws / "run-bad-json" / "align.json").write_text("{method: grpo")
    return ws


# --- running a case ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fork_runner():
    """Send a request to the fork runner; returns its answer (the case's exit status)."""
    process = subprocess.Popen(
        [sys.executable, "-c", FORK_RUNNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT.parent,
    )

    def run(request: dict) -> int:
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        return json.loads(process.stdout.readline())

    yield run
    process.stdin.close()
    process.wait(timeout=60)


def _tree(folder: Path) -> dict[str, tuple[int, int] | None]:
    """Every path under ``folder`` (hidden ones too); a file with its size and modification time."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def _gpu_present() -> bool:
    done = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], capture_output=True, text=True
    )
    return done.stdout.strip() == "True"


@pytest.fixture(scope="module")
def gpu_present() -> bool:
    return _gpu_present()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    case, workspace, fork_runner, tmp_path, one_line_error, gpu_present
):
    if case.without_gpu and gpu_present:
        pytest.skip("bad only on a machine without a GPU")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    records = tmp_path / "records"
    records.mkdir()
    out = workspace / f"out-{case.name}"
    args = shlex.split(case.args.format(ws=workspace, out=out))
    before = _tree(workspace)
    status = fork_runner(
        {
            "args": args,
            "cwd": str(workspace),
            "env": {"TMPDIR": str(scratch), "COLUMNS": "200"},
            "stdout": str(records / "stdout"),
            "stderr": str(records / "stderr"),
            "imports": str(records / "imports"),
        }
    )
    stdout, stderr = (records / "stdout").read_text(), (records / "stderr").read_text()
    one_line_error((status, stdout, stderr), case.says)
    assert _tree(workspace) == before, "the case left files behind or changed its inputs"
    # Libraries' own records, not outputs: torch makes its compiler's cache folder in the temporary
    # folder when it is imported, and the OCR runtime a session record (.ses) when it starts.
    left = [
        path.name for path in scratch.iterdir() if not path.name.startswith("torchinductor_") and path.name != ".ses"
    ]
    assert left == [], "the case left files in the temporary folder"
    heavy = json.loads((records / "imports").read_text())
    if not case.torch:
        assert heavy == [], f"imported {heavy} before failing; check the input before loading anything heavy"


def test_the_table_covers_every_command():
    commands = {" ".join(case.args.split()[:2]) for case in CASES}
    for command in (
        "generate --model",
        "eval --checkpoints",
        "pretrain --out",
        "reward train",
        "reward score",
        "align dpo",
        "align grpo",
        "align ppo",
        "align merge",
        "label stats",
        "label pull",
        "label server",
        "run {ws}/recipe.yaml",
    ):
        assert command in commands, command
    assert len(CASES) >= 80 and len({case.name for case in CASES}) == len(CASES)


def test_the_fork_runner_matches_the_installed_command(workspace, fork_runner, tmp_path):
    # A few cases through the installed entry point: the same exit status and the same line.
    for case in [
        c for c in CASES if c.name in ("generate-batch-size-0", "generate-unknown-option", "run-eval-limit-negative")
    ]:
        args = shlex.split(case.args.format(ws=workspace, out=workspace / "out-installed"))
        installed = subprocess.run(
            [str(Path(sys.executable).parent / "imagepref"), *args],
            capture_output=True,
            text=True,
            cwd=workspace,
            env={**os.environ, "COLUMNS": "200"},
            timeout=300,
        )
        records = tmp_path / case.name
        records.mkdir()
        status = fork_runner(
            {
                "args": args,
                "cwd": str(workspace),
                "env": {"COLUMNS": "200"},
                "stdout": str(records / "stdout"),
                "stderr": str(records / "stderr"),
                "imports": str(records / "imports"),
            }
        )
        assert (status, (records / "stderr").read_text()) == (installed.returncode, installed.stderr)
