//! `kadmos testnet`: a local network to try every command without internet access.

use kadmos::Testnet;
use serde_json::json;

use crate::output::emit;

pub async fn run(n: usize, port: Option<u16>, json: bool) -> Result<(), String> {
    if n == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let net = match port {
        None => Testnet::new(n).await.map_err(|e| e.to_string())?,
        Some(port) => {
            // A fixed first port makes the bootstrap address easy to type.
            let first = Testnet::node_builder().port(port).no_bootstrap().build().await.map_err(|e| e.to_string())?;
            let seed = first.local_addr_v4().ok_or("no IPv4 address")?;
            let mut nodes = vec![first];
            for _ in 1..n {
                let node =
                    Testnet::node_builder().bootstrap([seed.to_string()]).build().await.map_err(|e| e.to_string())?;
                node.bootstrapped().await.map_err(|e| e.to_string())?;
                nodes.push(node);
            }
            Testnet { nodes }
        }
    };
    let bootstrap = net.bootstrap_addrs()[0];
    emit(json, "testnet", &json!({ "nodes": n, "bootstrap": bootstrap, "addrs": net.bootstrap_addrs() }), || {
        format!("{n} nodes running on 127.0.0.1; bootstrap from {bootstrap}\ntry: kadmos peers <INFOHASH> --bootstrap {bootstrap}\nCtrl-C to stop")
    });
    wait_for_signal().await;
    net.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
