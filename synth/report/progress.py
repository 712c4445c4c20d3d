"""Live progress of the recipe run in this process: what the terminal display and the Prefect artifact show.

A run publishes three kinds of events: a batch finished (units, kept/rejected rows, output tokens), model
answers arrived inside a batch (so a long batch visibly moves), and the run finished. Anyone may watch.

The state is per process: the in-process engine and the thread runner report answers as they arrive; batches
run on Dask or Ray workers in other processes report when each batch comes back to the driver.

Example::

    from synth.report import progress

    with progress.watching(lambda state, event: print(state.line())):
        run_recipe(config)
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

# What a listener is told happened: the run started, answers arrived, a batch was committed, the run ended.
EVENTS = ("start", "answers", "batch", "finish")
Listener = Callable[["RunProgress", str], None]


@dataclass
class RunProgress:
    """Counts of one recipe run; ``units_pending`` is what this run has to generate (the ledger holds the rest)."""

    recipe: str
    units_total: int = 0
    units_pending: int = 0
    units_done: int = 0
    units_failed: int = 0
    kept: int = 0
    rejected: int = 0
    output_tokens: int = 0
    generate_s: float = 0.0
    batches_done: int = 0
    answers: int = 0  # model answers received, including those of the batch now generating
    finished: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        return 1.0 if not self.units_pending else min(1.0, self.units_done / self.units_pending)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.generate_s if self.generate_s else 0.0

    def eta_s(self) -> float | None:
        """Seconds left at the pace of the batches so far; None before the first batch is back or after a run
        that stopped short."""
        if self.finished and self.units_done >= self.units_pending:
            return 0.0
        if self.finished or not self.units_done:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.units_done * (self.units_pending - self.units_done)

    def line(self) -> str:
        """One line, e.g. ``sap: units 48/300 (16%) · kept 40 · rejected 8 · answers 130 · 25.1 tok/s · ETA 4m10s``."""
        eta = self.eta_s()
        parts = [
            f"{self.recipe}: units {self.units_done}/{self.units_pending} ({100 * self.fraction:.0f}%)",
            f"kept {self.kept}",
            f"rejected {self.rejected}",
            f"answers {self.answers}",
            f"{self.tokens_per_s:.1f} tok/s",
            f"ETA {format_duration(eta) if eta is not None else '?'}",
        ]
        if self.units_failed:
            parts.insert(3, f"failed {self.units_failed}")
        if self.units_total != self.units_pending:
            parts[0] += f" [{self.units_total - self.units_pending} already done]"
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


_lock = threading.Lock()
_listeners: list[Listener] = []
_active: RunProgress | None = None


@contextmanager
def watching(listener: Listener) -> Iterator[None]:
    """Call ``listener(state, event)`` for every event of the runs in this process while the block runs."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def _publish(state: RunProgress, event: str) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(state, event)


def run_started(state: RunProgress) -> None:
    """A run planned its work (``units_total``/``units_pending`` set): answers from now on count for it."""
    global _active
    _active = state
    _publish(state, "start")


def answers_arrived(count: int) -> None:
    """``count`` model answers came back (called by the engines, from any thread); no-op outside a run."""
    state = _active
    if state is None or not count:
        return
    with _lock:
        state.answers += count
    _publish(state, "answers")


def batch_finished(
    state: RunProgress, units: int, failed: int, kept: int, rejected: int, output_tokens: int, generate_s: float
) -> None:
    """A batch's units are committed (or failed after retries)."""
    with _lock:
        state.units_done += units + failed
        state.units_failed += failed
        state.kept += kept
        state.rejected += rejected
        state.output_tokens += output_tokens
        state.generate_s += generate_s
        state.batches_done += 1
    _publish(state, "batch")


def run_finished(state: RunProgress) -> None:
    global _active
    state.finished = True
    if _active is state:
        _active = None
    _publish(state, "finish")
