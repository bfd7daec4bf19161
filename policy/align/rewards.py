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
REWARD_NAMES = "ocr, " + ", ".join(RULES) + ", reward_model or reward_model:<head>"


def known_reward(name: str) -> bool:
    """Whether ``name`` is a reward this module can build (reward-model heads are checked on load)."""
    return name in ("ocr", "reward_model") or name in RULES or name.startswith("reward_model:")


class DecodedBatch:
    """Decodes a batch of completions once and reads each image once, whichever rewards ask."""

    def __init__(self, generator: Generator, read_text: rules.ReadText | None):
        self.generator = generator
        self.read_text = read_text
        self._key: Any = None
        self._codes: torch.Tensor | None = None
        self._images: list | None = None
        self._readings: dict[int, str] = {}

    def codes(self, completion_ids: list[list[int]]) -> torch.Tensor:
        """The image codes of the completions (the generator refuses ids outside its image range)."""
        key = tuple(map(tuple, completion_ids))
        if key != self._key:
            block = torch.as_tensor(completion_ids, dtype=torch.long)
            self._codes, self._images = self.generator.block_to_codes(block), None
            self._key, self._readings = key, {}
        return self._codes

    def images(self, completion_ids: list[list[int]]) -> list:
        codes = self.codes(completion_ids)
        if self._images is None:
            self._images = self.generator.decode(codes)
        return self._images

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
) -> tuple[list[Callable], list[float]]:
    """Reward functions and their weights, in the same order, for TRL's ``reward_funcs``/``reward_weights``."""
    batch = DecodedBatch(generator, read_text)
    functions, mixed = [], []
    heads = reward_heads(reward_model) if reward_model is not None else []
    for name, weight in weights.items():
        if name == "ocr":
            if text_reward is None or read_text is None:
                raise BadInputError("the ocr reward needs an OCR engine and a text metric; pass --ocr-engine")

            def ocr(prompts, completions, completion_ids, **kw):
                batch.images(completion_ids)
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
        elif name == "reward_model" or name.startswith("reward_model:"):
            if reward_model is None:
                raise BadInputError(f"reward {name!r} needs a reward model; pass --reward-model DIR")
            head = name.partition(":")[2]
            if head and head not in heads:
                raise UnknownNameError(f"the reward model has no head {head!r}; its heads are: {', '.join(heads)}")

            def model_reward(prompts, completions, completion_ids, _head=head, **kw):
                # A token-space reward model reads the codes themselves: no pixel decode at all.
                inputs = (
                    {"tokens": batch.codes(completion_ids)}
                    if reads_tokens(reward_model)
                    else {"images": batch.images(completion_ids)}
                )
                if _head:
                    return [float(v) for v in reward_model.score(prompts=list(prompts), **inputs)[_head]]
                return [float(v) for v in reward_model.combined_reward(prompts=list(prompts), **inputs)]

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
