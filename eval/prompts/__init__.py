"""Prompt sets for evaluation: built-in sets by name, or any user file.

Built-in names:

- ``text-rendering``: 216 natural-language prompts written for this project in the style of
  MARIO-Eval and LongText-Bench (signs, posters, labels, screens, clothing; 1 to 8 quoted words,
  varied casing and punctuation, a few with two quoted pieces) plus 5 prompts with no quoted
  text, which are reported as "no target" and never scored;
- ``glyphworld-heldout``: the glyph world's held-out prompts (from ``policy.glyphworld``).

A user file is JSONL with one ``{"prompt": ..., "target"?: ..., "prompt_id"?: ...}`` object per
line (``target`` a string or a list of strings overrides the quoted pieces), or plain text with
one prompt per line. Blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from imagepref.eval.metrics import extract_targets
from imagepref.errors import BadInputError, ImagePrefError, UnknownNameError

BUILTIN_SETS = ("text-rendering", "glyphworld-heldout")


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


def _prompt_from_record(record: dict[str, Any], default_id: str, where: str) -> EvalPrompt:
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadInputError(f'{where}: needs a non-empty "prompt" string; fix or delete that line')
    target = record.get("target")
    if target is None:
        targets = extract_targets(prompt)
    elif isinstance(target, str):
        targets = [target] if target.strip() else []
    elif isinstance(target, list) and all(isinstance(t, str) for t in target):
        targets = [t for t in target if t.strip()]
    else:
        raise BadInputError(f'{where}: "target" must be a string or a list of strings; fix or delete that line')
    prompt_id = str(record.get("prompt_id") or record.get("id") or default_id)
    metadata = {k: v for k, v in record.items() if k not in ("prompt", "target", "prompt_id", "id")}
    return EvalPrompt(prompt_id=prompt_id, prompt=prompt.strip(), targets=targets, metadata=metadata)


def parse_prompt_lines(text: str, source: str, jsonl: bool) -> list[EvalPrompt]:
    """Parse the text of a prompt file (JSONL when ``jsonl``, else one prompt per line)."""
    prompts: list[EvalPrompt] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        if jsonl:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadInputError(f"{where} is not valid JSON ({error.msg}); fix or delete that line") from None
            if not isinstance(record, dict):
                raise BadInputError(f'{where}: expected an object like {{"prompt": "..."}}; fix or delete that line')
        else:
            record = {"prompt": line}
        prompts.append(_prompt_from_record(record, default_id=f"p{number:04d}", where=where))
    if not prompts:
        raise BadInputError(f'{source} has no usable line; give one prompt per line (JSONL: {{"prompt": "..."}})')
    seen: set[str] = set()
    for prompt in prompts:
        if prompt.prompt_id in seen:
            raise BadInputError(f"{source}: prompt_id {prompt.prompt_id!r} appears twice; make the ids unique")
        seen.add(prompt.prompt_id)
    return prompts


def load_prompt_file(path: str | Path) -> list[EvalPrompt]:
    """Load a user's prompt file: ``.jsonl``/``.json`` as JSONL, anything else as plain text."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"prompts file {path} does not exist; pass a JSONL file or one of: {', '.join(BUILTIN_SETS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInputError(f"prompts file {path} is not UTF-8 text; save it as UTF-8") from None
    return parse_prompt_lines(text, str(path), jsonl=path.suffix in (".jsonl", ".json"))


def text_rendering_prompts() -> list[EvalPrompt]:
    """The project's natural-language text-rendering set (216 with targets, 5 without)."""
    text = resources.files("imagepref.eval.prompts").joinpath("text_rendering.jsonl").read_text(encoding="utf-8")
    return parse_prompt_lines(text, "text_rendering.jsonl", jsonl=True)


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
    return parse_prompt_lines(lines, "glyph world held-out set", jsonl=True)


def load_prompts(name_or_path: str | Path) -> list[EvalPrompt]:
    """Load a built-in prompt set by name, or a user's prompt file by path."""
    if str(name_or_path) == "text-rendering":
        return text_rendering_prompts()
    if str(name_or_path) == "glyphworld-heldout":
        return glyphworld_heldout_prompts()
    path = Path(name_or_path)
    if not path.exists() and path.suffix == "" and "/" not in str(name_or_path):
        raise UnknownNameError(
            f"unknown prompt set {str(name_or_path)!r}; choose one of: {', '.join(BUILTIN_SETS)}, or pass a file path"
        )
    return load_prompt_file(path)
