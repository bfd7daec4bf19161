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


def six_full_steps():
    """Six GRPO steps of a full fine-tune at a high rate, as the prompt GRPO test: the one-layer
    micro model moves too slowly under LoRA for a few-step test."""
    return GRPOSettings(
        steps=6,
        batch_size=16,
        num_generations=8,
        learning_rate=1e-2,
        guidance_scale=1.0,
        lora=False,
        save_every=100,
        monitor_every=0,
        report_to=[],
    )


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
        build_rewards({"rule_prompt_fidelity": 1.0}, generator, edit_sources=EditSources(generator))
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
    settings = six_full_steps()
    # The edit rules ride along at weight 0: TRL calls them on every edit turn and logs them.
    result = train_grpo(
        generator, prompts, [reward, *edit_rules], [1.0, 0.0], settings, tmp_path / "run", edit_sources=sources
    )
    logged = [h for h in result["log_history"] if "reward" in h]
    assert len(logged) == 6 and all("rewards/edit_rules/mean" in h for h in logged)
    assert measured() > before + 0.05


@pytest.fixture(scope="module")
def edit_reward_model(tmp_path_factory):
    """A reward model of edits (token backbone, ``edits: true``) trained on glyph-world edit
    preference data drawn through the micro generator's codec, so it reads that generator's codes."""
    from imagepref.eval.ocr import get_engine
    from imagepref.reward import RewardConfig
    from imagepref.reward.synthetic import glyph_edit_preference_data
    from imagepref.reward.train import train_reward_model

    generator = micro_generator()
    root = tmp_path_factory.mktemp("edit-reward")
    glyph_edit_preference_data(root / "prefs", generator.codec, get_engine("tesseract").read_text, edits=40, seed=3)
    config = RewardConfig(backbone="token", val_fraction=0.25)
    return train_reward_model(
        root / "prefs", [], root / "model", config, generator=generator, show_progress=False, log=lambda _: None
    ).model


def test_ocr_on_an_edit_turn_reads_the_result_against_the_edited_signs_text():
    from imagepref.eval.metrics import score_text
    from imagepref.policy.align.pipeline import ocr_measures

    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(40)
    word = next(p for p in prompts if sources.edit(p).kind == "word")
    prompts = [word, *[p for p in prompts if sources.edit(p).kind != "word"][:3]]
    new_text = sources.edit(word).target.text
    assert new_text != sources.edit(word).source.text
    reads = []

    def read_text(image):  # the reading of every result: the word edit's new text
        reads.append(image)
        return new_text

    _, text_reward, _ = ocr_measures("tesseract")  # the image ocr reward's measure: reading similarity
    samples = generator.edit(*sources.turns(prompts), seed=4)
    functions, _ = build_rewards(
        {"ocr": 1.0, "edit_rules": 0.0}, generator, read_text, text_reward, edit_sources=sources
    )
    ocr, edit_rules = (f(prompts, None, samples.completion_ids.tolist()) for f in functions)
    expected = [score_text(sources.edit(p).target.text, new_text).reading_similarity for p in prompts]
    assert ocr == pytest.approx(expected)
    assert ocr[0] == 1.0  # the word edit's result shows the new word: full marks
    # Against the source's text the same reading would not score full marks: the target is read.
    assert score_text(sources.edit(word).source.text, new_text).reading_similarity < 1.0
    assert all(value < 1.0 for value in ocr[1:]), ocr  # the other signs keep their own text
    assert len(reads) == len(prompts)  # one OCR reading per result, shared with the edit rules
    assert len(edit_rules) == len(prompts)


def test_a_reward_model_of_edits_scores_each_result_with_its_source_and_instruction(edit_reward_model):
    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(6)
    samples = generator.edit(*sources.turns(prompts), seed=2, decode=False)
    functions, weights = build_rewards(
        {"reward_model": 1.0, "reward_model:preservation": 0.5},
        generator,
        reward_model=edit_reward_model,
        edit_sources=sources,
    )
    combined, preservation = (f(prompts, None, samples.completion_ids.tolist()) for f in functions)
    inputs = {
        "tokens": samples.codes,
        "source_tokens": sources.codes(prompts),
        "instructions": [sources.edit(p).instruction for p in prompts],
    }
    assert weights == [1.0, 0.5]
    assert combined == pytest.approx(edit_reward_model.combined_reward(**inputs).tolist())
    assert preservation == pytest.approx(edit_reward_model.score(**inputs)["preservation"].tolist())
    # The source is read: the same results against other sources score otherwise.
    other = edit_reward_model.score(**(inputs | {"source_tokens": inputs["source_tokens"].roll(1, 0)}))
    assert not torch.allclose(other["preservation"], torch.tensor(preservation))


def test_the_reward_model_must_score_what_the_run_draws(edit_reward_model, tmp_path):
    from imagepref.reward import RewardConfig
    from imagepref.reward.model import RewardModel

    generator = micro_generator()
    image_model = RewardModel.create(RewardConfig(backbone="token"), generator)
    with pytest.raises(BadInputError, match="holds edits, and the reward model scores images"):
        build_rewards({"reward_model": 1.0}, generator, reward_model=image_model, edit_sources=EditSources(generator))
    with pytest.raises(BadInputError, match="scores edits, and the run's prompt set holds no edits"):
        build_rewards({"reward_model:preservation": 1.0}, generator, reward_model=edit_reward_model)


@pytest.mark.slow
def test_grpo_on_edit_turns_raises_a_reward_model_of_edits(tmp_path, edit_reward_model):
    from imagepref.policy.align.pipeline import ocr_measures

    generator = micro_generator()
    sources = EditSources(generator)
    prompts = training_edit_prompts(4) * 2
    functions, weights = build_rewards(
        {"reward_model:preservation": 1.0, "reward_model": 0.0, "ocr": 0.0},
        generator,
        read_text=lambda image: "ABC",
        text_reward=ocr_measures("tesseract")[1],
        reward_model=edit_reward_model,
        edit_sources=sources,
    )

    # The head, not the combined reward: the untrained generator's edits are nearly all below the
    # safety cut, where the combined reward is the gate's constant and no group has a spread.
    def measured() -> float:  # the preservation head's mean on the same 32 seeded edits
        samples = generator.edit(*sources.turns(prompts * 4), seed=123, guidance_scale=1.0, decode=False)
        values = functions[0](prompts * 4, None, samples.completion_ids.tolist())
        return sum(values) / len(values)

    before = measured()
    settings = six_full_steps()
    result = train_grpo(generator, prompts, functions, weights, settings, tmp_path / "run", edit_sources=sources)
    logged = [h for h in result["log_history"] if "reward" in h]
    names = ("rewards/reward_model_preservation/mean", "rewards/reward_model/mean", "rewards/ocr/mean")
    assert len(logged) == 6 and all(all(name in h for name in names) for h in logged)
    after = measured()
    print(f"preservation head of the reward model of edits: {before:.3f} -> {after:.3f}")
    assert after > before + 0.1
