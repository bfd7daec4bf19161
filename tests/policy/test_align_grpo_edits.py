"""GRPO on edit turns: the rollouts are edits of seeded training signs through ``Generator.edit``
with the policy's raw log-probs, the edit rules reward them, and TRL's trainer moves the edits."""

from __future__ import annotations

import pytest
import torch

from imagepref.errors import BadInputError
from imagepref.policy.align import GRPOSettings, build_rewards, train_grpo
from imagepref.policy.align.edit_turns import EditSources, training_edit_prompts
from imagepref.policy.align.grpo import rollout
from imagepref.policy.glyphworld.edits import HELDOUT_WORDS, judge_edit
from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import teacher_forced_logprobs


def test_edit_rollouts_are_edit_turns_with_the_policys_raw_log_probs():
    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(4)
    out = rollout(generator, prompts, seed=5, guidance_scale=3.0, temperature=1.0, edit_sources=sources)
    codes = generator.block_to_codes(torch.tensor(out["completion_ids"]))
    # The same draw as Generator.edit on the sources, scored again on the whole turn context.
    edited = generator.edit(*sources.turns(prompts), seed=5, guidance_scale=3.0, decode=False)
    assert torch.equal(codes, edited.codes)
    assert out["prompt_ids"] == [list(p) for p in edited.prompt_ids]
    assert len(out["prompt_ids"][0]) > generator.num_codes  # the source block is in the context
    forced = teacher_forced_logprobs(generator, out["prompt_ids"], codes)
    assert torch.allclose(torch.tensor(out["logprobs"]), forced, atol=1e-5)


def test_training_edits_hold_no_heldout_word_or_phrasing():
    sources = EditSources(micro_generator())
    for prompt in training_edit_prompts(64):
        edit = sources.edit(prompt)
        assert edit.phrasing >= 0  # a training phrasing (held-out ones are negative)
        assert edit.source.text not in HELDOUT_WORDS and edit.target.text not in HELDOUT_WORDS


def test_edit_rewards_are_the_edit_rules_against_the_source_as_the_generator_saw_it():
    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(3)
    samples = generator.edit(*sources.turns(prompts), seed=2)
    functions, weights = build_rewards(
        {"edit_rules": 1.0, "edit_success": 0.5, "edit_preservation": 0.2, "rule_safety": 0.25},
        generator,
        read_text=lambda image: "ABC",
        edit_sources=sources,
    )
    values = [f(prompts, None, samples.completion_ids.tolist()) for f in functions]
    judged = [
        judge_edit(sources.edit(p), generator.decode(sources.codes([p]))[0], image, lambda _: "ABC")
        for p, image in zip(prompts, samples.images)
    ]
    assert weights == [1.0, 0.5, 0.2, 0.25]
    assert values[0] == pytest.approx([(j["instruction_fidelity"] + j["preservation"]) / 2 for j in judged])
    assert values[1] == [j["success"] for j in judged]
    assert values[2] == pytest.approx([j["preservation"] for j in judged])
    assert values[3] == [j["safety"] for j in judged]


def test_text_prompt_rewards_are_refused_on_edit_turns_and_edit_rules_without_them():
    generator = micro_generator()
    with pytest.raises(BadInputError, match="cannot score an edit turn"):
        build_rewards({"ocr": 1.0}, generator, edit_sources=EditSources(generator))
    with pytest.raises(BadInputError, match="judges edits"):
        build_rewards({"edit_rules": 1.0}, generator)


@pytest.mark.slow
def test_grpo_on_edit_turns_raises_the_reward_it_trains(tmp_path, rule_reward):
    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(4) * 2
    reward = rule_reward(generator)
    edit_rules, _ = build_rewards({"edit_rules": 1.0}, generator, read_text=lambda image: "", edit_sources=sources)

    def measured() -> float:  # the same 32 seeded edits before and after
        samples = generator.edit(*sources.turns(prompts * 4), seed=123, guidance_scale=1.0, decode=False)
        values = reward(None, None, samples.completion_ids.tolist())
        return sum(values) / len(values)

    before = measured()
    settings = GRPOSettings(
        steps=6,
        batch_size=16,
        num_generations=8,
        learning_rate=1e-2,
        guidance_scale=1.0,
        lora=False,  # as the prompt GRPO test: the one-layer micro model moves too slowly under LoRA
        save_every=100,
        monitor_every=0,
        report_to=[],
    )
    # The edit rules ride along at weight 0: TRL calls them on every edit turn and logs them.
    result = train_grpo(
        generator, prompts, [reward, *edit_rules], [1.0, 0.0], settings, tmp_path / "run", edit_sources=sources
    )
    logged = [h for h in result["log_history"] if "reward" in h]
    assert len(logged) == 6 and all("rewards/edit_rules/mean" in h for h in logged)
    assert measured() > before + 0.05
