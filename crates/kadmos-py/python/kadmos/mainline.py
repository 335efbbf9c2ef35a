"""The Mainline DHT (BitTorrent): :class:`Dht`, blocking, and :class:`Testnet`. The asyncio
forms are in :mod:`kadmos.aio`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from . import _native
from .errors import ShutdownError
from .infohash import InfoHash, Key
from .node_options import StateArg, addr_text, node_options
from .results import (
    Address, AnnounceResult, FoundItem, MutableItem, NodeInfo, PeerBatch, PutResult, Samples, SavedState,
)

ItemSigner = _native.ItemSigner
Stream = _native.Stream
AddrArg = Union[str, Address]


class MainlineNode:
    """What blocking and asyncio Mainline nodes share: identity and streams (streams serve
    ``for`` and ``async for`` alike)."""

    _node: _native.Dht

    @classmethod
    def _wrap(cls, native: _native.Dht) -> Any:
        node = cls.__new__(cls)
        node._node = native
        return node

    @property
    def node_id(self) -> InfoHash:
        return InfoHash(self._node.node_id)

    @property
    def local_addrs(self) -> List[Address]:
        return self._node.local_addrs

    def get_peers(self, info_hash: Key) -> "Stream[PeerBatch]":
        """The peers of a torrent, a batch per answering node as they arrive. Closing the
        stream (or leaving its ``with`` block) stops the lookup."""
        return self._node.get_peers(info_hash, PeerBatch.from_dict)

    def get_mutable(self, public_key: bytes, salt: bytes = b"", *, newer_than: Optional[int] = None) -> "Stream[FoundItem]":
        """Every verified version of a mutable item as nodes return it."""
        return self._node.get_mutable(public_key, salt, newer_than, FoundItem.from_dict)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node_id={self._node.node_id}, local_addrs={self.local_addrs})"


class Dht(MainlineNode):
    """A node of the Mainline DHT; every call blocks (with the GIL released; Ctrl-C works).

    ``bootstrap=None`` joins through the public routers, ``[]`` through nobody (the first node
    of a network); ``bind`` lists IPs (default: all interfaces, IPv4 and IPv6); ``port=0`` takes
    any free port. ``state`` rejoins from a saved state. A ``with`` block shuts the node down."""

    def __init__(
        self,
        *,
        port: int = 0,
        bind: Optional[Sequence[str]] = None,
        bootstrap: Optional[Sequence[str]] = None,
        node_id: Optional[Key] = None,
        state: StateArg = None,
        read_only: bool = False,
        keep_alive_puts: bool = True,
        republish_stored_items: Optional[float] = None,
        seed: Optional[int] = None,
    ) -> None:
        options = node_options(port, bind, bootstrap, node_id, state, seed)
        self._node = _native.Dht.start(options, read_only, keep_alive_puts, republish_stored_items, False)

    def bootstrapped(self) -> None:
        """Waits until the node has joined (or failed to)."""
        self._node.bootstrapped(False)

    def bootstrap(self, routers: Sequence[str]) -> None:
        """Joins (again) through these ``host:port`` routers; operations wait for the join."""
        self._node.bootstrap(list(routers), False)

    def ping(self, addr: AddrArg) -> NodeInfo:
        return NodeInfo.from_dict(self._node.ping(addr_text(addr), False))

    def find_node(self, target: Key) -> List[NodeInfo]:
        """The closest nodes to ``target`` that answered, closest first."""
        return [NodeInfo.from_dict(n) for n in self._node.find_node(target, False)]

    def peers(self, info_hash: Key) -> List[Address]:
        """Every peer of a torrent found by a whole lookup, without duplicates."""
        return self._node.peers(info_hash, False)

    def announce(self, info_hash: Key, port: Optional[int] = None) -> AnnounceResult:
        """Announces this peer on ``port`` (None: the node's own port, ``implied_port``)."""
        return AnnounceResult.from_dict(self._node.announce(info_hash, port, False))

    def sample_infohashes(self, addr: AddrArg, target: Optional[Key] = None) -> Samples:
        return Samples.from_dict(self._node.sample_infohashes(addr_text(addr), target, False))

    def put_immutable(self, value: bytes, *, bencoded: bool = False) -> PutResult:
        """Stores ``value`` (as a bencoded string, or as given if ``bencoded``); kept alive
        until :meth:`cancel_keep_alive` unless the node was started with
        ``keep_alive_puts=False``."""
        return PutResult.from_dict(self._node.put_immutable(value, bencoded, False))

    def get_immutable(self, target: Key) -> bytes:
        """The bencoded value (``NotFoundError`` if nobody has it)."""
        return self._node.get_immutable(target, False)

    def put_mutable(
        self, signer: ItemSigner, value: bytes, *, salt: bytes = b"", seq: Optional[int] = None,
        cas: Optional[int] = None, bencoded: bool = False,
    ) -> PutResult:
        """Signs and stores a version of a mutable item; ``seq=None`` takes the next one."""
        return PutResult.from_dict(self._node.put_mutable(signer, value, bencoded, salt, seq, cas, False))

    def get_mutable_latest(self, public_key: bytes, salt: bytes = b"") -> Optional[MutableItem]:
        found = self._node.get_mutable_latest(public_key, salt, False)
        return None if found is None else MutableItem(*found)

    def cancel_keep_alive(self, target: Key) -> bool:
        return self._node.cancel_keep_alive(target, False)

    def routing_table(self) -> Dict[str, Any]:
        return self._node.routing_table(False)

    def info(self) -> Dict[str, Any]:
        return self._node.info(False)

    def save_state(self) -> SavedState:
        return SavedState(self._node.save_state(False))

    def shutdown(self) -> SavedState:
        """Stops the node and returns its final state; later calls raise ShutdownError."""
        return SavedState(self._node.shutdown(False))

    def __enter__(self) -> "Dht":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.shutdown()
        except ShutdownError:
            pass


class Testnet:
    """``n`` Mainline nodes on 127.0.0.1 joined into one network, for tests. ``bootstrap``
    lists their addresses; a ``with`` block shuts them down."""

    def __init__(self, n: int = 8) -> None:
        self.nodes: List[Dht] = [Dht._wrap(node) for node in _native.mainline_testnet(n, False)]

    @property
    def bootstrap(self) -> List[str]:
        return [f"{host}:{port}" for node in self.nodes for host, port in node.local_addrs]

    def shutdown(self) -> None:
        for node in self.nodes:
            node.__exit__()

    def __enter__(self) -> "Testnet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

