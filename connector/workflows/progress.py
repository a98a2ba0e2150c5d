"""Progress of a foreach on stderr: done/total, rate and an ETA that knows the rate
budget.

On a terminal one line is redrawn in place; elsewhere (a log, CI) a plain line is
written every ``interval`` seconds, and a last one at the end if any was written.
Nothing goes to stdout. The ETA is the later of what the observed rate predicts and
what the client's pacer allows for the requests still to come (requests per item as
measured so far): early in a bulk run the per-minute budget, not the first burst,
sets the pace.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

DEFAULT_INTERVAL = 5.0
REDRAW = 0.2


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress of ``total`` items of step ``label``."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pacer: Any = None,
        sent: Callable[[], int] | None = None,
        interval: float = DEFAULT_INTERVAL,
        terminal: bool | None = None,
        concurrency: int = 1,
    ):
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.pacer = pacer
        self.sent = sent
        self.interval = interval
        self.concurrency = max(1, concurrency)
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.start = clock()
        self.sent_at_start = sent() if sent else 0
        self.last = self.start
        self.lines = 0
        self.written = -1  # items done when the last plain line was written

    # ------------------------------------------------------------------ figures

    def rate(self) -> float:
        elapsed = self.clock() - self.start
        return self.done / elapsed if elapsed > 0 and self.done else 0.0

    def eta(self) -> tuple[float | None, bool]:
        """Seconds left, and whether the rate budget (not the observed rate) sets it."""
        left = self.total - self.done
        if left <= 0:
            return 0.0, False
        rate = self.rate()
        observed = left / rate if rate else None
        budget = None
        if self.pacer is not None and self.sent is not None and self.done:
            # the items in flight have sent about half their requests: count them as half done
            in_flight = min(self.concurrency, left) / 2
            per_item = max(1.0, (self.sent() - self.sent_at_start) / (self.done + in_flight))
            budget = self.pacer.time_for(round(left * per_item)) if self.pacer.windows else None
        if budget is not None and (observed is None or budget > observed):
            return budget, True
        return observed, False

    def line(self) -> str:
        bar = ""
        if self.terminal:
            filled = round(20 * self.done / self.total) if self.total else 20
            bar = " [" + "#" * filled + "-" * (20 - filled) + "]"
        parts = [
            f"{self.label}{bar} {self.done}/{self.total}"
            if bar
            else f"{self.label}: {self.done}/{self.total}"
        ]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.retries:
            parts.append(f"{self.retries} retried")
        rate = self.rate()
        if rate:
            parts.append(f"{rate:.1f}/s")
        if self.done >= self.total:
            parts.append(f"done in {duration(self.clock() - self.start)}")
        else:
            eta, paced = self.eta()
            if eta is not None:
                parts.append(
                    f"ETA {duration(eta)}" + (f" (rate limit {self.pacer.describe()})" if paced else "")
                )
        return ", ".join(parts)

    # ------------------------------------------------------------------ drawing

    def advance(self, n: int = 1, *, failed: bool = False, retries: int = 0) -> None:
        self.done += n
        self.failed += 1 if failed else 0
        self.retries += retries
        now = self.clock()
        if self.terminal:
            if now - self.last >= REDRAW or self.done >= self.total:
                self._draw()
                self.last = now
        elif now - self.last >= self.interval:
            self._write()
            self.last = now
            self.written = self.done

    def _draw(self) -> None:
        self.stream.write("\r" + self.line() + "\x1b[K")
        self.stream.flush()
        self.lines += 1

    def _write(self) -> None:
        self.stream.write(self.line() + "\n")
        self.stream.flush()
        self.lines += 1

    def close(self) -> None:
        if self.terminal:
            if self.lines:
                self._draw()
                self.stream.write("\n")
                self.stream.flush()
        elif self.lines and self.written != self.done:
            self._write()
