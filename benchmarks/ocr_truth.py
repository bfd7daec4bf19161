"""How well does each OCR engine read text we rendered ourselves? Figures per engine, per size and
per degradation, on blanks, and the time per image.

    .venv/bin/python benchmarks/ocr_truth.py                 # the two engines at their settings
    .venv/bin/python benchmarks/ocr_truth.py --sweep         # also the settings we chose between
    .venv/bin/python benchmarks/ocr_truth.py --per-cell 20 --blanks 60 --workers 2

The settings in ``eval/ocr.py`` were chosen from the ``--sweep`` figures (docs/benchmarks.md, OCR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_truth import DEGRADATIONS, SIZES, measure_engine, truth_set

DEFAULTS = [("rapidocr", {}), ("tesseract", {})]
SWEEP = [
    ("rapidocr", {"use_angle_classifier": True, "det_limit_type": "min", "det_limit_side_len": 736}),
    ("rapidocr", {"upscale_to": 512}),
    ("rapidocr", {"upscale_to": 256}),
    ("rapidocr", {"horizontal_only": False}),
    ("tesseract", {"psm": "SINGLE_LINE"}),
    ("tesseract", {"psm": "SINGLE_BLOCK"}),
    ("tesseract", {"psm": "AUTO"}),
    ("tesseract", {"upscale_to": 0}),
    ("tesseract", {"upscale_to": 512}),
]


def print_figures(label: str, figures: dict) -> None:
    """Print one engine's truth-set figures as a small table."""
    print(f"\n== {label}   ({figures['seconds_per_image']:.3f} s/image wall, {figures['workers']} workers)")
    header = "size   " + "".join(f"{d:>10}" for d in DEGRADATIONS) + "       all"
    print(header)
    for size in SIZES:
        cells = [figures["cells"].get(f"{size}px/{d}", {}).get("word_accuracy") for d in DEGRADATIONS]
        row = "".join(f"{c:>10.1%}" if c is not None else f"{'-':>10}" for c in cells)
        print(f"{size:>4}px{row}{figures['by_size'][size]['word_accuracy']:>10.1%}")
    print(
        f"word accuracy, all text images: {figures['all_text']['word_accuracy']:.1%}   "
        f"exact match: {figures['all_text']['exact_match']:.1%}   "
        f"no text read on blanks: {figures['blank_no_text_rate']:.1%} of {figures['blanks']} plain, "
        f"{figures['blank_busy_no_text_rate']:.1%} of {figures['blank_busys']} crowded with shapes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=10, help="images per (size, degradation)")
    parser.add_argument("--blanks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="OCR processes (default: all cores)")
    parser.add_argument("--sweep", action="store_true", help="also measure the alternative settings")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()

    images = truth_set(per_cell=args.per_cell, blanks=args.blanks, seed=args.seed)
    print(
        f"truth set: {len(images)} images ({args.per_cell} per size x degradation, {args.blanks} blanks), seed {args.seed}"
    )
    results = []
    for name, settings in DEFAULTS + (SWEEP if args.sweep else []):
        engine = get_engine(name, **settings)
        figures = measure_engine(engine, images, workers=args.workers)
        label = (
            f"{name} " + " ".join(f"{k}={v}" for k, v in settings.items()) if settings else f"{name} (default settings)"
        )
        print_figures(label, figures)
        results.append(figures)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
