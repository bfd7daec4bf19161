"""The sampler against transformers' generate(guidance_scale=...) on the same model and settings.

Prints image tokens per second for both, the ratio, and the share of this machine's measured
matrix-multiply FLOP/s that our sampler reaches, for each batch size. It also times our sampler with
its static-cache decoder switched off (``static_cache=False``: the same loop through
``Generator.forward``), to show what that decoder adds. Run:

    .venv/bin/python benchmarks/sampler.py [--model DIR] [--batch 4 16 64] [--scale 3.0] [--repeats 3]

Without --model it uses the shipped glyph generator when present, else a fresh one of the same size.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def load(model: str | None):
    from imagepref.policy.generator import load_generator

    shipped = Path(__file__).resolve().parents[1] / "policy" / "glyphworld" / "pretrained"
    if model or (shipped / "imagepref.json").is_file():
        return load_generator(model or shipped)
    from imagepref.policy.families.glyph import GlyphGenerator
    from imagepref.policy.pretrain import PretrainConfig, fit_codec

    return GlyphGenerator.create(fit_codec(PretrainConfig(codec_images=300, codec_iterations=2)))


def ours(generator, prompts, scale, static_cache=True):
    return generator.sample(prompts, guidance_scale=scale, seed=0, decode=False, static_cache=static_cache).codes


def transformers_generate(generator, prompts, scale):
    from imagepref.policy.sampler import left_pad

    start, end = generator.config.image_token_range
    ids, mask = left_pad(generator.encode_prompts(prompts), generator.pad_token_id, generator.device)
    suppress = [i for i in range(generator.model.config.vocab_size) if not start <= i < end]
    out = generator.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=True,
        guidance_scale=scale,
        max_new_tokens=generator.num_codes,
        min_new_tokens=generator.num_codes,
        suppress_tokens=suppress,
        top_k=0,
        pad_token_id=generator.pad_token_id,
    )
    return out[:, ids.shape[1] :]


def timed(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_flops(size: int = 1024, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = timed(lambda: a @ b, repeats)
    return 2 * size**3 / seconds


def sampler_flops(generator, batch: int, prompt_length: int, guided: bool) -> float:
    """Multiply-add FLOPs of one sampling run: 2 x weights touched per token, plus attention."""
    config = generator.model.config
    weights = sum(p.numel() for n, p in generator.model.named_parameters() if "embed_tokens" not in n)
    rows = batch * (2 if guided else 1)
    tokens = generator.num_codes
    attention = 4 * config.num_hidden_layers * config.hidden_size * sum(prompt_length + t for t in range(tokens))
    return rows * (2 * weights * (prompt_length + tokens) + attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from transformers.utils import logging

    logging.set_verbosity_error()
    generator = load(args.model)
    peak = matmul_flops()
    print(
        f"threads {torch.get_num_threads()}, {generator.num_codes} image tokens per image, guidance {args.scale}, "
        f"matmul peak (1024^3) {peak / 1e9:.1f} GFLOP/s"
    )
    print(f"{'batch':>5} {'imagepref':>10} {'no static':>10} {'generate':>10} {'ratio':>7} {'of peak':>8}   (tokens/s)")
    for batch in args.batch:
        prompts = [f'a red sign that says "W{i % 10}RD"' for i in range(batch)]
        tokens = batch * generator.num_codes
        ours_s = timed(lambda prompts=prompts: ours(generator, prompts, args.scale), args.repeats)
        generic_s = timed(
            lambda prompts=prompts: ours(generator, prompts, args.scale, static_cache=False), args.repeats
        )
        theirs_s = timed(lambda prompts=prompts: transformers_generate(generator, prompts, args.scale), args.repeats)
        prompt_length = max(len(p) for p in generator.encode_prompts(prompts))
        achieved = sampler_flops(generator, batch, prompt_length, args.scale != 1.0) / ours_s
        print(
            f"{batch:>5} {tokens / ours_s:>10.0f} {tokens / generic_s:>10.0f} {tokens / theirs_s:>10.0f} "
            f"{theirs_s / ours_s:>6.2f}x {100 * achieved / peak:>7.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
