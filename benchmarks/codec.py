"""How well OCR reads the codec's reconstructions of held-out signs, against the originals.

Prints word accuracy (RapidOCR, the evaluation's default engine and settings) on original
held-out signs and on their reconstructions through the shipped codec, and the ratio. Run:

    .venv/bin/python benchmarks/codec.py [--codec DIR] [--signs 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = Path(__file__).resolve().parents[1] / "policy" / "glyphworld" / "pretrained" / "codec"
    parser.add_argument("--codec", default=str(shipped))
    parser.add_argument("--signs", type=int, default=200)
    args = parser.parse_args()
    from imagepref.eval.ocr import get_engine
    from imagepref.policy.codec import load_codec
    from imagepref.policy.glyphworld import heldout_specs, render
    from imagepref.policy.glyphworld.rules import _normalise

    codec = load_codec(args.codec)
    specs = heldout_specs(args.signs, seed=77)
    originals = [render(s) for s in specs]
    started = time.perf_counter()
    reconstructions = codec.decode(codec.encode(originals))
    seconds = time.perf_counter() - started
    engine = get_engine("rapidocr")
    correct = {"original": 0, "reconstruction": 0}
    for spec, original, rebuilt in zip(specs, originals, reconstructions):
        correct["original"] += _normalise(engine.read_text(original)) == spec.text
        correct["reconstruction"] += _normalise(engine.read_text(rebuilt)) == spec.text
    original, rebuilt = (correct[k] / len(specs) for k in ("original", "reconstruction"))
    print(f"codec {args.codec}: {codec.num_codes} codes, {codec.tokens_per_image} per image")
    print(f"OCR engine {engine.name} {engine.settings}")
    print(f"held-out signs            {len(specs)}")
    print(f"word accuracy, originals  {100 * original:.1f} %")
    print(f"word accuracy, codec      {100 * rebuilt:.1f} %")
    print(f"ratio                     {rebuilt / max(original, 1e-9):.3f}")
    print(f"encode+decode             {1000 * seconds / len(specs):.2f} ms per image")


if __name__ == "__main__":
    main()
