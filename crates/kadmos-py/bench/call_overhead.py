"""What a call costs from Python, next to the same operation made from Rust in the same run.

One OpenDHT node alone (no network: every operation is a command to the node's task and its
answer), values stored at one key. For each operation, the Rust figure is the same operation
made from Rust on the same runtime and node; the overhead is what Python adds. Targets: at
most 20 µs per blocking call and 100 µs per awaited call over the Rust figure.

Build the package optimised first (``maturin develop --release``), then:
    python crates/kadmos-py/bench/call_overhead.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import kadmos
import kadmos.aio
from kadmos import _native

BLOCKING_TARGET_US = 20.0
AWAITED_TARGET_US = 100.0


def per_op_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def timed(work, n: int) -> float:
    start = time.perf_counter()
    work(n)
    return per_op_us(time.perf_counter() - start, n)


def median_of(repeats: int, measure) -> float:
    """The median of `repeats` measurements after one warm-up: a shared machine makes single
    figures jumpy."""
    measure()
    return statistics.median(measure() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per measurement")
    parser.add_argument("--values", type=int, default=200, help="values stored at the key a get streams")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per figure (the median is shown)")
    args = parser.parse_args()
    calls, stored, repeats = args.calls, args.values, args.repeats

    node = kadmos.OpenDht(port=0, bind=["127.0.0.1"], bootstrap=[], rate_limits=None)
    native = node._node
    key = kadmos.InfoHash.of_str("benchmark key")
    for i in range(stored):
        try:
            node.put(key, b"value %d" % i)
        except kadmos.NoContactsError:
            pass  # alone: the value is stored here only, which is all a local get needs
    rounds = max(1, calls // stored)

    def blocking_cancel_put(n: int) -> None:
        for _ in range(n):
            node.cancel_put(key, 0)

    def blocking_info(n: int) -> None:
        for _ in range(n):
            node.info()

    def blocking_stream(n: int) -> None:
        for _ in range(n):
            for _value in node.get(key):
                pass

    async def awaited(n: int, make) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await make()
        return per_op_us(time.perf_counter() - start, n)

    async def async_stream(n: int) -> float:
        start = time.perf_counter()
        items = 0
        for _ in range(n):
            async for _value in node.get(key):
                items += 1
        return per_op_us(time.perf_counter() - start, items)

    aio_node = kadmos.aio.OpenDht._wrap(native)

    def rust_items() -> float:
        seconds, items = _native.rust_get_values(native, key, rounds)
        return per_op_us(seconds, items)

    rust_cancel = median_of(repeats, lambda: per_op_us(_native.rust_cancel_put_calls(native, key, calls), calls))
    rust_info = median_of(repeats, lambda: per_op_us(_native.rust_info_calls(native, calls), calls))
    rust_item = median_of(repeats, rust_items)

    def measure(work) -> float:
        return median_of(repeats, work)

    rows = [
        ("cancel_put (bool answer)", "blocking", rust_cancel, measure(lambda: timed(blocking_cancel_put, calls)), BLOCKING_TARGET_US),
        ("cancel_put (bool answer)", "awaited", rust_cancel, measure(lambda: asyncio.run(awaited(calls, lambda: aio_node.cancel_put(key, 0)))), AWAITED_TARGET_US),
        ("info (nested dict answer)", "blocking", rust_info, measure(lambda: timed(blocking_info, calls)), BLOCKING_TARGET_US),
        ("info (nested dict answer)", "awaited", rust_info, measure(lambda: asyncio.run(awaited(calls, aio_node.info))), AWAITED_TARGET_US),
        ("get, per streamed value", "for", rust_item, measure(lambda: timed(blocking_stream, rounds) / stored), None),
        ("get, per streamed value", "async for", rust_item, measure(lambda: asyncio.run(async_stream(rounds))), None),
    ]
    print(f"{calls} calls per measurement, median of {repeats}; gets of {stored} values, {rounds} rounds")
    print(f"{'operation':<27} {'from Python':<11} {'Rust µs':>9} {'Python µs':>10} {'overhead µs':>12}  target")
    for name, how, rust_us, python_us, target in rows:
        overhead = python_us - rust_us
        verdict = "" if target is None else f"≤ {target:.0f}: {'met' if overhead <= target else 'MISSED'}"
        print(f"{name:<27} {how:<11} {rust_us:>9.2f} {python_us:>10.2f} {overhead:>12.2f}  {verdict}")
    node.shutdown()


if __name__ == "__main__":
    main()
