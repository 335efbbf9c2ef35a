//! `kadmos advertise` and `kadmos watch`: quests that run until interrupted, printing each
//! advertisement round or each new peer; and the `--advertise` option of `kadmos node`.

use std::time::Duration;

use kadmos::{Advertisement, Dht, InfoHash, QuestConfig, WatchEvent};
use serde_json::json;

use crate::oneshot::{announced_port, join};
use crate::output::emit;
use crate::testnet::wait_for_signal;
use crate::NetworkArgs;

/// Quest intervals with an optional override of one of them (`--interval SECS`).
fn quests_with(interval: Option<u64>, set: fn(&mut QuestConfig, Duration)) -> Result<QuestConfig, String> {
    let mut config = QuestConfig::default();
    match interval {
        Some(0) => return Err("--interval must be at least 1 second".into()),
        Some(secs) => set(&mut config, Duration::from_secs(secs)),
        None => {}
    }
    Ok(config)
}

/// Advertises until SIGINT/SIGTERM, printing every round.
pub async fn advertise(info_hash: InfoHash, interval: Option<u64>, mut net: NetworkArgs) -> Result<(), String> {
    let quests = quests_with(interval, |c, d| c.advertise_interval = d)?;
    let port = announced_port(&mut net);
    let dht = join(&net, |b| b.quests(quests)).await?;
    let shown_port = port.or_else(|| dht.local_addr_v4().or(dht.local_addrs().first().copied()).map(|a| a.port()));
    let advertisement = dht.advertise(info_hash, port).await.map_err(|e| e.to_string())?;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    tokio::select! {
        () = &mut signal => {}
        () = print_renewals(advertisement, shown_port, port.is_none(), net.json) => {}
    }
    let _ = dht.shutdown().await;
    Ok(())
}

/// Prints each round of an advertisement until it ends (the node stopped).
async fn print_renewals(mut advertisement: Advertisement, port: Option<u16>, implied: bool, json: bool) {
    let info_hash = advertisement.info_hash();
    while let Some(renewal) = advertisement.next_renewal().await {
        print_renewal(json, info_hash, (port, implied), renewal.stored_at, renewal.next_in_secs);
    }
}

/// Prints one advertisement round (also for the rounds a daemon runs for this command).
pub(crate) fn print_renewal(
    json: bool,
    info_hash: InfoHash,
    (port, implied): (Option<u16>, bool),
    stored_at: usize,
    next_in_secs: u64,
) {
    let value = json!({
        "info_hash": info_hash.to_string(),
        "port": port,
        "implied_port": implied,
        "stored_at": stored_at,
        "next_in_secs": next_in_secs,
    });
    emit(json, "advertised", &value, || {
        format!(
            "{info_hash}: announced port {} at {stored_at} nodes; next round in {next_in_secs} s",
            port.unwrap_or(0)
        )
    });
}

/// Prints one watch event (also for the events a daemon's watch sends this command).
pub(crate) fn print_watch_event(json: bool, info_hash: InfoHash, event: WatchEvent) {
    match event {
        WatchEvent::Found { peer, from, advertised } => {
            let value =
                json!({ "info_hash": info_hash.to_string(), "peer": peer, "from": from, "advertised": advertised });
            emit(json, "peer", &value, || format!("{peer}\t(from {} {})", from.addr, from.id));
        }
        WatchEvent::Gone { peer } => {
            emit(json, "gone", &json!({ "info_hash": info_hash.to_string(), "peer": peer }), || {
                format!("{peer}\tgone")
            });
        }
    }
}

/// Watches until SIGINT/SIGTERM, printing each new peer (and each peer gone).
pub async fn watch(info_hash: InfoHash, interval: Option<u64>, net: NetworkArgs) -> Result<(), String> {
    let quests = quests_with(interval, |c, d| c.watch_interval = d)?;
    let dht = join(&net, |b| b.quests(quests)).await?;
    let mut watch = dht.watch(info_hash).await.map_err(|e| e.to_string())?;
    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            event = watch.next() => match event {
                Some(event) => print_watch_event(net.json, info_hash, event),
                None => break,
            },
        }
    }
    let _ = dht.shutdown().await;
    Ok(())
}

/// `INFOHASH` or `INFOHASH:PORT`, the value of `kadmos node --advertise`.
pub fn parse_advertised(text: &str) -> Result<(InfoHash, Option<u16>), String> {
    let (hash, port) = match text.split_once(':') {
        Some((hash, port)) => {
            let port: u16 = port.parse().map_err(|_| format!("{port:?} is not a port (1-65535)"))?;
            if port == 0 {
                return Err("port 0 cannot be advertised (leave the port out for the node's own)".into());
            }
            (hash, Some(port))
        }
        None => (text, None),
    };
    Ok((hash.parse().map_err(|e| format!("{hash:?}: {e}"))?, port))
}

/// Starts the `--advertise` quests of a daemon, printing their rounds in the background
/// (each task ends when the node stops).
pub async fn start_advertising(dht: &Dht, advertised: &[(InfoHash, Option<u16>)], json: bool) -> Result<(), String> {
    let own_port = dht.local_addr_v4().or(dht.local_addrs().first().copied()).map(|a| a.port());
    for &(info_hash, port) in advertised {
        let advertisement = dht.advertise(info_hash, port).await.map_err(|e| format!("advertise {info_hash}: {e}"))?;
        tokio::spawn(print_renewals(advertisement, port.or(own_port), port.is_none(), json));
    }
    Ok(())
}

/// Starts the `--watch` quests of a daemon as watches the node keeps (saved with the peers
/// they report), then prints the events of every kept watch, restored ones included, in the
/// background: the peers found since the daemon started, then each event, so a restarted
/// daemon does not print again the peers it printed before (each task ends when the node
/// stops).
pub async fn start_watching(dht: &Dht, watched: &[InfoHash], json: bool) -> Result<(), String> {
    for &info_hash in watched {
        dht.keep_watching(info_hash).await.map_err(|e| format!("watch {info_hash}: {e}"))?;
    }
    for info in dht.watches().await.map_err(|e| e.to_string())?.into_iter().filter(|w| w.kept) {
        let Some(mut watch) = dht.follow_watch(info.info_hash).await.map_err(|e| e.to_string())? else { continue };
        tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                print_watch_event(json, info.info_hash, event);
            }
        });
    }
    Ok(())
}
