"""Typed results of the calls. Each is a frozen dataclass (``repr``, ``==``) made from the
JSON form of the kadmos result, and ``to_dict()`` gives that form back: the same field names as
the CLI's ``--json`` output. Addresses are ``(host, port)`` tuples."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from .infohash import InfoHash

Address = Tuple[str, int]


def address(text: str) -> Address:
    """``"1.2.3.4:5"`` or ``"[::1]:5"`` as ``("1.2.3.4", 5)``."""
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class JsonForm:
    """Gives ``to_dict()`` to a result that keeps its JSON form in ``_json``."""

    _json: Dict[str, Any]

    def to_dict(self) -> Dict[str, Any]:
        """The result as the CLI's ``--json`` prints it."""
        return copy.deepcopy(self._json)


@dataclass(frozen=True)
class NodeInfo(JsonForm):
    """A node of the DHT: its ID and address."""

    id: InfoHash
    addr: Address
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "NodeInfo":
        return cls(InfoHash(d["id"]), address(d["addr"]), d)


def _nodes(items: List[Dict[str, Any]]) -> List[NodeInfo]:
    return [NodeInfo.from_dict(n) for n in items]


@dataclass(frozen=True)
class RemoteFailure(JsonForm):
    """An error one node answered (while others succeeded)."""

    sender: Address
    code: int
    message: str
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "RemoteFailure":
        return cls(address(d["from"]), d["code"], d["message"], d)


@dataclass(frozen=True)
class PeerBatch(JsonForm):
    """Peers one node returned during a ``get_peers`` lookup."""

    sender: NodeInfo
    peers: List[Address]
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PeerBatch":
        return cls(NodeInfo.from_dict(d["from"]), [address(p) for p in d["peers"]], d)


@dataclass(frozen=True)
class AnnounceResult(JsonForm):
    """The nodes that stored an announce."""

    stored_at: List[NodeInfo]
    lookup_requests: int
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "AnnounceResult":
        return cls(_nodes(d["stored_at"]), d["lookup_requests"], d)


@dataclass(frozen=True)
class Samples(JsonForm):
    """BEP 51: a sample of the info hashes one node stores."""

    sender: Address
    samples: List[InfoHash]
    num: int
    interval: int
    nodes: List[NodeInfo]
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Samples":
        return cls(address(d["from"]), [InfoHash(s) for s in d["samples"]], d["num"], d["interval"], _nodes(d["nodes"]), d)


@dataclass(frozen=True)
class PutResult(JsonForm):
    """What a BEP 44 put achieved: the item's target, its seq (mutable items), where it went."""

    target: InfoHash
    seq: Optional[int]
    stored_at: List[NodeInfo]
    errors: List[RemoteFailure]
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PutResult":
        errors = [RemoteFailure.from_dict(e) for e in d["errors"]]
        return cls(InfoHash(d["target"]), d["seq"], _nodes(d["stored_at"]), errors, d)


@dataclass(frozen=True)
class FoundItem(JsonForm):
    """A verified BEP 44 item and the node that returned it. ``value`` is bencoded."""

    sender: NodeInfo
    target: InfoHash
    value: bytes
    public_key: Optional[bytes]
    salt: Optional[bytes]
    seq: Optional[int]
    signature: Optional[bytes]
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FoundItem":
        def raw(name: str) -> Optional[bytes]:
            return None if d[name] is None else bytes.fromhex(d[name])

        return cls(
            NodeInfo.from_dict(d["from"]), InfoHash(d["target"]), bytes.fromhex(d["value"]),
            raw("public_key"), raw("salt"), d["seq"], raw("signature"), d,
        )


@dataclass(frozen=True)
class MutableItem:
    """The newest version of a BEP 44 mutable item. ``value`` is bencoded."""

    seq: int
    value: bytes
    signature: bytes


@dataclass(frozen=True)
class PutReport(JsonForm):
    """What an OpenDHT put achieved: the value's id and the nodes that stored it."""

    key: InfoHash
    value_id: int
    stored_at: List[NodeInfo]
    errors: List[RemoteFailure]
    _json: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PutReport":
        errors = [RemoteFailure.from_dict(e) for e in d["errors"]]
        return cls(InfoHash(d["key"]), int(d["value_id"], 16), _nodes(d["stored_at"]), errors, d)


class SavedState:
    """What a node saves to rejoin the network after a restart (its ID, contacts, stored data),
    as JSON. Pass it as ``state=`` to a new node."""

    def __init__(self, json_text: str) -> None:
        self._text = json_text
        self._parsed: Dict[str, Any] = json.loads(json_text)

    @property
    def node_id(self) -> InfoHash:
        return InfoHash(self._parsed["node_id"])

    @property
    def contacts(self) -> int:
        """How many contacts it holds."""
        return len(self._parsed.get("contacts", []))

    def to_json(self) -> str:
        return self._text

    def to_dict(self) -> Dict[str, Any]:
        return copy.deepcopy(self._parsed)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Writes the state to ``path`` (through a temporary file, so a crash never leaves half
        a file)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self._text)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "SavedState":
        with open(path, encoding="utf-8") as f:
            return cls(f.read())

    def __repr__(self) -> str:
        return f"SavedState(node_id={self._parsed.get('node_id')}, contacts={self.contacts})"
