"""Reward model benchmark on the glyph world: held-out accuracy per head and scoring speed.

Trains the pixel backbone and the token-space backbone, each with its ``RewardConfig`` defaults
(the settings ``imagepref reward train`` uses), on the same simulated preference data (3
annotators who each err 10 % of the time), evaluates both on pairs of prompts never trained on,
and times scoring a batch of candidates that a generator just wrote as image tokens, both models
warm, same batch, same device, same threads:

- pixel path: decode the tokens with the codec, then score the pixels (what a pixel reward
  model must do inside online RL);
- token path: score the tokens directly through the generator's frozen embeddings.

Run: ``.venv/bin/python benchmarks/reward.py --work /tmp/reward-bench`` (data and models are
cached in ``--work``; a rerun only evaluates and times). ``--generator`` is the shipped pretrained
glyph generator by default (its codec makes the candidates' tokens and pixels, its embeddings
feed the token backbone); ``--generator fresh`` fits a small codec and uses an untrained generator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from imagepref.eval.ocr import get_engine
from imagepref.policy.glyphworld import SHIPPED_GENERATOR
from imagepref.reward import (
    RewardConfig,
    RewardModel,
    evaluate_reward_model,
    load_reward_model,
    read_preferences,
    train_reward_model,
)
from imagepref.reward.config import config_with_overrides
from imagepref.reward.synthetic import glyph_preference_data


def generator_and_codec(path: str):
    if path != "fresh":
        from imagepref.policy.generator import load_generator

        generator = load_generator(path)
        return generator, generator.codec, f"generator {path}"
    from imagepref.policy.families.glyph import GlyphGenerator
    from imagepref.policy.pretrain import PretrainConfig, fit_codec, init_letter_embeddings

    codec = fit_codec(PretrainConfig(num_shapes=256, codec_images=600, codec_iterations=4))
    generator = GlyphGenerator.create(codec, hidden_size=64, layers=1, heads=2, seed=0)
    init_letter_embeddings(generator, seed=0)  # as pretraining starts (PretrainConfig.letter_init)
    return generator, codec, "fitted 256-shape codec, untrained glyph generator with letter-initialised embeddings"


def best_times(fns: dict, repeats: int = 7) -> dict[str, float]:
    """The best wall time of each function, calling them in turn (so load on a shared machine hits
    every path alike) after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/reward-bench")
    parser.add_argument("--generator", default=str(SHIPPED_GENERATOR), help="generator folder, or 'fresh'")
    parser.add_argument("--train-prompts", type=int, default=400)
    parser.add_argument("--heldout-prompts", type=int, default=150)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="RewardConfig override for both backbones (default: none, the shipped defaults)",
    )
    parser.add_argument("--batch", type=int, default=256, help="candidates per timed scoring call")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for training and timing (1 was fastest on the shared 2-core machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    generator, codec, source = generator_and_codec(args.generator)
    read_text = get_engine("rapidocr").read_text
    for name, prompts, seed in (("train", args.train_prompts, 1), ("heldout", args.heldout_prompts, 2)):
        if not (work / name / "pairs.parquet").is_file():
            started = time.perf_counter()
            counts = glyph_preference_data(work / name, codec, read_text, prompts=prompts, seed=seed)
            print(f"{name} data: {counts} in {time.perf_counter() - started:.0f} s")
    heldout = read_preferences(work / "heldout")
    train_prompts = set(read_preferences(work / "train").pairs["prompt"])
    overlap = set(heldout.pairs["prompt"]) & train_prompts
    heldout = heldout.subset(~heldout.pairs["prompt"].isin(overlap).to_numpy())
    print(f"held-out: {len(heldout.pairs)} pairs on prompts never trained on ({len(overlap)} shared prompts dropped)")
    results = {"source": source}
    models = {}
    for backbone in ("token", "pixel"):
        out = work / f"model-{backbone}"
        if not (out / "model.safetensors").is_file():
            config = config_with_overrides(RewardConfig(backbone=backbone), args.set)
            result = train_reward_model(work / "train", [], out, config, generator=generator, show_progress=False)
            print(
                f"{backbone}: trained in {result.seconds:.0f} s, {len(result.best_epochs)} member(s), best epochs {result.best_epochs}"
            )
        models[backbone] = load_reward_model(out)
        report = evaluate_reward_model(models[backbone], heldout, resamples=1000)
        results[backbone] = report
        for axis, e in report["axes"].items():
            low, high = e["accuracy_unanimous_ci95"]
            print(
                f"{backbone:5s} {axis:16s} agreed pairs {e['accuracy_unanimous']:.1%} [{low:.1%}, {high:.1%}] "
                f"(n={e['unanimous_pairs']}) majority {e['accuracy']:.1%} [{e['accuracy_ci95'][0]:.1%}, "
                f"{e['accuracy_ci95'][1]:.1%}] "
                f"ECE {e['ece']:.3f}  single human {e.get('single_human_accuracy', float('nan')):.1%}"
            )
    gaps = {
        axis: results["token"]["axes"][axis]["accuracy_unanimous"]
        - results["pixel"]["axes"][axis]["accuracy_unanimous"]
        for axis in results["pixel"]["axes"]
    }
    print("token minus pixel, agreed pairs: " + ", ".join(f"{a} {100 * g:+.1f} points" for a, g in gaps.items()))

    ids = list(heldout.candidates.index[: args.batch])
    prompts = [str(heldout.candidates.at[c, "prompt"]) for c in ids]
    tokens = torch.tensor(heldout.tokens(ids))
    pixel, token = models["pixel"], models["token"]

    def pixel_path():
        pixel.score(images=codec.decode(tokens), prompts=prompts)

    def token_path():
        token.score(prompts=prompts, tokens=tokens)

    # One member of the pixel ensemble, to show what the ensemble costs on its own.
    one = RewardModel(pixel.config.model_copy(update={"members": 1})).eval()
    one.members[0].load_state_dict(pixel.members[0].state_dict())

    images = codec.decode(tokens)
    best = best_times(
        {
            "pixel": pixel_path,
            "token": token_path,
            "pixel_only": lambda: pixel.score(images=images, prompts=prompts),
            "pixel_one_member": lambda: one.score(images=codec.decode(tokens), prompts=prompts),
        }
    )
    t_pixel, t_token, t_pixel_only = best["pixel"], best["token"], best["pixel_only"]
    print(f"scoring {len(ids)} candidates from their image tokens ({args.threads} threads):")
    print(
        f"  pixel backbone ({len(pixel.members)} members), decode + score: {t_pixel * 1000:.0f} ms "
        f"({len(ids) / t_pixel:.0f} images/s); score only, images given: {t_pixel_only * 1000:.0f} ms; one member, "
        f"decode + score: {best['pixel_one_member'] * 1000:.0f} ms"
    )
    print(f"  token backbone, score tokens:   {t_token * 1000:.0f} ms ({len(ids) / t_token:.0f} images/s)")
    print(
        f"  speed-up of the token path: {t_pixel / t_token:.1f}x (vs pixel score only: {t_pixel_only / t_token:.1f}x; "
        f"vs one pixel member: {best['pixel_one_member'] / t_token:.1f}x)"
    )
    results["timing"] = {
        "batch": len(ids),
        "pixel_decode_and_score_s": t_pixel,
        "pixel_score_only_s": t_pixel_only,
        "pixel_one_member_decode_and_score_s": best["pixel_one_member"],
        "token_score_s": t_token,
        "speedup": t_pixel / t_token,
    }
    (work / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
