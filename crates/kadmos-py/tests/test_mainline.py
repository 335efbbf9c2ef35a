"""kadmos.Dht and kadmos.aio.Dht against a Mainline testnet on 127.0.0.1: BEP 5 peers, BEP 44
items, BEP 51 samples, routing table, info, saved state, shutdown, and errors."""

from __future__ import annotations

import json

import pytest

import kadmos
import kadmos.aio


def test_announce_then_get_peers_blocking(mainline_net, mainline_node):
    """A peer announced through one node is found by get_peers (a `for` over typed batches)
    and by peers() from another node."""
    info_hash = kadmos.InfoHash.random()
    announced = mainline_net.nodes[3].announce(info_hash, 7777)
    assert announced.stored_at, "the announce was stored nowhere"
    assert all(isinstance(n, kadmos.NodeInfo) for n in announced.stored_at)
    found = []
    with mainline_node.get_peers(info_hash) as batches:
        for batch in batches:
            assert isinstance(batch, kadmos.PeerBatch)
            found.extend(batch.peers)
    assert ("127.0.0.1", 7777) in found
    assert mainline_node.peers(info_hash) == [("127.0.0.1", 7777)]


async def test_announce_then_get_peers_aio(mainline_net):
    """The asyncio node: an announce with implied port is found at the announcing node's own
    port by `async for` over get_peers (of a blocking node: the stream is the same type)."""
    async with await kadmos.aio.Dht.start(bind=["127.0.0.1"], bootstrap=mainline_net.bootstrap[:2]) as node:
        info_hash = kadmos.InfoHash.of_str("aio torrent")
        result = await node.announce(info_hash)
        assert result.stored_at
        own_port = node.local_addrs[0][1]
        found = set()
        async for batch in mainline_net.nodes[5].get_peers(info_hash):
            found.update(batch.peers)
        assert ("127.0.0.1", own_port) in found


async def test_aio_calls_mirror_blocking(mainline_net):
    """Every Mainline call of kadmos.aio.Dht awaits to the same typed result as the blocking
    call: ping, find_node, peers, BEP 44 put/get (and get_mutable with `async with` and
    `async for`), keep-alive, sample_infohashes, info, routing table, state."""
    async with await kadmos.aio.Testnet.start(4) as net:
        node = net.nodes[1]
        pong = await node.ping(net.bootstrap[0])
        assert pong.id == net.nodes[0].node_id
        closest = await node.find_node(kadmos.InfoHash.random())
        assert closest and all(isinstance(n, kadmos.NodeInfo) for n in closest)
        assert await node.peers(kadmos.InfoHash.random()) == []
        put = await node.put_immutable(b"aio item")
        assert await net.nodes[2].get_immutable(put.target) == b"8:aio item"
        assert await node.cancel_keep_alive(put.target) is True
        signer = kadmos.ItemSigner.generate()
        first = await node.put_mutable(signer, b"v1", salt=b"s")
        assert first.seq == 1
        latest = await net.nodes[3].get_mutable_latest(signer.public_key, b"s")
        assert latest is not None and (latest.seq, latest.value) == (1, b"2:v1")
        async with net.nodes[2].get_mutable(signer.public_key, b"s") as versions:
            assert {found.seq async for found in versions} == {1}
        samples = await node.sample_infohashes(net.bootstrap[0])
        assert samples.sender == net.nodes[0].local_addrs[0] and samples.nodes and samples.interval > 0
        info = await node.info()
        assert info["node_id"] == str(node.node_id)
        table = await node.routing_table()
        assert table["ipv4"]["size"] >= 3
        state = await node.save_state()
        assert state.node_id == node.node_id
        await node.bootstrapped()
        await node.bootstrap(net.bootstrap[:1])


def test_find_node_and_ping(mainline_net, mainline_node):
    """find_node returns answering nodes closest first; ping returns the node's ID, given as
    "host:port" or as a (host, port) tuple."""
    target = mainline_net.nodes[2].node_id
    closest = mainline_node.find_node(target)
    assert closest[0].id == target
    assert closest[0].addr == mainline_net.nodes[2].local_addrs[0]
    host, port = mainline_net.nodes[4].local_addrs[0]
    assert mainline_node.ping((host, port)).id == mainline_net.nodes[4].node_id
    assert mainline_node.ping(f"{host}:{port}").id == mainline_net.nodes[4].node_id


def test_immutable_items(mainline_net, mainline_node):
    """BEP 44 immutable: put returns the target, another node gets the bencoded value; an
    already bencoded value is stored as given; a missing target raises NotFoundError, which
    is also a LookupError."""
    put = mainline_node.put_immutable(b"Hello World!")
    assert put.target == kadmos.InfoHash("e5f96f6f38320f0f33959cb4d3d656452117aadb")
    assert put.stored_at and put.seq is None
    assert mainline_net.nodes[6].get_immutable(put.target) == b"12:Hello World!"
    listed = mainline_node.put_immutable(b"li1ei2ee", bencoded=True)
    assert mainline_net.nodes[1].get_immutable(listed.target) == b"li1ei2ee"
    with pytest.raises(kadmos.NotFoundError):
        mainline_node.get_immutable(kadmos.InfoHash.random())
    with pytest.raises(LookupError):
        mainline_node.get_immutable(kadmos.InfoHash.random())


def test_mutable_items_and_typed_refusals(mainline_net, mainline_node):
    """BEP 44 mutable: seq=None takes the next seq, the newest version wins, get_mutable
    streams verified versions; a stale cas raises CasMismatchError (code 301) and an old seq
    SeqTooLowError (302), both PutRefusedError."""
    signer = kadmos.ItemSigner.from_secret(bytes(range(32)))
    one = mainline_node.put_mutable(signer, b"one", salt=b"salt")
    two = mainline_node.put_mutable(signer, b"two", salt=b"salt")
    assert (one.seq, two.seq) == (1, 2)
    latest = mainline_net.nodes[7].get_mutable_latest(signer.public_key, b"salt")
    assert latest == kadmos.MutableItem(2, b"3:two", latest.signature)
    with mainline_net.nodes[2].get_mutable(signer.public_key, b"salt") as versions:
        found = list(versions)
    assert found and all(isinstance(f, kadmos.FoundItem) and f.public_key == signer.public_key for f in found)
    assert max(f.seq for f in found) == 2
    with pytest.raises(kadmos.CasMismatchError) as cas:
        mainline_node.put_mutable(signer, b"three", salt=b"salt", seq=3, cas=1)
    assert cas.value.code == 301 and isinstance(cas.value, kadmos.PutRefusedError)
    with pytest.raises(kadmos.SeqTooLowError) as low:
        mainline_node.put_mutable(signer, b"old", salt=b"salt", seq=1)
    assert low.value.code == 302
    assert mainline_net.nodes[7].get_mutable_latest(signer.public_key, b"no such salt") is None


def test_keep_alive_routing_table_info_and_samples(mainline_net, mainline_node):
    """cancel_keep_alive reports whether an item was kept alive; routing_table and info are
    the dicts of the CLI's --json; sample_infohashes asks one node (BEP 51)."""
    put = mainline_node.put_immutable(b"kept")
    assert mainline_node.info()["kept_items"] >= 1
    assert mainline_node.cancel_keep_alive(put.target) is True
    assert mainline_node.cancel_keep_alive(put.target) is False
    table = mainline_node.routing_table()
    assert table["node_id"] == str(mainline_node.node_id)
    assert table["ipv4"]["size"] >= 1 and table["ipv6"] is None
    info = mainline_node.info()
    assert set(info) >= {"node_id", "local_addrs", "routing_table_ipv4", "traffic", "uptime_secs"}
    mainline_net.nodes[0].announce(kadmos.InfoHash.random(), 1000)
    samples = mainline_node.sample_infohashes(mainline_net.bootstrap[0])
    assert samples.sender == mainline_net.nodes[0].local_addrs[0]
    assert samples.num >= 0 and isinstance(samples.samples, list)


def test_results_have_repr_equality_and_dict_forms(mainline_net, mainline_node):
    """Typed results repr as their fields, compare equal by value, and to_dict() gives the
    CLI's --json shape (ids as hex, addresses as "host:port")."""
    result = mainline_node.announce(kadmos.InfoHash.random(), 4242)
    assert repr(result).startswith("AnnounceResult(stored_at=[NodeInfo(id=InfoHash('")
    as_dict = result.to_dict()
    assert set(as_dict) == {"stored_at", "lookup_requests"}
    first = as_dict["stored_at"][0]
    assert first["addr"] == "%s:%d" % result.stored_at[0].addr and first["id"] == str(result.stored_at[0].id)
    assert kadmos.AnnounceResult.from_dict(as_dict) == result
    json.dumps(as_dict)


def test_state_save_restore_and_shutdown(tmp_path, mainline_net):
    """shutdown() returns the saved state; a new node started from it (file or object) has the
    same ID and rejoins through its saved contacts without routers; calls on a node that has
    shut down raise ShutdownError (a RuntimeError)."""
    node = kadmos.Dht(bind=["127.0.0.1"], bootstrap=mainline_net.bootstrap[:1])
    node.bootstrapped()
    node.find_node(node.node_id)
    state = node.shutdown()
    assert state.node_id == node.node_id and state.contacts > 0
    with pytest.raises(kadmos.ShutdownError):
        node.info()
    with pytest.raises(RuntimeError):
        node.ping(mainline_net.bootstrap[0])
    path = tmp_path / "state.json"
    state.save(path)
    with kadmos.Dht(bind=["127.0.0.1"], bootstrap=[], state=path) as again:
        assert again.node_id == node.node_id
        assert again.find_node(mainline_net.nodes[3].node_id)[0].id == mainline_net.nodes[3].node_id


def test_bad_input_raises_clear_errors(mainline_node):
    """Bad arguments raise TypeError/ValueError with a message, never a panic: a key of the
    wrong size or type, a bad address, a bad IP to bind, a port out of range, one string
    where a list is due, a signer of the wrong size, an
    address of a family the node has no socket for, a saved state that is not one."""
    with pytest.raises(ValueError, match="20"):
        mainline_node.get_immutable(b"short")
    with pytest.raises(TypeError, match="key"):
        mainline_node.find_node(42)
    with pytest.raises(ValueError, match="resolve"):
        mainline_node.ping("no port here")
    with pytest.raises(ValueError, match="IP address"):
        kadmos.Dht(bind=["not an ip"], bootstrap=[])
    with pytest.raises(ValueError, match="UDP port"):
        kadmos.Dht(port=70000, bootstrap=[])
    with pytest.raises(TypeError, match="list"):
        kadmos.Dht(bootstrap="127.0.0.1:6881")
    with pytest.raises(ValueError, match="32 or 64"):
        kadmos.ItemSigner.from_secret(b"x")
    with pytest.raises(kadmos.errors.FamilyUnavailableError):
        mainline_node.ping("[::1]:5")
    with pytest.raises(kadmos.errors.StateError):
        kadmos.Dht(bind=["127.0.0.1"], bootstrap=[], state=kadmos.SavedState('{"node_id": "zz", "contacts": []}'))
    with pytest.raises(ValueError):
        kadmos.InfoHash("not hex")


def test_bind_failure_is_an_oserror():
    """Binding an address this host does not have raises BindError, an OSError with errno
    EADDRNOTAVAIL and the address tried. (192.0.2.1 is a documentation address, never
    assigned; the failed bind sends nothing. A taken port is no failure: nodes fall back to
    any free port.)"""
    import errno

    with pytest.raises(OSError) as failure:
        kadmos.Dht(bind=["192.0.2.1"], port=6881, bootstrap=[])
    assert isinstance(failure.value, kadmos.BindError)
    assert failure.value.errno == errno.EADDRNOTAVAIL
    assert failure.value.addr.startswith("192.0.2.1:")


def test_bootstrap_and_save_state_blocking(mainline_net):
    """A Mainline node started alone joins through bootstrap() (a put right after it waits for
    the join) and saves its state with its contacts."""
    with kadmos.Dht(bind=["127.0.0.1"], bootstrap=[]) as node:
        node.bootstrap(mainline_net.bootstrap[:2])
        assert node.put_immutable(b"right after bootstrap").stored_at
        state = node.save_state()
        assert state.node_id == node.node_id and state.contacts >= 1
        assert state.to_dict()["node_id"] == str(node.node_id)
