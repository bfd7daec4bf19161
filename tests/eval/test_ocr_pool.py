"""How many OCR processes a pool starts: never more than the free cores and the work pay for."""

from __future__ import annotations

import os

import pytest

from imagepref.eval import ocr_pool
from imagepref.eval.ocr_pool import (
    MIN_IMAGES_PER_WORKER,
    OCRPool,
    available_cores,
    busy_cores,
    choose_workers,
    machine_load,
)


def test_a_quiet_machine_gets_one_worker_per_core():
    # Load 1.0 is this process itself.
    assert choose_workers(500, cores=2, load=1.0, machine_cores=2) == (
        2,
        "2 processes: 2 of 2 cores free (load 1.0), 500 images",
    )
    assert choose_workers(None, cores=16, load=0.2, machine_cores=16)[0] == 16


@pytest.mark.parametrize("load", [1.9, 2.5, 3.6, 15.0])
def test_a_loaded_machine_reads_in_this_process(load):
    # The loads of the runs where a 2-worker pool was slower than one process (0.95x, 0.70x).
    workers, reason = choose_workers(500, cores=2, load=load, machine_cores=2)
    assert workers == 1
    assert reason.startswith("in this process: ") and f"(load {load:.1f})" in reason


def test_partly_free_cores_give_a_smaller_pool():
    assert choose_workers(1000, cores=8, load=4.0, machine_cores=8)[0] == 5
    assert choose_workers(1000, cores=8, load=6.5, machine_cores=8)[0] == 2
    assert choose_workers(1000, cores=8, load=7.5, machine_cores=8)[0] == 1


def test_the_load_is_shared_over_the_whole_machine():
    # 4 of 16 cores are ours; 8 runnable tasks besides this one fall on them in proportion: 2.
    assert choose_workers(1000, cores=4, load=9.0, machine_cores=16)[0] == 2


def test_small_work_does_not_pay_for_starting_workers():
    assert choose_workers(2 * MIN_IMAGES_PER_WORKER - 1, cores=16, load=0.0, machine_cores=16)[0] == 1
    assert choose_workers(2 * MIN_IMAGES_PER_WORKER, cores=16, load=0.0, machine_cores=16)[0] == 2
    assert choose_workers(5 * MIN_IMAGES_PER_WORKER + 3, cores=16, load=0.0, machine_cores=16)[0] == 5
    assert choose_workers(0, cores=16, load=0.0, machine_cores=16)[0] == 1


def test_the_cores_busy_now_bound_a_load_average_that_lags():
    # Right after this process generated images on both cores the one-minute load still says 3,
    # but nothing else is running: both cores are free.
    assert choose_workers(500, cores=2, load=3.0, machine_cores=2, busy=0.1) == (
        2,
        "2 processes: 2 of 2 cores free (load 3.0, 0.1 cores busy now), 500 images",
    )
    # Others busy now and for the last minute: no pool.
    assert choose_workers(500, cores=2, load=3.6, machine_cores=2, busy=1.8)[0] == 1
    # Busy now beyond what the load says: the load (this process counted once) still bounds it.
    assert choose_workers(500, cores=2, load=1.5, machine_cores=2, busy=2.0)[0] == 1
    assert choose_workers(1000, cores=8, load=9.0, machine_cores=8, busy=3.0)[0] == 5


def test_the_system_is_read_when_nothing_is_injected(monkeypatch):
    every_core = os.cpu_count() or 1
    monkeypatch.setattr("os.getloadavg", lambda: (40.0, 1.0, 1.0))
    monkeypatch.setattr(ocr_pool, "busy_cores", lambda: float(every_core))
    assert machine_load() == 40.0
    assert choose_workers(10_000) == (
        1,
        f"in this process: 0 of {available_cores()} cores free (load 40.0, {every_core:.1f} cores busy now), "
        "10000 images",
    )
    monkeypatch.setattr("os.getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(ocr_pool, "busy_cores", lambda: 0.0)
    expected = available_cores() if available_cores() > 1 else 1
    assert choose_workers(10_000)[0] == expected


def test_busy_cores_reads_the_machine():
    busy = busy_cores(0.05)
    assert busy is None or 0.0 <= busy <= (os.cpu_count() or 1)


@pytest.mark.integration
def test_a_pool_that_would_not_pay_reads_in_this_process():
    with OCRPool(workers=None, images=MIN_IMAGES_PER_WORKER - 1) as pool:
        assert pool.workers == 1 and pool._pool is None
        assert pool.choice.startswith("in this process")
    asked = OCRPool(workers=3, images=2)  # honoured, up to one process per image (none started yet)
    assert asked.workers == 2 and asked.choice == "2 processes, as asked"
