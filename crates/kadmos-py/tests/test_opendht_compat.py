"""kadmos.opendht is a drop-in for OpenDHT's Python bindings: the same program gives the same
output with `import opendht` and `import kadmos.opendht`, and one scenario of the blocking and
asyncio APIs passes against both modules, on a kadmos OpenDHT testnet."""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import subprocess
import sys
import threading

import pytest

import kadmos
from real_opendht import make_config, stop

opendht = pytest.importorskip("opendht", reason="the real opendht package (interop/install.sh) is needed")

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "opendht_example.py"
MODULES = ["opendht", "kadmos.opendht"]


def run_example(net, module: str, tmp_path) -> str:
    source = EXAMPLE.read_text()
    assert "import opendht as dht\n" in source
    script = tmp_path / f"example_{module.replace('.', '_')}.py"
    script.write_text(source.replace("import opendht as dht\n", f"import {module} as dht\n"))
    host, port = net.nodes[0].local_addrs[0]
    done = subprocess.run([sys.executable, str(script), host, str(port), f"example key of {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{module}: {done.stderr}"
    return done.stdout


def test_example_program_gives_the_same_output_with_both_imports(opendht_net, tmp_path):
    """examples/opendht_example.py, run once with `import opendht` and once with
    `import kadmos.opendht`, prints the same lines; and those lines say every step worked."""
    original = run_example(opendht_net, "opendht", tmp_path)
    on_kadmos = run_example(opendht_net, "kadmos.opendht", tmp_path)
    assert on_kadmos == original
    assert "key is the SHA-1 of its name: True" in on_kadmos
    assert "put plain: True\nput signed: True\n" in on_kadmos
    assert "got: [b'plain value', b'signed value']" in on_kadmos
    assert "signed by me: True" in on_kadmos and "where id: [b'signed value']" in on_kadmos
    assert "listen heard both: True" in on_kadmos and "shut down: True" in on_kadmos


@pytest.mark.parametrize("module", MODULES)
def test_blocking_scenario(module, opendht_net):
    """With either module: run, bootstrap, put (blocking, and with done_cb), blocking get,
    get with get_cb/done_cb, listen with a callback that returns False to stop, cancelListen,
    cancelPut, node and key ids, bound port, InfoHash and Value behaviour."""
    dht = importlib.import_module(module)
    key = dht.InfoHash.get(f"scenario {module}")
    assert str(key) == str(kadmos.InfoHash.of_str(f"scenario {module}"))
    assert key.toString() == str(key).encode() and key == dht.InfoHash(key.toString())
    assert not dht.InfoHash() and dht.InfoHash.getRandom()
    node = dht.DhtRunner()
    node.run(port=0, ipv4="127.0.0.1", config=make_config(dht))
    try:
        host, port = opendht_net.nodes[1].local_addrs[0]
        node.bootstrap(host, str(port))
        assert node.isRunning() and node.getBound().getPort() > 0 and len(str(node.getNodeId())) == 40
        heard = []
        heard_once = threading.Event()

        def on_value(value, expired):
            heard.append((bytes(value.data), expired))
            heard_once.set()
            return False  # one is enough: stop listening

        token = node.listen(key, on_value)
        assert node.put(key, dht.Value(b"first")) is True
        put_done = threading.Event()
        outcome = []
        node.put(key, dht.Value(b"second"), lambda ok, nodes: (outcome.append(ok), put_done.set()))
        assert put_done.wait(30) and outcome == [True]
        assert sorted(bytes(v.data) for v in node.get(key)) == [b"first", b"second"]
        streamed, finished = [], threading.Event()
        node.get(key, lambda v: streamed.append(bytes(v.data)) or True, lambda ok, nodes: finished.set())
        assert finished.wait(30) and sorted(streamed) == [b"first", b"second"]
        assert heard_once.wait(30) and heard[0][1] is False
        node.cancelListen(token)
        value = dht.Value(b"data")
        value.id = 5
        assert (value.id, bytes(value.data)) == (5, b"data")
        value.user_type = "text/plain"
        assert node.put(key, value, permanent=True) is True
        assert [v.user_type for v in node.get(key, where=dht.Where().id(5))] == ["text/plain"]
        node.cancelPut(key, value)
    finally:
        stop(node)
    assert not node.isRunning()


@pytest.mark.parametrize("module", MODULES)
async def test_aio_scenario(module, opendht_net):
    """With either module's aio: `async with DhtRunner(bootstrap=...)`, awaited put/getAll/
    getFirst/ping, `with get(...)` + `async for`, `with listen(...)` + `async for` and break."""
    aio = importlib.import_module(f"{module}.aio")
    host, port = opendht_net.nodes[2].local_addrs[0]
    runner = aio.DhtRunner(bootstrap=[(host, str(port))], config=make_config(importlib.import_module(module)))
    runner.run(port=0, ipv4="127.0.0.1")
    try:
        key = aio.InfoHash.get(f"aio scenario {module}")
        assert await runner.put(key, aio.Value(b"one")) is True
        assert await runner.put(key, aio.Value(b"two")) is True
        assert sorted(bytes(v.data) for v in await runner.getAll(key)) == [b"one", b"two"]
        first = await runner.getFirst(key, predicate=lambda v: bytes(v.data) == b"two")
        assert bytes(first.data) == b"two"
        with runner.get(key) as values:
            got = sorted([bytes(v.data) async for v in values])
        assert got == [b"one", b"two"]
        with runner.listen(key) as changes:
            async for value, expired in changes:
                assert not expired and bytes(value.data) in (b"one", b"two")
                break
        assert await runner.ping(aio.SockAddr(host, port) if module == "kadmos.opendht" else _sockaddr(aio, host, port))
    finally:
        await asyncio.wait_for(_stop_aio(runner), 60)


def _sockaddr(aio, host, port):
    [addr] = [a for a in aio.SockAddr.resolve(host, str(port)) if a.getPort() == port][:1]
    return addr


async def _stop_aio(runner) -> None:
    done = threading.Event()
    runner._dht.shutdown(done.set)
    await asyncio.get_running_loop().run_in_executor(None, done.wait, 30)
    await asyncio.get_running_loop().run_in_executor(None, runner._dht.join)


def test_unsupported_parts_say_so():
    """What kadmos does not support raises NotImplementedError with a reason."""
    import kadmos.opendht as dht

    with pytest.raises(NotImplementedError, match="X.509"):
        dht.Certificate()
    with pytest.raises(NotImplementedError, match="proxy"):
        dht.DhtConfig().setProxyInfo("http://proxy")
    with pytest.raises(NotImplementedError, match="RSA"):
        dht.PrivateKey.generateEC()
    node = dht.DhtRunner()
    node.run(port=0, ipv4="127.0.0.1")
    try:
        with pytest.raises(NotImplementedError):
            node.registerType(dht.ValueType(9, "mine", None))
        with pytest.raises(ValueError, match="identity"):
            node.putSigned(dht.InfoHash.get("k"), dht.Value(b"x"))
    finally:
        stop(node)


def test_a_callback_may_call_blocking_methods(opendht_net):
    """kadmos.opendht runs callbacks on its own thread, never on a runtime thread: a listen
    callback can make a blocking get on the same runner (on a runtime thread this would fail
    with "Cannot start a runtime from within a runtime")."""
    import kadmos.opendht as dht

    node = dht.DhtRunner()
    node.run(port=0, ipv4="127.0.0.1", config=make_config(dht))
    try:
        host, port = opendht_net.nodes[0].local_addrs[0]
        node.bootstrap(host, str(port))
        key = dht.InfoHash.getRandom()
        seen_inside, done = [], threading.Event()

        def on_value(value, expired):
            seen_inside.append((threading.current_thread().name, sorted(bytes(v.data) for v in node.get(key))))
            done.set()
            return False

        token = node.listen(key, on_value)
        assert node.put(key, dht.Value(b"inside a callback"))
        assert done.wait(30)
        node.cancelListen(token)
        assert seen_inside == [("kadmos-callbacks", [b"inside a callback"])]
    finally:
        stop(node)
