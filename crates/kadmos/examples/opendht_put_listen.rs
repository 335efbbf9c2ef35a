//! OpenDHT: listens to a key, puts a value there, and prints every change to the key's values
//! (ours included) until Ctrl-C or a number of seconds.
//!
//! ```text
//! cargo run -p kadmos --example opendht_put_listen -- "my key" "hello"        # until Ctrl-C
//! cargo run -p kadmos --example opendht_put_listen -- "my key" "hello" 30     # for 30 seconds
//! KADMOS_BOOTSTRAP=127.0.0.1:4222 cargo run -p kadmos --example opendht_put_listen -- k v
//! ```

mod common;

use kadmos::opendht::{key_from_str, OpenDht, PutOptions};
use kadmos::PortSpec;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = key_from_str(&common::arg(1, "kadmos example")); // the SHA-1 of the text, as OpenDHT
    let data = common::arg(2, "hello from kadmos");
    let run_for = common::run_for(3)?;

    // A client node: others keep it out of their routing tables, which suits a short-lived
    // program; and any free port, since nobody needs to find it on OpenDHT's port 4222.
    let mut builder = OpenDht::builder().client(true).ports(PortSpec::any());
    if let Some(nodes) = common::bootstrap() {
        builder = builder.bootstrap(nodes);
    }
    let dht = builder.build().await?;
    println!("key {key}");

    // The listen first reports the values already stored, then each change as the storing
    // nodes push it. It stays subscribed until `changes` is dropped.
    let mut changes = dht.listen(key).await?;
    let put = dht.put(key, data, PutOptions::default()).await?;
    println!("put value {:x} at {} nodes", put.value_id, put.stored_at.len());

    let stop = async {
        match run_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            change = changes.next() => match change {
                Some(change) => {
                    let what = if change.expired { "expired" } else { "value" };
                    let data = String::from_utf8_lossy(&change.value.data);
                    println!("{what} {:x}: {data}", change.value.id);
                }
                None => break, // the node has shut down
            },
        }
    }

    dht.shutdown().await?;
    Ok(())
}
