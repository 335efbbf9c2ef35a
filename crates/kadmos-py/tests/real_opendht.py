"""How the tests run a node of the real OpenDHT package next to kadmos."""

from __future__ import annotations

import threading


def make_config(dht):
    """A DhtConfig for a loopback network: no rate limits (every node shares one address), no
    multicast peer discovery."""
    config = dht.DhtConfig()
    config.setRateLimit(-1, -1)
    config.setPeerDiscovery(False, False)
    return config


def stop(node) -> None:
    """Shuts a runner down without holding the GIL while its thread finishes (OpenDHT's
    join() holds the GIL and deadlocks against its own shutdown callback otherwise)."""
    done = threading.Event()
    node.shutdown(done.set)
    assert done.wait(30)
    node.join()
