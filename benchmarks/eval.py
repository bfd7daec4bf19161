"""OCR throughput for evaluation: reading in one process against a pool of OCR processes.

    .venv/bin/python benchmarks/eval.py                    # rapidocr, 96 images
    .venv/bin/python benchmarks/eval.py --engine tesseract --images 200 --workers 2

Every figure is end to end, as an evaluation sees it: the pool's start-up (new interpreters,
imports, models) counts. Three ways are timed over the same images: one process with one thread
(what ``workers=1`` does), a pool of ``--workers`` processes (default: every core this process may
use), and the pool size ``choose_workers`` picks from the free cores and the number of images
(the default everywhere). Each prints its ratio to one process; the chosen one must never fall
below about 1.0x. The load average is printed before and after: on a shared machine the figures
move with it.
"""

from __future__ import annotations

import argparse
import time

from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_pool import OCRPool, available_cores, choose_workers, machine_load
from imagepref.eval.ocr_truth import truth_set


def seconds_to_read(images: list, workers: int | None, engine_name: str) -> tuple[float, str]:
    """Wall seconds to start a pool (or not) and read ``images``, and the pool's choice."""
    started = time.perf_counter()
    with OCRPool(get_engine(engine_name), workers=workers, images=len(images)) as pool:
        pool.read_many(images)
    return time.perf_counter() - started, pool.choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="rapidocr", choices=["rapidocr", "tesseract"])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--workers", type=int, default=available_cores(), help="size of the fixed pool")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds; the best of each way is kept")
    args = parser.parse_args()

    per_cell = max(1, -(-args.images // 18))  # ceil: 3 sizes x 6 degradations per round
    images = [item.image for item in truth_set(per_cell=per_cell, blanks=0, seed=7)][: args.images]
    print(
        f"{args.engine}: {len(images)} truth-set images (64/128/256 px), {available_cores()} cores available, "
        f"load {machine_load():.2f}; choose_workers now says: {choose_workers(len(images))[1]}"
    )
    get_engine(args.engine).read(images[0])  # this process's models are loaded before timing
    best: dict[str, float] = {}
    choices: dict[str, str] = {}
    for _ in range(args.repeats):  # interleaved, so a change in load hits every way alike
        for label, workers in (("one process", 1), (f"{args.workers} processes", args.workers), ("chosen", None)):
            seconds, choice = seconds_to_read(images, workers, args.engine)
            best[label] = min(best.get(label, float("inf")), seconds)
            choices[label] = choice
    serial = best["one process"]
    for label, seconds in best.items():
        print(
            f"{label:>14}: {seconds:6.2f} s, {len(images) / seconds:6.2f} images/s, "
            f"{serial / seconds:4.2f}x one process   ({choices[label]})"
        )
    print(f"load after: {machine_load():.2f}")


if __name__ == "__main__":
    main()
