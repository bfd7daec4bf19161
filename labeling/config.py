"""The labeling project's settings and the Label Studio interface they produce.

One `LabelingConfig` holds what a project needs: the comparison axes, how many annotators label
each task (overlap), the annotators' instructions, the gold-pair rate and the pairing strategy.
`label_config_xml` turns the axes into Label Studio's XML: one required single-choice group per
axis with left / right / tie, because `<Pairwise>` records only the last of several groups and
has no tie. A project of edits (`edits: true`) shows the source image and the instruction above
the two edited results and asks, by default, about `EDIT_AXES`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from xml.sax.saxutils import quoteattr

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagepref.errors import BadInputError
from imagepref.formats import AXES, EDIT_AXES, SIDES
from imagepref.settings import Seed, validated

CHOICES = SIDES
# One keyboard row per axis, in left / right / tie order, so the hands learn one layout.
HOTKEY_ROWS = (("1", "2", "3"), ("q", "w", "e"), ("a", "s", "d"), ("z", "x", "c"))
DEFAULT_QUESTIONS = {
    "aesthetics": "Aesthetics: which image looks better made (clean, legible, well placed)?",
    "prompt_fidelity": "Prompt fidelity: which image shows what the prompt asks for?",
    "safety": "Safety: which image is safer (no forbidden marks or words)?",
    "instruction_fidelity": "Instruction fidelity: which result made the change the instruction asks for?",
    "preservation": "Preservation: which result kept everything else of the source as it was?",
}
COMMENT_FIELD = "comment"
_AXIS_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class LabelingConfig(BaseModel):
    """Settings of one comparison project; every field has a default, so `{}` is a valid config."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(
        "imagepref comparisons", description="Label Studio project title; push and pull find the project by it."
    )
    edits: bool = Field(
        False,
        description="Compare edits: show the source image and the instruction above the two results "
        "(candidate sets with source_candidate and instruction).",
    )
    axes: list[str] = Field(
        list(AXES),
        description="Comparison axes, one left/right/tie question each (default for edits: "
        + ", ".join(EDIT_AXES)
        + ").",
    )
    questions: dict[str, str] = Field(
        default_factory=dict, description="Question shown per axis; defaults per known axis."
    )
    overlap: int = Field(
        2, ge=1, le=20, description="How many annotators label each task (Label Studio maximum_annotations)."
    )
    instructions: Path | None = Field(None, description="Markdown file with the annotators' instructions.")
    gold_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Gold pairs mixed in per regular pair (0.1 = one gold per ten)."
    )
    gold_file: Path | None = Field(
        None, description="Known-answer pairs: candidate_a, candidate_b and one a/b/tie column per axis."
    )
    pairing: Literal["random", "all", "uncertainty"] = Field(
        "random", description="How pairs are made within each prompt."
    )
    pairs_per_prompt: int | None = Field(
        None, ge=1, description="Pairs per prompt (random: default candidates // 2; uncertainty: default all)."
    )
    max_pairs: int | None = Field(
        None, ge=1, description="Cap on regular pairs per push (uncertainty keeps the most uncertain)."
    )
    scores_file: Path | None = Field(
        None, description="Reward-model scores (parquet/CSV) for uncertainty pairing and pre-annotations."
    )
    seed: Seed = Field(0, description="Seed for pairing, left/right order and gold sampling.")

    @field_validator("axes")
    @classmethod
    def _axes_are_names(cls, axes: list[str]) -> list[str]:
        if not axes:
            raise ValueError("at least one axis is needed")
        for axis in axes:
            if not _AXIS_NAME.match(axis) or axis == COMMENT_FIELD:
                raise ValueError(f"axis {axis!r} must be a lowercase name like 'prompt_fidelity'")
        if len(set(axes)) != len(axes):
            raise ValueError("axes must be distinct")
        return axes

    @model_validator(mode="after")
    def _edit_axes_by_default(self) -> LabelingConfig:
        if self.edits and "axes" not in self.model_fields_set:
            self.axes = list(EDIT_AXES)
        return self

    def question(self, axis: str) -> str:
        """The question annotators see for `axis`."""
        return (
            self.questions.get(axis)
            or DEFAULT_QUESTIONS.get(axis)
            or f"{axis.replace('_', ' ').capitalize()}: which image is better?"
        )

    def instructions_html(self) -> str:
        """The instructions markdown rendered to HTML for Label Studio ('' when none is set)."""
        if self.instructions is None:
            return ""
        if not self.instructions.is_file():
            raise BadInputError(
                f"instructions file {self.instructions} does not exist; point `instructions` at a markdown file"
            )
        from markdown_it import MarkdownIt

        return MarkdownIt("commonmark").render(self.instructions.read_text(encoding="utf-8"))

    @classmethod
    def load(cls, path: Path | None, **overrides: object) -> LabelingConfig:
        """Read a YAML config (or defaults when `path` is None), apply non-None overrides, validate.

        Relative paths inside the file are taken relative to the file's folder, so a config
        works from any working directory.
        """
        raw: dict = {}
        if path is not None:
            if not path.is_file():
                raise BadInputError(f"labeling config {path} does not exist; pass a YAML file or leave --config out")
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as error:
                raise BadInputError(
                    f"labeling config {path} is not valid YAML ({str(error).splitlines()[0]})"
                ) from None
            if not isinstance(raw, dict):
                raise BadInputError(f"labeling config {path} must be a mapping of settings")
            raw = raw.get("labeling", raw)
            for key in ("instructions", "gold_file", "scores_file"):
                if raw.get(key) and not Path(raw[key]).is_absolute():
                    raw[key] = str(path.parent / raw[key])
        raw.update({key: value for key, value in overrides.items() if value is not None})
        return validated(cls, raw, "labeling config")


def label_config_xml(config: LabelingConfig) -> str:
    """Label Studio XML for a pair: prompt, two images side by side, one question per axis, a comment
    (for edits: the instruction, the source prompt and the source image before the two results).

    Every axis is a required single-radio `<Choices>` whose stored values are the aliases
    `left`, `right`, `tie`; the first four axes get one hotkey row each (1 2 3, q w e, a s d,
    z x c). The comment is an optional free-text area.
    """
    if config.edits:
        # The source and the instruction first: an edit is judged against both.
        parts = [
            "<View>",
            '  <Header value="$instruction" size="4"/>',
            '  <Text name="source_prompt" value="$prompt"/>',
            '  <View style="display: flex; gap: 16px;">',
            '    <View style="flex: 1;"><Header value="Source" size="5"/><Image name="source" value="$image_source" zoom="false"/></View>',
        ]
    else:
        parts = ["<View>", '  <Header value="$prompt" size="4"/>', '  <View style="display: flex; gap: 16px;">']
    parts += [
        '    <View style="flex: 1;"><Header value="Left" size="5"/><Image name="left" value="$image_left" zoom="false"/></View>',
        '    <View style="flex: 1;"><Header value="Right" size="5"/><Image name="right" value="$image_right" zoom="false"/></View>',
        "  </View>",
    ]
    for index, axis in enumerate(config.axes):
        keys = HOTKEY_ROWS[index] if index < len(HOTKEY_ROWS) else (None, None, None)
        parts.append(f'  <Header value={quoteattr(config.question(axis))} size="6"/>')
        parts.append(f'  <Choices name="{axis}" toName="left" choice="single-radio" required="true" showInline="true">')
        for choice, key in zip(CHOICES, keys):
            hotkey = f' hotkey="{key}"' if key else ""
            parts.append(f'    <Choice value="{choice.capitalize()}" alias="{choice}"{hotkey}/>')
        parts.append("  </Choices>")
    parts.append('  <Header value="Comment (optional)" size="6"/>')
    parts.append(f'  <TextArea name="{COMMENT_FIELD}" toName="left" rows="2" maxSubmissions="1" editable="true"/>')
    parts.append("</View>")
    return "\n".join(parts)


def shows_edits(label_config: str) -> bool:
    """Whether a project's labeling config (``label_config_xml``'s) compares edits: it shows a source."""
    return "$image_source" in label_config
