#!/usr/bin/env python3
"""OpenDHT side of `kadmos-bench opendht`: put/get/listen-notify latency between 4 OpenDHT nodes
on 127.0.0.1, measured the same way as the kadmos side.

Usage: opendht_bench.py [--ops N]

Starts 4 OpenDHT 4.4.2 nodes in this process (peer discovery and rate limits off, bound to
127.0.0.1 and ::1 only, every node bootstrapped from the first), warms each up with one get,
then, one operation at a time:
  put:    node B puts N values under distinct keys (blocking put, until it returns);
  get:    node C gets each of those keys (blocking get, until it returns);
  listen: node A listens on one key; node B puts N values under it; the latency is from the
          start of the put to A's listen callback for that value.
Times come from time.perf_counter(). stdout: one JSON object with the raw latencies in seconds
(the Rust side computes the percentiles for both implementations alike) and each phase's wall
time. Diagnostics go to stderr. The process exits without the slow shutdown of the nodes.
"""

import argparse
import json
import os
import queue
import sys
import time

import opendht as dht

LISTEN_TIMEOUT = 10.0


def log(*a):
    print("[opendht_bench]", *a, file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=200)
    args = ap.parse_args()
    n = args.ops

    nodes = []
    for i in range(4):
        cfg = dht.DhtConfig()
        cfg.setPeerDiscovery(False, False)
        cfg.setRateLimit(-1, -1)
        node = dht.DhtRunner()
        node.run(port=0, ipv4="127.0.0.1", ipv6="::1", config=cfg)
        if nodes:
            node.bootstrap("127.0.0.1", str(nodes[0].getBound().getPort()))
        nodes.append(node)
    ports = [nd.getBound().getPort() for nd in nodes]
    log("nodes on ports", ports)
    # The first operation on a node that learned its peers only from incoming traffic is slow:
    # one unmeasured get on each node first.
    for i, nd in enumerate(nodes):
        nd.get(dht.InfoHash.get("opendht-bench warm-up %d %d" % (os.getpid(), i)))
    a, b, c = nodes[0], nodes[1], nodes[2]
    tag = "opendht-bench %d %d" % (os.getpid(), time.time_ns())

    put_lat, put_fail = [], 0
    t0 = time.perf_counter()
    for i in range(n):
        key = dht.InfoHash.get("%s put %d" % (tag, i))
        s = time.perf_counter()
        ok = b.put(key, dht.Value(b"value %d" % i))
        put_lat.append(time.perf_counter() - s)
        if not ok:
            put_fail += 1
    put_wall = time.perf_counter() - t0

    get_lat, get_fail = [], 0
    t0 = time.perf_counter()
    for i in range(n):
        key = dht.InfoHash.get("%s put %d" % (tag, i))
        want = b"value %d" % i
        s = time.perf_counter()
        values = c.get(key)
        get_lat.append(time.perf_counter() - s)
        if not any(bytes(v.data) == want for v in values):
            get_fail += 1
    get_wall = time.perf_counter() - t0

    events = queue.Queue()

    def on_value(v, expired):
        events.put((time.perf_counter(), bytes(v.data), expired))
        return True

    lkey = dht.InfoHash.get("%s listen" % tag)
    a.listen(lkey, on_value)
    time.sleep(0.5)  # let the listen reach the storing nodes, so values come as pushes
    listen_lat, listen_fail = [], 0
    t0 = time.perf_counter()
    for i in range(n):
        want = b"notify %d" % i
        s = time.perf_counter()
        b.put(lkey, dht.Value(want))
        heard = None
        deadline = s + LISTEN_TIMEOUT
        while heard is None:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                at, data, expired = events.get(timeout=left)
            except queue.Empty:
                break
            if data == want and not expired:
                heard = at
        if heard is None:
            listen_fail += 1
        else:
            listen_lat.append(heard - s)
    listen_wall = time.perf_counter() - t0

    out = {
        "implementation": "OpenDHT " + getattr(dht, "__version__", "4.4.2"),
        "nodes": 4,
        "ports": ports,
        "ops": n,
        "put": {"latencies_s": put_lat, "wall_s": put_wall, "failures": put_fail},
        "get": {"latencies_s": get_lat, "wall_s": get_wall, "failures": get_fail},
        "listen": {"latencies_s": listen_lat, "wall_s": listen_wall, "failures": listen_fail},
    }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    # DhtRunner.shutdown() hands values over and can take seconds per node: skip it.
    os._exit(0)


if __name__ == "__main__":
    main()
