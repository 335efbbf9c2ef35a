"""The asyncio API: the calls of :class:`kadmos.Dht` and :class:`kadmos.OpenDht` as
coroutines. Streams are the same objects as in the blocking API, iterated with ``async for``.

    async with await kadmos.aio.OpenDht.start(bootstrap=[...]) as node:
        await node.put("key", b"data")
        async with node.listen("key") as changes:
            async for value, expired in changes:
                ...

Cancelling a call (``asyncio.wait_for``, a task's ``cancel()``) stops waiting for it; a
command already sent to the node (a put, say) still completes there, as in OpenDHT."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

from . import _native
from .errors import ShutdownError
from .infohash import Key
from .mainline import AddrArg, ItemSigner, MainlineNode
from .node_options import StateArg, addr_text, node_options
from .opendht_network import Filter, OpenDhtNode, OwnerKey, PublicKey, RateLimits, Value, _limits
from .results import Address, AnnounceResult, MutableItem, NodeInfo, PutReport, PutResult, Samples, SavedState
from . import value_ttl

__all__ = ["Dht", "OpenDht", "Testnet", "OpenDhtTestnet"]


class Dht(MainlineNode):
    """A Mainline node with awaitable calls; make one with ``await Dht.start(...)`` (the
    arguments of :class:`kadmos.Dht`). ``async with`` shuts it down."""

    @classmethod
    async def start(
        cls,
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
    ) -> "Dht":
        options = node_options(port, bind, bootstrap, node_id, state, seed)
        return cls._wrap(await _native.Dht.start(options, read_only, keep_alive_puts, republish_stored_items, True))

    async def bootstrapped(self) -> None:
        await self._node.bootstrapped(True)

    async def bootstrap(self, routers: Sequence[str]) -> None:
        await self._node.bootstrap(list(routers), True)

    async def ping(self, addr: AddrArg) -> NodeInfo:
        return NodeInfo.from_dict(await self._node.ping(addr_text(addr), True))

    async def find_node(self, target: Key) -> List[NodeInfo]:
        return [NodeInfo.from_dict(n) for n in await self._node.find_node(target, True)]

    async def peers(self, info_hash: Key) -> List[Address]:
        return await self._node.peers(info_hash, True)

    async def announce(self, info_hash: Key, port: Optional[int] = None) -> AnnounceResult:
        return AnnounceResult.from_dict(await self._node.announce(info_hash, port, True))

    async def sample_infohashes(self, addr: AddrArg, target: Optional[Key] = None) -> Samples:
        return Samples.from_dict(await self._node.sample_infohashes(addr_text(addr), target, True))

    async def put_immutable(self, value: bytes, *, bencoded: bool = False) -> PutResult:
        return PutResult.from_dict(await self._node.put_immutable(value, bencoded, True))

    async def get_immutable(self, target: Key) -> bytes:
        return await self._node.get_immutable(target, True)

    async def put_mutable(
        self, signer: ItemSigner, value: bytes, *, salt: bytes = b"", seq: Optional[int] = None,
        cas: Optional[int] = None, bencoded: bool = False,
    ) -> PutResult:
        return PutResult.from_dict(await self._node.put_mutable(signer, value, bencoded, salt, seq, cas, True))

    async def get_mutable_latest(self, public_key: bytes, salt: bytes = b"") -> Optional[MutableItem]:
        found = await self._node.get_mutable_latest(public_key, salt, True)
        return None if found is None else MutableItem(*found)

    async def cancel_keep_alive(self, target: Key) -> bool:
        return await self._node.cancel_keep_alive(target, True)

    async def routing_table(self) -> Dict[str, Any]:
        return await self._node.routing_table(True)

    async def info(self) -> Dict[str, Any]:
        return await self._node.info(True)

    async def save_state(self) -> SavedState:
        return SavedState(await self._node.save_state(True))

    async def shutdown(self) -> SavedState:
        return SavedState(await self._node.shutdown(True))

    async def __aenter__(self) -> "Dht":
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.shutdown()
        except ShutdownError:
            pass


class OpenDht(OpenDhtNode):
    """An OpenDHT node with awaitable calls; make one with ``await OpenDht.start(...)`` (the
    arguments of :class:`kadmos.OpenDht`). ``async with`` shuts it down."""

    _aio = True

    @classmethod
    async def start(
        cls,
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
    ) -> "OpenDht":
        options = node_options(port, bind, bootstrap, node_id, state, seed)
        return cls._wrap(await _native.OpenDht.start(options, client, network_id, _limits(rate_limits), True))

    async def bootstrapped(self) -> None:
        await self._node.bootstrapped(True)

    async def bootstrap(self, nodes: Sequence[str]) -> None:
        await self._node.bootstrap(list(nodes), True)

    async def ping(self, addr: AddrArg) -> NodeInfo:
        return NodeInfo.from_dict(await self._node.ping(addr_text(addr), True))

    async def find_node(self, target: Key) -> List[NodeInfo]:
        return [NodeInfo.from_dict(n) for n in await self._node.find_node(target, True)]

    async def put(
        self, key: Key, data: Union[bytes, Value], *, value_type: int = 0, user_type: str = "",
        id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        if isinstance(data, Value):
            report = PutReport.from_dict(await self._node.put_value(key, data, keep, True))
        else:
            report = PutReport.from_dict(await self._node.put(key, bytes(data), value_type, user_type, id, keep, True))
        return self._expire(report, ttl)

    async def put_signed(
        self, key: Key, data: bytes, owner: OwnerKey, *, value_type: int = 0, user_type: str = "",
        id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        report = await self._node.put_signed(key, bytes(data), owner, value_type, user_type, id, keep, True)
        return self._expire(PutReport.from_dict(report), ttl)

    async def put_encrypted(
        self, key: Key, data: bytes, to: PublicKey, *, sender: OwnerKey, value_type: int = 0,
        user_type: str = "", id: Optional[int] = None, permanent: bool = False, ttl: Optional[float] = None,
    ) -> PutReport:
        ttl = value_ttl.checked(ttl, permanent)
        keep = permanent or ttl is not None
        report = await self._node.put_encrypted(key, bytes(data), sender, to, value_type, user_type, id, keep, True)
        return self._expire(PutReport.from_dict(report), ttl)

    def _expire(self, report: PutReport, ttl: Optional[float]) -> PutReport:
        if ttl is not None:
            value_ttl.stop_later_async(ttl, lambda: self.cancel_put(report.key, report.value_id))
        return report

    async def cancel_put(self, key: Key, value_id: int) -> bool:
        return await self._node.cancel_put(key, value_id, True)

    async def get_all(self, key: Key, *, filter: Optional[Filter] = None) -> List[Value]:
        return await self._node.get_all(key, filter, True)

    async def info(self) -> Dict[str, Any]:
        return await self._node.info(True)

    async def save_state(self) -> SavedState:
        return SavedState(await self._node.save_state(True))

    async def shutdown(self) -> SavedState:
        return SavedState(await self._node.shutdown(True))

    async def __aenter__(self) -> "OpenDht":
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.shutdown()
        except ShutdownError:
            pass


class Testnet:
    """``await Testnet.start(n)``: ``n`` Mainline nodes on 127.0.0.1 (see :class:`kadmos.Testnet`)."""

    nodes: List[Dht]

    @classmethod
    async def start(cls, n: int = 8) -> "Testnet":
        net = cls()
        net.nodes = [Dht._wrap(node) for node in await _native.mainline_testnet(n, True)]
        return net

    @property
    def bootstrap(self) -> List[str]:
        return [f"{host}:{port}" for node in self.nodes for host, port in node.local_addrs]

    async def shutdown(self) -> None:
        for node in self.nodes:
            await node.__aexit__()

    async def __aenter__(self) -> "Testnet":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


class OpenDhtTestnet:
    """``await OpenDhtTestnet.start(n)``: ``n`` OpenDHT nodes on 127.0.0.1 (see
    :class:`kadmos.OpenDhtTestnet`)."""

    nodes: List[OpenDht]

    @classmethod
    async def start(cls, n: int = 4, port: Optional[int] = None) -> "OpenDhtTestnet":
        net = cls()
        net.nodes = [OpenDht._wrap(node) for node in await _native.opendht_testnet(n, port, True)]
        return net

    @property
    def bootstrap(self) -> List[str]:
        return [f"{host}:{port}" for node in self.nodes for host, port in node.local_addrs]

    async def shutdown(self) -> None:
        for node in self.nodes:
            await node.__aexit__()

    async def __aenter__(self) -> "OpenDhtTestnet":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
