//! A Mainline DHT node: joins the network, prints what it knows every few seconds, and stops
//! on Ctrl-C (or after a number of seconds), handing back the state it would save.
//!
//! ```text
//! cargo run -p kadmos --example node           # on the public network, until Ctrl-C
//! cargo run -p kadmos --example node -- 60     # for 60 seconds
//! KADMOS_BOOTSTRAP=127.0.0.1:6881 cargo run -p kadmos --example node   # a local network
//! ```

mod common;

use std::time::Duration;

use kadmos::Dht;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run_for = common::run_for(1)?;

    // Any free port, a random node ID; the public routers unless KADMOS_BOOTSTRAP says otherwise.
    let mut builder = Dht::builder();
    if let Some(nodes) = common::bootstrap() {
        builder = builder.bootstrap(nodes);
    }
    let dht = builder.build().await?;
    println!("node {} on {:?}", dht.node_id(), dht.local_addrs());

    // Joining runs in the background; wait for it to end before reporting.
    dht.bootstrapped().await?;
    let info = dht.info().await?;
    println!("joined: {} contacts", info.routing_table_ipv4.unwrap_or(0) + info.routing_table_ipv6.unwrap_or(0));

    // Until Ctrl-C, or until the time given is up.
    let stop = async {
        match run_for {
            Some(duration) => tokio::time::sleep(duration).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut every_few_seconds = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = every_few_seconds.tick() => {
                let info = dht.info().await?;
                println!(
                    "contacts: {} ipv4, {} ipv6; peers stored for others: {}; datagrams in/out: {}/{}",
                    info.routing_table_ipv4.unwrap_or(0),
                    info.routing_table_ipv6.unwrap_or(0),
                    info.stored_peers,
                    info.traffic.datagrams_received,
                    info.traffic.datagrams_sent,
                );
            }
        }
    }

    // The state is what a node saves (`state.save(path)`) to rejoin without the routers
    // next time (`Dht::builder().state(SavedState::load(path)?)`).
    let state = dht.shutdown().await?;
    println!("stopped; state to save: node ID {} and {} contacts", state.node_id, state.contacts.len());
    Ok(())
}
