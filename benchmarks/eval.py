"""OCR throughput for evaluation: one single-threaded OCR process per core against one process.

    .venv/bin/python benchmarks/eval.py                    # rapidocr, 64 images, all cores
    .venv/bin/python benchmarks/eval.py --engine tesseract --images 200

One process with one thread is what a user gets from calling the engine in a loop; one process
with onnxruntime's default threads is the other thing a user would try. Pools are started and
warmed before timing; the start-up cost is printed on its own.
"""

from __future__ import annotations

import argparse
import time

from imagepref.eval.ocr import get_engine
from imagepref.eval.ocr_pool import OCRPool, available_cores
from imagepref.eval.ocr_truth import truth_set


def images_per_second(pool: OCRPool, images: list, repeats: int) -> float:
    """The best of ``repeats`` timed passes over ``images``, in images per second."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        pool.read_many(images)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", default="rapidocr", choices=["rapidocr", "tesseract"])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    per_cell = max(1, -(-args.images // 18))  # ceil: 3 sizes x 6 degradations per round
    images = [item.image for item in truth_set(per_cell=per_cell, blanks=0, seed=7)][: args.images]
    print(f"{args.engine}: {len(images)} truth-set images (64/128/256 px), {available_cores()} cores available")

    one = OCRPool(get_engine(args.engine), workers=1)
    one.read_many(images[:2])  # load the models before timing
    serial = images_per_second(one, images, args.repeats)
    print(f"one process, one thread      : {serial:6.2f} images/s")
    if args.engine == "rapidocr":
        threaded = OCRPool(get_engine("rapidocr", threads=-1), workers=1)
        threaded.read_many(images[:2])
        print(f"one process, default threads : {images_per_second(threaded, images, args.repeats):6.2f} images/s")

    started = time.perf_counter()
    with OCRPool(get_engine(args.engine), workers=args.workers) as pool:
        pool.read_many(images[: args.workers * 2])  # every worker has loaded its models
        print(f"starting {args.workers} workers took {time.perf_counter() - started:.1f} s (once per evaluation)")
        parallel = images_per_second(pool, images, args.repeats)
    print(f"{args.workers} processes, one thread each: {parallel:6.2f} images/s")
    print(f"speed-up, {args.workers} processes vs one: {parallel / serial:.2f}x")


if __name__ == "__main__":
    main()
