#!/usr/bin/env python3
"""Driver for one OpenDHT 4.4.2 node on loopback, controlled over JSON lines.

Usage: odht_node.py [--port P] [--bootstrap 127.0.0.1:PORT]... [--log]

stdout: one JSON object per line (first {"event":"ready",...}, then one reply per command).
stdin:  one JSON command per line (see interop/README.md).
stderr: diagnostics (with --log also OpenDHT's own log).
Commands are executed strictly one after another; replies come in order. Listen callbacks
arrive on OpenDHT's thread and are queued until a `wait_event` / `events` command reads them.

The node runs with its own 2048-bit identity (so it can put signed values and decrypt values
encrypted to it), peer discovery off, rate limits off, bound to 127.0.0.1 only.
"""

import argparse
import json
import signal
import sys
import threading
import time
import traceback

import opendht as dht

DEFAULT_TIMEOUT = 10.0


def log(*a):
    print("[odht_node]", *a, file=sys.stderr, flush=True)


class CmdError(Exception):
    pass


def parse_addr(s):
    if not isinstance(s, str) or ":" not in s:
        raise CmdError("bad address %r (want 127.0.0.1:PORT)" % (s,))
    host, port = s.rsplit(":", 1)
    return host.strip("[]"), port


def key_of(cmd):
    k = cmd.get("key")
    if not isinstance(k, str) or len(k) != 40:
        raise CmdError("key must be 40 hex chars")
    try:
        bytes.fromhex(k)
    except ValueError:
        raise CmdError("key must be 40 hex chars")
    return dht.InfoHash(k.encode())


def data_of(cmd):
    try:
        return bytes.fromhex(cmd.get("data", ""))
    except ValueError:
        raise CmdError("data must be hex")


def make_value(cmd):
    v = dht.Value(data_of(cmd))
    if "value_id" in cmd:
        v.id = int(cmd["value_id"])
    if cmd.get("user_type"):
        v.user_type = cmd["user_type"]
    return v


def describe(v):
    out = {"id": v.id, "data": bytes(v.data).hex(), "user_type": v.user_type, "recipient": str(v.recipient)}
    try:
        out["owner_id"] = str(v.owner.getId())
    except (ValueError, AttributeError):
        out["owner_id"] = None
    return out


class Node:
    def __init__(self, args):
        cfg = dht.DhtConfig()
        cfg.setPeerDiscovery(False, False)
        cfg.setRateLimit(-1, -1)
        self.ident = dht.Identity.generate("kadmos-interop", bits=2048)
        self.node = dht.DhtRunner()
        if args.log:
            self.node.enableLogging()
        self.node.run(id=self.ident, port=args.port, ipv4="127.0.0.1", ipv6="::1", config=cfg)
        for b in args.bootstrap:
            host, port = parse_addr(b)
            self.node.bootstrap(host, port)
        self.cond = threading.Condition()
        self.listens = {}  # handle -> {"key", "token", "events": [...], "next": int}
        self.next_listen = 1
        self.start = time.monotonic()

    def ready(self):
        return {
            "event": "ready",
            "port": self.node.getBound().getPort(),
            "id": str(self.node.getNodeId()),
            "key_id": str(self.ident.publickey.getId()),
        }

    def owner_of(self, cmd):
        """The public key of the signed value `owner_value` found under `owner_key`."""
        key = dht.InfoHash(cmd["owner_key"].encode())
        for v in self.node.get(key):
            if v.id == int(cmd["owner_value"]):
                return v.owner
        raise CmdError("no signed value %s under %s" % (cmd["owner_value"], cmd["owner_key"]))

    # ------------------------------------------------------------ commands

    def cmd_info(self, cmd):
        return {"port": self.node.getBound().getPort(), "node_id": str(self.node.getNodeId()),
                "key_id": str(self.ident.publickey.getId())}

    def cmd_add_node(self, cmd):
        host, port = parse_addr(cmd.get("addr"))
        self.node.bootstrap(host, port)
        return {}

    def cmd_put(self, cmd):
        v = make_value(cmd)
        if not self.node.put(key_of(cmd), v):
            raise CmdError("put failed")
        return {"value_id": v.id}

    def cmd_put_signed(self, cmd):
        v = make_value(cmd)
        if not self.node.putSigned(key_of(cmd), v):
            raise CmdError("putSigned failed")
        return {"value_id": v.id}

    def cmd_put_encrypted(self, cmd):
        v = make_value(cmd)
        if not self.node.putEncrypted(key_of(cmd), v, self.owner_of(cmd)):
            raise CmdError("putEncrypted failed")
        return {"value_id": v.id}

    def cmd_get(self, cmd):
        return {"values": [describe(v) for v in self.node.get(key_of(cmd))]}

    def cmd_listen(self, cmd):
        key = key_of(cmd)
        handle = self.next_listen
        self.next_listen += 1
        entry = {"key": key, "events": [], "next": 0}

        def on_value(v, expired):
            event = describe(v)
            event["expired"] = bool(expired)
            event["t"] = time.monotonic() - self.start
            with self.cond:
                entry["events"].append(event)
                self.cond.notify_all()
            return True

        entry["cb"] = on_value  # keep it alive
        entry["token"] = self.node.listen(key, on_value)
        self.listens[handle] = entry
        return {"listen": handle}

    def listen_entry(self, cmd):
        entry = self.listens.get(cmd.get("listen"))
        if entry is None:
            raise CmdError("no listen %r" % (cmd.get("listen"),))
        return entry

    def cmd_wait_event(self, cmd):
        """The first event of listen `listen` not yet returned that matches `data` (hex, if
        given), `value_id` (if given) and `expired` (default false), waiting up to `timeout`.
        `waited` is how long this command waited."""
        entry = self.listen_entry(cmd)
        timeout = float(cmd.get("timeout", DEFAULT_TIMEOUT))
        want_expired = bool(cmd.get("expired", False))
        began = time.monotonic()
        deadline = began + timeout

        def matches(e):
            return (e["expired"] == want_expired
                    and ("data" not in cmd or e["data"] == cmd["data"])
                    and ("value_id" not in cmd or e["id"] == int(cmd["value_id"])))

        with self.cond:
            while True:
                for i, e in enumerate(entry["events"]):
                    if i >= entry["next"] and matches(e):
                        entry["next"] = i + 1
                        return {"event": e, "waited": time.monotonic() - began}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CmdError("no matching event within %.1f s; events: %s"
                                   % (timeout, json.dumps(entry["events"])))
                self.cond.wait(left)

    def cmd_events(self, cmd):
        entry = self.listen_entry(cmd)
        with self.cond:
            return {"events": list(entry["events"])}

    def cmd_cancel_listen(self, cmd):
        entry = self.listen_entry(cmd)
        self.node.cancelListen(entry["key"], entry["token"])
        del self.listens[cmd["listen"]]
        return {}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--bootstrap", action="append", default=[])
    p.add_argument("--log", action="store_true")
    args = p.parse_args()
    signal.alarm(300)  # never outlive a stuck test

    node = Node(args)
    print(json.dumps(node.ready()), flush=True)

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            cmd = json.loads(line)
        except ValueError as e:
            print(json.dumps({"id": None, "ok": False, "error": "bad JSON: %s" % e}), flush=True)
            continue
        name = cmd.get("cmd")
        reply = {"id": cmd.get("id")}
        if name == "quit":
            reply["ok"] = True
            print(json.dumps(reply), flush=True)
            break
        handler = getattr(node, "cmd_%s" % name, None)
        try:
            if handler is None:
                raise CmdError("unknown command %r" % (name,))
            reply.update(handler(cmd))
            reply["ok"] = True
        except CmdError as e:
            reply["ok"] = False
            reply["error"] = str(e)
        except Exception as e:  # never let a command kill the driver
            log(traceback.format_exc())
            reply["ok"] = False
            reply["error"] = repr(e)
        print(json.dumps(reply), flush=True)
    # shutdown() may take seconds handing values over; the tests kill us anyway.
    sys.stdout.flush()
    import os
    os._exit(0)


if __name__ == "__main__":
    main()
