"""How the package behaves as part of a Python program: blocking calls release the GIL and
honour Ctrl-C; streams cancel their operation when closed, left or dropped, and survive a
cancelled await; a forked child gets an error instead of hanging; a process exits promptly
with live nodes; many awaits run concurrently."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import kadmos
import kadmos.aio


def test_blocking_call_releases_the_gil(opendht_node):
    """Another Python thread keeps running while the main thread is blocked in a call (a
    listen's next() that waits a full second for nothing)."""
    counter = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            counter[0] += 1

    spinner = threading.Thread(target=spin)
    with opendht_node.listen(kadmos.InfoHash.random()) as changes:
        spinner.start()
        before = counter[0]
        with pytest.raises(TimeoutError):
            changes.next(timeout=1.0)
        during = counter[0] - before
    stop.set()
    spinner.join(10)
    assert during > 10_000, f"the other thread ran only {during} loops during a 1 s blocking call"


def test_ctrl_c_interrupts_a_blocking_call(opendht_node):
    """SIGINT during a blocking next() raises KeyboardInterrupt in the caller; the stream can
    then be closed, which cancels the listen."""
    changes = opendht_node.listen(kadmos.InfoHash.random())
    # Python's own Ctrl-C handler, whatever this process inherited: a shell that starts a job in
    # the background without job control makes it ignore SIGINT, and Python keeps that.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    # The signal must arrive while the main thread is blocked in next(); a timer thread sends it.
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            changes.next(timeout=60)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, inherited)
    changes.close()
    assert opendht_node.info()["listens"] == 0


def test_close_with_and_del_cancel_a_listen(opendht_node):
    """Each way of ending a stream cancels its listen at the node: close(), leaving a `with`
    block, and dropping the last reference."""
    key = kadmos.InfoHash.random()
    stream = opendht_node.listen(key)
    assert opendht_node.info()["listens"] == 1
    stream.close()
    stream.close()  # closing twice is harmless
    assert opendht_node.info()["listens"] == 0
    with opendht_node.listen(key):
        assert opendht_node.info()["listens"] == 1
    assert opendht_node.info()["listens"] == 0
    stream = opendht_node.listen(key)
    assert opendht_node.info()["listens"] == 1
    del stream
    gc.collect()
    assert opendht_node.info()["listens"] == 0


def test_close_wakes_a_pending_next_in_another_thread(opendht_node):
    """close() from one thread ends a next() blocked in another (StopIteration there), and
    the listen is cancelled."""
    stream = opendht_node.listen(kadmos.InfoHash.random())
    outcome = []
    started = threading.Event()

    def consume():
        started.set()
        outcome.append(list(stream))

    consumer = threading.Thread(target=consume)
    consumer.start()
    started.wait(10)
    stream.close()
    consumer.join(30)
    assert not consumer.is_alive() and outcome == [[]]
    assert opendht_node.info()["listens"] == 0


async def test_cancelled_await_leaves_the_stream_usable(opendht_net):
    """An asyncio.wait_for timeout cancels one __anext__ without breaking the stream: the next
    await still gets the value put afterwards. `async with` cancels the listen on exit."""
    async with await kadmos.aio.OpenDht.start(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap, rate_limits=None) as node:
        key = kadmos.InfoHash.random()
        async with node.listen(key) as changes:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(changes.__anext__(), 0.2)
            report = opendht_net.nodes[0].put(key, b"after a cancel")
            value, expired = await asyncio.wait_for(changes.__anext__(), 30)
            assert (value.id, value.data, expired) == (report.value_id, b"after a cancel", False)
            assert (await node.info())["listens"] == 1
        assert (await node.info())["listens"] == 0


async def test_many_concurrent_awaits(opendht_net):
    """100 puts awaited concurrently all complete, each with its own value id."""
    async with await kadmos.aio.OpenDht.start(port=0, bind=["127.0.0.1"], bootstrap=opendht_net.bootstrap, rate_limits=None) as node:
        key = kadmos.InfoHash.random()
        reports = await asyncio.gather(*(node.put(key, b"%d" % i) for i in range(100)))
        assert len({r.value_id for r in reports}) == 100
        assert all(r.stored_at for r in reports)


def test_blocking_call_on_an_asyncio_loop_thread_still_works(opendht_node):
    """A blocking call made from inside a running asyncio loop (which blocks that loop, as any
    blocking call does) returns its result rather than failing: the loop thread is not a
    runtime thread."""

    async def inside_loop():
        return opendht_node.info()["node_id"]

    assert asyncio.run(inside_loop()) == str(opendht_node.node_id)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gets_an_error_not_a_hang(opendht_node):
    """A child process forked while nodes run gets ForkedProcessError (a RuntimeError) from any
    call instead of hanging on threads that did not survive the fork."""
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 3
        try:
            opendht_node.info()
        except kadmos.ForkedProcessError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung")


def test_process_exits_promptly_with_live_nodes():
    """A program that ends with nodes running, a listen open, a get half-read and a call
    still awaited when its event loop ended exits with status 0 (no hang at interpreter exit)."""
    program = """
import asyncio, kadmos, kadmos.aio
net = kadmos.OpenDhtTestnet(3)
changes = net.nodes[1].listen("key")
net.nodes[2].put("key", b"x")
values = net.nodes[0].get("key")
mainline = kadmos.Testnet(2)

async def awaited():
    node = kadmos.aio.OpenDht._wrap(net.nodes[0]._node)
    await node.put("key", b"y")
    return asyncio.ensure_future(node.get_all("key"))  # left pending when the loop ends

asyncio.run(awaited())
print("ready", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ready"


def test_logging_switches_on_and_off():
    """enable_logging() puts kadmos's log on stderr (a node start is logged); disable_logging()
    mutes it (the next node start is not); a level that is no filter is a ValueError."""
    program = """
import kadmos
kadmos.enable_logging("info")
first = kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=[])
kadmos.disable_logging()
second = kadmos.Dht(bind=["127.0.0.1"], bootstrap=[])
try:
    kadmos.enable_logging("no such level !")
except ValueError:
    print("refused", flush=True)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "refused"
    assert "OpenDHT node started" in done.stderr
    assert done.stderr.count("node started") == 1, done.stderr
