"""The OpenDHT network (Jami's DHT): :class:`OpenDht`, blocking, and :class:`OpenDhtTestnet`.
The asyncio forms are in :mod:`kadmos.aio`; OpenDHT's own Python API is :mod:`kadmos.opendht`."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _native
from .errors import ShutdownError
from .infohash import InfoHash, Key
from .mainline import AddrArg
from .node_options import StateArg, addr_text, node_options
from .results import Address, NodeInfo, PutReport, SavedState
from . import value_ttl

Value = _native.Value
Filter = _native.Filter
OwnerKey = _native.OwnerKey
PublicKey = _native.PublicKey
Stream = _native.Stream
RateLimits = Optional[Tuple[Optional[int], Optional[int]]]


class OpenDhtNode:
    """What blocking and asyncio OpenDHT nodes share: identity and streams (streams serve
    ``for`` and ``async for`` alike)."""

    _node: _native.OpenDht

    @classmethod
    def _wrap(cls, native: _native.OpenDht) -> Any:
        node = cls.__new__(cls)
        node._node = native
        return node

    @property
    def node_id(self) -> InfoHash:
        return InfoHash(self._node.node_id)

    @property
    def local_addrs(self) -> List[Address]:
        return self._node.local_addrs

    def get(self, key: Key, *, filter: Optional[Filter] = None) -> "Stream[Value]":
        """The values at ``key`` as nodes return them (each once, again if it changes). Closing
        the stream stops the search."""
        return self._node.get(key, filter)

    _aio = False

    def listen(self, key: Key, *, filter: Optional[Filter] = None) -> "Stream[Tuple[Value, bool]]":
        """``(value, expired)`` for every value at ``key`` now, then for each new, edited or
        expired one, until the stream is closed (``with`` block, ``close()``, or dropped). The
        blocking form returns once the listen is registered; the asyncio form returns at once
        and registers it in the background."""
        return self._node.listen(key, filter, self._aio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(node_id={self._node.node_id}, local_addrs={self.local_addrs})"


class OpenDht(OpenDhtNode):
    """A node of the OpenDHT network; every call blocks (with the GIL released; Ctrl-C works).

    ``port`` defaults to 4222 (any free port if taken: ``port=0`` for any), ``bootstrap=None``
    joins through bootstrap.jami.net, ``[]`` through nobody. ``rate_limits`` is (total, per
    IP) requests a second, ``None`` for no limit (nodes sharing one address, like a loopback
    test network, need the per-IP limit off). A ``with`` block shuts the node down."""

    def __init__(
        self,
        *,
        port: int = 4222,
        bind: Optional[Sequence[str]] = None,
        bootstrap: Optional[Sequence[str]] = None,
        node_id: Optional[Key] = None,
        state: StateArg = None,
        client: bool = False,
        network_id: int = 0,
        rate_limits: RateLimits = (8192, 1024),
        seed: Optional[int] = None,
    ) -> None:
        options = node_options(port, bind, bootstrap, node_id, state, seed)
        self._node = _native.OpenDht.start(options, client, network_id, _limits(rate_limits), False)

    def bootstrapped(self) -> None:
        self._node.bootstrapped(False)

    def bootstrap(self, nodes: Sequence[str]) -> None:
        """Joins (again) through these ``host:port`` nodes; operations wait for the join."""
        self._node.bootstrap(list(nodes), False)

    def ping(self, addr: AddrArg) -> NodeInfo:
        return NodeInfo.from_dict(self._node.ping(addr_text(addr), False))

    def find_node(self, target: Key) -> List[NodeInfo]:
        return [NodeInfo.from_dict(n) for n in self._node.find_node(target, False)]

    def put(
        self, key: Key, data: Union[bytes, Value], *, value_type: int = 0, user_type: str = "",
        id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        """Puts ``data`` at ``key`` (a :class:`Value` is put as given). It lives as long as its
        type says (10 minutes for type 0) unless ``permanent``: then this node keeps it alive
        until :meth:`cancel_put`; or ``ttl`` seconds: kept alive that long, then left to expire
        (see :mod:`kadmos.value_ttl`)."""
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        if isinstance(data, Value):
            report = PutReport.from_dict(self._node.put_value(key, data, keep, False))
        else:
            report = PutReport.from_dict(self._node.put(key, bytes(data), value_type, user_type, id, keep, False))
        return self._expire(report, ttl)

    def put_signed(
        self, key: Key, data: bytes, owner: OwnerKey, *, value_type: int = 0, user_type: str = "",
        id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        """Puts ``data`` signed by ``owner``; with the ``id`` of a value already put, replaces
        it (next ``seq``). ``permanent`` and ``ttl`` as for :meth:`put`."""
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        report = self._node.put_signed(key, bytes(data), owner, value_type, user_type, id, keep, False)
        return self._expire(PutReport.from_dict(report), ttl)

    def put_encrypted(
        self, key: Key, data: bytes, to: PublicKey, *, sender: OwnerKey, value_type: int = 0,
        user_type: str = "", id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        """Puts ``data`` encrypted to ``to``, signed by ``sender`` inside the encryption.
        ``permanent`` and ``ttl`` as for :meth:`put`."""
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        report = self._node.put_encrypted(key, bytes(data), sender, to, value_type, user_type, id, keep, False)
        return self._expire(PutReport.from_dict(report), ttl)

    def _expire(self, report: PutReport, ttl: Optional[float]) -> PutReport:
        if ttl is not None:
            value_ttl.stop_later(ttl, lambda: self.cancel_put(report.key, report.value_id))
        return report

    def cancel_put(self, key: Key, value_id: int) -> bool:
        """Stops keeping a permanent value alive; whether it was."""
        return self._node.cancel_put(key, value_id, False)

    def get_all(self, key: Key, *, filter: Optional[Filter] = None) -> List[Value]:
        """Every value at ``key`` once the search is over (the latest version of each)."""
        return self._node.get_all(key, filter, False)

    def info(self) -> Dict[str, Any]:
        return self._node.info(False)

    def save_state(self) -> SavedState:
        return SavedState(self._node.save_state(False))

    def shutdown(self) -> SavedState:
        """Stops the node and returns its final state; later calls raise ShutdownError."""
        return SavedState(self._node.shutdown(False))

    def __enter__(self) -> "OpenDht":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.shutdown()
        except ShutdownError:
            pass


def _limits(rate_limits: RateLimits) -> RateLimits:
    if rate_limits is None:
        return (None, None)
    total, per_ip = rate_limits
    return (total, per_ip)


class OpenDhtTestnet:
    """``n`` OpenDHT nodes on 127.0.0.1 joined into one network (rate limits off), for tests;
    the first on ``port`` if given. ``bootstrap`` lists their addresses; a ``with`` block shuts
    them down."""

    def __init__(self, n: int = 4, port: Optional[int] = None) -> None:
        self.nodes: List[OpenDht] = [OpenDht._wrap(node) for node in _native.opendht_testnet(n, port, False)]

    @property
    def bootstrap(self) -> List[str]:
        return [f"{host}:{port}" for node in self.nodes for host, port in node.local_addrs]

    def shutdown(self) -> None:
        for node in self.nodes:
            node.__exit__()

    def __enter__(self) -> "OpenDhtTestnet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


verify_value = _native.verify_value
decrypt_value = _native.decrypt_value
