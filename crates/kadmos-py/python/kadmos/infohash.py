"""20-byte identifiers: info hashes, node IDs, keys."""

from __future__ import annotations

import hashlib
import os
from typing import Type, TypeVar, Union

_H = TypeVar("_H", bound="InfoHash")


class InfoHash(bytes):
    """A 160-bit identifier (an info hash, a node ID, an OpenDHT key). It is ``bytes`` (20 of
    them), so it compares, hashes and sorts as bytes; ``str()`` gives its 40 hex digits.

    ``InfoHash("40 hex digits")`` or ``InfoHash(b"20 raw bytes")``; :meth:`of_str` hashes
    any text the way OpenDHT's ``InfoHash.get`` does."""

    def __new__(cls: Type[_H], value: Union[str, bytes]) -> _H:
        if isinstance(value, str):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raw = b""
            if len(raw) != 20:
                raise ValueError(f"an InfoHash in text is 40 hex digits, not {value!r} (InfoHash.of_str hashes text)")
            return super().__new__(cls, raw)
        raw = bytes(value)
        if len(raw) != 20:
            raise ValueError(f"an InfoHash has 20 bytes, not {len(raw)}")
        return super().__new__(cls, raw)

    @classmethod
    def of_str(cls: Type[_H], text: str) -> _H:
        """The SHA-1 of ``text`` (UTF-8): OpenDHT's ``InfoHash.get(text)``."""
        return cls(hashlib.sha1(text.encode()).digest())

    @classmethod
    def random(cls: Type[_H]) -> _H:
        return cls(os.urandom(20))

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"InfoHash('{self.hex()}')"


Key = Union[InfoHash, str, bytes]
"""What a key argument accepts: an InfoHash, 20 bytes, or a str (40 hex digits are the ID
itself; any other text is hashed like :meth:`InfoHash.of_str`)."""
