"""Reward functions for GRPO and PPO, called by TRL as ``f(prompts, completions, completion_ids, **kw)``.

They read ``completion_ids`` (the image block's vocabulary ids; the decoded ``completions``
strings drop ids a tokenizer does not know), turn them into codes through the generator (which
refuses ids outside its image range) and decode the pixels once per batch for all of them:

- ``ocr``: the text reward, computed by the ``text_reward(prompt, reading)`` callable on the
  reading of the ``read_text`` OCR engine; the CLI passes the evaluation suite's reading
  similarity, 1 - edit distance / length of the quoted target against the whole reading, so stray
  text costs (Flow-GRPO's formula without its full marks for a target found anywhere);
- ``rule_aesthetics``, ``rule_prompt_fidelity``, ``rule_safety``: the glyph world's pixel rules;
- ``rule_ink_colour``: 1 when the sign's ink is the colour the prompt names, else 0 (1 when the
  prompt names none); dense where ``ocr`` is blind, and weighed fully rather than as the 0.3
  share it has inside ``rule_prompt_fidelity``;
- ``reward_model``: the reward model's combined reward; ``reward_model:<head>``: one head. A
  token-space reward model (``backbone: token``) scores the codes directly, with no decode.

On edit turns (GRPO on ``glyphworld-edits``, whose prompts are edit records, see
``policy.align.edit_turns``), the edit rules judge each result against its source as the
generator saw it (``edits.judge_edit``, reading word and letter edits by OCR):

- ``edit_rules``: the mean of instruction fidelity and preservation (dense: either one moves it);
- ``edit_success``: 1 when both reach the success threshold, else 0;
- ``edit_fidelity``, ``edit_preservation``: one of them;

with ``rule_aesthetics`` and ``rule_safety`` on the result; ``ocr``, the reading of the result
against the text the edited sign should show (``edit.target``'s prompt quotes it), by the same
text reward; and ``reward_model``/``reward_model:<head>`` from a reward model of edits
(``edits: true``), which reads each result with its source's codes and its instruction. The rules
that read a text prompt (``rule_prompt_fidelity``, ``rule_ink_colour``) are refused there, as is
an image reward model (and a reward model of edits on text prompts): ``check_reward_model_turns``.

TRL mixes them with ``reward_weights``; OCR readings are shared between ``ocr`` and
``rule_prompt_fidelity`` within a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.formats import AXES
from imagepref.policy.generator import Generator
from imagepref.policy.glyphworld import rules

RULES = {
    "rule_aesthetics": "aesthetics",
    "rule_prompt_fidelity": "prompt_fidelity",
    "rule_safety": "safety",
    "rule_ink_colour": "ink_colour",
}
EDIT_REWARDS = ("edit_rules", "edit_success", "edit_fidelity", "edit_preservation")
# What an edit turn may be rewarded by: the edit rules, the rules that read the result alone, OCR
# of the result against the edited sign's text and a reward model of edits (and its heads).
EDIT_TURN_REWARDS = (*EDIT_REWARDS, "rule_aesthetics", "rule_safety", "ocr", "reward_model")
REWARD_NAMES = (
    "ocr, "
    + ", ".join(RULES)
    + ", reward_model or reward_model:<head>; on edit turns "
    + ", ".join(EDIT_TURN_REWARDS)
    + " or reward_model:<head>"
)


def known_reward(name: str) -> bool:
    """Whether ``name`` is a reward this module can build (reward-model heads are checked on load)."""
    return name in ("ocr", "reward_model") or name in RULES or name in EDIT_REWARDS or name.startswith("reward_model:")


def check_edit_turn_rewards(names, edits: bool) -> None:
    """One line for a reward that cannot score what the run draws: a text-prompt or single-image
    reward on edit turns, an edit rule without them."""
    for name in names:
        if edits and name not in EDIT_TURN_REWARDS and not uses_reward_model(name):
            raise BadInputError(
                f"reward {name!r} cannot score an edit turn; on edit turns use "
                f"{', '.join(EDIT_TURN_REWARDS)} or reward_model:<head>"
            )
        if not edits and name in EDIT_REWARDS:
            raise BadInputError(f"reward {name!r} judges edits: train on edit turns (--prompts glyphworld-edits)")


def uses_reward_model(name: str) -> bool:
    """Whether the reward ``name`` is the reward model's (combined, or one head)."""
    return name == "reward_model" or name.startswith("reward_model:")


def check_reward_model_turns(config: Any, edits: bool) -> None:
    """One line when the reward model cannot score what the run draws: an image model on edit
    turns (it sees neither the source nor the instruction), a model of edits on text prompts.
    ``config``: the model's ``RewardConfig`` (``reward.config.read_model_config`` reads it
    without torch, so the command line checks before loading anything)."""
    from imagepref.reward.config import check_scored_set

    check_scored_set(
        config,
        edits,
        what="the run's prompt set",
        make_edits="train on edit turns (--prompts glyphworld-edits), or pass a reward model of images",
    )


class DecodedBatch:
    """Decodes a batch of completions once and reads each image once, whichever rewards ask."""

    def __init__(self, generator: Generator, read_text: rules.ReadText | None, edit_sources: Any = None):
        self.generator = generator
        self.read_text = read_text
        self.edit_sources = edit_sources
        self._key: Any = None
        self._codes: torch.Tensor | None = None
        self._images: list | None = None
        self._readings: dict[int, str] = {}
        self._judged: dict[int, dict[str, float]] = {}

    def codes(self, completion_ids: list[list[int]]) -> torch.Tensor:
        """The image codes of the completions (the generator refuses ids outside its image range)."""
        key = tuple(map(tuple, completion_ids))
        if key != self._key:
            block = torch.as_tensor(completion_ids, dtype=torch.long)
            self._codes, self._images = self.generator.block_to_codes(block), None
            self._key, self._readings, self._judged = key, {}, {}
        return self._codes

    def images(self, completion_ids: list[list[int]]) -> list:
        codes = self.codes(completion_ids)
        if self._images is None:
            self._images = self.generator.decode(codes)
        return self._images

    def edit_judgments(self, prompts: list[str], completion_ids: list[list[int]]) -> list[dict[str, float]]:
        """The edit rules' scores (``edits.judge_edit``) of each completion against its source."""
        from imagepref.policy.glyphworld.edits import judge_edit

        images = self.images(completion_ids)
        for i, prompt in enumerate(prompts):
            if i not in self._judged:
                sources = self.edit_sources
                self._judged[i] = judge_edit(
                    sources.edit(prompt),
                    sources.source_image(prompt),
                    images[i],
                    read_text=None if self.read_text is None else (lambda _image, i=i: self.reading(i)),
                )
        return [self._judged[i] for i in range(len(prompts))]

    def reading(self, index: int) -> str:
        if self.read_text is None:
            raise BadInputError("this reward needs an OCR engine; pass --ocr-engine")
        if index not in self._readings:
            self._readings[index] = self.read_text(self._images[index])
        return self._readings[index]


def _named(name: str, function: Callable) -> Callable:
    function.__name__ = name.replace(":", "_")
    return function


def build_rewards(
    weights: dict[str, float],
    generator: Generator,
    read_text: rules.ReadText | None = None,
    text_reward: Callable[[str, str], float | None] | None = None,
    reward_model: Any = None,
    edit_sources: Any = None,
) -> tuple[list[Callable], list[float]]:
    """Reward functions and their weights, in the same order, for TRL's ``reward_funcs``/``reward_weights``.

    ``edit_sources`` (``policy.align.edit_turns.EditSources``): the run draws edit turns, whose
    prompts are edit records; only ``EDIT_TURN_REWARDS`` apply."""
    check_edit_turn_rewards(weights, edit_sources is not None)
    batch = DecodedBatch(generator, read_text, edit_sources)
    functions, mixed = [], []
    heads = reward_heads(reward_model) if reward_model is not None else []
    for name, weight in weights.items():
        if name in EDIT_REWARDS:

            def edit_reward(prompts, completions, completion_ids, _name=name, **kw):
                judged = batch.edit_judgments(list(prompts), completion_ids)
                if _name == "edit_rules":
                    return [(j["instruction_fidelity"] + j["preservation"]) / 2 for j in judged]
                key = {"edit_success": "success", "edit_fidelity": "instruction_fidelity"}.get(_name, "preservation")
                return [float(j[key]) for j in judged]

            functions.append(_named(name, edit_reward))
        elif name == "ocr":
            if text_reward is None or read_text is None:
                raise BadInputError("the ocr reward needs an OCR engine and a text metric; pass --ocr-engine")

            def ocr(prompts, completions, completion_ids, **kw):
                batch.images(completion_ids)
                if edit_sources is not None:
                    # An edit turn's result is read against the sign the instruction asks for,
                    # whose prompt quotes the text it should show.
                    prompts = [edit_sources.edit(p).target.prompt for p in prompts]
                scores = [text_reward(p, batch.reading(i)) for i, p in enumerate(prompts)]
                return [None if s is None else float(s) for s in scores]

            functions.append(_named(name, ocr))
        elif name in RULES:
            axis = RULES[name]

            def rule(prompts, completions, completion_ids, _axis=axis, **kw):
                images = batch.images(completion_ids)
                out = []
                for i, (image, prompt) in enumerate(zip(images, prompts)):
                    if _axis == "aesthetics":
                        out.append(rules.aesthetics(image))
                    elif _axis == "safety":
                        out.append(rules.safety(image))
                    elif _axis == "ink_colour":
                        out.append(ink_colour_reward(image, prompt))
                    else:
                        out.append(rules.prompt_fidelity(image, prompt, lambda _im, i=i: batch.reading(i)))
                return out

            functions.append(_named(name, rule))
        elif uses_reward_model(name):
            if reward_model is None:
                raise BadInputError(f"reward {name!r} needs a reward model; pass --reward-model DIR")
            check_reward_model_turns(reward_model.config, edit_sources is not None)
            head = name.partition(":")[2]
            if head and head not in heads:
                raise UnknownNameError(f"the reward model has no head {head!r}; its heads are: {', '.join(heads)}")

            def model_reward(prompts, completions, completion_ids, _head=head, **kw):
                # A token-space reward model reads the codes themselves: no pixel decode at all.
                if edit_sources is not None:
                    # A reward model of edits reads each result with its source's codes and its
                    # instruction (in place of the prompt).
                    inputs = {
                        "tokens": batch.codes(completion_ids),
                        "source_tokens": edit_sources.codes(list(prompts)),
                        "instructions": [edit_sources.edit(p).instruction for p in prompts],
                    }
                else:
                    inputs = {"prompts": list(prompts)} | (
                        {"tokens": batch.codes(completion_ids)}
                        if reads_tokens(reward_model)
                        else {"images": batch.images(completion_ids)}
                    )
                if _head:
                    return [float(v) for v in reward_model.score(**inputs)[_head]]
                return [float(v) for v in reward_model.combined_reward(**inputs)]

            functions.append(_named(name, model_reward))
        else:
            raise UnknownNameError(f"unknown reward {name!r}; use {REWARD_NAMES}")
        mixed.append(float(weight))
    if not functions:
        raise BadInputError("no rewards configured: give at least one reward weight")
    return functions, mixed


def ink_colour_reward(image: Any, prompt: str) -> float:
    """1.0 when the image's ink is the colour the prompt names (or the prompt names none), else 0.0."""
    asked = rules.asked_colour(prompt)
    return 1.0 if asked is None or rules.ink_colour(image) == asked else 0.0


def reads_tokens(reward_model: Any) -> bool:
    """Whether the reward model scores image codes (the token backbone of its saved config) rather
    than pixels."""
    return getattr(getattr(reward_model, "config", None), "backbone", None) == "token"


def reward_heads(reward_model: Any) -> list[str]:
    """The head names of a reward model (``reward.RewardModel.axes``, else its config's axes, else
    the three axes)."""
    heads = getattr(reward_model, "axes", None)
    if heads is None and getattr(reward_model, "config", None) is not None:
        heads = getattr(reward_model.config, "axes", None)
    heads = heads or AXES
    return list(heads.keys()) if isinstance(heads, dict) else [str(h) for h in heads]


def scorer(functions: list[Callable], weights: list[float]) -> Callable[[list, list[str]], list[float]]:
    """A ``score(images, prompts)`` over decoded images, for ranking on-policy DPO candidates.

    Reward functions take completion ids, so the caller gives the ids through ``completion_ids``."""

    def score(completion_ids: list[list[int]], prompts: list[str]) -> list[float]:
        total = [0.0] * len(prompts)
        for function, weight in zip(functions, weights):
            for i, value in enumerate(function(prompts, None, completion_ids)):
                total[i] += weight * (value or 0.0)
        return total

    return score
