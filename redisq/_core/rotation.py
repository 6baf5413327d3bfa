"""Which queues a worker claims from, and how many jobs from each (sans-IO).

Weighted mode uses smooth weighted round-robin (the nginx algorithm): every pick adds each
queue's weight to its credit, takes the queue with the most credit and charges it the total.
With weights {a: 3, b: 1} the picks go a, a, b, a, a, a, b, a, ... so each queue gets its share
of jobs in every window of sum(weights) picks, and no queue waits more than that many picks.
Strict mode always asks the queues in the order given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["Rotation"]


class Rotation:
    """Plan claims over several queues, by weight or in strict order.

    Args:
        queues: the queue names, in priority order for strict mode.
        weights: a weight >= 1 per queue (missing queues weigh 1); ignored when strict.
        strict: always prefer the earlier queues.
    """

    def __init__(
        self, queues: Sequence[str], weights: Mapping[str, int] | None = None, strict: bool = False
    ) -> None:
        self.queues = list(queues)
        self.strict = strict
        self.weights = {q: (weights or {}).get(q, 1) for q in self.queues}
        self._credit = dict.fromkeys(self.queues, 0)
        self._total = sum(self.weights.values())

    def pick(self) -> str:
        """Take the next queue of the weighted round-robin."""
        best = self.queues[0]
        for queue in self.queues:
            self._credit[queue] += self.weights[queue]
            if self._credit[queue] > self._credit[best]:
                best = queue
        self._credit[best] -= self._total
        return best

    def plan(self, count: int) -> list[tuple[str, int]]:
        """Split a claim of `count` jobs into (queue, quota) steps, in the order to ask.

        Strict mode gives every queue the whole count in order (the caller asks each for what
        is still missing). Weighted mode gives each queue the jobs of its picks, first-picked
        first, then lists the queues without a quota with 0: the caller offers what the first
        pass left (queues that came up short) to the others, so idle capacity is never wasted.
        """
        if self.strict or len(self.queues) == 1:
            return [(q, count) for q in self.queues]
        quota: dict[str, int] = {}
        for _ in range(count):
            queue = self.pick()
            quota[queue] = quota.get(queue, 0) + 1
        return list(quota.items()) + [(q, 0) for q in self.queues if q not in quota]
