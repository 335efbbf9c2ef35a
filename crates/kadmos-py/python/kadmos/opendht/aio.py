"""OpenDHT's asyncio API (``opendht.aio``) on kadmos: change ``import opendht.aio`` to
``import kadmos.opendht.aio``. Calls are awaited natively on kadmos's runtime (no callback
thread in between). ``cancelListen`` works awaited or called plainly (OpenDHT's raises
TypeError)."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable, Iterable, List, Optional, Tuple, Union

from .. import _native
from ..errors import KadmosError
from . import (
    DhtConfig, DhtRunner as _CoreRunner, Identity, InfoHash, PkId, PublicKey, SockAddr, Value, ValueType, Where,
)

__all__ = ["DhtConfig", "DhtRunner", "Identity", "InfoHash", "PkId", "PublicKey", "SockAddr", "Value", "ValueType", "Where"]


class _Done:
    """An awaitable that is already complete: lets ``cancelListen`` be awaited or not."""

    def __await__(self):
        return
        yield


class _Operation:
    """A get or a listen: ``async for`` over it, ``with`` it; ``cancel()`` stops it."""

    def __init__(self, stream: _native.Stream) -> None:
        self._stream = stream

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __aiter__(self) -> Any:
        return self

    def cancel(self) -> None:
        self._stream.close()


class _GetStream(_Operation):
    """The values of a get that pass ``keep``."""

    def __init__(self, stream: _native.Stream, keep: Callable[[Value], bool]) -> None:
        super().__init__(stream)
        self._keep = keep

    async def __anext__(self) -> Value:
        while True:
            value = Value._of(await self._stream.__anext__())
            if self._keep(value):
                return value


class _Listener(_Operation):
    """The changes of a listen as ``(value, expired)``."""

    async def __anext__(self) -> Tuple[Value, bool]:
        value, expired = await self._stream.__anext__()
        return Value._of(value), expired


class DhtRunner:
    """OpenDHT's asyncio DhtRunner on a kadmos node. ``async with`` runs the node (and
    bootstraps through ``bootstrap``, a list of ``(host, port)``) and shuts it down."""

    def __init__(
        self, *, loop: Optional[asyncio.AbstractEventLoop] = None, core: Optional[_CoreRunner] = None,
        config: Optional[DhtConfig] = None, bootstrap: Optional[Iterable[Tuple[str, Optional[str]]]] = None,
    ) -> None:
        self._dht = core or _CoreRunner()
        self._config = config
        self._bootstrap = list(bootstrap) if bootstrap is not None else None

    def run(
        self, id: Optional[Identity] = None, is_bootstrap: bool = False, port: int = 0, ipv4: str = "",
        ipv6: str = "", config: Optional[DhtConfig] = None,
    ) -> None:
        self._dht.run(id, is_bootstrap, port, ipv4, ipv6, config or self._config or DhtConfig())
        for host, port_text in self._bootstrap or []:
            self._dht.bootstrap(host, port_text)

    def bootstrap(self, host: str, port: Union[str, int, None] = None) -> None:
        self._dht.bootstrap(host, port)

    def _node(self) -> _native.OpenDht:
        return self._dht._running()

    async def ping(self, addr: SockAddr) -> bool:
        try:
            await self._node().ping(addr.toString(), True)
            return True
        except KadmosError:
            return False

    def get(self, key: InfoHash, *, where: Optional[Where] = None, filter: Optional[Callable[[Value], bool]] = None) -> _GetStream:
        stream = self._node().get(key, None if where is None else where._filter())
        return _GetStream(stream, filter or (lambda _v: True))

    async def getAll(self, key: InfoHash, *, where: Optional[Where] = None, filter: Optional[Callable[[Value], bool]] = None) -> List[Value]:
        with self.get(key, where=where, filter=filter) as stream:
            return [value async for value in stream]

    async def getFirst(
        self, key: InfoHash, *, where: Optional[Where] = None, predicate: Optional[Callable[[Value], Any]] = None,
        filter: Optional[Callable[[Value], bool]] = None,
    ) -> Optional[Value]:
        """The first value (passing ``predicate``, which may be async), or None."""
        with self.get(key, where=where, filter=filter) as stream:
            async for value in stream:
                verdict = True if predicate is None else predicate(value)
                if asyncio.iscoroutine(verdict):
                    verdict = await verdict
                if verdict:
                    return value
        return None

    async def _stored(self, put: Awaitable[Any]) -> bool:
        try:
            await put
            return True
        except KadmosError:
            return False

    async def put(self, key: InfoHash, val: Value, *, permanent: bool = False) -> bool:
        if val.id == 0:
            val.id = int.from_bytes(os.urandom(8), "big") or 1
        return await self._stored(self._node().put_value(key, val._native(), permanent, True))

    async def putSigned(self, key: InfoHash, val: Value, *, permanent: bool = False) -> bool:
        owner = self._dht._owner()
        put = self._node().put_signed(key, val.data, owner, val.value_type, val.user_type, val.id or None, permanent, True)
        return await self._stored(put)

    async def putEncrypted(self, key: InfoHash, to: PublicKey, val: Value, *, permanent: bool = False) -> bool:
        if not isinstance(to, PublicKey):
            raise NotImplementedError("putEncrypted needs the recipient's PublicKey (a bare key id cannot be resolved)")
        owner = self._dht._owner()
        put = self._node().put_encrypted(
            key, val.data, owner, to._native(), val.value_type, val.user_type, val.id or None, permanent, True,
        )
        return await self._stored(put)

    def listen(self, key: InfoHash) -> _Listener:
        return _Listener(self._node().listen(key, None, True))

    def cancelListen(self, listener: _Listener) -> _Done:
        listener.cancel()
        return _Done()

    async def shutdown(self) -> None:
        node = self._dht._node
        if node is not None:
            self._dht._node = None
            try:
                await node.shutdown(True)
            except KadmosError:
                pass
            self._dht.shutdown()

    async def join(self) -> None:
        await self.shutdown()
        await asyncio.get_running_loop().run_in_executor(None, self._dht.join)

    async def __aenter__(self) -> "DhtRunner":
        if not self._dht.isRunning():
            self.run()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dht, name)
