"""Alignment throughput: DPO with LoRA and a precomputed reference vs a full fine-tune with a
reference copy (step time and peak memory, side by side with the ratio), and GRPO steps/s.

    .venv/bin/python benchmarks/align.py [--model DIR] [--steps 6] [--batch-size 8]
    .venv/bin/python benchmarks/align.py --size 150 [--steps 2] [--batch-size 1]

Each configuration runs in its own process, so the peak resident memory (CPU) or peak CUDA
memory belongs to it alone. Defaults to the shipped glyph-world generator. The shipped model has
4 M parameters, where the process's libraries dominate memory: ``--size M`` instead builds a
random Llama-shaped glyph generator of about M million parameters (untrained weights train and
cost the same as trained ones), saves it to a temporary folder and compares the two DPO set-ups
on it (GRPO is skipped: sampling a random model of that size is not what the option measures).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "policy" / "glyphworld" / "pretrained"


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def llama_shape(millions: float) -> dict:
    """Width and depth of a Llama-shaped glyph generator of about ``millions`` M parameters.

    Hidden sizes step by 128 at 12 layers (8 heads, MLP 3x as the glyph family builds it); a
    layer holds 4 h^2 attention and 9 h^2 MLP weights, so parameters ~ 13 * 12 * h^2."""
    layers = 12
    hidden = max(128, round((millions * 1e6 / (13 * layers)) ** 0.5 / 128) * 128)
    return {"hidden_size": hidden, "layers": layers, "heads": 8}


def build_sized_generator(millions: float, folder: Path) -> int:
    """Save a random glyph generator of about ``millions`` M parameters into ``folder``; returns
    its parameter count."""
    from imagepref.policy.families.glyph import GlyphGenerator
    from imagepref.policy.pretrain import PretrainConfig, fit_codec

    codec = fit_codec(PretrainConfig(num_shapes=256, codec_images=400, codec_iterations=2))
    generator = GlyphGenerator.create(codec, **llama_shape(millions))
    generator.save_pretrained(folder)
    return sum(p.numel() for p in generator.model.parameters())


def measure(kind: str, model: str, steps: int, batch_size: int) -> dict:
    """Run one configuration in this process and return its figures."""
    from transformers import TrainerCallback

    from imagepref.policy.align import DPOSettings, GRPOSettings, build_rewards
    from imagepref.policy.align.dpo import build_dpo_trainer
    from imagepref.policy.align.grpo import ImageGRPOTrainer, grpo_arguments, prompt_dataset
    from imagepref.policy.generator import load_generator
    from imagepref.policy.glyphworld import training_specs

    generator = load_generator(model, device="cuda" if __import__("torch").cuda.is_available() else None)
    prompts = [s.prompt for s in training_specs(64, 0)]
    out = Path(tempfile.mkdtemp()) / "run"
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.started)

    common = dict(steps=steps + 1, batch_size=batch_size, save_every=10_000, monitor_every=0, report_to=[])
    if kind == "grpo":
        settings = GRPOSettings(**common, num_generations=min(8, batch_size))
        functions, weights = build_rewards({"rule_safety": 1.0, "rule_aesthetics": 1.0}, generator)
        trainer = ImageGRPOTrainer(
            generator, settings, functions, grpo_arguments(settings, out, generator, weights), prompt_dataset(prompts)
        )
    else:
        samples = generator.sample(prompts[: 2 * batch_size], seed=0, decode=False)
        examples = [
            {
                "prompt_ids": samples.prompt_ids[i],
                "chosen_ids": samples.completion_ids[i].tolist(),
                "rejected_ids": samples.completion_ids[(i + 1) % len(prompts[: 2 * batch_size])].tolist(),
            }
            for i in range(2 * batch_size)
        ]
        lora = kind == "dpo-lora-precomputed"
        settings = DPOSettings(**common, lora=lora, precompute_ref_log_probs=lora)
        trainer = build_dpo_trainer(generator, examples, settings, out)
    trainer.add_callback(Clock())
    trainer.train()
    step = sum(times[1:]) / len(times[1:])  # the first step warms up
    return {"kind": kind, "seconds_per_step": step, "steps_per_second": 1 / step, "peak_memory_mb": peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHIPPED))
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--size",
        type=float,
        help="build a random Llama-shaped generator of about this many million parameters (100-300 "
        "shows what LoRA saves) and compare the DPO set-ups on it instead of --model",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.model, args.steps, args.batch_size)))
        return
    kinds = ("dpo-lora-precomputed", "dpo-full-copy", "grpo")
    if args.size:
        args.model = str(Path(tempfile.mkdtemp()) / "generator")
        count = build_sized_generator(args.size, Path(args.model))
        print(f"random Llama-shaped glyph generator: {count / 1e6:.1f} M parameters, {llama_shape(args.size)}")
        kinds = kinds[:2]
    figures = {}
    for kind in kinds:
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                kind,
                "--model",
                args.model,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if result.returncode != 0:
            sys.exit(f"{kind} failed:\n{result.stderr[-3000:]}")
        figures[kind] = json.loads(result.stdout.strip().splitlines()[-1])
    lora, full = figures["dpo-lora-precomputed"], figures["dpo-full-copy"]
    print(f"model {args.model}, batch {args.batch_size}, {args.steps} timed steps")
    print(f"{'':34}{'s/step':>10}{'peak MB':>10}")
    for kind in ("dpo-lora-precomputed", "dpo-full-copy"):
        print(f"{kind:34}{figures[kind]['seconds_per_step']:>10.3f}{figures[kind]['peak_memory_mb']:>10.0f}")
    print(
        f"full copy / LoRA+precomputed: step time x{full['seconds_per_step'] / lora['seconds_per_step']:.2f}, "
        f"peak memory x{full['peak_memory_mb'] / lora['peak_memory_mb']:.2f}"
    )
    if "grpo" in figures:
        print(
            f"GRPO: {figures['grpo']['steps_per_second']:.3f} steps/s ({args.batch_size} images per step, rule rewards)"
        )


if __name__ == "__main__":
    main()
