//! A node of the pubky `mainline` crate (8.0.1) driven over JSON lines on stdin/stdout, for
//! kadmos's interop tests. The protocol is the one of the other drivers (interop/README.md):
//! a `ready` line, then one JSON reply line per command line, in order.
//!
//! The crate's public API has no ping, no raw query to one address and no routing-table dump
//! with IDs; `nodes` therefore reports the table's addresses with the IDs a lookup of the
//! node's own ID learnt (`"via": "find_node"`), and commands that need a raw query answer
//! `unsupported`.
#![allow(deprecated)] // the crate's blocking API is marked deprecated in favour of its async one

use std::io::{BufRead, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mainline::{Dht, Id, MutableItem, SigningKey};
use serde_json::{json, Value};

fn main() {
    let mut port = 0u16;
    let mut bootstrap: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--bootstrap" => bootstrap.push(args.next().expect("--bootstrap HOST:PORT")),
            "--log" => {} // the crate logs through `tracing`, which this driver does not install
            other => panic!("unknown argument {other}"),
        }
    }
    let mut builder = Dht::builder();
    // Server mode: the crate's adaptive mode would stay a read-only client on loopback.
    builder.server_mode().bind_address(Ipv4Addr::LOCALHOST).port(port);
    if bootstrap.is_empty() {
        builder.no_bootstrap();
    } else {
        builder.bootstrap(&bootstrap);
    }
    let dht = builder.build().expect("the mainline node starts");
    let info = dht.info();
    let ready = json!({"event": "ready", "port": info.local_addr().port(), "id": hex::encode(info.id().as_bytes())});
    println!("{ready}");
    std::io::stdout().flush().unwrap();

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let (id, reply) = match serde_json::from_str::<Value>(&line) {
            Ok(command) => {
                let id = command["id"].clone();
                let cmd = command["cmd"].as_str().unwrap_or("").to_string();
                let result = run(&dht, &cmd, &command);
                let quit = cmd == "quit";
                let reply = match result {
                    Ok(mut fields) => {
                        fields["ok"] = json!(true);
                        fields
                    }
                    Err(error) => json!({"ok": false, "error": error}),
                };
                if quit {
                    respond(id, reply);
                    return;
                }
                (id, reply)
            }
            Err(e) => (Value::Null, json!({"ok": false, "error": format!("not JSON: {e}")})),
        };
        respond(id, reply);
    }
}

fn respond(id: Value, mut reply: Value) {
    reply["id"] = id;
    println!("{reply}");
    std::io::stdout().flush().unwrap();
}

fn run(dht: &Dht, cmd: &str, args: &Value) -> Result<Value, String> {
    let timeout = Duration::from_secs_f64(args["timeout"].as_f64().unwrap_or(10.0));
    match cmd {
        "info" => {
            let info = dht.info();
            Ok(json!({"port": info.local_addr().port(), "node_id": hex::encode(info.id().as_bytes())}))
        }
        "nodes" => Ok(json!({"nodes": nodes(dht), "via": "find_node"})),
        "wait_nodes" => {
            let min = args["min"].as_u64().unwrap_or(1) as usize;
            let deadline = Instant::now() + timeout;
            loop {
                let count = dht.to_bootstrap().len();
                if count >= min {
                    return Ok(json!({"nodes": count}));
                }
                if Instant::now() >= deadline {
                    return Err(format!("only {count} nodes after {timeout:?}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "announce" => {
            let info_hash = id_arg(args, "infohash")?;
            let port = args["port"].as_u64().map(|p| p as u16);
            dht.announce_peer(info_hash, port).map_err(|e| format!("announce failed: {e} ({e:?})"))?;
            // The crate reports a whole failure only, not each node's error reply.
            Ok(json!({"errors": []}))
        }
        "get_peers" => {
            let info_hash = id_arg(args, "infohash")?;
            let mut peers: Vec<String> = dht.get_peers(info_hash).flatten().map(|p| p.to_string()).collect();
            peers.sort();
            peers.dedup();
            Ok(json!({"peers": peers}))
        }
        "find_node" => {
            if !args["addr"].is_null() {
                return Err("unsupported: the mainline crate has no raw find_node to one address".into());
            }
            let target = id_arg(args, "target")?;
            let k = args["k"].as_u64().unwrap_or(8) as usize;
            // Other nodes name this one too; like the other drivers, report only the others.
            let own = *dht.info().id();
            let mut found: Vec<(Id, SocketAddr)> = dht
                .find_node(target)
                .iter()
                .filter(|n| *n.id() != own)
                .map(|n| (*n.id(), SocketAddr::V4(n.address())))
                .collect();
            found.sort_by_key(|(id, _)| *id.xor(&target).as_bytes());
            found.truncate(k);
            Ok(json!({"nodes": found.iter().map(node_json).collect::<Vec<_>>()}))
        }
        "put_immutable" => {
            let value = byte_string(&hex_arg(args, "v_hex")?)?;
            let target = dht.put_immutable(&value).map_err(|e| format!("put failed: {e} ({e:?})"))?;
            Ok(json!({"target": hex::encode(target.as_bytes()), "errors": []}))
        }
        "get_immutable" => {
            let target = id_arg(args, "target")?;
            match dht.get_immutable(target) {
                Some(value) => Ok(json!({"v_hex": hex::encode(bencoded(&value))})),
                None => Err("not found".into()),
            }
        }
        "put_mutable" => {
            let seed: [u8; 32] = hex_arg(args, "secret_seed")?
                .try_into()
                .map_err(|_| "secret_seed must be a 32-byte ed25519 seed".to_string())?;
            let salt = optional_hex(args, "salt")?;
            let value = byte_string(&hex_arg(args, "v_hex")?)?;
            let seq = args["seq"].as_i64().ok_or("seq")?;
            let cas = args["cas"].as_i64();
            let item = MutableItem::new(SigningKey::from_bytes(&seed), &value, seq, salt.as_deref());
            dht.put_mutable(item, cas).map_err(|e| format!("put refused: {e} ({e:?})"))?;
            Ok(json!({"seq": seq, "errors": []}))
        }
        "get_mutable" => {
            let key: [u8; 32] =
                hex_arg(args, "public_key")?.try_into().map_err(|_| "public_key must be 32 bytes".to_string())?;
            let salt = optional_hex(args, "salt")?;
            match dht.get_mutable_most_recent(&key, salt.as_deref()) {
                Some(item) => Ok(json!({
                    "v_hex": hex::encode(bencoded(item.value())),
                    "seq": item.seq(),
                    "sig": hex::encode(item.signature()),
                })),
                None => Err("not found".into()),
            }
        }
        "quit" => Ok(json!({})),
        "ping" | "sample_infohashes" | "add_node" => Err(format!("unsupported: the mainline crate has no {cmd}")),
        other => Err(format!("unknown command {other:?}")),
    }
}

/// The routing table's addresses, with the IDs that a lookup of our own ID returned for them.
fn nodes(dht: &Dht) -> Vec<Value> {
    let own = *dht.info().id();
    let known: Vec<(Id, SocketAddr)> = dht.find_node(own).iter().map(|n| (*n.id(), SocketAddr::V4(n.address()))).collect();
    dht.to_bootstrap()
        .iter()
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .filter_map(|addr| known.iter().find(|(_, a)| *a == addr).copied())
        .map(|n| node_json(&n))
        .collect()
}

fn node_json((id, addr): &(Id, SocketAddr)) -> Value {
    json!({"id": hex::encode(id.as_bytes()), "addr": addr.to_string()})
}

fn id_arg(args: &Value, name: &str) -> Result<Id, String> {
    Id::from_bytes(hex_arg(args, name)?).map_err(|e| format!("{name}: {e}"))
}

fn hex_arg(args: &Value, name: &str) -> Result<Vec<u8>, String> {
    let text = args[name].as_str().ok_or_else(|| format!("missing {name}"))?;
    hex::decode(text).map_err(|e| format!("{name} is not hex: {e}"))
}

fn optional_hex(args: &Value, name: &str) -> Result<Option<Vec<u8>>, String> {
    match args[name].as_str() {
        None | Some("") => Ok(None),
        Some(_) => hex_arg(args, name).map(Some),
    }
}

/// The crate stores values as raw bytes sent as a bencoded byte string: `v_hex` must be one.
fn byte_string(bencoded: &[u8]) -> Result<Vec<u8>, String> {
    let colon = bencoded.iter().position(|b| *b == b':').ok_or("v_hex is not a bencoded byte string")?;
    let len: usize = std::str::from_utf8(&bencoded[..colon])
        .ok()
        .and_then(|l| l.parse().ok())
        .ok_or("v_hex is not a bencoded byte string (the mainline crate stores byte strings only)")?;
    let body = &bencoded[colon + 1..];
    if body.len() != len {
        return Err("v_hex: byte string length does not match".into());
    }
    Ok(body.to_vec())
}

fn bencoded(value: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", value.len()).into_bytes();
    out.extend_from_slice(value);
    out
}
