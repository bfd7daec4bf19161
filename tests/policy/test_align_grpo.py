"""GRPO on TRL's GRPOTrainer with our sampler as rollout: it raises a rule reward in a few steps,
rollouts carry the raw policy log-probs, rewards read completion_ids, and the KL term is on."""

from __future__ import annotations

import pytest
import torch

from imagepref.errors import BadInputError, UnknownNameError
from imagepref.policy.align import GRPOSettings, build_rewards, train_grpo
from imagepref.policy.align.grpo import rollout
from imagepref.policy.glyphworld import rules
from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import teacher_forced_logprobs

PROMPTS = ['a sign that says "CAT"', 'a red sign that says "DOG"'] * 4


@pytest.mark.slow
def test_grpo_raises_a_simple_rule_reward(tmp_path, rule_reward):
    generator = micro_generator()
    reward = rule_reward(generator)

    def measured() -> float:  # the same 32 seeded draws before and after
        samples = generator.sample(PROMPTS * 4, seed=123, guidance_scale=1.0, decode=False)
        values = reward(None, None, samples.completion_ids.tolist())
        return sum(values) / len(values)

    before = measured()
    # A full fine-tune (with its frozen reference copy): on the one-layer micro model LoRA moves the
    # output distribution too slowly for a few-step test; LoRA is covered by the DPO and PPO tests.
    settings = GRPOSettings(
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
    result = train_grpo(generator, PROMPTS, [reward], [1.0], settings, tmp_path / "run")
    assert len([h for h in result["log_history"] if "reward" in h]) == 6
    assert measured() > before + 0.05  # generator.model is the trained model itself
    kl = [h["kl"] for h in result["log_history"] if "kl" in h]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] > 0  # the KL term is on by default


def test_rollouts_report_the_policys_raw_log_probs():
    generator = micro_generator()
    out = rollout(generator, PROMPTS[:4], seed=5, guidance_scale=3.0, temperature=1.0)
    block = torch.tensor(out["completion_ids"])
    codes = generator.block_to_codes(block)
    forced = teacher_forced_logprobs(generator, out["prompt_ids"], codes)
    assert torch.allclose(torch.tensor(out["logprobs"]), forced, atol=1e-5)
    assert all(mask == [1] * generator.num_codes for mask in out["env_mask"])


def test_rule_rewards_read_completion_ids_and_share_ocr_readings():
    generator = micro_generator()
    samples = generator.sample(PROMPTS[:2], seed=2)
    reads = []

    def read_text(image):
        reads.append(image)
        return "CAT"

    functions, weights = build_rewards(
        {"ocr": 2.0, "rule_prompt_fidelity": 1.0, "rule_safety": 0.5},
        generator,
        read_text=read_text,
        text_reward=lambda prompt, reading: float("CAT" in prompt),
    )
    ids = samples.completion_ids.tolist()
    values = [f(PROMPTS[:2], None, ids) for f in functions]
    assert weights == [2.0, 1.0, 0.5]
    assert values[0] == [1.0, 0.0]
    expected = [rules.prompt_fidelity(image, prompt, lambda _: "CAT") for image, prompt in zip(samples.images, PROMPTS)]
    assert values[1] == pytest.approx(expected)
    assert values[2] == [rules.safety(image) for image in samples.images]
    assert len(reads) == 2  # one OCR reading per image, shared by both OCR rewards


def test_unknown_reward_names_and_foreign_tokens_are_refused():
    generator = micro_generator()
    with pytest.raises(UnknownNameError, match="rule_sharpness"):
        build_rewards({"rule_sharpness": 1.0}, generator)
    functions, _ = build_rewards({"rule_safety": 1.0}, generator)
    with pytest.raises(BadInputError, match="image range"):
        functions[0](["x"], None, [[0] * generator.num_codes])


def test_reward_model_rewards_use_its_combined_reward_and_heads():
    from imagepref.reward import RewardConfig, RewardModel

    generator = micro_generator()
    model = RewardModel(RewardConfig(width=16, layers=1, heads=2)).eval()
    samples = generator.sample(PROMPTS[:2], seed=4)
    functions, _ = build_rewards({"reward_model": 1.0, "reward_model:safety": 1.0}, generator, reward_model=model)
    ids = samples.completion_ids.tolist()
    combined = model.combined_reward(images=samples.images, prompts=PROMPTS[:2])
    assert functions[0](PROMPTS[:2], None, ids) == pytest.approx([float(v) for v in combined], abs=1e-5)
    safety = model.score(images=samples.images, prompts=PROMPTS[:2])["safety"]
    assert functions[1](PROMPTS[:2], None, ids) == pytest.approx([float(v) for v in safety], abs=1e-5)
    with pytest.raises(UnknownNameError, match="no head 'sharpness'"):
        build_rewards({"reward_model:sharpness": 1.0}, generator, reward_model=model)


def test_token_space_reward_model_scores_completion_ids_without_decoding(tmp_path):
    from imagepref.reward import RewardConfig, RewardModel, load_reward_model

    generator = micro_generator()
    RewardModel.create(
        RewardConfig(backbone="token", width=16, layers=1, heads=2), generator=generator
    ).save_pretrained(tmp_path / "rm")
    model = load_reward_model(tmp_path / "rm")  # the public loader, as the CLI uses it
    samples = generator.sample(PROMPTS[:4], seed=6, decode=False)
    ids = samples.completion_ids.tolist()
    decoded = []
    decode = generator.decode
    generator.decode = lambda codes: decoded.append(len(codes)) or decode(codes)
    functions, _ = build_rewards(
        {"reward_model": 1.0, "reward_model:prompt_fidelity": 1.0}, generator, reward_model=model
    )
    combined = model.combined_reward(tokens=samples.codes, prompts=PROMPTS[:4])
    assert functions[0](PROMPTS[:4], None, ids) == pytest.approx([float(v) for v in combined], abs=1e-5)
    fidelity = model.score(tokens=samples.codes, prompts=PROMPTS[:4])["prompt_fidelity"]
    assert functions[1](PROMPTS[:4], None, ids) == pytest.approx([float(v) for v in fidelity], abs=1e-5)
    assert decoded == []  # scored from the codes: no image was drawn
    with pytest.raises(BadInputError, match="image range"):  # foreign ids are refused before scoring
        functions[0](["x"], None, [[0] * generator.num_codes])


@pytest.mark.slow
def test_grpo_trains_on_a_token_space_reward_model(tmp_path):
    from imagepref.reward import RewardConfig, RewardModel, load_reward_model

    generator = micro_generator()
    RewardModel.create(
        RewardConfig(backbone="token", width=16, layers=1, heads=2), generator=generator
    ).save_pretrained(tmp_path / "rm")
    functions, weights = build_rewards(
        {"reward_model": 1.0}, generator, reward_model=load_reward_model(tmp_path / "rm")
    )
    settings = GRPOSettings(
        steps=2, batch_size=8, num_generations=4, guidance_scale=1.0, save_every=100, monitor_every=0, report_to=[]
    )
    result = train_grpo(generator, PROMPTS, functions, weights, settings, tmp_path / "run")
    rewards = [h["rewards/reward_model/mean"] for h in result["log_history"] if "rewards/reward_model/mean" in h]
    assert len(rewards) == 2 and all(r == r for r in rewards)  # real numbers every step, no NaN
    assert [h["rewards/reward_model/std"] for h in result["log_history"] if "rewards/reward_model/std" in h][0] > 0


def test_ink_colour_reward_reads_the_colour_of_real_glyph_world_renders():
    # Real renders through the shipped generator's codec: the reward decodes the completion ids it is
    # given, so the codes must be ones whose pixels keep the drawn ink colour.
    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import SHIPPED_GENERATOR
    from imagepref.policy.glyphworld.world import FONTS, GlyphSpec, render

    generator = load_generator(SHIPPED_GENERATOR)
    specs = [
        GlyphSpec(text=text, colour=colour, background="white", font=font, size="tall", column=1, row=2)
        for text, colour, font in (("CAT", "red", FONTS[0]), ("DOG", "blue", FONTS[1]), ("SUN", "green", FONTS[2]))
    ]
    images = [render(spec) for spec in specs]
    assert [rules.ink_colour(image) for image in images] == ["red", "blue", "green"]
    ids = generator.codes_to_block(generator.encode_images(images)).tolist()
    (reward,), _ = build_rewards({"rule_ink_colour": 1.0}, generator)
    right = [spec.prompt for spec in specs]
    wrong = [f'a poster with "{s.text}" in {c} letters' for s, c in zip(specs, ("blue", "purple", "red"))]
    quoted_colour = ['a poster with "RED" in black letters', 'a sign that says "DOG"', 'a sign that says "GREEN"']
    assert reward(right, None, ids) == [1.0, 1.0, 1.0]
    assert reward(wrong, None, ids) == [0.0, 0.0, 0.0]
    # The colour named outside the quotes counts, and a prompt naming none asks for no colour.
    assert reward(quoted_colour, None, ids) == [0.0, 1.0, 1.0]


def test_upstream_sampler_hook(tmp_path, rule_reward):
    # ImageGRPOTrainer wraps the sampler TRL 1.16's GRPOTrainer._get_train_sampler builds, and
    # reseeds its generator per epoch: this fails when the hook or the sampler's attributes change.
    import inspect

    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    from imagepref.policy.align.grpo import EpochSeededSampler, ImageGRPOTrainer, grpo_arguments, prompt_dataset

    assert list(inspect.signature(GRPOTrainer._get_train_sampler).parameters) == ["self", "dataset"]
    generator = micro_generator()
    settings = GRPOSettings(steps=1, batch_size=4, num_generations=2, save_every=100, monitor_every=0, report_to=[])
    functions, weights = [rule_reward(generator)], [1.0]
    trainer = ImageGRPOTrainer(
        generator, settings, functions, grpo_arguments(settings, tmp_path, generator, weights), prompt_dataset(PROMPTS)
    )
    loader = trainer.get_train_dataloader()
    sampler = loader.batch_sampler.sampler if loader.batch_sampler is not None else loader.sampler
    assert isinstance(sampler, EpochSeededSampler) and isinstance(sampler.sampler, RepeatSampler)
    assert sampler.sampler.shuffle and isinstance(sampler.sampler.generator, torch.Generator)
    sampler.set_epoch(3)
    first = list(sampler)
    list(sampler)  # another draw moves TRL's generator on
    sampler.set_epoch(3)
    assert list(sampler) == first  # a resumed epoch 3 draws epoch 3's order
    sampler.set_epoch(4)
    assert list(sampler) != first
