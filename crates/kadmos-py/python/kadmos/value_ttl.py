"""A value's time to live chosen by the caller.

On the OpenDHT network a value lives as long as its type says (10 minutes for type 0); the wire
has no per-value TTL. ``put(..., ttl=SECONDS)`` therefore keeps the value alive (a permanent
put, refreshed by this node) for ``ttl`` seconds and then stops refreshing it: it is gone from
the network at most one type lifetime later. The CLI's ``put --ttl`` means the same.
"""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any, Awaitable, Callable, Optional, Set

from .errors import KadmosError


def checked(ttl: Optional[float], permanent: bool) -> Optional[float]:
    """``ttl`` as given, after checking it: positive, finite, and not with ``permanent``."""
    if ttl is None:
        return None
    if permanent:
        raise ValueError("give ttl or permanent, not both: permanent keeps the value until cancel_put")
    if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
    return float(ttl)


def stop_later(ttl: float, stop: Callable[[], Any]) -> None:
    """Calls ``stop`` (a blocking ``cancel_put``) after ``ttl`` seconds on a daemon timer
    thread; a node shut down by then has nothing left to stop."""

    def run() -> None:
        try:
            stop()
        except KadmosError:
            pass

    timer = threading.Timer(ttl, run)
    timer.daemon = True
    timer.start()


# Tasks scheduled by stop_later_async, held so that they are not collected before they run.
_pending: Set["asyncio.Task[Any]"] = set()


def stop_later_async(ttl: float, stop: Callable[[], Awaitable[Any]]) -> None:
    """Awaits ``stop()`` (an awaitable ``cancel_put``) after ``ttl`` seconds on the running
    event loop."""

    async def run() -> None:
        await asyncio.sleep(ttl)
        try:
            await stop()
        except KadmosError:
            pass

    task = asyncio.get_running_loop().create_task(run())
    _pending.add(task)
    task.add_done_callback(_pending.discard)
