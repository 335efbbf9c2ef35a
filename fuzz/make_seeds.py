#!/usr/bin/env python3
"""Writes the fuzzers' starting inputs from the datagrams captured between real nodes
(../../shared/vectors, or $KADMOS_VECTORS): KRPC ones for the Mainline targets, OpenDHT ones
for the others. Node and fragment targets get them as scripts (see
kadmos_proto::fuzz_targets): one datagram a step, from source 0, no wait."""
import hashlib, json, os, pathlib, sys

here = pathlib.Path(__file__).resolve().parent
vectors = pathlib.Path(os.environ.get("KADMOS_VECTORS", here / "../../shared/vectors"))
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else here / "seeds")

def datagrams(names):
    for name in names:
        for line in (vectors / name).read_text().splitlines():
            yield bytes.fromhex(json.loads(line)["hex"])

def step(datagram, source=0):
    return bytes([source]) + len(datagram).to_bytes(2, "big") + datagram

def write(target, data):
    folder = out / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)

krpc = list(datagrams(["bt-bt.jsonl", "lt-bt.jsonl", "lt-lt.jsonl"]))
odht = list(datagrams(["odht-odht.jsonl"]))
for d in krpc:
    write("bencode", d)
    write("krpc", d)
    write("mainline_node", step(d))
write("mainline_node", b"".join(step(d, i % 8) for i, d in enumerate(krpc)))
for d in odht:
    write("msgpack", d)
    write("opendht_message", d)
    write("opendht_node", step(d))
    write("fragments", step(d))
write("opendht_node", b"".join(step(d, i % 8) for i, d in enumerate(odht)))
write("fragments", b"".join(step(d) for d in odht))
