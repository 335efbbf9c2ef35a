"""What both kinds of node start with, checked and put in the form the native layer takes."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

from .infohash import InfoHash, Key
from .results import SavedState

StateArg = Union[SavedState, str, "os.PathLike[str]", None]
"""A saved state: a :class:`SavedState`, or the path of a file that :meth:`SavedState.save`
wrote (a missing file means no state: the node starts afresh)."""


def node_options(
    port: Optional[int],
    bind: Optional[Sequence[str]],
    bootstrap: Optional[Sequence[str]],
    node_id: Optional[Key],
    state: StateArg,
    seed: Optional[int],
) -> Dict[str, Any]:
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not a UDP port (0 to 65535; 0: any free port)")
    if isinstance(bind, str) or isinstance(bootstrap, str):
        raise TypeError("bind and bootstrap are lists of strings, not one string")
    if node_id is not None and not isinstance(node_id, InfoHash):
        node_id = InfoHash.of_str(node_id) if isinstance(node_id, str) and len(node_id) != 40 else InfoHash(node_id)
    if state is not None and not isinstance(state, SavedState):
        state = SavedState.load(state) if os.path.exists(state) else None
    return {
        "port": port,
        "bind": list(bind or []),
        "bootstrap": None if bootstrap is None else list(bootstrap),
        "node_id": None if node_id is None else node_id.hex(),
        "state": None if state is None else state.to_json(),
        "seed": seed,
    }


def addr_text(addr: Union[str, tuple]) -> str:
    """An address given as ``"host:port"`` or ``(host, port)``, as text."""
    if isinstance(addr, tuple):
        host, port = addr
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return addr
