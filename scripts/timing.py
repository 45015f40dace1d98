"""Wall-clock timing shared by the benchmark scripts (imported as `timing`: scripts/ is on sys.path
when one of them runs)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import jax


def median_seconds(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median seconds of `repeats` calls of `fn`, each ended by jax.block_until_ready on its result
    (JAX dispatches asynchronously); with `warmup`, one untimed call first (compilation, caches)."""
    if warmup:
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)
