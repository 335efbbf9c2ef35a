"""kadmos: a DHT node for the BitTorrent Mainline and OpenDHT networks (the kadmos Rust library).

- :class:`Dht` (Mainline) and :class:`OpenDht`: blocking calls; :mod:`kadmos.aio`: the same as
  coroutines. Streams (``get_peers``, ``get``, ``listen``...) serve ``for`` and ``async for``;
  closing one (``close()``, ``with``, or dropping it) cancels its operation.
- :class:`Testnet`, :class:`OpenDhtTestnet`: local networks on 127.0.0.1 for tests.
- :mod:`kadmos.errors`: one :class:`KadmosError` tree that fits Python's own exceptions.
- :mod:`kadmos.opendht`: OpenDHT's Python API on kadmos (change ``import opendht``).
- :func:`enable_logging`: kadmos's log on stderr.

Nodes run on one runtime of the process. Do not use kadmos in a child process after
``fork()`` (start nodes after forking, or use the ``spawn`` start method): it raises
:class:`ForkedProcessError` there."""

from . import errors
from ._native import Stream, disable_logging, enable_logging
from .errors import (
    BindError, CannotReplaceError, CasMismatchError, CryptoError, DhtTimeoutError, ForkedProcessError,
    InvalidSignatureError, KadmosError, NoContactsError, NotFoundError, PutRefusedError, RemoteError,
    SeqTooLowError, ShutdownError,
)
from .infohash import InfoHash, Key
from .mainline import Dht, ItemSigner, Testnet
from .opendht_network import (
    Filter, OpenDht, OpenDhtTestnet, OwnerKey, PublicKey, Value, decrypt_value, verify_value,
)
from .results import (
    AnnounceResult, FoundItem, MutableItem, NodeInfo, PeerBatch, PutReport, PutResult, RemoteFailure, Samples,
    SavedState,
)

__all__ = [
    "AnnounceResult", "BindError", "CannotReplaceError", "CasMismatchError", "CryptoError", "Dht",
    "DhtTimeoutError", "Filter", "ForkedProcessError", "FoundItem", "InfoHash", "InvalidSignatureError",
    "ItemSigner", "KadmosError", "Key", "MutableItem", "NoContactsError", "NodeInfo", "NotFoundError",
    "OpenDht", "OpenDhtTestnet", "OwnerKey", "PeerBatch", "PublicKey", "PutRefusedError", "PutReport",
    "PutResult", "RemoteError", "RemoteFailure", "Samples", "SavedState", "SeqTooLowError", "ShutdownError",
    "Stream", "Testnet", "Value", "decrypt_value", "disable_logging", "enable_logging", "errors", "verify_value",
]
