#!/usr/bin/env node
// Driver for one webtorrent bittorrent-dht 11.0.12 node on loopback, controlled over JSON lines.
//
// Usage: node bt_node.js [--port P] [--bootstrap 127.0.0.1:PORT]... [--log]
//
// stdout: one JSON object per line ({"event":"ready",...} first, then one reply per command).
// stdin:  one JSON command per line (see interop/README.md).
// stderr: diagnostics (--log or BT_DHT_LOG=1 also prints every KRPC message sent/received).
// Commands are executed strictly one after another; replies come in order.

import crypto from 'crypto'
import readline from 'readline'
import DHT from 'bittorrent-dht'
import ed from 'ed25519-supercop'

const DEFAULT_TIMEOUT = 10
const K_RESULT = 8

function log (...a) {
  process.stderr.write('[bt_node] ' + a.join(' ') + '\n')
}

// ------------------------------------------------------------------ bencode (own codec,
// producing exactly what bittorrent-dht's bencode encodes back: Buffer, number, Array, Object)

function bdecode (buf) {
  let i = 0
  function dec () {
    const c = buf[i]
    if (c === 0x69) { // i
      const j = buf.indexOf(0x65, i)
      if (j < 0) throw new Error('unterminated integer')
      const s = buf.toString('latin1', i + 1, j)
      if (!/^-?\d+$/.test(s)) throw new Error('bad integer')
      i = j + 1
      const n = Number(s)
      if (!Number.isSafeInteger(n)) throw new Error('integer out of range')
      return n
    }
    if (c === 0x6c) { // l
      i++
      const out = []
      while (buf[i] !== 0x65) {
        if (i >= buf.length) throw new Error('unterminated list')
        out.push(dec())
      }
      i++
      return out
    }
    if (c === 0x64) { // d
      i++
      const out = {}
      while (buf[i] !== 0x65) {
        if (i >= buf.length) throw new Error('unterminated dict')
        const k = dec()
        if (!Buffer.isBuffer(k)) throw new Error('dict key is not a string')
        out[k.toString()] = dec()
      }
      i++
      return out
    }
    if (c >= 0x30 && c <= 0x39) {
      const j = buf.indexOf(0x3a, i)
      if (j < 0) throw new Error('bad string length')
      const n = Number(buf.toString('latin1', i, j))
      if (j + 1 + n > buf.length) throw new Error('truncated string')
      i = j + 1 + n
      return Buffer.from(buf.subarray(j + 1, j + 1 + n))
    }
    throw new Error('bad bencode at offset ' + i)
  }
  const v = dec()
  if (i !== buf.length) throw new Error('trailing data after bencoded value')
  return v
}

function bencode (v) {
  if (typeof v === 'number' || typeof v === 'bigint') return Buffer.from('i' + v + 'e')
  if (typeof v === 'string') v = Buffer.from(v)
  if (v instanceof Uint8Array) {
    return Buffer.concat([Buffer.from(v.length + ':'), Buffer.from(v)])
  }
  if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(bencode), Buffer.from('e')])
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    const parts = [Buffer.from('d')]
    for (const k of keys) {
      if (v[k] === undefined || v[k] === null) continue
      parts.push(bencode(Buffer.from(k)), bencode(v[k]))
    }
    parts.push(Buffer.from('e'))
    return Buffer.concat(parts)
  }
  throw new Error('cannot bencode ' + typeof v)
}

// ------------------------------------------------------------------ helpers

class CmdError extends Error {}

function parseAddr (s) {
  if (typeof s !== 'string') throw new CmdError(`bad address ${JSON.stringify(s)} (want 127.0.0.1:PORT)`)
  const i = s.lastIndexOf(':')
  const host = s.slice(0, i).replace(/^\[|\]$/g, '')
  const port = Number(s.slice(i + 1))
  if (i < 0 || !host || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new CmdError(`bad address ${JSON.stringify(s)} (want 127.0.0.1:PORT)`)
  }
  return { host, port }
}

function hexBuf (s, what, len) {
  if (s === undefined || s === null) s = ''
  if (typeof s !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(s)) throw new CmdError(`${what} must be hex`)
  const b = Buffer.from(s, 'hex')
  if (len !== undefined && b.length !== len) throw new CmdError(`${what} must be ${len} bytes`)
  return b
}

const hex20 = (s, what) => hexBuf(s, what, 20)
const sha1 = (b) => crypto.createHash('sha1').update(b).digest()
const fmtAddr = (n) => `${n.host || n.address}:${n.port}`
const timeoutOf = (c) => {
  const t = c.timeout === undefined ? DEFAULT_TIMEOUT : Number(c.timeout)
  if (!Number.isFinite(t)) throw new CmdError('timeout must be a number')
  return t * 1000
}

function withTimeout (ms, what, fn) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new CmdError(`timeout: ${what}`)), ms)
    fn((err, val) => {
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(val)
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function parseNodes (buf) {
  const out = []
  if (!Buffer.isBuffer(buf)) return out
  for (let i = 0; i + 26 <= buf.length; i += 26) {
    out.push({
      addr: `${buf[i + 20]}.${buf[i + 21]}.${buf[i + 22]}.${buf[i + 23]}:${buf.readUInt16BE(i + 24)}`,
      id: buf.subarray(i, i + 20).toString('hex')
    })
  }
  return out
}

function parsePeers (values) {
  const out = []
  for (const v of values || []) {
    if (Buffer.isBuffer(v) && v.length === 6) out.push(`${v[0]}.${v[1]}.${v[2]}.${v[3]}:${v.readUInt16BE(4)}`)
  }
  return out
}

function xorCmp (target) {
  return (a, b) => {
    const x = Buffer.from(a.id, 'hex'); const y = Buffer.from(b.id, 'hex')
    for (let i = 0; i < 20; i++) {
      const d = (x[i] ^ target[i]) - (y[i] ^ target[i])
      if (d) return d
    }
    return 0
  }
}

function remoteErr (err) {
  // k-rpc-socket error for a `y: e` reply: err.code = numeric code, message = "code msg"
  if (err && typeof err.code === 'number' && err.code > 0) return { code: err.code, msg: String(err.message).replace(/^\d+\s*/, '') }
  return null
}

function fmtErrs (errs) {
  if (!errs.length) return ''
  return '; remote errors: ' + errs.map(e => `${e.code} ${e.msg} from ${e.addr}`).join(', ')
}

// ------------------------------------------------------------------ node

const args = process.argv.slice(2)
let port = 0
const bootstrap = []
let verbose = process.env.BT_DHT_LOG === '1'
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') port = Number(args[++i])
  else if (args[i] === '--bootstrap') bootstrap.push(args[++i])
  else if (args[i] === '--log') verbose = true
  else { log('unknown argument', args[i]); process.exit(2) }
}
for (const b of bootstrap) parseAddr(b)

// ed25519-supercop wants Buffers; bittorrent-dht hands it Uint8Arrays
function verify (sig, msg, pk) {
  try {
    return ed.verify(Buffer.from(sig), Buffer.from(msg), Buffer.from(pk))
  } catch (e) {
    log('verify failed:', e.message)
    return false
  }
}

const dht = new DHT({ bootstrap: bootstrap.length ? bootstrap : false, verify })
const rpc = dht._rpc // k-rpc instance: used for single-node queries and to observe replies

dht.on('error', (e) => log('dht error:', e && e.stack))
dht.on('warning', (e) => { if (verbose) log('dht warning:', e && e.message) })

if (verbose) {
  const sock = rpc.socket
  const origSend = sock.send.bind(sock)
  sock.send = (peer, message, cb) => {
    log('==>', fmtAddr(peer), JSON.stringify(message, (k, v) => (v && v.type === 'Buffer') ? Buffer.from(v.data).toString('hex') : v))
    return origSend(peer, message, cb)
  }
  sock.socket.on('message', (buf, rinfo) => log('<==', `${rinfo.address}:${rinfo.port}`, buf.toString('hex')))
}

// Observe error replies to queries of the given method while fn runs (bittorrent-dht's own
// put/announce only report "All queries failed").
async function observingErrors (method, fn) {
  const errs = []
  let acks = 0
  const orig = rpc.query
  rpc.query = function (node, message, cb) {
    if (message && message.q === method) {
      const inner = cb
      cb = (err, res, peer) => {
        const re = remoteErr(err)
        if (re) errs.push({ addr: fmtAddr(peer || node), ...re })
        else if (!err) acks++
        if (inner) inner(err, res, peer)
      }
    }
    return orig.call(this, node, message, cb)
  }
  try {
    const r = await fn()
    return { r, errs, acks }
  } finally {
    rpc.query = orig
  }
}

function queryOne (addr, q, a, ms) {
  const node = parseAddr(addr)
  return withTimeout(ms, `no reply from ${addr}`, (cb) => {
    rpc.query({ host: node.host, port: node.port }, { q, a: Object.assign({ id: rpc.id }, a) }, (err, res) => {
      const re = remoteErr(err)
      if (re) return cb(new CmdError(`remote error ${re.code} ${re.msg}`))
      if (err) return cb(new CmdError(`${q} to ${addr} failed: ${err.message}`))
      cb(null, res)
    })
  })
}

function tableNodes () {
  return rpc.nodes.toArray().map(n => ({ addr: fmtAddr(n), id: Buffer.from(n.id).toString('hex') }))
}

// ------------------------------------------------------------------ commands

function vFromHex (c) {
  const raw = hexBuf(c.v_hex, 'v_hex')
  if (!raw.length) throw new CmdError('v_hex missing')
  let v
  try { v = bdecode(raw) } catch (e) { throw new CmdError('v_hex is not valid bencode: ' + e.message) }
  if (!bencode(v).equals(raw)) throw new CmdError('v_hex does not round-trip through bencode (non-canonical or non-UTF-8 dict keys)')
  return { raw, v }
}

function mutableKeys (c) {
  const sk = hexBuf(c.secret_key, 'secret_key', 64)
  const pk = hexBuf(c.public_key, 'public_key', 32)
  const salt = hexBuf(c.salt, 'salt')
  return { sk, pk, salt }
}

// signature buffer per BEP 44 (same as bittorrent-dht's encodeSigData)
function sigData (salt, seq, v) {
  const ref = { seq, v }
  if (salt && salt.length) ref.salt = salt
  return bencode(ref).subarray(1, -1)
}

const commands = {
  async add_node (c) {
    dht.addNode(parseAddr(c.addr))
    return {}
  },

  async nodes (c) {
    return { nodes: tableNodes() }
  },

  async wait_nodes (c) {
    const want = Number(c.min === undefined ? 1 : c.min)
    const deadline = Date.now() + timeoutOf(c)
    for (;;) {
      const n = rpc.nodes.count()
      if (n >= want) return { nodes: n }
      if (Date.now() >= deadline) throw new CmdError(`timeout: routing table holds ${n} nodes, wanted ${want}`)
      await sleep(100)
    }
  },

  async ping (c) {
    const res = await queryOne(c.addr, 'ping', {}, timeoutOf(c))
    const id = res.r && res.r.id
    if (!Buffer.isBuffer(id)) throw new CmdError('ping reply without id')
    return { node_id: id.toString('hex') }
  },

  async announce (c) {
    const ih = hex20(c.infohash, 'infohash')
    const p = c.port === undefined || c.port === null ? 0 : Number(c.port) // 0 = implied_port
    if (c.addr) {
      const gp = await queryOne(c.addr, 'get_peers', { info_hash: ih }, timeoutOf(c))
      const token = gp.r && gp.r.token
      if (!Buffer.isBuffer(token)) throw new CmdError('get_peers reply without token')
      await queryOne(c.addr, 'announce_peer', { info_hash: ih, port: p, token, implied_port: p ? 0 : 1 }, timeoutOf(c))
      return { stored: 1 }
    }
    const { errs, acks } = await observingErrors('announce_peer', () =>
      withTimeout(timeoutOf(c), 'announce did not finish', (cb) => dht.announce(ih, p, cb)))
    return { stored: acks, errors: errs }
  },

  async get_peers (c) {
    const ih = hex20(c.infohash, 'infohash')
    if (c.addr) {
      const res = await queryOne(c.addr, 'get_peers', { info_hash: ih }, timeoutOf(c))
      const r = res.r || {}
      return {
        peers: [...new Set(parsePeers(r.values))].sort(),
        nodes: parseNodes(r.nodes),
        token: Buffer.isBuffer(r.token) ? r.token.toString('hex') : null,
        node_id: Buffer.isBuffer(r.id) ? r.id.toString('hex') : null
      }
    }
    const peers = new Set()
    const onpeer = (peer, infoHash, from) => {
      if (!Buffer.from(infoHash).equals(ih)) return
      if (c.remote_only && !from) return // from == null: its own store
      peers.add(`${peer.host}:${peer.port}`)
    }
    dht.on('peer', onpeer)
    try {
      await withTimeout(timeoutOf(c), 'get_peers lookup did not finish', (cb) => dht.lookup(ih, cb))
    } catch (e) {
      if (!peers.size) throw e
    } finally {
      dht.removeListener('peer', onpeer)
    }
    return { peers: [...peers].sort() }
  },

  async find_node (c) {
    const target = hex20(c.target, 'target')
    if (c.addr) {
      const res = await queryOne(c.addr, 'find_node', { target }, timeoutOf(c))
      const r = res.r || {}
      return { nodes: parseNodes(r.nodes), node_id: Buffer.isBuffer(r.id) ? r.id.toString('hex') : null }
    }
    // iterative find_node lookup with bittorrent-dht's own traversal (k-rpc closest())
    const seen = new Map()
    await withTimeout(timeoutOf(c), 'find_node lookup did not finish', (cb) => {
      rpc.closest(target, { q: 'find_node', a: { id: rpc.id, target } }, (message, node) => {
        const id = message.r && message.r.id
        if (Buffer.isBuffer(id) && id.length === 20) {
          seen.set(fmtAddr(node), { addr: fmtAddr(node), id: id.toString('hex') })
        }
        return true
      }, cb)
    })
    const k = Number(c.k || K_RESULT)
    return { nodes: [...seen.values()].sort(xorCmp(target)).slice(0, k) }
  },

  async sample_infohashes (c) {
    const target = c.target ? hex20(c.target, 'target') : crypto.randomBytes(20)
    const res = await queryOne(c.addr, 'sample_infohashes', { target }, timeoutOf(c))
    const r = res.r || {}
    const s = Buffer.isBuffer(r.samples) ? r.samples : Buffer.alloc(0)
    const samples = []
    for (let i = 0; i + 20 <= s.length; i += 20) samples.push(s.subarray(i, i + 20).toString('hex'))
    return {
      node_id: Buffer.isBuffer(r.id) ? r.id.toString('hex') : null,
      samples,
      num: r.num,
      interval: r.interval,
      nodes: parseNodes(r.nodes)
    }
  },

  async put_immutable (c) {
    const { raw, v } = vFromHex(c)
    const target = sha1(raw)
    if (c.addr) {
      const g = await queryOne(c.addr, 'get', { target }, timeoutOf(c))
      const token = g.r && g.r.token
      if (!Buffer.isBuffer(token)) throw new CmdError('get reply without token')
      await queryOne(c.addr, 'put', { token, v }, timeoutOf(c))
      return { target: target.toString('hex'), stored: 1 }
    }
    const { r: n, errs, acks } = await observingErrors('put', () =>
      withTimeout(timeoutOf(c), 'put did not finish', (cb) => {
        dht.put({ v }, (err, key, n) => {
          if (err && !(typeof err.code === 'number' && err.code > 0) && err.message !== 'All queries failed') {
            return cb(new CmdError(`put failed: ${err.message}`))
          }
          cb(null, err ? 0 : n)
        })
      }))
    if (!n && !acks) throw new CmdError('put stored on 0 nodes' + fmtErrs(errs))
    return { target: target.toString('hex'), stored: acks || n, errors: errs }
  },

  async get_immutable (c) {
    const target = hex20(c.target, 'target')
    if (c.addr) {
      const res = await queryOne(c.addr, 'get', { target }, timeoutOf(c))
      const r = res.r || {}
      if (r.v === undefined) throw new CmdError('not found')
      return { v_hex: bencode(r.v).toString('hex') }
    }
    const value = await withTimeout(timeoutOf(c), 'get did not finish', (cb) =>
      dht.get(target, { cache: c.cache !== false }, cb))
    if (!value || value.v === undefined) throw new CmdError('not found')
    const raw = bencode(value.v)
    if (!sha1(raw).equals(target)) throw new CmdError('not found')
    return { v_hex: raw.toString('hex') }
  },

  async put_mutable (c) {
    const { sk, pk, salt } = mutableKeys(c)
    const { v } = vFromHex(c)
    if (c.seq === undefined || c.seq === null) throw new CmdError('seq missing')
    const seq = Number(c.seq)
    const cas = c.cas === undefined || c.cas === null ? undefined : Number(c.cas)
    const sign = (buf) => ed.sign(Buffer.from(buf), pk, sk)
    if (c.addr) {
      const target = sha1(Buffer.concat([pk, salt]))
      const g = await queryOne(c.addr, 'get', { target }, timeoutOf(c))
      const token = g.r && g.r.token
      if (!Buffer.isBuffer(token)) throw new CmdError('get reply without token')
      const a = { token, v, k: pk, seq, sig: sign(sigData(salt, seq, v)) }
      if (salt.length) a.salt = salt
      if (cas !== undefined) a.cas = cas
      await queryOne(c.addr, 'put', a, timeoutOf(c))
      return { stored: 1, seq }
    }
    const opts = { k: pk, v, seq, sign }
    if (salt.length) opts.salt = salt
    if (cas !== undefined) opts.cas = cas
    let n
    const { errs, acks } = await observingErrors('put', async () => {
      n = await withTimeout(timeoutOf(c), 'put did not finish', (cb) => {
        dht.put(opts, (err, key, n) => {
          if (err && !(typeof err.code === 'number' && err.code > 0) && err.message !== 'All queries failed') {
            return cb(new CmdError(`put failed: ${err.message}`))
          }
          cb(null, err ? 0 : n)
        })
      })
    })
    if (!acks && !n) throw new CmdError('put refused' + (errs.length ? fmtErrs(errs) : ': stored on 0 nodes'))
    return { stored: acks || n, seq, errors: errs }
  },

  async get_mutable (c) {
    const pk = hexBuf(c.public_key, 'public_key', 32)
    const salt = hexBuf(c.salt, 'salt')
    const target = sha1(Buffer.concat([pk, salt]))
    if (c.addr) {
      const a = { target }
      if (c.seq !== undefined && c.seq !== null) a.seq = Number(c.seq)
      const res = await queryOne(c.addr, 'get', a, timeoutOf(c))
      const r = res.r || {}
      if (r.v === undefined) {
        if (typeof r.seq === 'number') return { seq: r.seq, v_hex: null }
        throw new CmdError('not found')
      }
      if (!Buffer.isBuffer(r.sig) || !verify(r.sig, sigData(salt, r.seq, r.v), pk)) throw new CmdError('bad signature in reply')
      return { v_hex: bencode(r.v).toString('hex'), seq: r.seq, sig: r.sig.toString('hex') }
    }
    const opts = { cache: c.cache !== false }
    if (salt.length) opts.salt = salt
    const value = await withTimeout(timeoutOf(c), 'get did not finish', (cb) => dht.get(target, opts, cb))
    if (!value || value.v === undefined) throw new CmdError('not found')
    return {
      v_hex: bencode(value.v).toString('hex'),
      seq: value.seq,
      sig: value.sig ? Buffer.from(value.sig).toString('hex') : null
    }
  },

  async info (c) {
    return { port: dht.address().port, node_id: rpc.id.toString('hex') }
  }
}

// ------------------------------------------------------------------ main loop

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

let queue = Promise.resolve()
let quitting = false

function shutdown () {
  if (quitting) return
  quitting = true
  dht.destroy(() => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}

async function handle (line) {
  let rid = null
  try {
    let c
    try { c = JSON.parse(line) } catch (e) { throw new CmdError('bad JSON: ' + e.message) }
    if (!c || typeof c !== 'object' || Array.isArray(c)) throw new CmdError('command must be a JSON object')
    rid = c.id === undefined ? null : c.id
    if (c.cmd === 'quit') {
      emit({ id: rid, ok: true })
      shutdown()
      return
    }
    const fn = Object.prototype.hasOwnProperty.call(commands, c.cmd) ? commands[c.cmd] : null
    if (!fn) throw new CmdError(`unknown command ${JSON.stringify(c.cmd)}`)
    const res = await fn(c)
    emit(Object.assign({ id: rid, ok: true }, res))
  } catch (e) {
    if (!(e instanceof CmdError)) log(e && e.stack)
    emit({ id: rid, ok: false, error: e instanceof CmdError ? e.message : `${e && e.name}: ${e && e.message}` })
  }
}

process.on('uncaughtException', (e) => log('uncaught exception:', e && e.stack))
process.on('unhandledRejection', (e) => log('unhandled rejection:', e && e.stack))
process.stdout.on('error', () => shutdown()) // reader went away

dht.listen(port, '127.0.0.1', () => {
  const addr = dht.address()
  emit({ event: 'ready', port: addr.port, id: rpc.id.toString('hex') })
  log(`ready on 127.0.0.1:${addr.port} id ${rpc.id.toString('hex')}${bootstrap.length ? ' bootstrap ' + bootstrap.join(',') : ''}`)
  const rl = readline.createInterface({ input: process.stdin, terminal: false })
  rl.on('line', (line) => {
    if (!line.trim() || quitting) return
    queue = queue.then(() => quitting ? null : handle(line))
  })
  rl.on('close', () => { queue = queue.then(shutdown) })
})
