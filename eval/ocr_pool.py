"""Read many images with one single-threaded OCR process per core (``OCRPool``, ``read_many``).

One process per core uses the CPU better than onnxruntime's threads at the sizes generators
produce (``benchmarks/eval.py`` measures it). Workers are started with ``spawn``, so
a script that calls this needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from PIL import Image

from imagepref.errors import BadInputError
from imagepref.eval.ocr import DEFAULT_ENGINE, OCREngine, OCRWord, get_engine, load_image

ImageSource = Image.Image | str | os.PathLike
# Keys of ``settings`` that describe an engine rather than configure it.
_DESCRIPTIVE_SETTINGS = ("engine", "version")


def available_cores() -> int:
    """The number of CPU cores this process may run on (respects affinity and cgroup pinning)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_worker_engine: OCREngine | None = None


def _start_worker(name: str, options: dict[str, Any]) -> None:
    # One single-threaded OCR process per core: pin every math library to one thread before the
    # engine loads, or each worker would start as many threads as there are cores.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    global _worker_engine
    _worker_engine = get_engine(name, **options)


def _read_in_worker(source: ImageSource) -> list[OCRWord]:
    assert _worker_engine is not None, "OCR worker used before _start_worker"
    image = source if isinstance(source, Image.Image) else load_image(source)
    return _worker_engine.read(image)


class OCRPool:
    """A pool of OCR processes, one single-threaded engine per core, kept alive between calls.

    Use it as a context manager when reading several batches (evaluation, benchmarks): starting
    the processes and loading the models costs about a second per worker. With ``workers=1`` it
    reads in this process and starts nothing.
    """

    def __init__(self, engine: str | OCREngine = DEFAULT_ENGINE, workers: int | None = None, **settings: Any) -> None:
        if isinstance(engine, str):
            engine = get_engine(engine, **settings)
        elif settings:
            raise BadInputError("pass OCR settings either to get_engine or to OCRPool, not both")
        self.engine = engine
        self.workers = max(1, workers if workers is not None else available_cores())
        self._pool: Any = None

    def __enter__(self) -> OCRPool:
        if self.workers > 1:
            options = {k: v for k, v in self.engine.settings.items() if k not in _DESCRIPTIVE_SETTINGS}
            # spawn, not fork: the parent may hold torch or onnxruntime thread pools, which a
            # forked child inherits in a locked state.
            context = multiprocessing.get_context("spawn")
            self._pool = context.Pool(self.workers, initializer=_start_worker, initargs=(self.engine.name, options))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def iter_read(self, sources: Sequence[ImageSource]) -> Iterator[list[OCRWord]]:
        """Read each image (or image file) and yield its words, in the order given."""
        if self._pool is None:
            for source in sources:
                yield self.engine.read(source if isinstance(source, Image.Image) else load_image(source))
            return
        yield from self._pool.imap(_read_in_worker, sources, chunksize=1)

    def read_many(self, sources: Sequence[ImageSource], progress: str | None = None) -> list[list[OCRWord]]:
        """Read every image and return the words of each, in order; ``progress`` labels a bar."""
        return list(_with_progress(self.iter_read(sources), len(sources), progress))


def read_many(
    sources: Sequence[ImageSource],
    engine: str | OCREngine = DEFAULT_ENGINE,
    workers: int | None = None,
    progress: str | None = None,
    **settings: Any,
) -> list[list[OCRWord]]:
    """Read many images (PIL images or file paths) with one OCR process per core, in order.

    ``workers`` defaults to the cores this process may use; ``workers=1`` reads in this process.
    The engine is given by name plus settings, or as an engine from ``get_engine`` (its settings
    are rebuilt in each worker). ``progress`` is a label for a progress bar, or None for none.
    """
    with OCRPool(engine, workers=min(workers or available_cores(), max(1, len(sources))), **settings) as pool:
        return pool.read_many(sources, progress=progress)


def _with_progress(items: Iterable[Any], total: int, label: str | None) -> Iterator[Any]:
    if label is None:
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)
