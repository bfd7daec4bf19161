"""GRPO on edit turns: the glyph world's seeded training edits as GRPO prompts.

A prompt of an edit run is the edit's JSON record (``edits.edit_record``), so TRL hands the
same string to the rollout and to the rewards. ``EditSources`` turns it back into the edit, the
source sign's codes (the sign drawn and encoded by the generator's codec, as ``generate --edits``
and the evaluation of edits make them) and the source image as the generator sees it (those codes
decoded: what preservation is judged against), each made once per run.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from PIL import Image

    from imagepref.policy.generator import Generator
    from imagepref.policy.glyphworld.edits import GlyphEdit

EDIT_PROMPTS = "glyphworld-edits"


def edit_prompt(edit: GlyphEdit) -> str:
    """The GRPO prompt of ``edit``: its record as JSON."""
    from imagepref.policy.glyphworld.edits import edit_record

    return json.dumps(edit_record(edit), sort_keys=True)


def training_edit_prompts(count: int) -> list[str]:
    """The first ``count`` seeded training edits (``edits.training_edits``, the ``glyphworld-edits``
    set of ``generate --edits``; never a held-out word or phrasing) as GRPO prompts."""
    from imagepref.policy.glyphworld.edits import training_edits

    return [edit_prompt(edit) for edit in training_edits(count)]


class EditSources:
    """The edit, source codes and source image of each edit prompt, made once."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self._edits: dict[str, GlyphEdit] = {}
        self._codes: dict[str, torch.Tensor] = {}
        self._images: dict[str, Image.Image] = {}

    def edit(self, prompt: str) -> GlyphEdit:
        from imagepref.errors import BadInputError
        from imagepref.policy.glyphworld.edits import edit_from_record

        if prompt not in self._edits:
            try:
                record = json.loads(prompt)
            except json.JSONDecodeError:
                raise BadInputError(f"{prompt[:60]!r} is no glyph-world edit record") from None
            self._edits[prompt] = edit_from_record(record)
        return self._edits[prompt]

    def codes(self, prompts: list[str]) -> torch.Tensor:
        """The source codes of ``prompts``, (len(prompts), num_codes)."""
        from imagepref.policy.glyphworld.world import render

        missing = [p for p in dict.fromkeys(prompts) if p not in self._codes]
        if missing:
            encoded = self.generator.encode_images([render(self.edit(p).source) for p in missing])
            self._codes.update(zip(missing, encoded.long()))
        return torch.stack([self._codes[p] for p in prompts])

    def source_image(self, prompt: str) -> Image.Image:
        if prompt not in self._images:
            self._images[prompt] = self.generator.decode(self.codes([prompt]))[0]
        return self._images[prompt]

    def turns(self, prompts: list[str]) -> tuple[torch.Tensor, list[str], list[str]]:
        """(source codes, instructions, source prompts): the arguments of ``Generator.edit``."""
        edits = [self.edit(p) for p in prompts]
        return self.codes(prompts), [e.instruction for e in edits], [e.source.prompt for e in edits]
