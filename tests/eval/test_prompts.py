"""Prompt sets: the built-in text-rendering set, user files, and their bad-input errors."""

from __future__ import annotations

import json

import pytest

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.eval.metrics import DEFAULT_NORMALIZATION
from imagepref.eval.prompts import load_prompts


def test_builtin_text_rendering_set():
    prompts = load_prompts("text-rendering")
    with_target = [p for p in prompts if p.has_target]
    assert len(with_target) >= 200
    assert len({p.prompt_id for p in prompts}) == len(prompts)
    word_counts = {sum(len(DEFAULT_NORMALIZATION.words(t)) for t in p.targets) for p in with_target}
    assert min(word_counts) == 1 and max(word_counts) == 8
    assert any(len(p.targets) > 1 for p in prompts)
    assert any(not p.has_target for p in prompts)
    assert {"sign", "poster", "label"} <= {p.metadata["category"] for p in prompts}


def test_user_jsonl_with_and_without_targets(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [
        {"prompt": 'a sign that says "Hi"'},
        {"prompt": "a label", "target": "Jam", "prompt_id": "jam"},
        {"prompt": "two signs", "target": ["In", "Out"], "seed": 3},
        {"prompt": "a cat"},
    ]
    path.write_text("# my prompts\n\n" + "\n".join(json.dumps(line) for line in lines) + "\n")
    prompts = load_prompts(path)
    assert [p.targets for p in prompts] == [["Hi"], ["Jam"], ["In", "Out"], []]
    assert prompts[1].prompt_id == "jam" and prompts[2].metadata == {"seed": 3}


def test_plain_text_file(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text('a poster reading "Go"\n\nno quotes here\n')
    prompts = load_prompts(path)
    assert [(p.prompt, p.targets) for p in prompts] == [('a poster reading "Go"', ["Go"]), ("no quotes here", [])]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("\n# only a comment\n\n", "no usable line"),
        ('{"prompt": "a"}\nnot json\n', "line 2 is not valid JSON"),
        ('{"text": "a"}\n', 'needs a non-empty "prompt"'),
        ('{"prompt": "a", "target": 3}\n', '"target" must be a string'),
        ('{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n', "appears twice"),
    ],
)
def test_bad_prompt_files(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(BadInputError, match=message) as caught:
        load_prompts(path)
    assert "\n" not in str(caught.value)


def test_unknown_set_and_missing_file(tmp_path):
    with pytest.raises(UnknownNameError, match="text-rendering"):
        load_prompts("text-rendring")
    with pytest.raises(BadInputError, match="does not exist"):
        load_prompts(tmp_path / "nope.jsonl")


def test_glyphworld_heldout_set_comes_from_the_glyph_world():
    from imagepref.policy.glyphworld import heldout_prompts

    records = heldout_prompts()
    prompts = load_prompts("glyphworld-heldout")
    assert len(prompts) == len(records) > 0
    assert [p.targets for p in prompts] == [[r["target"]] for r in records]
    assert all(p.has_target for p in prompts)
