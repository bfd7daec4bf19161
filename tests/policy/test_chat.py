"""Multi-turn sessions from Python and from `imagepref chat`, and the edit training stage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.policy.chat import ChatSession, ChatTurn, read_chat_script
from imagepref.policy.config import EditTrainingConfig
from imagepref.policy.edit_training import make_edit_batch, train_edits
from imagepref.policy.generator import load_generator
from imagepref.policy.pretrain import micro_generator

SCRIPT = """# a session
prompt: a red sign that says "OPEN"
ink_colour: blue
letter: 2=A

instruction: put a box around the text
"""


def _cli(*args, stdin: str | None = None):
    return subprocess.run(
        [sys.executable, "-m", "imagepref.recipes.cli", *args], capture_output=True, text=True, input=stdin, timeout=300
    )


def test_a_session_saves_every_turn_and_edits_the_last_image(tmp_path):
    generator = micro_generator(seed=0)
    session = ChatSession(generator, tmp_path / "chat", seed=2)
    first = session.prompt('a red sign that says "OPEN"')
    second = session.instruct("make the ink blue")
    third = session.turn(ChatTurn("instruction", "add a frame"))
    assert [p.name for p in (first, second, third)] == ["turn-00.png", "turn-01.png", "turn-02.png"]
    records = [json.loads(line) for line in (tmp_path / "chat" / "turns.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["prompt", "instruction", "instruction"]
    # Each turn edits the image before it: the second turn is exactly an edit of the first's codes
    # with the first prompt as the source prompt; later sources have none.
    again = generator.edit(torch.tensor([records[0]["codes"]]), ["make the ink blue"], [records[0]["text"]], seed=3)
    assert again.codes[0].tolist() == records[1]["codes"]
    again = generator.edit(torch.tensor([records[1]["codes"]]), ["add a frame"], [""], seed=4)
    assert again.codes[0].tolist() == records[2]["codes"]


def test_an_instruction_without_a_source_is_refused(tmp_path):
    session = ChatSession(micro_generator(seed=0), tmp_path / "chat")
    with pytest.raises(BadInputError, match="needs a source image"):
        session.instruct("make the ink blue")


def test_scripts_are_read_and_checked(tmp_path):
    script = tmp_path / "turns.txt"
    script.write_text(SCRIPT)
    assert read_chat_script(script) == [
        ChatTurn("prompt", 'a red sign that says "OPEN"'),
        ChatTurn("instruction", "make the ink blue"),
        ChatTurn("instruction", 'change the second letter to "A"'),
        ChatTurn("instruction", "put a box around the text"),
    ]
    script.write_text("prompt: x\nsparkle: 3\n")
    with pytest.raises(UnknownNameError, match="line 2: unknown edit kind 'sparkle'"):
        read_chat_script(script)
    script.write_text("word: SOFA\n")
    with pytest.raises(BadInputError, match="line 1: an instruction needs a source image"):
        read_chat_script(script)
    script.write_text("prompt: x\nink_colour: teal\n")
    with pytest.raises(BadInputError, match="line 2: ink_colour takes one of"):
        read_chat_script(script)


def test_chat_command_runs_a_script_and_prints_each_image(micro_folder, tmp_path):
    script = tmp_path / "turns.txt"
    script.write_text(SCRIPT)
    out = tmp_path / "chat"
    done = _cli("chat", "--model", str(micro_folder), "--script", str(script), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.split()
    assert printed == [str(out / f"turn-{i:02d}.png") for i in range(4)]
    assert all((out / f"turn-{i:02d}.png").is_file() for i in range(4))


def test_chat_command_reads_turns_from_stdin(micro_folder, tmp_path):
    out = tmp_path / "chat"
    done = _cli("chat", "--model", str(micro_folder), "--out", str(out), stdin='a sign that says "GO"\nadd a frame\n')
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(out / "turn-00.png"), str(out / "turn-01.png")]


@pytest.mark.parametrize(
    ("script", "fragments"),
    [
        ("prompt: x\nsparkle: 3\n", ("unknown edit kind 'sparkle'",)),
        ("word: SOFA\n", ("an instruction needs a source image",)),
    ],
)
def test_chat_command_bad_scripts_are_one_line(micro_folder, tmp_path, one_line_error, script, fragments):
    path = tmp_path / "turns.txt"
    path.write_text(script)
    done = _cli("chat", "--model", str(micro_folder), "--script", str(path), "--out", str(tmp_path / "chat"))
    one_line_error(done, *fragments)


def test_edit_batches_train_only_on_the_new_image():
    generator = micro_generator(seed=0)
    config = EditTrainingConfig(batch_size=6, replay_share=0.0, unconditional_rate=0.0)
    input_ids, mask, labels = make_edit_batch(generator, config, step=0)
    assert torch.equal(make_edit_batch(generator, config, step=0)[0], input_ids)  # a function of the step
    boi = generator.tokenizer.convert_tokens_to_ids("<boi>")
    for row, row_mask, row_labels in zip(input_ids, mask, labels):
        length = int(row_mask.sum())
        second_boi = [i for i, t in enumerate(row[:length].tolist()) if t == boi][1]
        trained = (row_labels != -100).nonzero()[:, 0]
        # Every code of the new image and its end, nothing of the prompt, source, instruction or
        # the source's lead codes after the second <boi>.
        assert trained.tolist() == list(range(second_boi + 1 + generator.edit_lead_codes, length))
        assert len(trained) == generator.num_codes + 2


def test_edit_training_updates_the_weights_and_saves_a_generator(micro_folder, tmp_path):
    out = tmp_path / "edits"
    config = EditTrainingConfig(steps=2, batch_size=4, warmup=1)
    trained = train_edits(micro_folder, out, config, log=lambda line: None)
    base = load_generator(micro_folder)
    changed = [not torch.equal(a, b) for a, b in zip(base.model.parameters(), load_generator(out).model.parameters())]
    assert all(changed)
    record = json.loads((out / "edit_training.json").read_text())
    assert len(record["losses"]) == 2 and record["config"]["steps"] == 2
    assert trained.edit(torch.zeros(1, trained.num_codes, dtype=torch.long), ["add a frame"]).codes.shape[0] == 1
    with pytest.raises(BadInputError, match="not empty"):
        train_edits(micro_folder, out, config)


def test_colour_codes_weigh_more_and_weight_one_is_the_plain_loss():
    from imagepref.policy.edit_training import weighted_loss

    generator = micro_generator(seed=0)
    input_ids, mask, labels = make_edit_batch(generator, EditTrainingConfig(batch_size=4), step=1)
    plain = generator.model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(weighted_loss(generator.model, input_ids, mask, labels, 1.0), plain, atol=1e-5)
    assert not torch.allclose(weighted_loss(generator.model, input_ids, mask, labels, 8.0), plain, atol=1e-3)


def test_kept_codes_are_the_new_codes_equal_to_the_source_and_weigh_more():
    from imagepref.policy.edit_training import weighted_loss

    generator = micro_generator(seed=0)
    # Without an instruction the target is the source itself: every code of the new image is kept.
    keep_all = EditTrainingConfig(batch_size=3, replay_share=0.0, unconditional_rate=1.0)
    input_ids, mask, labels, kept = make_edit_batch(generator, keep_all, step=0, with_kept=True)
    assert kept.sum(1).tolist() == [generator.num_codes] * 3
    assert (labels[kept] != -100).all()
    # Plain signs from the pretraining stream have no source: nothing is kept.
    replays = EditTrainingConfig(batch_size=3, replay_share=1.0)
    assert not make_edit_batch(generator, replays, step=0, with_kept=True)[3].any()
    # An edit turn: kept exactly where the new code equals the source's code in the same place.
    edits = EditTrainingConfig(batch_size=4, replay_share=0.0, unconditional_rate=0.0)
    input_ids, mask, labels, kept = make_edit_batch(generator, edits, step=1, with_kept=True)
    assert torch.equal(make_edit_batch(generator, edits, step=1)[2], labels)
    for row, row_labels, row_kept in zip(input_ids, labels, kept):
        trained = (row_labels != -100).nonzero()[:, 0]
        new = row[trained[: generator.num_codes]]
        # The source block sits between the first two <boi>s.
        boi = (row == generator.tokenizer.convert_tokens_to_ids("<boi>")).nonzero()[:, 0]
        source = row[boi[0] + 1 : boi[0] + 1 + generator.num_codes]
        assert torch.equal(row_kept[trained[: generator.num_codes]], new == source)
        assert 0 < int(row_kept.sum()) < generator.num_codes
    plain = weighted_loss(generator.model, input_ids, mask, labels, 8.0)
    assert torch.allclose(weighted_loss(generator.model, input_ids, mask, labels, 8.0, kept, 1.0), plain)
    assert not torch.allclose(weighted_loss(generator.model, input_ids, mask, labels, 8.0, kept, 3.0), plain, atol=1e-3)


def test_train_edits_command_trains_and_checks_its_options(micro_folder, tmp_path, one_line_error):
    out = tmp_path / "edits"
    done = _cli("train-edits", "--base", str(micro_folder), "--out", str(out), "--steps", "1", "--batch-size", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "edit_training.json").is_file() and load_generator(out).num_codes == load_generator(
        micro_folder
    ).num_codes
    one_line_error(_cli("train-edits", "--out", str(tmp_path / "other"), "--steps", "0"), "--steps")


def test_the_shipped_edit_generator_records_how_it_was_made_and_keeps_the_source_background():
    from imagepref.policy.glyphworld import shipped_edit_generator, shipped_generator
    from imagepref.policy.glyphworld.edits import heldout_edits
    from imagepref.policy.glyphworld.world import render

    folder = shipped_edit_generator()
    record = json.loads((folder / "edit_training.json").read_text())
    stages = [record]
    while stages[-1]["base_record"] is not None:
        stages.append(stages[-1]["base_record"])
    assert stages[-1]["base"] == "policy/glyphworld/pretrained"  # the first stage started from the base
    for stage in stages:
        assert stage["threads"] == 1 and len(stage["losses"]) == stage["config"]["steps"]
    assert sum(stage["cpu_seconds"] for stage in stages) <= 20 * 60
    generator = load_generator(folder)
    assert generator.num_codes == load_generator(shipped_generator()).num_codes
    # Edits that do not touch the background keep the source's (the base copies it by chance).
    edits = [e for e in heldout_edits(60) if e.kind not in ("background", "word", "letter")][:24]
    codes = generator.encode_images([render(e.source) for e in edits])
    result = generator.edit(codes, [e.instruction for e in edits], [e.source.prompt for e in edits], seed=0)
    assert (result.codes[:, 0] == codes[:, 0]).float().mean() >= 0.8


def test_train_edits_from_the_shipped_edit_generator_runs_and_moves_the_weights(tmp_path):
    from imagepref.policy.glyphworld import shipped_edit_generator

    base, out = shipped_edit_generator(), tmp_path / "more"
    done = _cli(
        "train-edits", "--base", str(base), "--out", str(out), "--steps", "1", "--batch-size", "2",
        "--first-code-spread", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    before, after = load_generator(base).model.state_dict(), load_generator(out).model.state_dict()
    assert all(not torch.equal(before[name], after[name]) for name in before)
    record = json.loads((out / "edit_training.json").read_text())
    assert record["config"]["first_code_spread"] == 1 and record["base_record"]["command"].startswith(
        "OMP_NUM_THREADS=1 imagepref train-edits"
    )
