"""kadmos.OpenDht and kadmos.aio.OpenDht against an OpenDHT testnet on 127.0.0.1: put with
type/user type/id/permanence, get as a stream and get_all, listen as (value, expired), filters,
signed and encrypted values, cancel_put, info, saved state."""

from __future__ import annotations

import asyncio

import pytest

import kadmos
import kadmos.aio


def test_put_get_and_filters(opendht_net, opendht_node):
    """Values put from two nodes under one key come back from a get on a third (as a stream and
    with get_all); a Filter narrows them by id or user type; the put reports the value id."""
    key = kadmos.InfoHash.of_str("python multi value")
    one = opendht_node.put(key, b"one")
    two = opendht_net.nodes[2].put(key, b"two", user_type="text/plain", id=42)
    assert isinstance(one, kadmos.PutReport) and one.stored_at and two.value_id == 42
    with opendht_net.nodes[3].get(key) as values:
        data = sorted(v.data for v in values)
    assert data == [b"one", b"two"]
    all_values = opendht_net.nodes[1].get_all(key)
    assert {v.id for v in all_values} == {one.value_id, 42}
    by_type = opendht_net.nodes[1].get_all(key, filter=kadmos.Filter(user_type="text/plain"))
    assert [(v.id, v.user_type) for v in by_type] == [(42, "text/plain")]
    by_id = opendht_net.nodes[0].get_all(key, filter=kadmos.Filter(id=one.value_id))
    assert [v.data for v in by_id] == [b"one"]
    assert opendht_node.get_all("nobody put here") == []


def test_text_keys_are_hashed_like_opendht(opendht_net, opendht_node):
    """A str key that is not 40 hex digits is hashed like OpenDHT's InfoHash.get, so a put at
    "text" is found at InfoHash.of_str("text"); a Value object is put as given."""
    report = opendht_node.put("plain text key", kadmos.Value(b"as a value", id=7, value_type=0, user_type="u"))
    assert report.key == kadmos.InfoHash.of_str("plain text key") and report.value_id == 7
    [found] = opendht_net.nodes[2].get_all(kadmos.InfoHash.of_str("plain text key"))
    assert (found.data, found.id, found.user_type) == (b"as a value", 7, "u")
    assert found == kadmos.Value(b"as a value", id=7, user_type="u")
    assert "as a value" in repr(found) and found.to_dict()["data"] == "as a value"


def test_listen_hears_puts_and_close_cancels(opendht_net, opendht_node):
    """A listen yields (value, expired) for a value put by another node; closing the stream
    cancels the listen (the node's listen count drops to 0)."""
    key = kadmos.InfoHash.random()
    changes = opendht_node.listen(key)
    assert opendht_node.info()["listens"] == 1
    opendht_net.nodes[1].put(key, b"heard")
    value, expired = changes.next(timeout=30)
    assert (value.data, expired) == (b"heard", False)
    changes.close()
    assert changes.closed and changes.next(timeout=5) is None
    assert opendht_node.info()["listens"] == 0


def test_signed_and_encrypted_values(opendht_net, opendht_node):
    """put_signed: others see the owner and the signature verifies; with the id of a value
    already put, it is replaced with the next seq. put_encrypted: storing nodes see only the
    cypher; the recipient's key opens it and finds the data and the sender."""
    owner = kadmos.OwnerKey.generate(2048)
    key = kadmos.InfoHash.random()
    first = opendht_node.put_signed(key, b"signed v1", owner)
    opendht_node.put_signed(key, b"signed v2", owner, id=first.value_id)
    [found] = opendht_net.nodes[3].get_all(key)
    assert found.signed and found.owner_id == owner.id == owner.public_key.id
    assert (found.data, found.seq) == (b"signed v2", 1)
    assert found.owner == owner.public_key
    kadmos.verify_value(found)

    recipient = kadmos.OwnerKey.generate(2048)
    secret_key = kadmos.InfoHash.random()
    opendht_node.put_encrypted(secret_key, b"for your eyes", recipient.public_key, sender=owner)
    [sealed] = opendht_net.nodes[2].get_all(secret_key)
    assert sealed.encrypted and sealed.data == b""
    opened = kadmos.decrypt_value(recipient, sealed)
    assert opened.data == b"for your eyes" and opened.owner_id == owner.id
    with pytest.raises(kadmos.CryptoError):
        kadmos.decrypt_value(owner, sealed)
    with pytest.raises(kadmos.CryptoError):
        kadmos.verify_value(kadmos.Value(b"unsigned"))


def test_keys_round_trip_through_pem():
    """Keys save to PEM and load back with the same id; the public key checks signatures and
    encrypts to the private key; a broken PEM raises CryptoError, a ValueError."""
    key = kadmos.OwnerKey.generate(2048)
    again = kadmos.OwnerKey.from_pem(key.to_pem())
    assert again.id == key.id
    public = kadmos.PublicKey.from_pem(key.public_key.to_pem())
    assert public == key.public_key and len(public.long_id) == 64
    assert public.check_signature(b"data", key.sign(b"data"))
    assert key.decrypt(public.encrypt(b"secret")) == b"secret"
    with pytest.raises(ValueError):
        kadmos.OwnerKey.from_pem("not a key")


def test_permanent_put_cancel_and_state(tmp_path, opendht_net):
    """A permanent put is counted until cancel_put; saved state keeps the node ID and the
    permanent puts, and a node restored from it keeps the value alive again."""
    node = kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap[:1], rate_limits=None)
    key = kadmos.InfoHash.random()
    kept = node.put(key, b"kept", permanent=True)
    assert node.info()["permanent_puts"] == 1
    state = node.shutdown()
    assert state.node_id == node.node_id and len(state.to_dict()["permanent_puts"]) == 1
    with pytest.raises(kadmos.ShutdownError):
        node.put(key, b"late")
    with kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap[:1], rate_limits=None, state=state) as again:
        assert again.node_id == node.node_id
        assert again.info()["permanent_puts"] == 1
        assert again.cancel_put(key, kept.value_id) is True
        assert again.cancel_put(key, kept.value_id) is False
        assert again.info()["permanent_puts"] == 0


async def test_aio_opendht_calls(opendht_net):
    """The asyncio node: put, put_signed, get_all, get with `async for`, listen with `async
    with` + `async for` (leaving the block cancels the listen), ping, find_node, info, state."""
    async with await kadmos.aio.OpenDht.start(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap, rate_limits=None) as node:
        key = kadmos.InfoHash.random()
        async with node.listen(key) as changes:
            put = await node.put(key, b"aio")
            value, expired = await asyncio.wait_for(changes.__anext__(), 30)
            assert (value.data, value.id, expired) == (b"aio", put.value_id, False)
        assert (await node.info())["listens"] == 0
        owner = kadmos.OwnerKey.generate(2048)
        await node.put_signed(key, b"signed", owner)
        recipient = kadmos.OwnerKey.generate(2048)
        await node.put_encrypted(key, b"sealed", recipient.public_key, sender=owner)
        assert len(await node.get_all(key)) == 3
        seen = [v async for v in node.get(key, filter=kadmos.Filter(owner=owner.id))]
        assert [v.data for v in seen] == [b"signed"]
        assert (await node.ping(opendht_net.bootstrap[0])).id == opendht_net.nodes[0].node_id
        assert (await node.find_node(opendht_net.nodes[1].node_id))[0].id == opendht_net.nodes[1].node_id
        assert (await node.save_state()).node_id == node.node_id
        assert await node.cancel_put(key, put.value_id) is False
        await node.bootstrapped()


async def test_aio_testnet_and_bootstrap_right_after_start(opendht_net):
    """An asyncio OpenDHT testnet starts and stops; a node started with nobody to join and told
    to bootstrap() can put at once (the put waits for the join)."""
    async with await kadmos.aio.OpenDhtTestnet.start(3) as net:
        assert len(net.nodes) == 3 and len(net.bootstrap) == 3
        async with await kadmos.aio.OpenDht.start(port=0, bind=["127.0.0.1"], bootstrap=[], rate_limits=None) as node:
            await node.bootstrap(net.bootstrap)
            report = await node.put("right after bootstrap", b"x")
            assert report.stored_at


def test_blocking_node_calls(opendht_net):
    """The blocking OpenDHT node's remaining calls: a node started alone joins through
    bootstrap() (a put right after it waits for the join), pings and finds nodes, and saves
    its state with its contacts."""
    with kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=[], rate_limits=None) as node:
        node.bootstrap(opendht_net.bootstrap)
        assert node.put("after bootstrap", b"x").stored_at
        node.bootstrapped()
        assert node.ping(opendht_net.nodes[2].local_addrs[0]).id == opendht_net.nodes[2].node_id
        target = opendht_net.nodes[3].node_id
        assert node.find_node(target)[0].id == target
        state = node.save_state()
        assert state.node_id == node.node_id and state.contacts >= 1
        assert repr(node).startswith("OpenDht(node_id=")


def _wait_until(check, seconds: float = 20.0) -> bool:
    """Polls ``check`` until it holds or ``seconds`` pass; whether it held."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_put_with_ttl_is_kept_alive_then_released(opendht_net):
    """put(ttl=S) keeps the value alive (a permanent put of this node, found by others) and
    stops refreshing it after S seconds; ttl with permanent, or a ttl that is not a positive
    number, is a ValueError. The same through kadmos.aio."""
    node = opendht_net.nodes[1]
    key = kadmos.InfoHash.of_str("python ttl")
    report = node.put(key, b"for a while", ttl=0.5)
    assert node.info()["permanent_puts"] == 1
    assert [v.data for v in opendht_net.nodes[3].get_all(key)] == [b"for a while"]
    assert _wait_until(lambda: node.info()["permanent_puts"] == 0), "the ttl did not end the keep-alive"
    assert report.value_id
    for bad in (dict(ttl=0), dict(ttl=-1.0), dict(ttl=float("inf")), dict(ttl=5, permanent=True)):
        with pytest.raises(ValueError):
            node.put(key, b"bad", **bad)

    async def through_aio() -> None:
        opts = dict(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap, rate_limits=None)
        async with await kadmos.aio.OpenDht.start(**opts) as anode:
            await anode.put(key, b"async ttl", ttl=0.5)
            assert (await anode.info())["permanent_puts"] == 1
            for _ in range(400):
                if (await anode.info())["permanent_puts"] == 0:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError("the ttl did not end the async keep-alive")

    asyncio.run(through_aio())
