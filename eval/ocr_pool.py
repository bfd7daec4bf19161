"""Read many images with single-threaded OCR processes, one per free core (``OCRPool``,
``read_many``), or in this process when a pool would not be faster.

One process per core uses the CPU better than onnxruntime's threads at the sizes generators
produce, but only on cores that are free: starting a worker (a new interpreter, its imports and
the models) costs about as much as reading a few dozen images, and on a machine whose cores are
busy with other work the workers only share the same cores with it. ``choose_workers`` therefore
counts the cores this process may use that other processes leave free (the load average, bounded
by the cores busy right now), and the images each worker would get, and reads in this process
when fewer than two workers would pay off
(``benchmarks/eval.py`` measures both). Workers are started with ``spawn``, so a script that
calls this needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
import os
import time
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


# Starting a worker costs about as much as reading this many images in this process (a new
# interpreter, numpy, PIL and onnxruntime imports, the models: 1-2 s on a quiet core), so a worker
# pays off only with at least this many images to read.
MIN_IMAGES_PER_WORKER = 48


# A core counts as free when others use at most this share of it (the busy cores measured over a
# quarter of a second are never exactly 0, nor is the load of an idle machine).
FREE_SHARE_SLACK = 0.25
# How long ``busy_cores`` watches the machine's CPU counters.
BUSY_SAMPLE_SECONDS = 0.25


def machine_load() -> float:
    """The machine's one-minute load average (runnable tasks), or 0 where the system has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Unix
        return 0.0


def _cpu_counters() -> tuple[int, int] | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(fields), fields[3] + fields[4]  # all time, idle time (idle and waiting for I/O)


def busy_cores(seconds: float = BUSY_SAMPLE_SECONDS) -> float | None:
    """How many of the machine's cores other processes kept busy over the next ``seconds``
    (this process waits meanwhile), from Linux's CPU counters; None where there are none."""
    first = _cpu_counters()
    if first is None:
        return None
    time.sleep(seconds)
    second = _cpu_counters()
    if second is None or second[0] <= first[0]:
        return None
    busy_share = 1.0 - (second[1] - first[1]) / (second[0] - first[0])
    return max(0.0, busy_share) * (os.cpu_count() or 1)


def choose_workers(
    images: int | None,
    cores: int | None = None,
    load: float | None = None,
    machine_cores: int | None = None,
    busy: float | None = None,
) -> tuple[int, str]:
    """How many OCR processes to read ``images`` images with, and why, in words.

    ``cores`` are the cores this process may run on (``available_cores``), ``load`` the
    machine's one-minute load average, ``machine_cores`` all the machine's cores and ``busy`` the
    cores other processes keep busy right now (``busy_cores``); each is read from the system when
    not given (``busy`` only when ``load`` is not given either: tests pass them). The load counts
    this process once (it is working when it asks) and lags a minute behind: right after this
    process generated images on every core it still says the machine is full, so the busy cores
    measured now bound it. The other processes' share of the machine falls on this process's
    cores in proportion; a core that they use at most a quarter of counts as free. A pool gets one
    worker per free core and per ``MIN_IMAGES_PER_WORKER`` images; with fewer than two the answer
    is 1: read in this process, which is never slower than a pool of one. ``images=None`` means
    "many".
    """
    cores = available_cores() if cores is None else max(1, cores)
    machine_cores = max(cores, os.cpu_count() or cores) if machine_cores is None else max(cores, machine_cores)
    by_work = cores if images is None else images // MIN_IMAGES_PER_WORKER
    if load is None:
        load = machine_load()
        if busy is None and by_work >= 2 and cores >= 2:  # only worth the wait when a pool may pay
            busy = busy_cores()
    load = max(0.0, load)
    others = max(0.0, load - 1.0)
    if busy is not None:
        others = min(others, max(0.0, busy))
    free = int(cores - others * cores / machine_cores + FREE_SHARE_SLACK)
    workers = min(free, by_work)
    reason = f"{max(free, 0)} of {cores} cores free (load {load:.1f}"
    reason += f", {busy:.1f} cores busy now)" if busy is not None else ")"
    if images is not None:
        reason += f", {images} images"
    if workers < 2:
        return 1, f"in this process: {reason}"
    return workers, f"{workers} processes: {reason}"


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
    """A pool of OCR processes, one single-threaded engine per worker, kept alive between calls.

    Use it as a context manager when reading several batches (evaluation, benchmarks): starting
    the processes and loading the models costs a second or two per worker. ``workers=None``
    lets ``choose_workers`` decide from the free cores and ``images``, the number of images the
    pool will read (None: many); ``workers=N`` starts N. With one worker it reads in this process
    and starts nothing. ``choice`` says in words what was chosen and why.
    """

    def __init__(
        self,
        engine: str | OCREngine = DEFAULT_ENGINE,
        workers: int | None = None,
        images: int | None = None,
        **settings: Any,
    ) -> None:
        if isinstance(engine, str):
            engine = get_engine(engine, **settings)
        elif settings:
            raise BadInputError("pass OCR settings either to get_engine or to OCRPool, not both")
        self.engine = engine
        if workers is None:
            self.workers, self.choice = choose_workers(images)
        else:
            self.workers = max(1, workers if images is None else min(workers, max(1, images)))
            self.choice = f"{self.workers} processes, as asked" if self.workers > 1 else "in this process, as asked"
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
    """Read many images (PIL images or file paths) with one OCR process per free core, in order.

    ``workers`` defaults to ``choose_workers``'s choice for this many images (in this process when
    a pool would not be faster); ``workers=1`` reads in this process.
    The engine is given by name plus settings, or as an engine from ``get_engine`` (its settings
    are rebuilt in each worker). ``progress`` is a label for a progress bar, or None for none.
    """
    with OCRPool(engine, workers=workers or None, images=len(sources), **settings) as pool:
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
