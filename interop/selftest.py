#!/usr/bin/env python3
"""Self-test of the interop drivers: libtorrent and bittorrent-dht nodes on 127.0.0.1 talking
to each other through lt_node.py and js/bt_node.js. Run via selftest.sh. Exits non-zero on
failure; every process it starts is killed on exit."""

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, ".venv", "bin", "python")
LT = [PY, os.path.join(HERE, "lt_node.py")]
BT = ["node", os.path.join(HERE, "js", "bt_node.js")]

# BEP 44 test vectors (PROTOCOLS.md)
PK = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548"
SK = ("e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74d"
      "b7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d")
HELLO = b"12:Hello World!".hex()
SIG1 = ("305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
        "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01")
SIG2 = ("6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
        "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08")
SALT = b"foobar".hex()

T0 = time.time()
PROCS = []
FAILS = []
PASSES = 0


def say(*a):
    print("[%5.1fs]" % (time.time() - T0), *a, flush=True)


class Driver:
    def __init__(self, name, argv):
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        PROCS.append(self.p)
        self.q = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.rid = 0
        ready = self._next(30)
        if not ready or ready.get("event") != "ready":
            raise RuntimeError("%s: bad ready line %r; stderr:\n%s" % (name, ready, "".join(self.stderr)))
        self.port, self.id = ready["port"], ready["id"]
        self.addr = "127.0.0.1:%d" % self.port
        say("%s ready on %s id %s" % (name, self.addr, self.id))

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def _read_err(self):
        for line in self.p.stderr:
            self.stderr.append(line)

    def _next(self, timeout):
        try:
            line = self.q.get(timeout=timeout)
        except queue.Empty:
            return None
        return json.loads(line) if line else None

    def call(self, cmd, **kw):
        self.rid += 1
        c = dict(cmd=cmd, id=self.rid, **kw)
        self.p.stdin.write(json.dumps(c) + "\n")
        self.p.stdin.flush()
        t = time.time()
        r = self._next(float(kw.get("timeout", 10)) + 20)
        if r is None:
            raise RuntimeError("%s: no reply to %s" % (self.name, cmd))
        if r.get("id") != self.rid:
            raise RuntimeError("%s: reply id %r, wanted %r" % (self.name, r.get("id"), self.rid))
        short = {k: v for k, v in r.items() if k != "id"}
        say("%s %s -> (%.2fs) %s" % (self.name, cmd, time.time() - t, json.dumps(short)[:200]))
        return r


def check(what, cond):
    global PASSES
    if cond:
        PASSES += 1
        say("PASS", what)
    else:
        FAILS.append(what)
        say("FAIL", what)


def cleanup(*_):
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for p in PROCS:
        try:
            p.wait(5)
        except Exception:
            pass


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    try:
        run()
    finally:
        cleanup()
    print("%d passed, %d failed" % (PASSES, len(FAILS)))
    if FAILS:
        print("failed: " + "; ".join(FAILS))
        return 1
    return 0


def run():
    # A small mixed network: bt0 is the seed, the others bootstrap from it or from lt0.
    bt0 = Driver("bt0", BT)
    lt0 = Driver("lt0", LT + ["--bootstrap", bt0.addr])
    bt1 = Driver("bt1", BT + ["--bootstrap", lt0.addr])
    bt2 = Driver("bt2", BT + ["--bootstrap", bt0.addr, "--bootstrap", lt0.addr])
    lt1 = Driver("lt1", LT + ["--bootstrap", bt0.addr])
    lt2 = Driver("lt2", LT + ["--bootstrap", bt1.addr])
    nodes = [bt0, lt0, bt1, bt2, lt1, lt2]

    # libtorrent adds a node that contacted it only after ~5 s: wait for every table
    for d in nodes:
        r = d.call("wait_nodes", min=3, timeout=15)
        check("%s routing table >= 3 nodes" % d.name, r["ok"])
    r = lt0.call("nodes")
    check("lt0 nodes lists bt0 with its id",
          r["ok"] and {"addr": bt0.addr, "id": bt0.id} in r["nodes"])
    r = bt0.call("nodes")
    check("bt0 nodes lists lt0 with its id",
          r["ok"] and {"addr": lt0.addr, "id": lt0.id} in r["nodes"])

    # ping / find_node / sample_infohashes
    r = bt0.call("ping", addr=lt1.addr)
    check("bt0 ping lt1 -> lt1's id", r["ok"] and r["node_id"] == lt1.id)
    r = lt0.call("ping", addr=bt2.addr)
    check("lt0 ping bt2 -> bt2's id", r["ok"] and r["node_id"] == bt2.id)
    r = bt1.call("find_node", target=lt2.id)
    check("bt1 find_node lookup of lt2's id finds lt2 first",
          r["ok"] and r["nodes"] and r["nodes"][0]["id"] == lt2.id)
    r = bt1.call("find_node", target=lt2.id, addr=lt0.addr)
    check("bt1 direct find_node to lt0 returns nodes", r["ok"] and len(r["nodes"]) > 0)
    r = lt0.call("sample_infohashes", addr=lt1.addr, target=lt2.id)
    check("lt0 sample_infohashes to lt1 answers", r["ok"] and r["node_id"] == lt1.id and "samples" in r)
    r = lt0.call("find_node", target=bt0.id)
    check("lt0 find_node without addr is refused cleanly", not r["ok"] and "unsupported" in r["error"])

    # announce / get_peers, both directions
    ih1 = hashlib.sha1(b"kadmos selftest 1").hexdigest()
    ih2 = hashlib.sha1(b"kadmos selftest 2").hexdigest()
    r = lt1.call("announce", infohash=ih1)
    check("lt1 announce (implied port)", r["ok"])
    r = bt2.call("get_peers", infohash=ih1, remote_only=True)
    check("bt2 get_peers finds lt1's implied port", r["ok"] and lt1.addr in r["peers"])
    r = bt1.call("announce", infohash=ih2, port=6881)
    check("bt1 announce port 6881", r["ok"] and r["stored"] > 0)
    r = lt2.call("get_peers", infohash=ih2)
    check("lt2 get_peers finds 127.0.0.1:6881", r["ok"] and "127.0.0.1:6881" in r["peers"])

    # BEP 44 immutable
    r = bt1.call("put_immutable", v_hex=HELLO)
    check("bt1 put_immutable test vector target",
          r["ok"] and r["target"] == "e5f96f6f38320f0f33959cb4d3d656452117aadb")
    r = lt2.call("get_immutable", target="e5f96f6f38320f0f33959cb4d3d656452117aadb")
    check("lt2 get_immutable gets it", r["ok"] and r["v_hex"] == HELLO)
    v = b"d3:fooli1ei2ee3:zzz4:spame".hex()
    r = lt0.call("put_immutable", v_hex=v)
    tgt = hashlib.sha1(bytes.fromhex(v)).hexdigest()
    check("lt0 put_immutable dict value", r["ok"] and r["target"] == tgt)
    r = bt2.call("get_immutable", target=tgt, cache=False)
    check("bt2 get_immutable gets it", r["ok"] and r["v_hex"] == v)
    r = bt2.call("get_immutable", target=hashlib.sha1(b"nothing").hexdigest(), timeout=5)
    check("bt2 get_immutable of a missing target -> not found", not r["ok"] and "not found" in r["error"])

    # BEP 44 mutable, unsalted: lt puts (libtorrent picks seq 1), bt gets
    r = lt1.call("put_mutable", secret_key=SK, public_key=PK, v_hex=HELLO, seq=1)
    check("lt1 put_mutable unsalted (seq 1)", r["ok"] and r["seq"] == 1)
    r = bt2.call("get_mutable", public_key=PK, cache=False)
    check("bt2 get_mutable unsalted: test vector 1 signature",
          r["ok"] and r["v_hex"] == HELLO and r["seq"] == 1 and r["sig"] == SIG1)

    # salted: bt puts, lt gets
    r = bt0.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=HELLO, seq=1)
    check("bt0 put_mutable salted seq 1", r["ok"])
    r = lt2.call("get_mutable", public_key=PK, salt=SALT)
    check("lt2 get_mutable salted: test vector 2 signature",
          r["ok"] and r["v_hex"] == HELLO and r["seq"] == 1 and r["sig"] == SIG2)

    # update from lt (seq found + 1 = 2), then stale and CAS puts from bt are refused
    r = lt0.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=b"3:two".hex(), seq=2)
    check("lt0 put_mutable salted update -> seq 2", r["ok"] and r["seq"] == 2)
    r = bt1.call("get_mutable", public_key=PK, salt=SALT, cache=False)
    check("bt1 get_mutable sees seq 2", r["ok"] and r["seq"] == 2 and r["v_hex"] == b"3:two".hex())
    r = bt1.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=b"3:old".hex(), seq=1)
    check("bt1 put_mutable with a lower seq -> 302", not r["ok"] and "302" in r["error"])
    r = bt1.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=b"5:three".hex(), seq=3, cas=1)
    check("bt1 put_mutable with a wrong cas -> 301", not r["ok"] and "301" in r["error"])
    r = bt1.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=b"5:three".hex(), seq=3,
                 addr=lt2.addr)
    check("bt1 direct put_mutable seq 3 to lt2", r["ok"])
    r = bt1.call("put_mutable", secret_key=SK, public_key=PK, salt=SALT, v_hex=b"3:old".hex(), seq=2,
                 addr=lt2.addr)
    check("bt1 direct put_mutable seq 2 to lt2 -> 302", not r["ok"] and "302" in r["error"])
    r = bt1.call("get_mutable", public_key=PK, salt=SALT, addr=lt2.addr)
    check("bt1 direct get_mutable from lt2 -> seq 3", r["ok"] and r["seq"] == 3)

    # quit: every driver answers and exits 0
    for d in nodes:
        d.call("quit")
    for d in nodes:
        try:
            rc = d.p.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        check("%s exits cleanly" % d.name, rc == 0)
    for d in nodes:
        if any("Traceback" in l or "uncaught" in l for l in d.stderr):
            check("%s stderr has no crash" % d.name, False)
            sys.stdout.write("".join(d.stderr[-40:]))


if __name__ == "__main__":
    sys.exit(main())
