//! Finds the peers of a torrent: streams them as the nodes of the DHT answer.
//!
//! ```text
//! cargo run -p kadmos --example get_peers -- <INFOHASH as 40 hex digits>
//! KADMOS_BOOTSTRAP=127.0.0.1:6881 cargo run -p kadmos --example get_peers -- <INFOHASH>
//! ```

mod common;

use kadmos::{Dht, InfoHash};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let info_hash: InfoHash = match std::env::args().nth(1) {
        Some(text) => text.parse().map_err(|_| format!("not an infohash (40 hex digits): {text:?}"))?,
        None => return Err("usage: get_peers <INFOHASH>".into()),
    };

    let mut builder = Dht::builder();
    if let Some(nodes) = common::bootstrap() {
        builder = builder.bootstrap(nodes);
    }
    let dht = builder.build().await?;

    // A lookup walks toward the nodes closest to the infohash; each node that knows peers
    // sends some. The stream yields them as they come (each peer once) and ends with the lookup.
    let mut peers = dht.get_peers(info_hash).await?;
    let mut found = 0;
    while let Some(batch) = peers.next().await {
        for peer in batch.peers {
            println!("peer {peer} (from node {})", batch.from.addr);
            found += 1;
        }
    }
    println!("lookup over: {found} peers");

    dht.shutdown().await?;
    Ok(())
}
