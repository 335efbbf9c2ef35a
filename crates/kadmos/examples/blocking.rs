//! The blocking API, for code without an async runtime: the node runs on a runtime of its
//! own, each call waits for its answer, and streams are iterators. Looks up the peers of a
//! torrent, then stores and reads back a BEP 44 item.
//!
//! ```text
//! cargo run -p kadmos --example blocking -- <INFOHASH as 40 hex digits>
//! KADMOS_BOOTSTRAP=127.0.0.1:6881 cargo run -p kadmos --example blocking -- <INFOHASH>
//! ```

mod common;

use kadmos::{blocking, Dht, InfoHash};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let info_hash: InfoHash = match std::env::args().nth(1) {
        Some(text) => text.parse().map_err(|_| format!("not an infohash (40 hex digits): {text:?}"))?,
        None => return Err("usage: blocking <INFOHASH>".into()),
    };

    let mut builder = Dht::builder().keep_alive_puts(false);
    if let Some(nodes) = common::bootstrap() {
        builder = builder.bootstrap(nodes);
    }
    let dht = blocking::Dht::start(builder)?;
    dht.bootstrapped()?;
    println!("joined: {} contacts", dht.info()?.routing_table_ipv4.unwrap_or(0));

    // Each batch comes as a node sends it; the iterator ends with the lookup.
    for batch in dht.get_peers(info_hash)? {
        for peer in batch.peers {
            println!("peer {peer} (from node {})", batch.from.addr);
        }
    }

    let put = dht.put_immutable(b"stored from a blocking program")?;
    let value = dht.get_immutable(put.target)?;
    println!("immutable {} got back: {}", put.target, String::from_utf8_lossy(&value));

    dht.shutdown()?;
    Ok(())
}
