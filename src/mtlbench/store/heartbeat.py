"""The heartbeat of a running run: a daemon thread that calls ``store.heartbeat(run_id)`` every
:data:`~mtlbench.store.results.HEARTBEAT_SECONDS` while the run trains, so that ``mtlbench results`` can tell a
live run on another host from an interrupted one (the trainer's steps never wait for it; the store also beats
at each epoch end)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any

from mtlbench.errors import MtlbenchError
from mtlbench.store.results import HEARTBEAT_SECONDS


class Heartbeat:
    """Context manager: beats every ``interval`` seconds from a daemon thread until the block ends."""

    def __init__(self, store: Any, run_id: int, interval: float = HEARTBEAT_SECONDS) -> None:
        self.store, self.run_id, self.interval = store, run_id, interval
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mtlbench-heartbeat-{run_id}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.run_id)
                self.beats += 1
            except (sqlite3.Error, MtlbenchError):  # a busy or closed database: the next beat retries
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 60)


def heartbeat(store: Any, run_id: int | None, interval: float = HEARTBEAT_SECONDS) -> contextlib.AbstractContextManager:
    """A :class:`Heartbeat` for a stored run; nothing for a store without heartbeats (e.g. a Ray worker's
    recording store, whose driver writes the whole run at once) or without a run."""
    if store is None or run_id is None or not hasattr(store, "heartbeat"):
        return contextlib.nullcontext()
    return Heartbeat(store, run_id, interval)
