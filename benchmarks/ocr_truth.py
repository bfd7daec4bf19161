"""How well does each OCR engine read text we rendered ourselves? Figures per engine, truth set,
size and style, on blanks, with 95 % intervals, and the time per image.

    .venv/bin/python benchmarks/ocr_truth.py                          # both sets, the two engines
    .venv/bin/python benchmarks/ocr_truth.py --sweep --engine rapidocr  # the settings chosen between
    .venv/bin/python benchmarks/ocr_truth.py --set other-fonts --per-cell 20 --workers 2

Two truth sets (``eval/ocr_truth.py``): ``dejavu``, drawn with the DejaVu faces the glyph world
also uses, and ``other-fonts``, another renderer with Debian's fonts, colours, textures and
degradations. The settings in ``eval/ocr.py`` were chosen from the ``--sweep`` figures on both
(docs/benchmarks.md, OCR).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_truth import TRUTH_SETS, measure_engine

DEFAULTS = [("rapidocr", {}), ("tesseract", {})]
SWEEP = [
    ("rapidocr", {"use_angle_classifier": True, "det_limit_type": "min", "det_limit_side_len": 736}),
    ("rapidocr", {"upscale_to": 512}),
    ("rapidocr", {"upscale_to": 256}),
    ("rapidocr", {"horizontal_only": False}),
    ("rapidocr", {"det_thresh": 0.2, "det_box_thresh": 0.3}),
    ("rapidocr", {"det_unclip_ratio": 2.0}),
    ("rapidocr", {"pad": 0.1}),
    ("tesseract", {"psm": "SINGLE_LINE"}),
    ("tesseract", {"psm": "SINGLE_BLOCK"}),
    ("tesseract", {"psm": "AUTO"}),
    ("tesseract", {"upscale_to": 0}),
    ("tesseract", {"upscale_to": 512}),
]


def percent(figure: dict) -> str:
    low, high = figure["word_accuracy_ci"]
    return f"{figure['word_accuracy']:.1%} [{low:.1%}, {high:.1%}]"


def print_figures(label: str, set_name: str, figures: dict) -> None:
    """Print one engine's figures on one truth set: word accuracy per size and style."""
    print(f"\n== {set_name}: {label}   ({figures['seconds_per_image']:.3f} s/image wall, {figures['workers']} workers)")
    styles = list(figures["by_degradation"])
    print("size   " + "".join(f"{d:>13}" for d in styles) + "   all (95 % interval)")
    for size, by_size in figures["by_size"].items():
        cells = [figures["cells"].get(f"{size}px/{d}", {}).get("word_accuracy") for d in styles]
        row = "".join(f"{c:>13.1%}" if c is not None else f"{'-':>13}" for c in cells)
        print(f"{size:>4}px{row}   {percent(by_size)}")
    print(
        f"word accuracy, all text images: {percent(figures['all_text'])}   "
        f"exact match: {figures['all_text']['exact_match']:.1%}   "
        f"no text read on blanks: {figures['blank_no_text_rate']:.1%} of {figures['blanks']} plain, "
        f"{figures['blank_busy_no_text_rate']:.1%} of {figures['blank_busys']} crowded with shapes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=[*TRUTH_SETS, "both"], default="both", help="which truth set")
    parser.add_argument("--engine", choices=["rapidocr", "tesseract"], help="only this engine")
    parser.add_argument("--per-cell", type=int, default=10, help="images per (size, style)")
    parser.add_argument("--blanks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="OCR processes (default: chosen)")
    parser.add_argument("--sweep", action="store_true", help="also measure the alternative settings")
    parser.add_argument("--json", type=Path, help="write every figure here too")
    args = parser.parse_args()

    names = list(TRUTH_SETS) if args.set == "both" else [args.set]
    sets = {name: TRUTH_SETS[name](per_cell=args.per_cell, blanks=args.blanks, seed=args.seed) for name in names}
    for name, images in sets.items():
        print(f"truth set {name}: {len(images)} images ({args.per_cell} per size x style, {args.blanks} blanks)")
    results = []
    for engine_name, settings in DEFAULTS + (SWEEP if args.sweep else []):
        if args.engine and engine_name != args.engine:
            continue
        engine = get_engine(engine_name, **settings)
        label = " ".join(f"{k}={v}" for k, v in settings.items()) or "default settings"
        for set_name, images in sets.items():
            figures = measure_engine(engine, images, workers=args.workers)
            print_figures(f"{engine_name} {label}", set_name, figures)
            results.append({"set": set_name, "seed": args.seed, **figures})
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
