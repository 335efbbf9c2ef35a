//! BEP 44: stores data on the DHT and reads it back. An immutable item is addressed by the hash
//! of its value; a mutable item by a public key (and a salt), and only the holder of the
//! private key can publish new versions of it.
//!
//! ```text
//! cargo run -p kadmos --example bep44 -- "some text"
//! KADMOS_BOOTSTRAP=127.0.0.1:6881 cargo run -p kadmos --example bep44 -- "some text"
//! ```

mod common;

use kadmos::{Dht, ItemSigner, Seq};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = common::arg(1, "Hello from kadmos");

    // Items put through a node are re-put every hour to stay alive; this program exits at
    // once, so it does not ask for that.
    let mut builder = Dht::builder().keep_alive_puts(false);
    if let Some(nodes) = common::bootstrap() {
        builder = builder.bootstrap(nodes);
    }
    let dht = builder.build().await?;

    // Immutable: the target is the SHA-1 of the value (stored bencoded, as a string).
    let put = dht.put_immutable(text.as_bytes()).await?;
    println!("immutable target: {} (stored at {} nodes)", put.target, put.stored_at.len());
    let value = dht.get_immutable(put.target).await?;
    println!("immutable got back: {}", String::from_utf8_lossy(&value));

    // Mutable: signed with an ed25519 key (keep the 32-byte seed to publish again later).
    let signer = ItemSigner::from_seed(rand::random());
    let salt = b"kadmos example";
    println!("mutable public key: {}", hex::encode(signer.public_key()));
    for version in ["first", "second"] {
        // `Seq::Next` reads the current version's sequence number and puts the next one.
        let bencoded = format!("{}:{version}", version.len()).into_bytes();
        let put = dht.put_mutable(&signer, salt, bencoded, Seq::Next, None).await?;
        println!("mutable put seq {:?} at target {}", put.seq, put.target);
    }
    // Nodes may hold older versions; `most_recent` keeps the highest sequence number.
    match dht.get_mutable(signer.public_key(), salt, None).await?.most_recent().await {
        Some(item) => println!("mutable got back seq {}: {}", item.seq, String::from_utf8_lossy(&item.value)),
        None => println!("mutable item not found"),
    }

    dht.shutdown().await?;
    Ok(())
}
