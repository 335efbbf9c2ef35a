// A pkarr client (the pkarr npm package, 1.3.0) using a relay: publishes a signed DNS packet
// with Pkarr.relayPut, reads it back with Pkarr.relayGet, and prints one JSON line:
// {"ok", "public_key" (z-base32), "put_status", "records": [[name, data], …]} or {"ok": false, "error"}.
// Usage: node pkarr_client.js RELAY_URL [SEED_HEX]   (the relay URL without the key, e.g. http://127.0.0.1:8080/pkarr)
import { Pkarr, SignedPacket, z32 } from 'pkarr'

const [relay, seedHex] = process.argv.slice(2)
if (!relay) {
  console.log(JSON.stringify({ ok: false, error: 'usage: node pkarr_client.js RELAY_URL [SEED_HEX]' }))
  process.exit(2)
}

try {
  const seed = seedHex ? Buffer.from(seedHex, 'hex') : Pkarr.generateSeed()
  const keyPair = Pkarr.generateKeyPair(seed)
  const packet = {
    id: 0,
    type: 'response',
    flags: 0,
    answers: [{ name: '_foo', type: 'TXT', class: 'IN', ttl: 30, data: [Buffer.from('bar')] }]
  }
  const signed = SignedPacket.fromPacket(keyPair, packet)
  const put = await Pkarr.relayPut(relay, signed)
  if (!put.ok) throw new Error(`relayPut answered ${put.status}: ${await put.text()}`)
  const got = await Pkarr.relayGet(relay, keyPair.publicKey)
  const records = got.resourceRecords('_foo').map(r => [r.name, r.data.map(d => d.toString()).join('')])
  console.log(JSON.stringify({
    ok: true,
    public_key: z32.encode(keyPair.publicKey),
    put_status: put.status,
    timestamp: got.timestamp(),
    records
  }))
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e && e.message ? e.message : e) }))
  process.exit(1)
}
