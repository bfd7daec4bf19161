"""Speculative Jacobi decoding (``sample(..., decoding="sjd")``) against plain sampling, per family:
the same codes under greedy settings, the same per-position code distributions under sampling (and
a wrong acceptance rule that this comparison catches), log-probs equal to teacher forcing."""

from __future__ import annotations

import pytest
import torch

from imagepref.errors import BadInputError
from imagepref.policy import sampler
from imagepref.policy.families import tiny_generator
from imagepref.policy.sampler import teacher_forced_logprobs

FAMILIES = ["glyph", "emu3", "janus", "causal-vq"]
PROMPTS = ['a red sign that says "OPEN"', 'the word "HI"', "a plain sign"]


@pytest.fixture(scope="module", params=FAMILIES)
def generator(request):
    return tiny_generator(request.param)


@pytest.mark.parametrize("static_cache", [True, False])
@pytest.mark.parametrize("window", [1, 5])
def test_greedy_sjd_gives_the_plain_codes(generator, static_cache, window):
    # top_k=1 leaves one code per place: every draft is kept or replaced by exactly that code.
    settings = dict(guidance_scale=3.0, top_k=1, decode=False, static_cache=static_cache)
    plain = generator.sample(PROMPTS, seed=1, **settings)
    fast = generator.sample(PROMPTS, seed=2, decoding="sjd", window=window, **settings)
    assert torch.equal(fast.codes, plain.codes)
    assert torch.equal(fast.completion_ids, plain.completion_ids)  # Emu3's forced tokens in place
    torch.testing.assert_close(fast.logprobs, plain.logprobs, atol=1e-5, rtol=0)
    assert plain.forward_passes == len(generator.block_layout())
    assert 1 < fast.forward_passes <= plain.forward_passes


@pytest.mark.parametrize(
    "settings",
    [dict(guidance_scale=4.0, temperature=0.7, top_k=10), dict(guidance_scale=1.0), dict(top_p=0.8, temperature=1.3)],
)
def test_sjd_logprobs_equal_teacher_forcing(generator, settings):
    samples = generator.sample(PROMPTS, seed=3, decode=False, decoding="sjd", window=4, **settings)
    assert samples.codes.shape == (3, generator.num_codes)
    forced = teacher_forced_logprobs(generator, samples.prompt_ids, samples.codes)
    torch.testing.assert_close(forced.cpu(), samples.logprobs, atol=2e-5, rtol=0)
    assert (samples.logprobs < 0).all()


def test_sjd_is_seeded_and_decodes_images(generator):
    settings = dict(guidance_scale=2.0, decoding="sjd", window=6)
    a = generator.sample(PROMPTS, seed=5, **settings)
    b = generator.sample(PROMPTS, seed=5, decode=False, **settings)
    c = generator.sample(PROMPTS, seed=6, decode=False, **settings)
    assert torch.equal(a.codes, b.codes) and not torch.equal(a.codes, c.codes)
    assert len(a.images) == 3 and a.images[0].size == tuple(reversed(generator.config.image_size))


def smallest_p_value(a: torch.Tensor, b: torch.Tensor, num_codes: int) -> float:
    """The smallest, over block positions, p-value of the two-sample chi-square test that codes
    ``a`` and ``b`` (equal numbers of images) come from one distribution at that position."""
    count_a, count_b = (torch.nn.functional.one_hot(x.long(), num_codes).sum(0).double() for x in (a, b))
    total = count_a + count_b
    seen = total > 0
    statistic = torch.where(seen, (count_a - count_b) ** 2 / total.clamp(min=1), 0).sum(1)
    freedom = (seen.sum(1) - 1).clamp(min=1).double()
    return float(torch.special.gammaincc(freedom / 2, statistic / 2).min())


def always_accept(uniform, p, q):
    return torch.ones_like(p, dtype=torch.bool)


def distributions_agree(generator, images: int, monkeypatch, wrong_rule: bool = False) -> float:
    """The smallest p-value comparing ``images`` plain and ``images`` SJD samples of one prompt."""
    settings = dict(guidance_scale=2.0, temperature=0.5, top_k=40, decode=False, batch_size=images)
    prompts = ['a red sign that says "OPEN"'] * images
    plain = generator.sample(prompts, seed=0, **settings)
    if wrong_rule:
        monkeypatch.setattr(sampler, "accepts", always_accept)
    fast = generator.sample(prompts, seed=1, decoding="sjd", window=4, **settings)
    return smallest_p_value(plain.codes, fast.codes, generator.config.num_image_tokens)


# Bonferroni over the block's positions at a family-wise level of 1e-3; every test below is seeded,
# so it passes or fails the same way each run.
LEVEL = 1e-3


def test_sampled_sjd_keeps_the_code_distribution_and_a_wrong_rule_does_not(monkeypatch):
    generator = tiny_generator("emu3")  # forced end-of-row tokens inside the windows
    positions = generator.num_codes
    assert distributions_agree(generator, 600, monkeypatch) > LEVEL / positions
    # Keeping every draft (a rule that does not preserve the distribution) fails the same bound.
    assert distributions_agree(generator, 600, monkeypatch, wrong_rule=True) < LEVEL / positions


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_sampled_sjd_keeps_the_code_distribution_per_family(family, monkeypatch):
    generator = tiny_generator(family)
    positions = generator.num_codes
    assert distributions_agree(generator, 2000, monkeypatch) > LEVEL / positions
    assert distributions_agree(generator, 2000, monkeypatch, wrong_rule=True) < LEVEL / positions


def test_bad_decoding_settings_are_one_line_errors():
    generator = tiny_generator("causal-vq")
    with pytest.raises(BadInputError, match="unknown decoding"):
        generator.sample(PROMPTS, decoding="jacobi")
    with pytest.raises(BadInputError, match="at least one draft"):
        generator.sample(PROMPTS, decoding="sjd", window=0)


def test_sampling_settings_name_the_decoding_only_for_sjd():
    from pydantic import ValidationError

    from imagepref.policy.config import SamplingConfig

    assert "decoding" not in SamplingConfig().sampler()  # plain runs keep their recorded settings
    assert SamplingConfig(decoding="sjd", window=4).sampler() == {
        "guidance_scale": None,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "decoding": "sjd",
        "window": 4,
    }
    for bad in ({"decoding": "jacobi"}, {"window": 0}, {"window": 65}):
        with pytest.raises(ValidationError):
            SamplingConfig(**bad)


def test_grpo_and_ppo_rollouts_sample_with_the_configured_decoding():
    from imagepref.policy.align.config import settings_class
    from imagepref.policy.align.grpo import rollout

    for method in ("grpo", "ppo"):
        settings = settings_class(method)(decoding="sjd", window=3)
        assert (settings.decoding, settings.window) == ("sjd", 3)
    generator = tiny_generator("emu3")
    out = rollout(generator, PROMPTS, seed=4, guidance_scale=2.0, temperature=1.0, decoding="sjd", window=3)
    direct = generator.sample(PROMPTS, seed=4, guidance_scale=2.0, decode=False, decoding="sjd", window=3)
    assert out["completion_ids"] == direct.completion_ids.tolist()
    slots = [i for i, t in enumerate(generator.block_layout()) if t is None]
    forced = teacher_forced_logprobs(generator, direct.prompt_ids, direct.codes)
    torch.testing.assert_close(torch.tensor(out["logprobs"])[:, slots], forced.cpu(), atol=2e-5, rtol=0)


def test_generate_command_decodes_with_sjd(tmp_path):
    import json
    import subprocess
    import sys

    from imagepref.policy.pretrain import micro_generator

    model = tmp_path / "model"
    micro_generator(seed=0).save_pretrained(model)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('a red sign that says "OPEN"\n')

    def generate(out: str, *options: str) -> subprocess.CompletedProcess:
        command = ["generate", "--model", str(model), "--prompts", str(prompts), "--out", str(tmp_path / out)]
        return subprocess.run(
            [sys.executable, "-m", "imagepref.recipes.cli", *command, *options],
            capture_output=True,
            text=True,
            timeout=300,
        )

    result = generate("sjd", "--decoding", "sjd", "--window", "4")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "sjd" / "manifest.json").read_text())["sampler"]["decoding"] == "sjd"
    for options, words in ((["--window", "0"], "--window"), (["--decoding", "fast"], "--decoding")):
        bad = generate("bad", *options)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and words in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_draw_follows_the_probabilities_and_never_a_code_without_mass():
    probs = torch.tensor([[0.5, 0.0, 0.3, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    rng = torch.Generator().manual_seed(0)
    draws = torch.cat([sampler.draw(probs, rng) for _ in range(4000)], dim=1)  # (3, 4000)
    counts = torch.nn.functional.one_hot(draws, 5).sum(1).double()
    assert (counts[probs == 0] == 0).all()
    assert torch.equal(draws[1], torch.full((4000,), 4)) and torch.equal(draws[2], torch.full((4000,), 1))
    expected = 4000 * probs[0].double()
    seen = expected > 0
    statistic = float(((counts[0] - expected)[seen] ** 2 / expected[seen]).sum())
    assert statistic < 13.8  # chi-square, 2 degrees of freedom, p = 0.001
    # The same test tells a different distribution apart.
    wrong = 4000 * torch.tensor([0.4, 0.0, 0.4, 0.0, 0.2], dtype=torch.double)
    assert float(((counts[0] - wrong)[seen] ** 2 / wrong[seen]).sum()) > 13.8


def test_static_window_runs_only_the_valid_tokens():
    from imagepref.policy.sampler import context_rows, left_pad, positions
    from imagepref.policy.static_decoder import StaticDecoder

    generator = tiny_generator("glyph")
    _, rows = context_rows(generator, PROMPTS, guided=True)
    input_ids, mask = left_pad(rows, generator.pad_token_id, generator.device)
    pos = positions(mask)
    decoders = [StaticDecoder.for_generator(generator, len(rows), input_ids.shape[1], 12) for _ in range(2)]
    with torch.no_grad():
        for decoder in decoders:
            decoder.prefill(input_ids, mask, pos)
        start = generator.config.image_token_start
        tokens = start + torch.randint(
            0, generator.config.num_image_tokens, (len(rows), 4), generator=torch.Generator().manual_seed(0)
        )
        block = pos[:, -1:] + 1 + torch.arange(4)
        columns = input_ids.shape[1] + torch.arange(4).expand(len(rows), -1)
        full = decoders[0].window(tokens, block, columns)
        valid = torch.arange(4) < torch.tensor([4, 2, 0, 1, 3, 4])[:, None]  # windows of their own lengths, one none
        packed = decoders[1].window(tokens, block, columns, valid)
    torch.testing.assert_close(packed[valid], full[valid], atol=1e-5, rtol=1e-5)
    assert (packed[~valid] == 0).all()
    for written, reference in zip(decoders[1].keys, decoders[0].keys):
        at = input_ids.shape[1] + torch.arange(4)
        torch.testing.assert_close(
            written[..., at, :].transpose(1, 2)[valid], reference[..., at, :].transpose(1, 2)[valid]
        )
        assert (written[..., at, :].transpose(1, 2)[~valid] == 0).all()  # nothing written for tokens not run
