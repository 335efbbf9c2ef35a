//! Advertisements and watches through the API, on real UDP sockets on 127.0.0.1 (port 0).
//! The nodes running quests shorten their intervals to seconds (`DhtBuilder::quests`), so
//! that renewals and re-searches happen within a test; every wait is bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kadmos::{Dht, Error, InfoHash, QuestConfig, QuestError, Testnet, WatchEvent};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

fn fast_quests() -> QuestConfig {
    QuestConfig {
        advertise_interval: Duration::from_secs(2),
        watch_interval: Duration::from_secs(1),
        retry_after: Duration::from_secs(1),
        ..QuestConfig::default()
    }
}

async fn quest_node(net: &Testnet) -> Dht {
    let node = Dht::builder()
        .bind(LOOPBACK)
        .bootstrap(net.bootstrap_addrs().into_iter().take(2).map(|a| a.to_string()))
        .quests(fast_quests())
        .build()
        .await
        .unwrap();
    bounded("join", node.bootstrapped()).await.unwrap();
    node
}

/// The next `Found` of a watch.
async fn next_found(watch: &mut kadmos::PeerWatch) -> (SocketAddr, bool) {
    loop {
        match bounded("a found peer", watch.next()).await.expect("the watch runs") {
            WatchEvent::Found { peer, advertised, .. } => return (peer, advertised),
            WatchEvent::Gone { .. } => {}
        }
    }
}

/// A watch started before anyone advertises reports the advertiser that starts later (on
/// another node), once, with `advertised` false on the watcher; the advertisement renews
/// (two rounds, each stored by nodes); a watch on the advertising node itself says
/// `advertised`; a second handle of a running watch hears of the peers already known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_an_advertiser_that_starts_later() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let (advertiser, watcher) = (quest_node(&net).await, quest_node(&net).await);
    let info_hash: InfoHash = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed".parse().unwrap();
    let mut watch = watcher.watch(info_hash).await.unwrap();
    let mut ad = advertiser.advertise(info_hash, Some(41_000)).await.unwrap();
    for _ in 0..2 {
        let renewal = bounded("a renewal", ad.next_renewal()).await.expect("advertising");
        assert!(renewal.stored_at >= 4, "{renewal:?}");
    }
    let expected: SocketAddr = "127.0.0.1:41000".parse().unwrap();
    assert_eq!(next_found(&mut watch).await, (expected, false));

    let mut again = watcher.watch(info_hash).await.unwrap();
    assert_eq!(next_found(&mut again).await, (expected, false), "known peers replayed");

    let mut own = advertiser.watch(info_hash).await.unwrap();
    assert_eq!(next_found(&mut own).await, (expected, true));
    net.shutdown().await;
}

/// The advertising node shuts down, saving its advertisement; restarted from that state with
/// no handle and no routers (its saved contacts only), it announces again: a handle taken
/// afterwards hears rounds stored by nodes, and a watcher that starts after the restart
/// finds the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_resumes_its_advertisement() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let advertiser = quest_node(&net).await;
    let info_hash: InfoHash = "7e57a7e57a7e57a7e57a7e57a7e57a7e57a7e57a".parse().unwrap();
    let mut ad = advertiser.advertise(info_hash, Some(42_000)).await.unwrap();
    assert!(bounded("a renewal", ad.next_renewal()).await.unwrap().stored_at > 0);
    let state = advertiser.shutdown().await.unwrap();
    drop(ad);
    assert_eq!(state.advertisements.len(), 1);
    assert_eq!(state.advertisements[0].port, Some(42_000));

    let restarted =
        Dht::builder().bind(LOOPBACK).no_bootstrap().state(state).quests(fast_quests()).build().await.unwrap();
    bounded("rejoin", restarted.bootstrapped()).await.unwrap();
    let running = restarted.advertisements().await.unwrap();
    assert_eq!(running.iter().map(|a| (a.info_hash, a.port)).collect::<Vec<_>>(), vec![(info_hash, Some(42_000))]);
    let mut adopted = restarted.advertise(info_hash, Some(42_000)).await.unwrap();
    let renewal = bounded("a renewal after restart", adopted.next_renewal()).await.unwrap();
    assert!(renewal.stored_at > 0, "{renewal:?}");

    let watcher = quest_node(&net).await;
    let mut watch = watcher.watch(info_hash).await.unwrap();
    assert_eq!(next_found(&mut watch).await.0, "127.0.0.1:42000".parse::<SocketAddr>().unwrap());
    net.shutdown().await;
}

/// A kept watch runs without handles and is saved with the peers it has reported; a node
/// restored from that state resumes it, and a follower hears of the peer that started
/// advertising after the restart but not of the one reported before (though the searches
/// return both: the resumed watch comes to know both); `stop_watching` ends the watch and the
/// follower's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_node_resumes_its_kept_watch() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let info_hash: InfoHash = "4e574e574e574e574e574e574e574e574e574e57".parse().unwrap();
    let (early, late): (SocketAddr, SocketAddr) =
        ("127.0.0.1:44001".parse().unwrap(), "127.0.0.1:44002".parse().unwrap());
    let first = quest_node(&net).await;
    let mut first_ad = first.advertise(info_hash, Some(early.port())).await.unwrap();
    assert!(bounded("a renewal", first_ad.next_renewal()).await.unwrap().stored_at > 0);

    let watcher = quest_node(&net).await;
    watcher.keep_watching(info_hash).await.unwrap();
    let mut follower = watcher.follow_watch(info_hash).await.unwrap().expect("a kept watch");
    assert_eq!(next_found(&mut follower).await.0, early);
    drop(follower);
    let watches = watcher.watches().await.unwrap();
    assert_eq!(watches.len(), 1, "a kept watch outlives its handles");
    assert!(watches[0].kept);
    let state = watcher.shutdown().await.unwrap();
    assert_eq!(state.watches.len(), 1);
    assert_eq!(state.watches[0].peers.iter().map(|p| p.addr).collect::<Vec<_>>(), vec![early]);

    let second = quest_node(&net).await;
    let mut second_ad = second.advertise(info_hash, Some(late.port())).await.unwrap();
    assert!(bounded("a renewal", second_ad.next_renewal()).await.unwrap().stored_at > 0);
    let restored =
        Dht::builder().bind(LOOPBACK).no_bootstrap().state(state).quests(fast_quests()).build().await.unwrap();
    // Attached whenever: it hears first of what the resumed watch found before it came.
    let mut follower = restored.follow_watch(info_hash).await.unwrap().expect("the watch was resumed");
    assert_eq!(next_found(&mut follower).await.0, late);
    bounded("the resumed watch knows both peers", async {
        while restored.watches().await.unwrap()[0].peers < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Whatever the follower heard is queued by now (events are handed out as the searches
    // bring them in, before the query above is answered): nothing of the early peer.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(50), follower.next()).await {
        assert!(!matches!(event, WatchEvent::Found { peer, .. } if peer == early), "{event:?}");
    }

    assert!(restored.stop_watching(info_hash).await.unwrap());
    assert!(bounded("the follower's end", follower.next()).await.is_none());
    assert!(restored.watches().await.unwrap().is_empty());
    assert!(restored.save_state().await.unwrap().watches.is_empty(), "a stopped watch is not saved");
    net.shutdown().await;
}

/// `cancel` stops an advertisement once its last handle goes: with two handles, cancelling
/// one leaves it running (the other still hears renewals), cancelling the second removes it
/// from the node; a dropped handle removes it too, and its stream of renewals ends when
/// `stop_advertising` stops it under a handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_drop_stop_renewals() {
    let net = bounded("testnet", Testnet::new(10)).await.unwrap();
    let node = quest_node(&net).await;
    let info_hash: InfoHash = "ca5ce1ca5ce1ca5ce1ca5ce1ca5ce1ca5ce1ca5c".parse().unwrap();
    let first = node.advertise(info_hash, None).await.unwrap();
    let mut second = node.advertise(info_hash, None).await.unwrap();
    first.cancel().await.unwrap();
    assert!(bounded("renewal", second.next_renewal()).await.is_some());
    assert_eq!(node.advertisements().await.unwrap().len(), 1);
    second.cancel().await.unwrap();
    assert!(node.advertisements().await.unwrap().is_empty());

    let dropped = node.advertise(info_hash, Some(43_000)).await.unwrap();
    drop(dropped);
    // A drop cannot await: its release is queued (or, with the queue full, sent by a task of
    // its own), so it reaches the node soon but not necessarily before the next call.
    bounded("the dropped handle's release", async {
        while !node.advertisements().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let mut stopped = node.advertise(info_hash, Some(43_001)).await.unwrap();
    assert!(node.stop_advertising(info_hash).await.unwrap());
    assert!(!node.stop_advertising(info_hash).await.unwrap());
    while bounded("renewals to end", stopped.next_renewal()).await.is_some() {}
    net.shutdown().await;
}

/// Bad requests get typed errors: port 0, and more watches or advertisements than the
/// node's limits.
#[tokio::test]
async fn quest_limits_give_typed_errors() {
    let limits = QuestConfig { max_watches: 1, max_advertisements: 1, ..QuestConfig::default() };
    let node = Dht::builder().bind(LOOPBACK).no_bootstrap().quests(limits).build().await.unwrap();
    let (a, b): (InfoHash, InfoHash) = ("a".repeat(40).parse().unwrap(), "b".repeat(40).parse().unwrap());
    assert!(matches!(node.advertise(a, Some(0)).await, Err(Error::Quest(QuestError::PortZero))));
    let _ad = node.advertise(a, Some(1)).await.unwrap();
    assert!(matches!(
        node.advertise(b, Some(1)).await,
        Err(Error::Quest(QuestError::TooManyAdvertisements { limit: 1 }))
    ));
    let _watch = node.watch(a).await.unwrap();
    assert!(matches!(node.watch(b).await, Err(Error::Quest(QuestError::TooManyWatches { limit: 1 }))));
}

/// The blocking wrapper offers both quests as iterators, with no async runtime in the caller:
/// an advertisement's first round is stored, and a watch on another node reports it.
#[test]
fn blocking_advertise_and_watch() {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first = kadmos::blocking::Dht::start(Dht::builder().bind(LOOPBACK).no_bootstrap()).unwrap();
        let seed = first.local_addrs()[0].to_string();
        let joined = || {
            let builder = Dht::builder().bind(LOOPBACK).bootstrap([seed.clone()]).quests(fast_quests());
            let node = kadmos::blocking::Dht::start(builder).unwrap();
            node.bootstrapped().unwrap();
            node
        };
        let (advertiser, watcher) = (joined(), joined());
        let info_hash: InfoHash = "b10cb10cb10cb10cb10cb10cb10cb10cb10cb10c".parse().unwrap();
        let mut watch = watcher.watch(info_hash).unwrap();
        let mut renewals = advertiser.advertise(info_hash, Some(44_000)).unwrap();
        let renewal = renewals.next();
        let found = watch.find_map(|e| match e {
            WatchEvent::Found { peer, .. } => Some(peer),
            WatchEvent::Gone { .. } => None,
        });
        let _ = done.send((renewal, found));
    });
    let (renewal, found) = outcome.recv_timeout(Duration::from_secs(60)).expect("both quests reported within 60 s");
    assert!(renewal.expect("a round").stored_at >= 1);
    assert_eq!(found, Some("127.0.0.1:44000".parse().unwrap()));
}
