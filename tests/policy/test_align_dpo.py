"""DPO on TRL's DPOTrainer over token ids: the margin rises, log-probs are the policy's raw ones,
LoRA keeps no reference copy, the precomputed reference and full fine-tune options work, and DPO
teaches the shipped base a preference its samples then follow."""

from __future__ import annotations

import pytest
import torch

from imagepref.policy.align import DPOSettings, OnPolicyPairs, on_policy_examples, train_dpo
from imagepref.policy.align.dpo import build_dpo_trainer
from imagepref.policy.align.rewards import scorer
from imagepref.policy.pretrain import micro_generator
from imagepref.policy.sampler import teacher_forced_logprobs

PROMPTS = ['a sign that says "CAT"', 'a red sign that says "DOG"']


def pairs(generator, count=4):
    """Chosen: an image sampled for the prompt; rejected: one sampled for the other prompt."""
    samples = generator.sample(PROMPTS * count, seed=1, decode=False)
    return [
        {
            "prompt_ids": samples.prompt_ids[2 * i],
            "chosen_ids": samples.completion_ids[2 * i].tolist(),
            "rejected_ids": samples.completion_ids[2 * i + 1].tolist(),
        }
        for i in range(count)
    ]


def settings(**changes):
    base = dict(steps=10, batch_size=4, learning_rate=3e-3, save_every=100, monitor_every=0, report_to=[])
    return DPOSettings(**{**base, **changes})


def margins(result):
    return [h["rewards/margins"] for h in result["log_history"] if "rewards/margins" in h]


def test_dpo_moves_the_chosen_rejected_margin_up(tmp_path):
    generator = micro_generator()
    before = {name: p.detach().clone() for name, p in generator.model.named_parameters()}
    result = train_dpo(generator, pairs(generator), settings(), tmp_path / "run")
    history = margins(result)
    assert history[0] == 0.0  # LoRA starts as the reference itself
    assert history[-1] > 0.3 and history[-1] > max(history[:3])
    # LoRA: the base weights are untouched; only adapter weights were trained.
    for name, parameter in generator.model.named_parameters():
        if "lora_" not in name:
            clean = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(parameter, before[clean]), name
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def test_trl_sees_the_policy_raw_log_probs_and_no_reference_copy(tmp_path):
    generator = micro_generator()
    examples = pairs(generator, count=2)
    trainer = build_dpo_trainer(generator, examples, settings(steps=1), tmp_path / "run")
    assert trainer.ref_model is None  # the reference is the same model with the adapter off
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        out = trainer.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, fused_lm_head=True
        )
        # Independent computation: log-softmax over the image codes (the distribution the sampler
        # draws from), read at the next token.
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    start, end = generator.config.image_token_range
    codes = (batch["input_ids"][:, 1:] - start).clamp(0, end - start - 1)
    expected = torch.log_softmax(logits[:, :-1, start:end].float(), -1).gather(-1, codes[..., None])[..., 0]
    mask = batch["completion_mask"][:, 1:].bool()
    assert torch.allclose(out.log_probs[mask], expected[mask], atol=1e-4)
    assert torch.all(out.log_probs[~mask] == 0)
    codes = generator.block_to_codes(torch.tensor(examples[0]["chosen_ids"])[None])
    direct = teacher_forced_logprobs(generator, [examples[0]["prompt_ids"]], codes).sum()
    assert torch.allclose(out.log_probs[0].sum(), direct, atol=1e-3)


def test_precomputed_reference_gives_the_same_first_losses(tmp_path):
    generator = micro_generator()
    examples = pairs(generator)
    plain = train_dpo(micro_generator(), examples, settings(steps=3), tmp_path / "plain")
    precomputed = train_dpo(
        micro_generator(), examples, settings(steps=3, precompute_ref_log_probs=True), tmp_path / "pre"
    )
    losses = [[h["loss"] for h in r["log_history"] if "loss" in h] for r in (plain, precomputed)]
    assert torch.allclose(torch.tensor(losses[0]), torch.tensor(losses[1]), atol=1e-4)


def test_full_fine_tune_keeps_a_frozen_reference_copy(tmp_path):
    generator = micro_generator()
    examples = pairs(generator)
    trainer = build_dpo_trainer(
        generator, examples, settings(steps=4, lora=False, learning_rate=1e-3), tmp_path / "run"
    )
    reference = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    trainer.train()
    assert all(torch.equal(p, reference[n]) for n, p in trainer.ref_model.named_parameters())
    assert any(not torch.equal(p, reference[n]) for n, p in trainer.model.named_parameters())
    assert margins({"log_history": trainer.state.log_history})[-1] > 0


def test_on_policy_pairs_put_the_best_candidate_over_the_worst(rule_reward):
    generator = micro_generator()
    reward = rule_reward(generator)
    examples = on_policy_examples(
        generator,
        PROMPTS * 2,
        scorer([reward], [1.0]),
        OnPolicyPairs(images_per_prompt=4, min_gap=0.0),
        seed=3,
        sampler={},
    )
    assert len(examples) == 4
    for example in examples:
        chosen, rejected = reward(None, None, [example["chosen_ids"], example["rejected_ids"]])
        assert chosen > rejected
        assert len(example["chosen_ids"]) == generator.num_codes


def test_a_trl_schedule_set_in_the_settings_reaches_the_trainer(tmp_path):
    # Any TRL field is a setting: a cosine schedule with 2 warmup steps, as a recipe or a
    # key=value override gives it, drives the learning rate of the trainer's optimizer.
    from imagepref.policy.align.config import settings_from_mapping

    generator = micro_generator()
    chosen = settings_from_mapping(
        "dpo",
        {
            "steps": 6,
            "batch_size": 4,
            "learning_rate": 1e-2,
            "save_every": 100,
            "monitor_every": 0,
            "report_to": [],
            "lr_scheduler_type": "cosine",
            "warmup_steps": 2,
        },
    )
    result = train_dpo(generator, pairs(generator), chosen, tmp_path / "cosine")
    rates = [h["learning_rate"] for h in result["log_history"] if "learning_rate" in h]
    assert len(rates) == 6
    # The rate logged at step s is the one step s trained with: warmup s/2 of the peak, then
    # cosine decay over the remaining 4 steps.
    import math

    expected = [1e-2 * s / 2 if s < 2 else 1e-2 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 4)) for s in range(6)]
    assert rates == pytest.approx(expected, rel=1e-6, abs=1e-12)
    # Our default stays a constant rate (the quickstart's figures were measured with it).
    constant = train_dpo(micro_generator(), pairs(generator), settings(steps=3), tmp_path / "constant")
    assert {h["learning_rate"] for h in constant["log_history"] if "learning_rate" in h} == {3e-3}


def test_upstream_dataset_hook(tmp_path, monkeypatch):
    # TokenDPOTrainer overrides TRL 1.16's private DPOTrainer._prepare_dataset: this fails when TRL
    # renames it, changes its signature or stops calling it, so the override would be skipped.
    import inspect

    from trl import DPOTrainer

    from imagepref.policy.align.dpo import TokenDPOTrainer

    parameters = list(inspect.signature(DPOTrainer._prepare_dataset).parameters)
    assert parameters == ["self", "dataset", "processing_class", "args", "dataset_name"]
    # and the precompute hook TokenDPOTrainer routes log-probs in before TRL computes the reference
    assert list(inspect.signature(DPOTrainer._precompute_ref_logps).parameters) == [
        "self",
        "dataset",
        "name",
        "batch_size",
    ]
    calls = []
    original = TokenDPOTrainer._prepare_dataset

    def counted(self, *args, **kwargs):
        calls.append(args[-1] if args else kwargs.get("dataset_name"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TokenDPOTrainer, "_prepare_dataset", counted)
    generator = micro_generator()
    trainer = build_dpo_trainer(generator, pairs(generator, 2), settings(steps=1), tmp_path / "run")
    assert calls == ["train"]
    assert sorted(trainer.train_dataset.column_names) == ["chosen_ids", "prompt_ids", "rejected_ids"]


def test_upstream_fused_forward_hook(tmp_path, monkeypatch):
    # policy.align.logprobs answers the fused log-prob forward TRL 1.16 patches onto the model
    # (trl.trainer.utils.add_fused_lm_head) and calls with fused_lm_head=True; this fails when TRL
    # stops calling the model that way, so the patch would no longer be the log-probs TRL uses.
    import inspect

    from trl import DPOTrainer, GRPOTrainer
    from trl.trainer import utils

    assert callable(utils.add_fused_lm_head)
    for method in (
        DPOTrainer._compute_loss,
        DPOTrainer.compute_ref_log_probs,
        GRPOTrainer._get_per_token_logps_and_entropies,
    ):
        source = inspect.getsource(method)
        assert "fused_lm_head=True" in source and ".log_probs" in source, method.__qualname__
    from imagepref.policy.align import logprobs

    calls = []
    original = logprobs.policy_logprobs
    monkeypatch.setattr(
        logprobs, "policy_logprobs", lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    )
    generator = micro_generator()
    train_dpo(generator, pairs(generator, 2), settings(steps=1, batch_size=2), tmp_path / "run")
    assert calls  # TRL's log-probs of the one step came through the generator interface


# The shipped base reads the colour word in the training templates (every image in the named
# ink) but not in this held-out one, where it draws the named ink in about one image in six
# (chance): a preference it does not hold yet, on a model that can read the prompt.
BANNER = 'a {colour} banner showing "{text}"'


def banner_prompts(words):
    from imagepref.policy.glyphworld import TEXT_COLOURS

    colours = [list(TEXT_COLOURS)[i % len(TEXT_COLOURS)] for i in range(len(words))]
    return [BANNER.format(colour=c, text=w) for c, w in zip(colours, words)], colours


def named_ink_share(generator, words, seed=5):
    """Share of images, sampled at the generator's default guidance, whose ink (as the prompt
    fidelity rule reads it from the pixels) is the colour the prompt names."""
    from imagepref.policy.glyphworld.rules import ink_colour

    prompts, colours = banner_prompts(words)
    images = generator.sample(prompts, seed=seed).images
    return sum(ink_colour(image) == colour for image, colour in zip(images, colours)) / len(words)


def ink_colour_pairs(generator, words, seed=1):
    """Per prompt, one base sample with its ink code set to the named colour (chosen) against the
    same sample in each other colour (rejected): the image blocks differ in that one code."""
    from imagepref.policy.glyphworld import TEXT_COLOURS

    prompts, colours = banner_prompts(words)
    samples = generator.sample(prompts, seed=seed, decode=False)
    first_ink = generator.codec.num_palette - len(TEXT_COLOURS)  # the palette: backgrounds, then inks

    def painted(codes, colour):
        codes = codes.clone()
        codes[1] = first_ink + list(TEXT_COLOURS).index(colour)  # [background, ink, shapes...]
        return generator.codes_to_block(codes[None])[0].tolist()

    return [
        {"prompt_ids": prompt_ids, "chosen_ids": painted(codes, colour), "rejected_ids": painted(codes, other)}
        for codes, prompt_ids, colour in zip(samples.codes, samples.prompt_ids, colours)
        for other in TEXT_COLOURS
        if other != colour
    ]


@pytest.mark.slow
def test_dpo_teaches_the_shipped_base_to_follow_the_named_ink_colour(tmp_path):
    # The end-to-end check of the method: pairs that prefer the named ink colour, and afterwards
    # the sampled images (default guidance, decoded, read by the fidelity rule) have it. Each of
    # these, done on purpose, made it fail: the trainer's log-probs read one position early, the
    # palette codes left out of the summed log-probs, the precomputed reference matched to the
    # next pair, the guidance mixing the unconditional branch as the conditional one.
    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import SHIPPED_GENERATOR, TRAIN_WORDS

    generator = load_generator(SHIPPED_GENERATOR)
    words = sorted(TRAIN_WORDS)
    trained_words, measured_words = words[0::2][:16], words[1::2][:48]  # disjoint
    before = named_ink_share(generator, measured_words)
    assert before <= 0.4
    result = train_dpo(
        generator,
        ink_colour_pairs(generator, trained_words),
        settings(steps=20, batch_size=8, learning_rate=1e-3, beta=0.1, precompute_ref_log_probs=True),
        tmp_path / "run",
    )
    first = next(h for h in result["log_history"] if "rewards/margins" in h)
    # The precomputed reference is the starting policy's own log-probs: step 1 has no reward yet.
    assert abs(first["rewards/chosen"]) < 1e-3 and abs(first["rewards/rejected"]) < 1e-3
    after = named_ink_share(generator, measured_words)
    assert after >= 0.9, (before, after)
