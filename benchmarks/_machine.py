"""What every benchmark shares: the load average, a busy-machine check, steady timing.

A benchmark on a busy machine measures the other processes as much as our
code. Each benchmark therefore

* prints the 1/5/15-minute load average before and after it runs (to stderr,
  and in its JSON line as ``load_average_before`` / ``load_average_after``);
* refuses to run when the machine is busy before it starts (1-minute load
  above ``BUSY_LOAD_PER_CORE`` per core), unless ``--allow-busy`` is given:
  then its JSON line carries ``"busy": true`` and
  ``"figures": "measured under load, not comparable"``;
* times repeated windows after a warm-up and reports the median with the
  spread (:func:`timed_windows`), never a single run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

BUSY_LOAD_PER_CORE = 0.3
"""A 1-minute load average above this, per core, before a run counts as busy."""

EXIT_BUSY = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--allow-busy`` to a benchmark's options."""
    parser.add_argument(
        "--allow-busy",
        action="store_true",
        help="run even when the machine is busy; the figures are flagged as measured under load",
    )


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded."""
    return [round(value, 2) for value in os.getloadavg()]


def start(name: str, *, allow_busy: bool) -> dict[str, Any]:
    """Check the machine before a benchmark; the first fields of its record.

    Args:
        name: The benchmark's name.
        allow_busy: Run (flagged) even on a busy machine.

    Returns:
        ``{"benchmark", "cpu_count", "load_average_before", "busy"}``.

    Raises:
        SystemExit: With code 3 when the machine is busy and ``allow_busy`` is false.
    """
    cores = os.cpu_count() or 1
    before = load_average()
    busy = before[0] > BUSY_LOAD_PER_CORE * cores
    print(f"{name}: load average before {before} on {cores} cores", file=sys.stderr)
    if busy and not allow_busy:
        msg = (
            f"{name}: the machine is busy (1-minute load {before[0]} on {cores} cores, "
            f"more than {BUSY_LOAD_PER_CORE} per core): its figures would measure the other "
            "processes. Rerun when it is idle, or pass --allow-busy to get figures flagged "
            "as measured under load."
        )
        print(msg, file=sys.stderr)
        raise SystemExit(EXIT_BUSY)
    return {"benchmark": name, "cpu_count": cores, "load_average_before": before, "busy": busy}


def finish(record: dict[str, Any]) -> None:
    """Add the load average after the run and the busy flag, then print the JSON line."""
    after = load_average()
    record["load_average_after"] = after
    print(f"{record['benchmark']}: load average after {after}", file=sys.stderr)
    if record.get("busy"):
        record["figures"] = "measured under load, not comparable"
    print(json.dumps(record))


def timed_windows(
    run: Callable[[], int], *, warmup: int, windows: int
) -> dict[str, float | list[float]]:
    """Call ``run`` ``warmup`` times untimed, then ``windows`` times timed.

    Args:
        run: Does one window of work and returns how many items it processed.
        warmup: Untimed calls first (tracing, caches, thread pools).
        windows: Timed calls (at least 1).

    Returns:
        ``median``, ``min``, ``max`` items per second over the windows,
        ``spread`` (``(max - min) / median``), the per-window ``values``, and
        ``cpu_ms_per_item``: the median CPU time this process spent per item
        (all its threads). CPU time is far less disturbed by other processes
        than wall time, so it compares two ways of doing the work even on a
        busy machine (but says nothing of how well they use several cores).
    """
    for _ in range(warmup):
        run()
    rates, cpu = [], []
    for _ in range(max(1, windows)):
        began, began_cpu = time.perf_counter(), time.process_time()
        count = run()
        rates.append(count / (time.perf_counter() - began))
        cpu.append(1000 * (time.process_time() - began_cpu) / max(count, 1))
    median = statistics.median(rates)
    return {
        "cpu_ms_per_item": round(statistics.median(cpu), 4),
        "median": round(median, 2),
        "min": round(min(rates), 2),
        "max": round(max(rates), 2),
        "spread": round((max(rates) - min(rates)) / median, 3) if median else 0.0,
        "values": [round(r, 2) for r in rates],
    }
