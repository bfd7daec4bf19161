"""The sampler against transformers' generate(guidance_scale=...) on the same model and settings.

Prints image tokens per second for both, the ratio, and the share of this machine's measured
matrix-multiply FLOP/s that our sampler reaches, for each batch size. It also times our sampler with
its static-cache decoder switched off (``static_cache=False``: the same loop through
``Generator.forward``), to show what that decoder adds. Run:

    .venv/bin/python benchmarks/sampler.py [--model DIR] [--batch 4 16 64] [--scale 3.0] [--repeats 3]

Without --model it uses the shipped glyph generator when present, else a fresh one of the same size.

With ``--decoding sjd`` it compares speculative Jacobi decoding (``--window`` drafts a pass) with
plain sampling and transformers' generate instead, in one run: sequential forward passes per image
(a batch's images share them), tokens per second and the ratios at each batch size (timings
interleaved, best of ``--repeats``), then the quality of both decodings on the first
``--quality-prompts`` glyph-world held-out prompts (``--quality-samples`` images each, the
generator's own guidance, the eval suite's OCR and rules, 95 % intervals):

    .venv/bin/python benchmarks/sampler.py --decoding sjd [--window 8] [--batch 1 4 16 64]
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


def sampled(generator, prompts, scale, seed, **decoding):
    """(seconds, forward passes) of one sampling run."""
    started = time.perf_counter()
    samples = generator.sample(
        prompts, guidance_scale=scale, seed=seed, decode=False, batch_size=len(prompts), **decoding
    )
    return time.perf_counter() - started, samples.forward_passes


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


def speculative_table(generator, batches: list[int], scale: float, window: int, repeats: int) -> None:
    """Passes, tokens/s and ratios of SJD beside plain sampling and transformers' generate."""
    print(
        f"threads {torch.get_num_threads()}, {generator.num_codes} image tokens per image, guidance {scale}, "
        f"sjd window {window}; passes: sequential forward passes per image (prefill included); tokens/s: best of "
        f"{repeats} interleaved runs"
    )
    print(
        f"{'batch':>5} {'passes':>7} {'sjd':>6} {'fewer':>6} {'plain':>8} {'sjd':>8} {'generate':>8} "
        f"{'sjd/plain':>9} {'sjd/gen':>8} {'plain/gen':>9}"
    )
    for batch in batches:
        prompts = [f'a red sign that says "W{i % 10}RD"' for i in range(batch)]
        tokens = batch * generator.num_codes
        sampled(generator, prompts, scale, 0)  # warm-up
        sampled(generator, prompts, scale, 0, decoding="sjd", window=window)
        best = {"plain": float("inf"), "sjd": float("inf"), "generate": float("inf")}
        passes = {"plain": [], "sjd": []}
        for repeat in range(repeats):  # interleaved, so a change in load hits every way alike
            for name, decoding in (("plain", {}), ("sjd", {"decoding": "sjd", "window": window})):
                seconds, count = sampled(generator, prompts, scale, repeat, **decoding)
                best[name] = min(best[name], seconds)
                passes[name].append(count)
            started = time.perf_counter()
            transformers_generate(generator, prompts, scale)
            best["generate"] = min(best["generate"], time.perf_counter() - started)
        plain_passes, sjd_passes = (sum(v) / len(v) for v in (passes["plain"], passes["sjd"]))
        rate = {name: tokens / seconds for name, seconds in best.items()}
        print(
            f"{batch:>5} {plain_passes:>7.0f} {sjd_passes:>6.1f} {plain_passes / sjd_passes:>5.2f}x "
            f"{rate['plain']:>8.0f} {rate['sjd']:>8.0f} {rate['generate']:>8.0f} "
            f"{rate['sjd'] / rate['plain']:>8.2f}x {rate['sjd'] / rate['generate']:>7.2f}x "
            f"{rate['plain'] / rate['generate']:>8.2f}x",
            flush=True,
        )


def speculative_quality(model: str | None, prompts: int, samples: int, window: int) -> None:
    """Held-out glyph-world quality of plain and SJD sampling, through the eval suite."""
    import tempfile

    from imagepref.eval.config import EvalSettings
    from imagepref.eval.prompts import load_prompts
    from imagepref.eval.runner import evaluate

    shipped = Path(__file__).resolve().parents[1] / "policy" / "glyphworld" / "pretrained"
    checkpoint = Path(model) if model else shipped
    heldout = load_prompts("glyphworld-heldout")[:prompts]
    figures = [
        ("word_accuracy", "word accuracy"),
        ("exact_match", "exact match"),
        ("cer", "CER"),
        ("rules/prompt_fidelity", "rule fidelity"),
        ("rules/aesthetics", "rule aesthetics"),
        ("safety_violation_rate", "safety violations"),
    ]
    print(
        f"quality: {len(heldout)} held-out prompts x {samples} images, the generator's own guidance, "
        "95 % intervals (bootstrap over prompts; Wilson for shares)"
    )
    print(f"{'decoding':>8}  " + "  ".join(f"{label:>22}" for _, label in figures))
    with tempfile.TemporaryDirectory() as folder:
        for decoding in ("plain", "sjd"):
            settings = EvalSettings(samples=samples, decoding=decoding, window=window, grid_prompts=0)
            results = evaluate([checkpoint], heldout, Path(folder) / decoding, settings, progress=False)
            summary = results["checkpoints"][0]["summary"]
            cells = []
            for key, _ in figures:
                figure = summary.get(key) or {}
                value, (low, high) = figure.get("value"), figure.get("ci") or (None, None)
                scale = 100 if key not in ("rules/prompt_fidelity", "rules/aesthetics") else 1
                digits = 1 if scale == 100 else 3
                cells.append(
                    "n/a"
                    if value is None
                    else f"{value * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
                )
            print(f"{decoding:>8}  " + "  ".join(f"{cell:>22}" for cell in cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes (default: 4 16 64; with sjd 1 4 16 64)")
    parser.add_argument("--scale", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decoding", choices=["plain", "sjd"], default="plain")
    parser.add_argument("--window", type=int, default=8, help="SJD draft codes per forward pass")
    parser.add_argument("--quality-prompts", type=int, default=128, help="held-out prompts of the SJD quality check")
    parser.add_argument("--quality-samples", type=int, default=2, help="images per prompt of the SJD quality check")
    parser.add_argument(
        "--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a loaded machine)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging

    logging.set_verbosity_error()
    generator = load(args.model)
    if args.decoding == "sjd":
        speculative_table(generator, args.batch or [1, 4, 16, 64], args.scale, args.window, args.repeats)
        if args.quality_prompts:
            speculative_quality(args.model, args.quality_prompts, args.quality_samples, args.window)
        return
    peak = matmul_flops()
    print(
        f"threads {torch.get_num_threads()}, {generator.num_codes} image tokens per image, guidance {args.scale}, "
        f"matmul peak (1024^3) {peak / 1e9:.1f} GFLOP/s"
    )
    print(f"{'batch':>5} {'imagepref':>10} {'no static':>10} {'generate':>10} {'ratio':>7} {'of peak':>8}   (tokens/s)")
    for batch in args.batch or [4, 16, 64]:
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
