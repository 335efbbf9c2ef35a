#!/usr/bin/env python3
"""Driver for one libtorrent 2.1.1 DHT node on loopback, controlled over JSON lines.

Usage: lt_node.py [--port P] [--bootstrap 127.0.0.1:PORT]... [--log]

stdout: one JSON object per line (first {"event":"ready",...}, then one reply per command).
stdin:  one JSON command per line (see interop/README.md).
stderr: diagnostics (with --log or LT_DHT_LOG=1 also libtorrent's DHT log and packets).
Commands are executed strictly one after another; replies come in order.
"""

import argparse
import collections
import hashlib
import re
import json
import os
import select
import sys
import time
import traceback

import libtorrent as lt

DEFAULT_TIMEOUT = 10.0


def log(*a):
    print("[lt_node]", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- bencode

def bdecode(data: bytes):
    def dec(i):
        c = data[i:i + 1]
        if c == b"i":
            j = data.index(b"e", i)
            return int(data[i + 1:j]), j + 1
        if c == b"l":
            i += 1
            out = []
            while data[i:i + 1] != b"e":
                v, i = dec(i)
                out.append(v)
            return out, i + 1
        if c == b"d":
            i += 1
            out = {}
            while data[i:i + 1] != b"e":
                k, i = dec(i)
                if not isinstance(k, bytes):
                    raise ValueError("dict key is not a string")
                v, i = dec(i)
                out[k] = v
            return out, i + 1
        if c.isdigit():
            j = data.index(b":", i)
            n = int(data[i:j])
            if j + 1 + n > len(data):
                raise ValueError("truncated string")
            return data[j + 1:j + 1 + n], j + 1 + n
        raise ValueError("bad bencode at offset %d" % i)

    v, end = dec(0)
    if end != len(data):
        raise ValueError("trailing data after bencoded value")
    return v


def bencode(v) -> bytes:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, (bytes, bytearray)):
        return b"%d:%s" % (len(v), bytes(v))
    if isinstance(v, (list, tuple)):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted(((k.encode() if isinstance(k, str) else bytes(k)), x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError("cannot bencode %r" % type(v))


# ---------------------------------------------------------------- helpers

class CmdError(Exception):
    pass


def parse_addr(s):
    if not isinstance(s, str) or ":" not in s:
        raise CmdError("bad address %r (want 127.0.0.1:PORT)" % (s,))
    host, port = s.rsplit(":", 1)
    host = host.strip("[]")
    try:
        port = int(port)
    except ValueError:
        raise CmdError("bad port in %r" % s)
    return host, port


def fmt_ep(ep):
    host, port = ep[0], ep[1]
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def hex20(s, what):
    try:
        b = bytes.fromhex(s)
    except (TypeError, ValueError):
        raise CmdError("%s must be 40 hex chars" % what)
    if len(b) != 20:
        raise CmdError("%s must be 40 hex chars" % what)
    return b


def hexbytes(s, what, length=None):
    try:
        b = bytes.fromhex(s or "")
    except (TypeError, ValueError):
        raise CmdError("%s must be hex" % what)
    if length is not None and len(b) != length:
        raise CmdError("%s must be %d bytes" % (what, length))
    return b


def sha1_bytes(h):
    return h.to_bytes()


# ---------------------------------------------------------------- node

PKT_IN = re.compile(r"^<== \[(.+?:\d+)\] ")  # "<== [127.0.0.1:6881] {...}" (incoming)

class Node:
    def __init__(self, port, bootstrap, verbose):
        self.verbose = verbose
        # dht_log is always on: incoming packets (dht_pkt_alert) are the only way to see some
        # reply fields from Python (the sample_infohashes alert drops the `nodes` it got).
        mask = (lt.alert_category.dht | lt.alert_category.dht_operation | lt.alert_category.error
                | lt.alert_category.status | lt.alert_category.dht_log)
        settings = {
            "listen_interfaces": "127.0.0.1:%d" % port,
            # Never routers: libtorrent refuses to put a router endpoint in its routing table,
            # so --bootstrap nodes are added with add_dht_node() instead (below).
            "dht_bootstrap_nodes": "",
            "enable_dht": True,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_utp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_tcp": False,
            "enable_outgoing_tcp": False,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_block_ratelimit": 100000,
            "dht_upload_rate_limit": 1000000,
            "dht_prefer_verified_node_ids": False,
            "dht_enforce_node_id": False,
            "dht_ignore_dark_internet": False,
            "alert_queue_size": 100000,
            "alert_mask": int(mask),
            "peer_fingerprint": "-LT2110-",
        }
        self.ses = lt.session(settings)
        self.port = None
        self.node_id = None
        # state fed by alerts
        self.live_nodes = None          # latest dht_live_nodes_alert result
        self.stats = None               # latest dht_stats_alert active_requests
        self.peers = {}                 # infohash bytes -> set of "ip:port" (from get_peers replies)
        self.immutable = {}             # target bytes -> list of results
        self.mutable = []               # list of dht_mutable_item_alert dicts
        self.puts = []                  # list of dht_put_alert dicts
        self.samples = []               # list of dht_sample_infohashes_alert dicts
        self.listen_error = None
        self.incoming = collections.deque(maxlen=2000)  # (seq, "ip:port", raw bytes) received
        self.pkt_seq = 0
        # wait until the UDP socket is up and the DHT has an id
        deadline = time.time() + 10
        while time.time() < deadline:
            self.pump(0.1)
            if self.listen_error:
                raise RuntimeError(self.listen_error)
            p = self.ses.listen_port()
            nid = self.read_node_id()
            if p and nid:
                self.port, self.node_id = p, nid
                break
        if not self.port:
            raise RuntimeError("libtorrent did not start listening")
        for b in bootstrap:
            self.ses.add_dht_node(b)

    def read_node_id(self):
        try:
            d = lt.write_session_params(self.ses.session_state())
            ids = d.get(b"dht state", {}).get(b"node-id", [])
            if isinstance(ids, (bytes, str)):
                ids = [ids]
            for raw in ids:
                if isinstance(raw, str):
                    raw = raw.encode("latin-1")
                if len(raw) >= 20:
                    return raw[:20]
        except Exception as e:  # pragma: no cover - diagnostic only
            log("read_node_id:", e)
        return None

    # ---- alert pump
    def pump(self, wait):
        if wait > 0:
            self.ses.wait_for_alert(int(wait * 1000))
        for a in self.ses.pop_alerts():
            try:
                self.on_alert(a)
            except Exception:
                log("alert handler failed:", traceback.format_exc())

    def on_alert(self, a):
        t = type(a).__name__
        if t == "dht_live_nodes_alert":
            nodes = []
            for n in a.nodes:
                nid, ep = (n["nid"], n["endpoint"]) if isinstance(n, dict) else (n[0], n[1])
                nodes.append({"addr": fmt_ep(ep), "id": sha1_bytes(nid).hex()})
            self.live_nodes = nodes
        elif t == "dht_stats_alert":
            self.stats = list(a.active_requests)
        elif t == "dht_get_peers_reply_alert":
            s = self.peers.setdefault(sha1_bytes(a.info_hash), set())
            for p in a.peers():
                s.add(fmt_ep(p))
        elif t == "dht_immutable_item_alert":
            self.immutable.setdefault(sha1_bytes(a.target), []).append(a.item)
        elif t == "dht_mutable_item_alert":
            self.mutable.append({
                "key": bytes(a.key), "salt": bytes(a.salt) if a.salt else b"", "seq": a.seq,
                "item": a.item, "authoritative": a.authoritative,
                "signature": bytes(a.signature),
            })
        elif t == "dht_put_alert":
            self.puts.append({
                "target": sha1_bytes(a.target), "public_key": bytes(a.public_key),
                "salt": bytes(a.salt) if a.salt else b"", "seq": a.seq, "num_success": a.num_success,
            })
        elif t == "dht_sample_infohashes_alert":
            nodes = []
            for n in a.nodes:
                nid, ep = (n["nid"], n["endpoint"]) if isinstance(n, dict) else (n[0], n[1])
                nodes.append({"addr": fmt_ep(ep), "id": sha1_bytes(nid).hex()})
            self.samples.append({
                "endpoint": fmt_ep(a.endpoint), "interval": int(a.interval.total_seconds()),
                "num": a.num_infohashes, "samples": [sha1_bytes(s).hex() for s in a.samples],
                "nodes": nodes,
            })
        elif t == "listen_failed_alert":
            self.listen_error = a.message()
            log(a.message())
        elif t == "dht_pkt_alert":
            msg = a.message()
            m = PKT_IN.match(msg)
            if m:
                self.pkt_seq += 1
                self.incoming.append((self.pkt_seq, m.group(1), bytes(a.pkt_buf)))
            if self.verbose:
                log(msg)
        elif t == "dht_log_alert":
            if self.verbose:
                log(a.message())
        elif self.verbose:
            log(t, a.message())

    # ---- packets received (from dht_pkt_alert)
    def received_since(self, seq, addr=None):
        """Decoded KRPC messages received after packet number seq (optionally from addr)."""
        out = []
        for n, src, raw in list(self.incoming):
            if n <= seq or (addr is not None and src != addr):
                continue
            try:
                m = bdecode(raw)
            except Exception:
                continue
            if isinstance(m, dict):
                out.append((src, m))
        return out

    def remote_errors_since(self, seq):
        errs = []
        for src, m in self.received_since(seq):
            if m.get(b"y") == b"e":
                e = m.get(b"e")
                code, msg = None, ""
                if isinstance(e, list) and e:
                    code = e[0] if isinstance(e[0], int) else None
                    msg = " ".join(x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in e[1:])
                errs.append({"addr": src, "code": code, "msg": msg})
        return errs

    # ---- polling helpers
    def refresh_nodes(self, wait=0.5):
        self.live_nodes = None
        self.ses.dht_live_nodes(lt.sha1_hash(self.node_id))
        deadline = time.time() + wait
        while self.live_nodes is None and time.time() < deadline:
            self.pump(0.05)
        return self.live_nodes or []

    def active_lookups(self):
        self.stats = None
        self.ses.post_dht_stats()
        deadline = time.time() + 1.0
        while self.stats is None and time.time() < deadline:
            self.pump(0.02)
        return self.stats or []

    def wait_lookups_done(self, kinds, deadline):
        """Wait until no lookup of the given kinds is active (libtorrent only exposes this
        through post_dht_stats)."""
        time.sleep(0.05)
        while time.time() < deadline:
            reqs = self.active_lookups()
            busy = [r for r in reqs if str(r.get("type")) in kinds]
            if self.verbose:
                log("active lookups:", reqs)
            if not busy:
                return True
            self.pump(0.1)
        return False


# ---------------------------------------------------------------- commands

def timeout_of(cmd):
    t = cmd.get("timeout", DEFAULT_TIMEOUT)
    try:
        return float(t)
    except (TypeError, ValueError):
        raise CmdError("timeout must be a number")


def cmd_add_node(n, c):
    n.ses.add_dht_node(parse_addr(c.get("addr")))
    return {}


def cmd_nodes(n, c):
    return {"nodes": n.refresh_nodes()}


def cmd_wait_nodes(n, c):
    want = int(c.get("min", 1))
    deadline = time.time() + timeout_of(c)
    while True:
        nodes = n.refresh_nodes()
        if len(nodes) >= want:
            return {"nodes": len(nodes)}
        if time.time() >= deadline:
            raise CmdError("timeout: routing table holds %d nodes, wanted %d" % (len(nodes), want))
        n.pump(0.2)


def cmd_ping(n, c):
    """No raw ping from Python: add_dht_node makes libtorrent send the node a query (a
    find_node/get_peers refresh, not a ping); report the id in the node's reply."""
    host, port = parse_addr(c.get("addr"))
    addr = fmt_ep((host, port))
    deadline = time.time() + timeout_of(c)
    start_seq = n.pkt_seq
    n.ses.add_dht_node((host, port))
    while True:
        n.pump(0.05)
        for src, m in n.received_since(start_seq, addr):
            r = m.get(b"r")
            if m.get(b"y") == b"r" and isinstance(r, dict) and isinstance(r.get(b"id"), bytes):
                return {"node_id": r[b"id"].hex(), "emulated": True}
        if time.time() >= deadline:
            raise CmdError("timeout: no reply from %s" % addr)


def cmd_announce(n, c):
    ih = hex20(c.get("infohash"), "infohash")
    port = c.get("port")
    deadline = time.time() + timeout_of(c)
    start_seq = n.pkt_seq
    if port is None:
        n.ses.dht_announce(lt.sha1_hash(ih), 0, int(lt.announce_flags_t.implied_port))
    else:
        n.ses.dht_announce(lt.sha1_hash(ih), int(port), 0)
    if not n.wait_lookups_done(("get_peers", "announce"), deadline):
        raise CmdError("timeout: announce lookup did not finish")
    # announce_peer queries go out when the traversal completes; give them a moment to land
    n.pump(0.3)
    return {"errors": n.remote_errors_since(start_seq)}


def cmd_get_peers(n, c):
    ih = hex20(c.get("infohash"), "infohash")
    deadline = time.time() + timeout_of(c)
    n.peers.pop(ih, None)
    n.ses.dht_get_peers(lt.sha1_hash(ih))
    done = n.wait_lookups_done(("get_peers",), deadline)
    n.pump(0.05)
    peers = sorted(n.peers.get(ih, set()))
    if not done and not peers:
        raise CmdError("timeout: get_peers lookup did not finish")
    return {"peers": peers}


def cmd_find_node(n, c):
    target = hex20(c.get("target"), "target")
    if not c.get("addr"):
        raise CmdError("unsupported: libtorrent's Python bindings expose no find_node lookup; "
                       "pass addr to query one node (sent as a BEP 51 sample_infohashes query)")
    r = cmd_sample_infohashes(n, c)
    return {"nodes": r["nodes"], "via": "sample_infohashes"}


def parse_compact_nodes(raw):
    out = []
    if isinstance(raw, bytes):
        for i in range(0, len(raw) - 25, 26):
            e = raw[i:i + 26]
            out.append({"addr": "%d.%d.%d.%d:%d" % (e[20], e[21], e[22], e[23], e[24] << 8 | e[25]),
                        "id": e[:20].hex()})
    return out


def cmd_sample_infohashes(n, c):
    target = hex20(c.get("target") or os.urandom(20).hex(), "target")
    host, port = parse_addr(c.get("addr"))
    addr = fmt_ep((host, port))
    deadline = time.time() + timeout_of(c)
    n.samples = []
    start_seq = n.pkt_seq
    n.ses.dht_sample_infohashes((host, port), lt.sha1_hash(target))
    alert = None
    while time.time() < deadline:
        n.pump(0.05)
        # The reply as received (the alert loses its `nodes`): first reply from addr carrying
        # `samples` or `interval` after we sent the query.
        for src, m in n.received_since(start_seq, addr):
            if m.get(b"y") == b"e":
                e = m.get(b"e")
                raise CmdError("remote error: %s" % (
                    " ".join(str(x.decode(errors="replace") if isinstance(x, bytes) else x) for x in e)
                    if isinstance(e, list) else e))
            r = m.get(b"r")
            if m.get(b"y") == b"r" and isinstance(r, dict) and (b"samples" in r or b"interval" in r):
                samples = r.get(b"samples", b"")
                return {
                    "node_id": r.get(b"id", b"").hex(),
                    "samples": [samples[i:i + 20].hex() for i in range(0, len(samples) - 19, 20)],
                    "num": r.get(b"num"), "interval": r.get(b"interval"),
                    "nodes": parse_compact_nodes(r.get(b"nodes")),
                }
        for s in n.samples:
            if s["endpoint"] == addr:
                alert = alert or (time.time(), s)
        if alert and time.time() - alert[0] > 0.5:
            s = alert[1]  # the alert came but no packet matched: fall back to the alert's view
            return {"samples": s["samples"], "num": s["num"], "interval": s["interval"],
                    "nodes": s["nodes"]}
    raise CmdError("timeout: no sample_infohashes reply from %s" % addr)


def fmt_errs(errs):
    if not errs:
        return ""
    return "; remote errors: " + ", ".join("%s %s from %s" % (e["code"], e["msg"], e["addr"]) for e in errs)


def v_from_hex(c):
    raw = hexbytes(c.get("v_hex"), "v_hex")
    if not raw:
        raise CmdError("v_hex missing")
    try:
        return raw, bdecode(raw)
    except Exception as e:
        raise CmdError("v_hex is not valid bencode: %s" % e)


def cmd_put_immutable(n, c):
    if c.get("addr"):
        raise CmdError("unsupported: libtorrent's Python bindings cannot query a single node")
    raw, v = v_from_hex(c)
    target = hashlib.sha1(raw).digest()
    deadline = time.time() + timeout_of(c)
    n.puts = []
    start_seq = n.pkt_seq
    h = n.ses.dht_put_immutable_item(v)
    if sha1_bytes(h) != target:
        raise CmdError("libtorrent computed target %s, expected %s (value not representable)"
                       % (sha1_bytes(h).hex(), target.hex()))
    while time.time() < deadline:
        for p in n.puts:
            if p["target"] == target:
                errs = n.remote_errors_since(start_seq)
                if p["num_success"] == 0:
                    raise CmdError("put stored on 0 nodes" + fmt_errs(errs))
                return {"target": target.hex(), "stored": p["num_success"], "errors": errs}
        n.pump(0.1)
    raise CmdError("timeout: no dht_put_alert")


def cmd_get_immutable(n, c):
    if c.get("addr"):
        raise CmdError("unsupported: libtorrent's Python bindings cannot query a single node")
    target = hex20(c.get("target"), "target")
    deadline = time.time() + timeout_of(c)
    n.immutable.pop(target, None)
    n.ses.dht_get_immutable_item(lt.sha1_hash(target))
    while time.time() < deadline:
        items = n.immutable.get(target)
        if items:
            item = items[0]
            if item is None:
                raise CmdError("not found")
            raw = bencode(item)
            if hashlib.sha1(raw).digest() != target:
                raise CmdError("not found")
            return {"v_hex": raw.hex()}
        n.pump(0.1)
    raise CmdError("timeout")


def cmd_put_mutable(n, c):
    if c.get("addr"):
        raise CmdError("unsupported: libtorrent's Python bindings cannot query a single node")
    if c.get("cas") is not None:
        raise CmdError("unsupported: libtorrent's Python bindings cannot send cas")
    sk = hexbytes(c.get("secret_key"), "secret_key", 64)
    pk = hexbytes(c.get("public_key"), "public_key", 32)
    salt = hexbytes(c.get("salt"), "salt")
    raw, v = v_from_hex(c)
    if not isinstance(v, bytes):
        raise CmdError("unsupported: libtorrent's Python bindings can only put a byte-string v")
    deadline = time.time() + timeout_of(c)
    n.puts = []
    start_seq = n.pkt_seq
    # libtorrent looks the item up first and signs with seq = (highest seq found, or 0) + 1
    n.ses.dht_put_mutable_item(sk, pk, v, salt)
    while time.time() < deadline:
        for p in n.puts:
            if p["public_key"] == pk and p["salt"] == salt:
                errs = n.remote_errors_since(start_seq)
                if p["num_success"] == 0:
                    raise CmdError("put stored on 0 nodes" + fmt_errs(errs))
                r = {"stored": p["num_success"], "seq": p["seq"], "errors": errs}
                if c.get("seq") is not None and int(c["seq"]) != p["seq"]:
                    r["warning"] = "libtorrent chose seq %d (found seq + 1), not %s" % (p["seq"], c["seq"])
                return r
        n.pump(0.1)
    raise CmdError("timeout: no dht_put_alert")


def cmd_get_mutable(n, c):
    if c.get("addr"):
        raise CmdError("unsupported: libtorrent's Python bindings cannot query a single node")
    pk = hexbytes(c.get("public_key"), "public_key", 32)
    salt = hexbytes(c.get("salt"), "salt")
    deadline = time.time() + timeout_of(c)
    n.mutable = []
    start_seq = n.pkt_seq
    n.ses.dht_get_mutable_item(pk, salt)

    def result(authoritative):
        # libtorrent reports "not found" as an authoritative alert with an empty item, seq 0 and
        # a garbage signature, indistinguishable from a stored "0:" value; so a value counts as
        # found only if some reply we received carried v under this key.
        found = any(isinstance(m.get(b"r"), dict) and m[b"r"].get(b"k") == pk and b"v" in m[b"r"]
                    for _, m in n.received_since(start_seq))
        best = max((x for x in n.mutable if x["key"] == pk and x["salt"] == salt),
                   key=lambda x: x["seq"], default=None)
        if not found or best is None:
            return None
        r = {"v_hex": bencode(best["item"]).hex(), "seq": best["seq"], "sig": best["signature"].hex()}
        if not authoritative:
            r["authoritative"] = False
        return r

    while time.time() < deadline:
        n.pump(0.1)
        if any(m["key"] == pk and m["salt"] == salt and m["authoritative"] for m in n.mutable):
            r = result(True)
            if r is None:
                raise CmdError("not found")
            return r
    r = result(False)  # not authoritative yet: the best seen so far
    if r is not None:
        return r
    raise CmdError("timeout")


def cmd_info(n, c):
    return {"port": n.port, "node_id": n.node_id.hex()}


COMMANDS = {
    "add_node": cmd_add_node,
    "nodes": cmd_nodes,
    "wait_nodes": cmd_wait_nodes,
    "ping": cmd_ping,
    "announce": cmd_announce,
    "get_peers": cmd_get_peers,
    "find_node": cmd_find_node,
    "sample_infohashes": cmd_sample_infohashes,
    "put_immutable": cmd_put_immutable,
    "get_immutable": cmd_get_immutable,
    "put_mutable": cmd_put_mutable,
    "get_mutable": cmd_get_mutable,
    "info": cmd_info,
}


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--log", action="store_true", default=os.environ.get("LT_DHT_LOG") == "1")
    args = ap.parse_args()
    bootstrap = [parse_addr(b) for b in args.bootstrap]

    node = Node(args.port, bootstrap, args.log)
    emit({"event": "ready", "port": node.port, "id": node.node_id.hex() if node.node_id else None})
    log("ready on 127.0.0.1:%d id %s" % (node.port, node.node_id.hex()))

    stdin = sys.stdin.buffer
    buf = b""
    while True:
        r, _, _ = select.select([stdin], [], [], 0.2)
        if not r:
            node.pump(0)
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        quit_now = False
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if not line:
                continue
            rid = None
            try:
                try:
                    c = json.loads(line)
                except ValueError as e:
                    raise CmdError("bad JSON: %s" % e)
                if not isinstance(c, dict):
                    raise CmdError("command must be a JSON object")
                rid = c.get("id")
                name = c.get("cmd")
                if name == "quit":
                    emit({"id": rid, "ok": True})
                    quit_now = True
                    break
                fn = COMMANDS.get(name)
                if fn is None:
                    raise CmdError("unknown command %r" % (name,))
                res = fn(node, c)
                out = {"id": rid, "ok": True}
                out.update(res)
                emit(out)
            except CmdError as e:
                emit({"id": rid, "ok": False, "error": str(e)})
            except Exception as e:
                log(traceback.format_exc())
                emit({"id": rid, "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
        if quit_now:
            break
    log("exiting")
    # libtorrent's session destructor can block briefly; skip it
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
