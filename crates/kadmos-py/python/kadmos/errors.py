"""The exceptions of kadmos: one tree under :class:`KadmosError` that also fits Python's own
(a timeout is a :class:`TimeoutError`, "not found" a :class:`LookupError`, a bind failure an
:class:`OSError`), so ``except TimeoutError`` works as expected."""

from __future__ import annotations


class KadmosError(Exception):
    """Every error kadmos raises (bad arguments raise TypeError or ValueError instead)."""


class DhtTimeoutError(KadmosError, TimeoutError):
    """No node answered in time."""


class NoContactsError(KadmosError):
    """The routing table is empty: the node has nobody to ask (bootstrap first)."""


class OverloadedError(KadmosError):
    """Too many requests in flight."""


class RemoteError(KadmosError):
    """A node answered with an error; ``code`` is its KRPC or OpenDHT code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class NotFoundError(KadmosError, LookupError):
    """Nobody on the network has what was asked for."""


class ShutdownError(KadmosError, RuntimeError):
    """The node has shut down."""


class ForkedProcessError(KadmosError, RuntimeError):
    """kadmos was used in a child process after ``fork()``: its threads did not survive the fork.
    Start nodes after forking, or use the ``spawn``/``forkserver`` start methods."""


class BindError(KadmosError, OSError):
    """A socket could not be bound; ``errno`` as usual, ``addr`` the address tried."""

    @property
    def addr(self) -> str | None:
        return self.filename


class KadmosIoError(KadmosError, OSError):
    """An I/O error (reading or writing a state file, say)."""


class ConfigError(KadmosError, ValueError):
    """A node cannot be started with these settings."""


class StateError(KadmosError, ValueError):
    """A saved state cannot be read."""


class FamilyUnavailableError(KadmosError, ValueError):
    """The address is of a family (IPv4/IPv6) the node has no socket for."""


class InvalidItemError(KadmosError, ValueError):
    """A BEP 44 item is invalid (too big, salt too long...)."""


class CryptoError(KadmosError, ValueError):
    """A key, signature or cypher was refused."""


class PutRefusedError(KadmosError):
    """Every node refused a put; ``code`` is the error code they answered."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class CasMismatchError(PutRefusedError):
    """BEP 44: the item changed since it was read (code 301)."""


class SeqTooLowError(PutRefusedError):
    """BEP 44: the network holds a newer version (code 302)."""


class InvalidSignatureError(PutRefusedError):
    """BEP 44: the signature does not verify (code 206)."""


class CannotReplaceError(KadmosError):
    """OpenDHT: a value with this id is on the network and this put cannot replace it."""

    def __init__(self, message: str, value_id: int) -> None:
        super().__init__(message)
        self.value_id = value_id


__all__ = [name for name, value in list(globals().items()) if isinstance(value, type) and issubclass(value, KadmosError)]
