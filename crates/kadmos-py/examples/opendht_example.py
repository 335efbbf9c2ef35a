"""An OpenDHT program, written for OpenDHT's own Python bindings: it joins a network, listens to a
key, puts values (plain and signed), gets them back, filters them, and shuts down. It runs
unchanged on kadmos with ``import kadmos.opendht as dht`` in place of ``import opendht as dht``
(the tests run it both ways and compare the output).

Usage: python opendht_example.py HOST PORT [KEY]   (a node of the network to join; the key's name)
"""

import hashlib
import sys
import threading

import opendht as dht

host, port = sys.argv[1], sys.argv[2]

identity = dht.Identity.generate("example", bits=2048)
config = dht.DhtConfig()
config.setRateLimit(-1, -1)
config.setPeerDiscovery(False, False)
node = dht.DhtRunner()
node.run(id=identity, port=0, ipv4="127.0.0.1", ipv6="::1", config=config)
node.bootstrap(host, port)
print("bound to a port:", node.getBound().getPort() > 0)

name = sys.argv[3] if len(sys.argv) > 3 else "kadmos example key"
key = dht.InfoHash.get(name)
print("key is the SHA-1 of its name:", str(key) == hashlib.sha1(name.encode()).hexdigest())

heard = []
heard_enough = threading.Event()


def on_value(value, expired):
    heard.append((bytes(value.data), expired))
    if len(heard) >= 2:
        heard_enough.set()
    return True


token = node.listen(key, on_value)

print("put plain:", node.put(key, dht.Value(b"plain value")))
print("put signed:", node.putSigned(key, dht.Value(b"signed value")))

values = node.get(key)
print("got:", sorted(bytes(v.data) for v in values))
signed = [v for v in values if bytes(v.data) == b"signed value"]
print("signed by me:", signed[0].owner.getId() == identity.publickey.getId())

only_plain = node.get(key, filter=lambda v: bytes(v.data).startswith(b"plain"))
print("filtered:", [bytes(v.data) for v in only_plain])
by_id = node.get(key, where=dht.Where().id(signed[0].id))
print("where id:", [bytes(v.data) for v in by_id])

print("listen heard both:", heard_enough.wait(30), sorted(heard))
node.cancelListen(token)

done = threading.Event()
node.shutdown(done.set)
print("shut down:", done.wait(30))
node.join()
