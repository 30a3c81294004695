"""Wall-clock timing in interleaved rounds: on a shared machine the load changes from second to second, so
the functions compared run in turn within each round and every one of them sees the same noise."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def interleaved_samples(functions: Mapping[Key, Callable[[], object]], rounds: int) -> dict[Key, list[float]]:
    """Seconds of each function in every round; the functions run in turn in each round (after one warm-up
    round), so machine noise hits all of them alike and round r of two functions can be compared. Each round
    starts one function later than the last, so no function always runs right after the same one."""
    seconds: dict[Key, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(rounds + 1):
        shift = round_ % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            function = functions[name]
            started = time.perf_counter()
            function()
            if round_:
                seconds[name].append(time.perf_counter() - started)
    return seconds


def interleaved_seconds(functions: Mapping[Key, Callable[[], object]], rounds: int) -> dict[Key, float]:
    """Median seconds of each function over interleaved rounds (see :func:`interleaved_samples`)."""
    return {name: statistics.median(values) for name, values in interleaved_samples(functions, rounds).items()}


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median seconds of one function over ``repeats`` runs after a warm-up run."""
    return interleaved_seconds({"": function}, repeats)[""]


def rounds_faster(samples: Mapping[Key, list[float]], reference: Key) -> dict[Key, int]:
    """Paired by round: in how many rounds each entry beat ``reference`` of the same round (shared load)."""
    return {entry: sum(a < b for a, b in zip(values, samples[reference])) for entry, values in samples.items()}
