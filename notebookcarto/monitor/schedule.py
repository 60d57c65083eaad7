"""Which training steps a ``Monitor`` observes."""

from __future__ import annotations

import math
from typing import Callable, Iterable

__all__ = ["DEFAULT_EVERY", "Schedule", "log_steps"]

DEFAULT_EVERY = 100


def _step(value, what: str = "step") -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    value = int(value.__index__())
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


class Schedule:
    """The steps to observe: every ``n`` steps (``Schedule(100)``: 0, 100, 200, ...), an explicit
    list of steps (``Schedule([0, 10, 100, 1000])``, e.g. from ``log_steps``) or a predicate
    ``fn(step) -> bool``. ``step in schedule`` tells; ``describe()`` is JSON-ready."""

    def __init__(self, every: "int | Iterable[int] | Callable[[int], bool] | Schedule"
                 = DEFAULT_EVERY):
        self.every = self.steps = self.predicate = None
        if isinstance(every, Schedule):
            self.every, self.steps, self.predicate = every.every, every.steps, every.predicate
        elif isinstance(every, bool):
            raise TypeError("every must be a number of steps, a list of steps or a function "
                            "step -> bool, got a bool")
        elif hasattr(every, "__index__"):
            n = _step(every, "every")
            if n < 1:
                raise ValueError(f"every must be >= 1 step, got {n}")
            self.every = n
        elif callable(every):
            self.predicate = every
        elif isinstance(every, Iterable) and not isinstance(every, (str, bytes)):
            steps = sorted({_step(s, "a scheduled step") for s in every})
            if not steps:
                raise ValueError("the list of steps to observe is empty: give at least one step")
            self.steps = frozenset(steps)
        else:
            raise TypeError(f"every must be a number of steps, a list of steps or a function "
                            f"step -> bool, got {type(every).__name__}")

    def __contains__(self, step: int) -> bool:
        if self.every is not None:
            return step % self.every == 0
        if self.steps is not None:
            return step in self.steps
        return bool(self.predicate(step))

    def describe(self) -> dict:
        """JSON-ready: ``{"every": n}``, ``{"steps": [...]}`` or ``{"function": name}``."""
        if self.every is not None:
            return {"every": self.every}
        if self.steps is not None:
            return {"steps": sorted(self.steps)}
        return {"function": getattr(self.predicate, "__qualname__", repr(self.predicate))}

    def __repr__(self) -> str:
        if self.every is not None:
            return f"Schedule(every {self.every} steps)"
        if self.steps is not None:
            return f"Schedule({len(self.steps)} steps from {min(self.steps)} to {max(self.steps)})"
        return f"Schedule({self.describe()['function']})"


def log_steps(last: int, count: int = 20) -> list[int]:
    """About ``count`` steps from 0 to ``last``, spaced evenly on a log scale (0, 1, 2, 3, 5,
    8, ...): dense early, when a network changes fastest (Network Dissection followed its units
    over iterations this way). Always holds 0 and ``last``."""
    last = _step(last, "last")
    if isinstance(count, bool) or not isinstance(count, int) or count < 2:
        raise ValueError(f"count must be an integer >= 2, got {count!r}")
    if last == 0:
        return [0]
    steps = {0, last}
    for i in range(count - 1):
        steps.add(round(math.exp(math.log(last + 1) * i / (count - 2))) - 1
                  if count > 2 else last)
    return sorted(s for s in steps if 0 <= s <= last)
