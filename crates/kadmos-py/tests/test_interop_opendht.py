"""kadmos (its own API) and the real OpenDHT 4.4.2 Python package in one network on 127.0.0.1:
puts, gets and listens cross both ways, and so do signed and encrypted values."""

from __future__ import annotations

import threading
import time

import pytest

import kadmos
from real_opendht import make_config, stop

dht = pytest.importorskip("opendht", reason="the real opendht package (interop/install.sh) is needed")


@pytest.fixture(scope="module")
def odht(opendht_net):
    """A real OpenDHT node with a 2048-bit identity, joined to the kadmos testnet."""
    identity = dht.Identity.generate("interop", bits=2048)
    node = dht.DhtRunner()
    node.run(id=identity, port=0, ipv4="127.0.0.1", ipv6="::1", config=make_config(dht))
    host, port = opendht_net.nodes[0].local_addrs[0]
    node.bootstrap(host, str(port))
    yield node, identity
    stop(node)


def key_pair():
    """A random key, as kadmos and as OpenDHT take it."""
    key = kadmos.InfoHash.random()
    return key, dht.InfoHash(str(key).encode())


def signed_by_opendht(node, opendht_node, data: bytes):
    """Puts `data` signed by the OpenDHT node; returns the value as kadmos gets it."""
    key, odht_key = key_pair()
    assert node.putSigned(odht_key, dht.Value(data))
    [found] = opendht_node.get_all(key)
    return found


def test_put_and_get_both_ways(odht, opendht_node):
    """A value put by OpenDHT is found by kadmos, and one put by kadmos is found by OpenDHT."""
    node, _ = odht
    key, odht_key = key_pair()
    value = dht.Value(b"from opendht")
    assert node.put(odht_key, value)
    assert [v.data for v in opendht_node.get_all(key)] == [b"from opendht"]
    opendht_node.put(key, b"from kadmos", user_type="text/plain")
    found = {bytes(v.data): v.user_type for v in node.get(odht_key)}
    assert found == {b"from opendht": "", b"from kadmos": "text/plain"}


def test_listen_both_ways(odht, opendht_node, opendht_net):
    """A kadmos listen hears a put made by OpenDHT, and an OpenDHT listen hears a put made by
    kadmos (each as a new value, not expired)."""
    node, _ = odht
    key, odht_key = key_pair()
    heard, heard_once = [], threading.Event()

    def on_value(value, expired):
        heard.append((bytes(value.data), expired))
        heard_once.set()
        return True

    token = node.listen(odht_key, on_value)
    with opendht_node.listen(key) as changes:
        assert node.put(odht_key, dht.Value(b"opendht speaks"))
        value, expired = changes.next(timeout=30)
        assert (value.data, expired) == (b"opendht speaks", False)
    opendht_net.nodes[3].put(key, b"kadmos speaks")
    # The callback runs on OpenDHT's thread and sets the event on each value: wait for the one
    # from kadmos, up to a deadline.
    deadline = time.monotonic() + 30
    while (b"kadmos speaks", False) not in heard and time.monotonic() < deadline:
        heard_once.wait(1)
        heard_once.clear()
    node.cancelListen(token)
    assert (b"kadmos speaks", False) in heard


def test_signed_values_both_ways(odht, opendht_node):
    """OpenDHT's putSigned reaches kadmos with OpenDHT's key id as owner and a signature that
    verifies; kadmos's put_signed reaches OpenDHT's secure layer, which keeps it and reports
    kadmos's key as owner."""
    node, identity = odht
    found = signed_by_opendht(node, opendht_node, b"signed by opendht")
    assert found.owner_id == str(identity.publickey.getId())
    kadmos.verify_value(found)

    owner = kadmos.OwnerKey.generate(2048)
    other_key = kadmos.InfoHash.random()
    opendht_node.put_signed(other_key, b"signed by kadmos", owner)
    [seen] = node.get(dht.InfoHash(str(other_key).encode()))
    assert bytes(seen.data) == b"signed by kadmos"
    assert str(seen.owner.getId()) == owner.id


def test_encrypted_values_both_ways(odht, opendht_node):
    """kadmos encrypts to OpenDHT's key (taken from one of its signed values) and OpenDHT's
    get opens it; OpenDHT encrypts to kadmos's key (taken from a kadmos signed value) and
    kadmos's decrypt_value opens it and names OpenDHT's key as sender."""
    node, identity = odht
    signed = signed_by_opendht(node, opendht_node, b"my key is here")
    owner = kadmos.OwnerKey.generate(2048)
    secret_key = kadmos.InfoHash.random()
    opendht_node.put_encrypted(secret_key, b"for opendht only", signed.owner, sender=owner)
    opened = node.get(dht.InfoHash(str(secret_key).encode()))
    assert [bytes(v.data) for v in opened] == [b"for opendht only"]
    assert str(opened[0].owner.getId()) == owner.id

    me_key = kadmos.InfoHash.random()
    opendht_node.put_signed(me_key, b"kadmos key is here", owner)
    [mine] = node.get(dht.InfoHash(str(me_key).encode()))
    back_key = kadmos.InfoHash.random()
    assert node.putEncrypted(dht.InfoHash(str(back_key).encode()), dht.Value(b"for kadmos only"), mine.owner)
    [sealed] = opendht_node.get_all(back_key)
    assert sealed.encrypted
    clear = kadmos.decrypt_value(owner, sealed)
    assert clear.data == b"for kadmos only" and clear.owner_id == str(identity.publickey.getId())


def test_drop_in_and_real_opendht_share_values(odht, opendht_net):
    """kadmos.opendht (the drop-in) and the real opendht, side by side: each finds the other's
    value under one InfoHash.get key."""
    import kadmos.opendht as kdht

    node, _ = odht
    runner = kdht.DhtRunner()
    runner.run(port=0, ipv4="127.0.0.1")
    try:
        host, port = opendht_net.nodes[1].local_addrs[0]
        runner.bootstrap(host, str(port))
        assert runner.put(kdht.InfoHash.get("shared drop-in key"), kdht.Value(b"drop-in"))
        assert node.put(dht.InfoHash.get("shared drop-in key"), dht.Value(b"original"))
        mine = sorted(bytes(v.data) for v in runner.get(kdht.InfoHash.get("shared drop-in key")))
        theirs = sorted(bytes(v.data) for v in node.get(dht.InfoHash.get("shared drop-in key")))
        assert mine == theirs == [b"drop-in", b"original"]
    finally:
        runner.shutdown()
        runner.join()
