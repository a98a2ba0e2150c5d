"""Injected failures: a random share of API requests, or a queued plan (tests)."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field

FAULTS = ("error_before", "drop_before", "error_after", "drop_after")


class Dropped(Exception):
    """Raised to drop the client's connection without an answer."""


@dataclass
class Faults:
    """Injected failures: a random share of API requests, or a queued plan (tests)."""

    rate: float = 0.0
    latency_ms: int = 0
    seed: int | None = None
    planned: deque[str] = field(default_factory=deque)
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def next(self) -> str | None:
        with self._lock:
            if self.planned:
                fault = self.planned.popleft()
            elif self.rate and self._rng.random() < self.rate:
                fault = self._rng.choice(FAULTS)
            else:
                return None
            self.injected[fault] += 1
            return fault
