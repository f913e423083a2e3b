"""The project's one retry policy for work on Ray. Work whose worker process, actor, node or
result was lost, or that outlived its time limit, runs again, a bounded number of times per piece
of work; what runs again must be safe to run again (a pure function of its input, or a run that
resumes from its own saved state). An exception the work itself raised is never retried: it
reaches the caller with its traceback.

Used by the meta-training worker pool (pieces of a generation or meta-iteration, on actors),
the evaluation plans (cells, resubmitted from their latest partial run) and a job's scoring task.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import (
    GetTimeoutError,
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    RayActorError,
    WorkerCrashedError,
)

# What a retry recovers from: the work never finished (its process, actor or node died, Ray's
# memory monitor killed it, its result was lost) or hung past its deadline.
LOST_WORK = (RayActorError, WorkerCrashedError, NodeDiedError, OutOfMemoryError, ObjectLostError, GetTimeoutError)


class RetriesExhausted(RuntimeError):
    """A piece of work was lost more times than its retries allow (its last loss is the cause)."""


@dataclass
class RetryBudget:
    """Retries per piece of work: `spend` counts a loss and says which retry comes next."""

    retries: int
    error: type[RetriesExhausted] = RetriesExhausted  # what `spend` raises when none is left
    spent: dict[Hashable, int] = field(default_factory=dict)

    def spend(self, key: Hashable, exc: BaseException) -> int:
        """Count one lost attempt of a piece.

        Args:
          key: the piece (an index, a cell's name).
          exc: how it was lost (one of LOST_WORK).

        Returns:
          The retry to run now, 1..retries.

        Raises:
          RetriesExhausted: none is left (the budget's `error`, raised from `exc`).
        """
        self.spent[key] = self.spent.get(key, 0) + 1
        if self.spent[key] > self.retries:
            raise self.error(f"{key}: lost {self.spent[key]} times ({type(exc).__name__}: {exc}); "
                                   f"{self.retries} retries allowed") from exc
        return self.spent[key]


def get_with_retries(submit: Callable[[], Any], retries: int, what: str) -> Any:
    """`ray.get(submit())`, submitting again when the work is lost (LOST_WORK), at most `retries` times.

    Args:
      submit: () -> an ObjectRef of work that is safe to run again.
      retries: how many times lost work runs again.
      what: the work's name in the error.

    Returns:
      The work's value.

    Raises:
      RetriesExhausted: lost on every attempt.
    """
    budget = RetryBudget(retries)
    while True:
        try:
            return ray.get(submit())
        except LOST_WORK as exc:
            budget.spend(what, exc)
