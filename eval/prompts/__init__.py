"""Prompt sets for evaluation: built-in sets by name, or any user file.

Built-in names:

- ``text-rendering``: 216 natural-language prompts written for this project in the style of
  MARIO-Eval and LongText-Bench (signs, posters, labels, screens, clothing; 1 to 8 quoted words,
  varied casing and punctuation, a few with two quoted pieces) plus 5 prompts with no quoted
  text, which are reported as "no target" and never scored;
- ``glyphworld-heldout``: the glyph world's held-out prompts (from ``policy.glyphworld``);
- ``glyphworld-edits-heldout``: the glyph world's 200 held-out edits (``heldout_edits``): each
  "prompt" is an instruction on a drawn source sign, its target the text the edited sign should
  show, its ``kind`` the held-out kind (``unseen_phrasing``, ``unseen_word``) and its metadata the
  edit itself (``edit``, ``edit_kind``, ``source_prompt``), which the evaluation edits and judges
  by the edit rules.

A user file is a prompts file (docs/formats.md, read by ``imagepref.formats.read_prompts``): JSONL
with one ``{"prompt": ..., "target"?: ..., "prompt_id"?: ...}`` object per line (``target`` a
string or a list of strings overrides the quoted pieces), or plain text with one prompt per line.
Blank lines and lines starting with ``#`` are skipped; a prompt without an id gets ``p<line>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError
from imagepref.eval.metrics import extract_targets
from imagepref.formats import Prompt, parse_prompts, read_prompts

BUILTIN_SETS = ("text-rendering", "glyphworld-heldout", "glyphworld-edits-heldout")
# Metadata key of an edit prompt: the glyph world's record of the edit (``edit_record``).
EDIT_KEY = "edit"


@dataclass
class EvalPrompt:
    """One evaluation prompt: its id, text, and target pieces (an empty list: no target)."""

    prompt_id: str
    prompt: str
    targets: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def has_target(self) -> bool:
        """Whether the prompt asks for any text to be drawn."""
        return bool(self.targets)

    @property
    def is_edit(self) -> bool:
        """Whether the prompt is an edit of a source image (its metadata holds the edit)."""
        return EDIT_KEY in self.metadata


def _eval_prompts(prompts: list[Prompt]) -> list[EvalPrompt]:
    # A prompt without a target field is scored on the pieces it quotes.
    return [
        EvalPrompt(p.prompt_id, p.prompt, extract_targets(p.prompt) if p.target is None else p.target, p.metadata)
        for p in prompts
    ]


def load_prompt_file(path: str | Path) -> list[EvalPrompt]:
    """Load a user's prompt file: ``.jsonl``/``.json`` as JSONL, anything else as plain text."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(
            f"prompts file {path} does not exist; pass a JSONL file or one of: {', '.join(BUILTIN_SETS)}"
        )
    return _eval_prompts(read_prompts(path))


def text_rendering_prompts() -> list[EvalPrompt]:
    """The project's natural-language text-rendering set (216 with targets, 5 without)."""
    text = resources.files("imagepref.eval.prompts").joinpath("text_rendering.jsonl").read_text(encoding="utf-8")
    return _eval_prompts(parse_prompts(text, "text_rendering.jsonl", jsonl=True))


def glyphworld_heldout_prompts() -> list[EvalPrompt]:
    """The glyph world's held-out prompts, from ``policy.glyphworld.heldout_prompts()``.

    Imported lazily: the glyph world lives in ``policy`` and pulls in torch. Each item it returns
    may be a prompt string or a dict in the user-file format.
    """
    try:
        from imagepref.policy.glyphworld import heldout_prompts
    except ImportError as error:
        raise ImagePrefError(
            f"the glyph world's held-out set is not available ({error}); update imagepref or pass a prompts file"
        ) from None
    records = [item if isinstance(item, dict) else {"prompt": str(item)} for item in heldout_prompts()]
    lines = "\n".join(json.dumps(record) for record in records)
    return _eval_prompts(parse_prompts(lines, "glyph world held-out set", jsonl=True))


def glyphworld_edit_prompts() -> list[EvalPrompt]:
    """The glyph world's held-out edits as evaluation prompts (see the module docstring)."""
    from imagepref.policy.glyphworld.edits import edit_heldout_kind, edit_record, heldout_edits

    return [
        EvalPrompt(
            f"e{index:04d}",
            edit.instruction,
            [edit.target.text],
            {
                "kind": edit_heldout_kind(edit),
                "edit_kind": edit.kind,
                "source_prompt": edit.source.prompt,
                EDIT_KEY: edit_record(edit),
            },
        )
        for index, edit in enumerate(heldout_edits())
    ]


def load_prompts(name_or_path: str | Path) -> list[EvalPrompt]:
    """Load a built-in prompt set by name, or a user's prompt file by path."""
    if str(name_or_path) == "text-rendering":
        return text_rendering_prompts()
    if str(name_or_path) == "glyphworld-edits-heldout":
        return glyphworld_edit_prompts()
    if str(name_or_path) == "glyphworld-heldout":
        return glyphworld_heldout_prompts()
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "" and "/" not in str(name_or_path):
        raise UnknownNameError(
            f"unknown prompt set {str(name_or_path)!r}; choose one of: {', '.join(BUILTIN_SETS)}, or pass a file path"
        )
    return load_prompt_file(path)
