"""A multi-turn session with a generator: a prompt, then instructions turn by turn.

``ChatSession`` keeps the last image's codes as the source of the next turn and saves every
turn's image (``turn-00.png``, ``turn-01.png``, ...) and a record of the turn in ``turns.jsonl``
(turn, kind, text, image, codes) in its folder. The first turn passes the prompt to the edit as
the source prompt; later sources were themselves edits, so their source prompt is empty (the turn
format of ``policy.editing``).

Chat scripts (``read_chat_script``) are text files with one turn a line, ``KEY: VALUE``:
``prompt: ...`` starts from a new image, ``instruction: ...`` is an instruction in words, and a
glyph-world edit kind (``ink_colour: blue``, ``word: SOFA``, ``letter: 2=E``, ``remove_mark``, ...,
see ``policy.glyphworld.edits.EDIT_KINDS``) is phrased for the generator. Blank lines and lines
starting with ``#`` are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagepref.errors import BadInputError, UnknownNameError

if TYPE_CHECKING:  # reading a script stays torch-free: it is checked before the model loads
    from imagepref.policy.generator import Generator

TURN_KEYS = ("prompt", "instruction")


@dataclass(frozen=True)
class ChatTurn:
    """One turn of a session: ``kind`` is ``prompt`` or ``instruction``; ``text`` what was asked."""

    kind: str
    text: str


def parse_chat_line(line: str, number: int = 1) -> ChatTurn | None:
    """One line of a chat script as a turn (None for a blank or ``#`` line); one-line errors for
    an unknown key or a bad value, naming the line."""
    from imagepref.policy.glyphworld.edits import EDIT_KINDS, instruction_for

    line = line.strip()
    if not line or line.startswith("#"):
        return None
    key, colon, value = line.partition(":")
    key = key.strip().lower().replace(" ", "_")
    if not colon and key not in EDIT_KINDS:
        raise BadInputError(f"line {number}: write KEY: VALUE (prompt, instruction or an edit kind), not {line!r}")
    value = value.strip()
    if key in TURN_KEYS:
        if not value:
            raise BadInputError(f"line {number}: {key}: needs its text")
        return ChatTurn(key, value)
    if key not in EDIT_KINDS:
        raise UnknownNameError(f"line {number}: unknown edit kind {key!r}; known: {', '.join(TURN_KEYS + EDIT_KINDS)}")
    try:
        return ChatTurn("instruction", instruction_for(key, value))
    except BadInputError as error:
        raise BadInputError(f"line {number}: {error}") from None


def read_chat_script(path: str | Path) -> list[ChatTurn]:
    """The turns of a chat script file, checked before any model loads: the first turn must be a
    prompt (an instruction needs a source image)."""
    from imagepref.formats import read_text_file

    lines = read_text_file(Path(path), "chat script", "a text file, one turn a line").splitlines()
    turns = []
    for number, line in enumerate(lines, 1):
        turn = parse_chat_line(line, number)
        if turn is None:
            continue
        if not turns and turn.kind != "prompt":
            raise BadInputError(
                f"line {number}: an instruction needs a source image; start the script with a prompt: line"
            )
        turns.append(turn)
    if not turns:
        raise BadInputError(f"chat script {path} has no turns")
    return turns


class ChatSession:
    """A prompt, then instructions turn by turn; every image saved into ``out``.

    ``sampler`` holds the sampler's settings for every turn (guidance, temperature, top-k, top-p);
    ``edit_guidance_scale`` overrides the guidance of edit turns. Each turn uses ``seed`` plus its
    number, so a session replays exactly."""

    def __init__(
        self,
        generator: Generator,
        out: str | Path,
        seed: int = 0,
        sampler: dict | None = None,
        edit_guidance_scale: float | None = None,
    ):
        from imagepref.policy.editing import check_can_edit

        self.generator = generator
        self.out = Path(out)
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise BadInputError(f"{self.out} exists and is not an empty folder; choose another --out")
        check_can_edit(generator)
        self.seed = seed
        self.sampler = dict(sampler or {})
        self.edit_guidance_scale = edit_guidance_scale
        self.turns: list[dict] = []
        self.source_codes = None
        self.source_prompt = ""

    def prompt(self, text: str) -> Path:
        """Draw a new image for ``text``; it becomes the source of the next instruction."""
        if not text.strip():
            raise BadInputError("a prompt needs some text")
        samples = self.generator.sample([text], seed=self.seed + len(self.turns), **self.sampler)
        self.source_prompt = text
        return self._keep("prompt", text, samples)

    def instruct(self, text: str) -> Path:
        """Edit the last image by ``text``; the result becomes the next source."""
        if self.source_codes is None:
            raise BadInputError("an instruction needs a source image: give a prompt first")
        settings = dict(self.sampler)
        if self.edit_guidance_scale is not None:
            settings["guidance_scale"] = self.edit_guidance_scale
        samples = self.generator.edit(
            self.source_codes, [text], [self.source_prompt], seed=self.seed + len(self.turns), **settings
        )
        self.source_prompt = ""  # the next source is an edit: no prompt made it
        return self._keep("instruction", text, samples)

    def turn(self, turn: ChatTurn) -> Path:
        """Run one parsed turn."""
        return self.prompt(turn.text) if turn.kind == "prompt" else self.instruct(turn.text)

    def _keep(self, kind: str, text: str, samples) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        number = len(self.turns)
        path = self.out / f"turn-{number:02d}.png"
        samples.images[0].save(path)
        self.source_codes = samples.codes[:1]
        record = {
            "turn": number,
            "kind": kind,
            "text": text,
            "image": path.name,
            "codes": samples.codes[0].tolist(),
        }
        self.turns.append(record)
        with (self.out / "turns.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        return path
