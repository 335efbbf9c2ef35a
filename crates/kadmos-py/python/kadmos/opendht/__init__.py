"""OpenDHT's Python API (the ``opendht`` package) on kadmos: an OpenDHT program runs on kadmos by
changing ``import opendht`` to ``import kadmos.opendht``. The network is the same one: kadmos
nodes and OpenDHT nodes store, find and listen to each other's values, signed and encrypted
values included.

Differences (see also the README's section "Python"):

- Callbacks (``get_cb``, ``done_cb``, ``value_cb``, ``shutdown_cb``) run on one callback
  thread per ``DhtRunner``, as OpenDHT's run on its own thread; never on kadmos's runtime
  threads, so a callback may call blocking methods.
- ``join()`` and ``shutdown()`` release the GIL (OpenDHT's ``join()`` holds it and can deadlock).
- ``done_cb(ok, nodes)`` gets an empty list of nodes.
- Identities have no X.509 certificate: ``Identity.certificate`` is None; ``Certificate``,
  ``TrustList``, proxies, ``Pht``, ``registerType``, ``getNodeMessageStats``, elliptic keys
  and ``putEncrypted`` to a bare ``PkId`` raise NotImplementedError.
- ``enableLogging``/``disableLogging`` switch kadmos's log on stderr; ``enableFileLogging``
  raises NotImplementedError; the ``get*Log`` methods return kadmos's node information as
  text, not OpenDHT's logs.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import queue
import socket
import threading
from datetime import timedelta
from typing import Any, Callable, List, Optional, Union

from .. import _native
from ..errors import KadmosError, ShutdownError
from ..infohash import InfoHash as _KadmosInfoHash

__all__ = [
    "DhtConfig", "DhtRunner", "Identity", "InfoHash", "ListenToken", "PkId", "PrivateKey", "PublicKey",
    "SockAddr", "Value", "ValueType", "Where", "Certificate", "TrustList", "Pht", "aesEncrypt", "aesDecrypt",
]


class InfoHash(_KadmosInfoHash):
    """OpenDHT's InfoHash: ``InfoHash(b"40 hex digits")`` (or nothing: all zeros),
    ``InfoHash.get(text)``, ``toString()`` (hex as bytes). It is also a ``kadmos.InfoHash``."""

    def __new__(cls, value: Union[bytes, str] = b"") -> "InfoHash":
        text = value.decode() if isinstance(value, bytes) else value
        if text == "":
            return super().__new__(cls, bytes(20))
        return super().__new__(cls, text)

    @classmethod
    def get(cls, text: Union[str, bytes]) -> "InfoHash":
        data = text.encode() if isinstance(text, str) else bytes(text)
        return cls(hashlib.sha1(data).hexdigest())

    @classmethod
    def getRandom(cls) -> "InfoHash":
        return cls(os.urandom(20).hex())

    @classmethod
    def _of(cls, raw: bytes) -> "InfoHash":
        return cls(bytes(raw).hex())

    def toString(self) -> bytes:
        return self.hex().encode()

    def getId(self) -> "InfoHash":
        return self

    def __bool__(self) -> bool:
        return any(self)

    def __repr__(self) -> str:
        return f"<InfoHash '{self.hex()}'>"

    def getBit(self, index: int) -> bool:
        return bool(self[index // 8] >> (7 - index % 8) & 1)

    def setBit(self, index: int, bit: bool) -> "InfoHash":
        """Returns the changed hash (kadmos's InfoHash is immutable, unlike OpenDHT's)."""
        raw = bytearray(self)
        mask = 1 << (7 - index % 8)
        raw[index // 8] = raw[index // 8] | mask if bit else raw[index // 8] & ~mask
        return InfoHash._of(bytes(raw))

    def commonBits(self, other: "InfoHash") -> int:
        for i in range(160):
            if self.getBit(i) != other.getBit(i):
                return i
        return 160

    def toFloat(self) -> float:
        return int.from_bytes(self, "big") / float(1 << 160)

    __hash__ = bytes.__hash__


PkId = InfoHash


class _RsaKey:
    """What both halves of a key pair share: an empty key (OpenDHT's default-constructed one)
    that refuses to be used, and the key id."""

    def __init__(self, native: Any = None) -> None:
        self._key = native

    def _native(self) -> Any:
        if self._key is None:
            raise ValueError(f"{type(self).__name__} is not initialized")
        return self._key

    def getId(self) -> InfoHash:
        return InfoHash(self._native().id)


class PublicKey(_RsaKey):
    """OpenDHT's PublicKey (RSA): ``getId()``, ``checkSignature``, ``encrypt``."""

    def getLongId(self) -> str:
        return self._native().long_id

    def checkSignature(self, data: bytes, signature: bytes) -> bool:
        return self._native().check_signature(bytes(data), bytes(signature))

    def encrypt(self, data: bytes) -> bytes:
        return self._native().encrypt(bytes(data))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self._key == other._key

    def __str__(self) -> str:
        return self.getLongId()


class PrivateKey(_RsaKey):
    """OpenDHT's PrivateKey (RSA): ``generate()``, ``getPublicKey()``, ``sign``, ``decrypt``."""

    @staticmethod
    def generate(bits: int = 4096) -> "PrivateKey":
        return PrivateKey(_native.OwnerKey.generate(bits))

    @staticmethod
    def generateEC() -> "PrivateKey":
        raise NotImplementedError("kadmos has RSA keys only (OpenDHT's format); use PrivateKey.generate()")

    def getPublicKey(self) -> PublicKey:
        return PublicKey(self._native().public_key)

    def getLongId(self) -> str:
        return self._native().public_key.long_id

    def sign(self, data: bytes) -> bytes:
        return self._native().sign(bytes(data))

    def decrypt(self, data: bytes) -> bytes:
        return self._native().decrypt(bytes(data))


class Identity:
    """OpenDHT's Identity: a key pair. kadmos has no X.509, so ``certificate`` is None."""

    def __init__(self, key: Optional[PrivateKey] = None) -> None:
        self.key = key or PrivateKey()
        self.publickey = self.key.getPublicKey() if key is not None else PublicKey()
        self.certificate = None

    @staticmethod
    def generate(name: str = "pydht", ca: Optional["Identity"] = None, bits: int = 4096) -> "Identity":
        if ca is not None and ca.key._key is not None:
            raise NotImplementedError("kadmos has no X.509 certificates: an identity signed by a CA is not supported")
        return Identity(PrivateKey.generate(bits))


class Value:
    """OpenDHT's Value: ``Value(data, id=0)``, with ``data``, ``id`` and ``user_type``
    writable, ``owner`` (a PublicKey of a signed value) and ``recipient``."""

    def __init__(self, data: bytes = b"", id: int = 0) -> None:
        self.data = bytes(data)
        self.id = id
        self.user_type = ""
        self.value_type = 0
        self._stored: Optional[_native.Value] = None

    @classmethod
    def _of(cls, native: _native.Value) -> "Value":
        value = cls(native.data, native.id)
        value.user_type = native.user_type
        value.value_type = native.value_type
        value._stored = native
        return value

    def _native(self) -> _native.Value:
        stored = self._stored
        if stored is not None and (stored.data, stored.id, stored.user_type) == (self.data, self.id, self.user_type):
            return stored
        return _native.Value(self.data, self.id, self.value_type, self.user_type)

    @property
    def owner(self) -> PublicKey:
        owner = self._stored.owner if self._stored is not None else None
        return PublicKey(owner)

    @property
    def recipient(self) -> InfoHash:
        recipient = self._stored.recipient if self._stored is not None else None
        return InfoHash() if recipient is None else InfoHash(recipient)

    @property
    def size(self) -> int:
        return self._native().size

    def __str__(self) -> str:
        return f"Value[id:{self.id:x} data:{self.data.hex()}]"

    def __repr__(self) -> str:
        return f"<kadmos.opendht.Value id={self.id:x} data={self.data!r}>"


class Where:
    """OpenDHT's Where: conditions a value must meet, built with ``id()``, ``valueType()``,
    ``owner()``, ``seq()``, ``userType()`` (each returns the Where) or parsed from
    ``"WHERE id=5,user_type=text"``."""

    _FIELDS = {"id": "id", "value_type": "value_type", "owner_pk": "owner", "seq": "seq", "user_type": "user_type"}

    def __init__(self, text: str = "") -> None:
        self._conditions: dict = {}
        body = text.strip()
        if body.upper().startswith("WHERE"):
            body = body[5:]
        for part in filter(None, (p.strip() for p in body.split(","))):
            name, _, raw = part.partition("=")
            field = self._FIELDS.get(name.strip())
            if field is None or not raw:
                raise ValueError(f"cannot read the condition {part!r} (fields: {', '.join(self._FIELDS)})")
            raw = raw.strip().strip("\"'")
            self._conditions[field] = raw if field in ("user_type", "owner") else int(raw, 0)

    def id(self, value_id: int) -> "Where":
        self._conditions["id"] = value_id
        return self

    def valueType(self, value_type: int) -> "Where":
        self._conditions["value_type"] = value_type
        return self

    def owner(self, owner: InfoHash) -> "Where":
        self._conditions["owner"] = str(owner)
        return self

    def seq(self, seq: int) -> "Where":
        self._conditions["seq"] = seq
        return self

    def userType(self, user_type: Union[str, bytes]) -> "Where":
        self._conditions["user_type"] = user_type.decode() if isinstance(user_type, bytes) else user_type
        return self

    def _filter(self) -> _native.Filter:
        return _native.Filter(**self._conditions)

    def isSatisfiedBy(self, value: Value) -> bool:
        return self._filter().matches(value._native())

    def __str__(self) -> str:
        names = {v: k for k, v in self._FIELDS.items()}
        return "WHERE " + ",".join(f"{names[k]}={v}" for k, v in self._conditions.items()) if self._conditions else ""


class ValueType:
    """OpenDHT's ValueType. Registering types is not supported (values of unknown types live 10
    minutes, as on OpenDHT nodes that do not know them)."""

    def __init__(self, id: int, name: str, expiration: timedelta) -> None:
        self.id, self.name, self.expiration = id, name, expiration


class SockAddr:
    """OpenDHT's SockAddr: an IP address and a port."""

    def __init__(self, host: str = "", port: int = 0) -> None:
        self._host, self._port = host, int(port)

    @staticmethod
    def resolve(host: str, service: str = "4222") -> List["SockAddr"]:
        found = socket.getaddrinfo(host, service, type=socket.SOCK_DGRAM)
        return [SockAddr(str(info[4][0]), int(info[4][1])) for info in found]

    def getPort(self) -> int:
        return self._port

    def setPort(self, port: int) -> None:
        self._port = port

    def getFamily(self) -> int:
        if not self._host:
            return socket.AF_UNSPEC
        return socket.AF_INET6 if ":" in self._host else socket.AF_INET

    def setFamily(self, family: int) -> None:
        self._host = "::" if family == socket.AF_INET6 else "0.0.0.0"

    def _ip(self):
        return ipaddress.ip_address(self._host) if self._host else None

    def isLoopback(self) -> bool:
        ip = self._ip()
        return bool(ip and ip.is_loopback)

    def isPrivate(self) -> bool:
        ip = self._ip()
        return bool(ip and ip.is_private)

    def isUnspecified(self) -> bool:
        ip = self._ip()
        return ip is None or ip.is_unspecified

    def toString(self) -> str:
        return f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"

    __str__ = toString

    def __repr__(self) -> str:
        return f"<SockAddr {self.toString()}>"


class DhtConfig:
    """OpenDHT's DhtConfig: rate limits, network id, node ID, identity. Peer discovery and
    storage maintenance settings are accepted and ignored (kadmos has neither); proxies and
    ``setBound`` raise NotImplementedError (give the addresses to ``run()``)."""

    def __init__(self) -> None:
        self.rate_limits: tuple = (8192, 1024)
        self.network = 0
        self.node_id: Optional[InfoHash] = None
        self.identity: Optional[Identity] = None
        self.client = False

    def setRateLimit(self, total: int, per_ip: int) -> None:
        """Requests a second, in all and per IP; -1 for no limit."""
        self.rate_limits = (None if total < 0 else total, None if per_ip < 0 else per_ip)

    def setNetwork(self, network: int) -> None:
        self.network = network

    def setNodeId(self, node_id: InfoHash) -> None:
        self.node_id = node_id

    def setIdentity(self, identity: Identity) -> None:
        self.identity = identity

    def setBootstrapMode(self, bootstrap: bool) -> None:
        """Accepted for compatibility; kadmos nodes always serve as bootstrap nodes."""

    def setPeerDiscovery(self, discover: bool, publish: bool = False) -> None:
        """Accepted for compatibility: kadmos has no local peer discovery (multicast)."""

    def setMaintainStorage(self, maintain: bool) -> None:
        """Accepted for compatibility: kadmos nodes do not move stored values around."""

    def setProxyInfo(self, *args: Any) -> None:
        raise NotImplementedError("kadmos has no DHT proxy client")

    def setBound(self, *args: Any) -> None:
        raise NotImplementedError("give the addresses to bind to DhtRunner.run(ipv4=..., ipv6=...)")


class ListenToken:
    """What ``DhtRunner.listen`` returns, for ``cancelListen``."""

    def __init__(self, stream: _native.Stream, reader: threading.Thread) -> None:
        self._stream, self._reader = stream, reader

    def cancel(self) -> None:
        self._stream.close()


class _Callbacks:
    """The one thread on which a runner's callbacks run, in the order they were posted (as
    OpenDHT's callbacks run on its own thread): never on a runtime thread, so a callback may
    call blocking methods of the runner."""

    def __init__(self) -> None:
        self._queue: "queue.SimpleQueue[Optional[Callable[[], None]]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kadmos-callbacks", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # a callback's bug must not stop the others
                import traceback

                traceback.print_exc()

    def post(self, task: Callable[[], None]) -> None:
        self._queue.put(task)

    def stop(self) -> None:
        self._queue.put(None)

    def join(self, timeout: Optional[float] = None) -> None:
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


def _reader(name: str, work: Callable[[], None]) -> threading.Thread:
    """A daemon thread that reads one stream (blocked in kadmos with the GIL released)."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return thread


class DhtRunner:
    """OpenDHT's DhtRunner on a kadmos node. Each call blocks unless given a callback; then it
    returns at once and the callbacks run on the runner's callback thread."""

    def __init__(self) -> None:
        self._node: Optional[_native.OpenDht] = None
        self._identity: Optional[Identity] = None
        self._callbacks: Optional[_Callbacks] = None

    # -- lifecycle

    def run(
        self, id: Optional[Identity] = None, is_bootstrap: bool = False, port: int = 0, ipv4: str = "",
        ipv6: str = "", config: Optional[DhtConfig] = None,
    ) -> None:
        """Starts the node on ``port`` (0: any free port), bound to ``ipv4``/``ipv6`` if given
        (default: all interfaces). Like OpenDHT, it does not join: call ``bootstrap()``.
        ``is_bootstrap`` is accepted and ignored (every kadmos node serves as a bootstrap node)."""
        if self._node is not None:
            raise RuntimeError("this DhtRunner is already running")
        config = config or DhtConfig()
        bind = [ip for ip in (ipv4, ipv6) if ip]
        options = {
            "port": int(port), "bind": bind, "bootstrap": [],
            "node_id": None if config.node_id is None else str(config.node_id), "state": None, "seed": None,
        }
        self._node = _native.OpenDht.start(options, config.client, config.network, config.rate_limits, False)
        self._identity = id if id is not None and id.key._key is not None else config.identity
        self._callbacks = _Callbacks()

    def _callback_thread(self) -> _Callbacks:
        if self._callbacks is None:
            raise ShutdownError("the DhtRunner is not running (call run() first)")
        return self._callbacks

    def _running(self) -> _native.OpenDht:
        if self._node is None:
            raise ShutdownError("the DhtRunner is not running (call run() first)")
        return self._node

    def bootstrap(self, host: str, port: Union[str, int, None] = "4222") -> None:
        """Joins the network through ``host:port``; returns at once (operations issued next
        wait for the join)."""
        addr = f"[{host}]:{port or 4222}" if ":" in host else f"{host}:{port or 4222}"
        self._running().bootstrap([addr], False)

    def isRunning(self) -> bool:
        return self._node is not None

    def shutdown(self, shutdown_cb: Optional[Callable[[], None]] = None) -> None:
        """Stops the node (the GIL is released while it stops)."""
        node, callbacks = self._node, self._callbacks
        self._node = None
        if node is not None:
            try:
                node.shutdown(False)
            except ShutdownError:
                pass
        if callbacks is not None:
            if shutdown_cb is not None:
                callbacks.post(shutdown_cb)
            callbacks.stop()
        elif shutdown_cb is not None:
            shutdown_cb()

    def join(self) -> None:
        """Stops the node if it runs and waits for the callback thread to finish."""
        callbacks = self._callback_thread()
        if self._node is not None:
            self.shutdown()
        if callbacks is not None:
            callbacks.join(30)

    # -- identity

    def getNodeId(self) -> InfoHash:
        return InfoHash(self._running().node_id)

    def getId(self) -> InfoHash:
        """The id of this runner's public key (zeros without an identity)."""
        return self._identity.key.getId() if self._identity is not None else InfoHash()

    def getPublicKey(self) -> PublicKey:
        return self._identity.publickey if self._identity is not None else PublicKey()

    def getBound(self, af: int = 0) -> SockAddr:
        for host, port in self._running().local_addrs:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            if af in (0, socket.AF_UNSPEC, family):
                return SockAddr(host, port)
        return SockAddr()

    # -- values

    def _put(self, do_put: Callable[[], Any], done_cb: Optional[Callable[[bool, list], None]]) -> Optional[bool]:
        if done_cb is None:
            try:
                do_put()
                return True
            except KadmosError:
                return False
        callbacks = self._callback_thread()

        def work() -> None:
            try:
                do_put()
                ok = True
            except KadmosError:
                ok = False
            callbacks.post(lambda: done_cb(ok, []))

        _reader("kadmos-put", work)
        return None

    def put(self, key: InfoHash, value: Value, done_cb: Optional[Callable[[bool, list], None]] = None, permanent: bool = False) -> Optional[bool]:
        """Puts ``value``; True once stored (blocking form), or calls ``done_cb(ok, nodes)``."""
        node = self._running()
        native = value._native()
        if native.id == 0:
            value.id = int.from_bytes(os.urandom(8), "big") or 1
            native = value._native()
        return self._put(lambda: node.put_value(key, native, permanent, False), done_cb)

    def putSigned(self, key: InfoHash, value: Value, done_cb: Optional[Callable[[bool, list], None]] = None, permanent: bool = False) -> Optional[bool]:
        """Puts ``value`` signed with the runner's identity (given to ``run()``); a value id
        already put by this identity is replaced (next seq)."""
        node, owner = self._running(), self._owner()
        value_id = value.id or None
        return self._put(
            lambda: node.put_signed(key, value.data, owner, value.value_type, value.user_type, value_id, permanent, False),
            done_cb,
        )

    def putEncrypted(
        self, key: InfoHash, value: Value, to: PublicKey, done_cb: Optional[Callable[[bool, list], None]] = None,
        permanent: bool = False,
    ) -> Optional[bool]:
        """Puts ``value`` encrypted to ``to`` and signed with the runner's identity."""
        if not isinstance(to, PublicKey):
            raise NotImplementedError("putEncrypted needs the recipient's PublicKey (a bare key id cannot be resolved)")
        node, owner, recipient = self._running(), self._owner(), to._native()
        value_id = value.id or None
        return self._put(
            lambda: node.put_encrypted(key, value.data, owner, recipient, value.value_type, value.user_type, value_id, permanent, False),
            done_cb,
        )

    def _owner(self) -> _native.OwnerKey:
        if self._identity is None:
            raise ValueError("signing needs an identity: run(id=Identity.generate()) or DhtConfig.setIdentity()")
        return self._identity.key._native()

    def cancelPut(self, key: InfoHash, value: Value) -> bool:
        """Stops keeping a permanent value alive (OpenDHT passes the Value; its id also works)."""
        value_id = value if isinstance(value, int) else value.id
        return self._running().cancel_put(key, value_id, False)

    def get(
        self, key: InfoHash, get_cb: Optional[Callable[[Value], bool]] = None,
        done_cb: Optional[Callable[[bool, list], None]] = None, filter: Optional[Callable[[Value], bool]] = None,
        where: Optional[Where] = None,
    ) -> Optional[List[Value]]:
        """The values at ``key`` (a list), or, given ``get_cb``, calls it with each value as it
        arrives (returning False stops the get), then ``done_cb(ok, nodes)``."""
        stream = self._running().get(key, None if where is None else where._filter())
        keep = filter or (lambda _v: True)
        if get_cb is None:
            with stream:
                values = [v for v in map(Value._of, stream) if keep(v)]
            return values
        callbacks = self._callback_thread()
        on_value = get_cb

        def forward(value: Value) -> None:
            if on_value(value) is False:
                stream.close()

        def work() -> None:
            ok = True
            try:
                for value in map(Value._of, stream):
                    if keep(value):
                        callbacks.post(functools.partial(forward, value))
            except KadmosError:
                ok = False
            if done_cb is not None:
                callbacks.post(lambda: done_cb(ok, []))

        _reader("kadmos-get", work)
        return None

    def listen(self, key: InfoHash, value_cb: Callable[[Value, bool], bool]) -> ListenToken:
        """Calls ``value_cb(value, expired)`` for the values at ``key`` and each change (until
        it returns False or ``cancelListen``)."""
        stream = self._running().listen(key, None, False)
        callbacks = self._callback_thread()

        def forward(value: Value, expired: bool) -> None:
            if not stream.closed and value_cb(value, expired) is False:
                stream.close()

        def work() -> None:
            try:
                for value, expired in stream:
                    callbacks.post(functools.partial(forward, Value._of(value), expired))
            except KadmosError:
                pass

        return ListenToken(stream, _reader("kadmos-listen", work))

    def cancelListen(self, token: ListenToken) -> None:
        token.cancel()

    def ping(self, addr: SockAddr, cb: Optional[Callable[[bool], None]] = None) -> Optional[bool]:
        """Whether the node at ``addr`` answered; given ``cb``, calls it with that instead."""
        node = self._running()

        def answered() -> bool:
            try:
                node.ping(addr.toString(), False)
                return True
            except KadmosError:
                return False

        if cb is None:
            return answered()
        callbacks = self._callback_thread()
        _reader("kadmos-ping", lambda: callbacks.post(functools.partial(cb, answered())))
        return None

    # -- logs and what is not supported

    def enableLogging(self) -> None:
        """kadmos's log on stderr (see :func:`kadmos.enable_logging`)."""
        _native.enable_logging("info")

    def disableLogging(self) -> None:
        _native.disable_logging()

    def enableFileLogging(self, path: str) -> None:
        raise NotImplementedError("kadmos logs to stderr only: use enableLogging() and redirect stderr")

    def getStorageLog(self) -> str:
        info = self._running().info(False)
        return f"{info['stored_keys']} keys, {info['stored_values']} values, {info['local_bytes'] + info['remote_bytes']} bytes"

    def getRoutingTablesLog(self, af: int = 0) -> str:
        info = self._running().info(False)
        return f"IPv4: {info['routing_table_ipv4']} nodes, IPv6: {info['routing_table_ipv6']} nodes"

    def getSearchesLog(self, af: int = 0) -> str:
        return f"{self._running().info(False)['running_operations']} operations running"

    def getNodeMessageStats(self, in_: bool = False) -> list:
        raise NotImplementedError("kadmos counts traffic, not messages by kind: see kadmos.OpenDht.info()")

    def registerType(self, value_type: ValueType) -> None:
        raise NotImplementedError("kadmos does not register value types (unknown types live 10 minutes)")


class Certificate:
    def __init__(self, *args: Any) -> None:
        raise NotImplementedError("kadmos has no X.509 certificates")


class TrustList:
    def __init__(self, *args: Any) -> None:
        raise NotImplementedError("kadmos has no X.509 certificates")


class Pht:
    def __init__(self, *args: Any) -> None:
        raise NotImplementedError("kadmos has no prefix hash tree (Pht)")


def aesEncrypt(*args: Any) -> bytes:
    raise NotImplementedError("kadmos does not expose AES helpers")


def aesDecrypt(*args: Any) -> bytes:
    raise NotImplementedError("kadmos does not expose AES helpers")
