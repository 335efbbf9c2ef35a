//! Networks of real kadmos OpenDHT nodes on 127.0.0.1 (UDP, port 0), driven through the public
//! API. Tests about value lifetimes run on tokio's paused clock: time jumps to the next timer
//! whenever every node is idle (datagrams on loopback arrive before that), so a minute of
//! protocol time takes a fraction of a second.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kadmos::opendht::{Filter, OpenDht, OpenDhtState, PutOptions, Testnet, ValueType};
use kadmos::Id;
use tokio::time::Instant;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

/// Several values under one key, put from different nodes, all come back from a get on a third
/// node; a filter on id or user type narrows them on the storing nodes; a key nobody put at
/// gives an empty stream; the put reports where the value went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_value_put_and_get() {
    let net = bounded("testnet", Testnet::new(8)).await.unwrap();
    let key = Id::of_str("multi value key");

    let one = bounded("put one", net.nodes[1].put(key, "one", PutOptions::default())).await.unwrap();
    assert!(one.stored_at.len() >= 4, "stored at only {:?}", one.stored_at);
    assert_eq!(one.key, key);
    let typed = PutOptions::default().user_type("text/plain").id(42);
    let two = bounded("put two", net.nodes[4].put(key, "two", typed)).await.unwrap();
    assert_eq!(two.value_id, 42);

    let values = bounded("get", async { net.nodes[7].get(key).await.unwrap().collect_values().await }).await;
    let mut data: Vec<&[u8]> = values.iter().map(|v| v.data.as_slice()).collect();
    data.sort();
    assert_eq!(data, [b"one".as_slice(), b"two".as_slice()]);
    let two_found = values.iter().find(|v| v.id == 42).unwrap();
    assert_eq!(two_found.user_type, "text/plain");
    assert!(values.iter().any(|v| v.id == one.value_id));

    let by_id = Filter::default().id(one.value_id);
    let only =
        bounded("get by id", async { net.nodes[6].get_filtered(key, by_id).await.unwrap().collect_values().await })
            .await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].data, b"one");
    let by_type = Filter::default().user_type("text/plain");
    let only = bounded("get by user type", async {
        net.nodes[2].get_filtered(key, by_type).await.unwrap().collect_values().await
    })
    .await;
    assert_eq!(only.iter().map(|v| v.id).collect::<Vec<_>>(), [42]);

    let empty = bounded("get nothing", async {
        net.nodes[3].get(Id::of_str("nobody put here")).await.unwrap().collect_values().await
    })
    .await;
    assert!(empty.is_empty());
    net.shutdown().await;
}

/// A listen on one node, once subscribed at the storing nodes, hears a value put through another
/// node (pushed to it), hears the values already stored when it starts, and is cancelled (on
/// this node) when its stream is dropped. The latency is printed, not asserted: the gateway and
/// OpenDHT benchmarks measure it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_hears_a_put_from_another_node() {
    let net = bounded("testnet", Testnet::new(8)).await.unwrap();
    let key = Id::of_str("listened key");
    let mut changes = net.nodes[2].listen(key).await.unwrap();
    // Wait until storing nodes hold the subscription, so that the value comes as a push.
    bounded("listen subscribed", async {
        loop {
            let mut listeners = 0;
            for node in &net.nodes {
                listeners += node.info().await.unwrap().remote_listeners;
            }
            if listeners > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let started = Instant::now();
    let putter = net.nodes[6].clone();
    let put = tokio::spawn(async move { putter.put(key, "hello listeners", PutOptions::default()).await });
    let change = bounded("the listen hears the put", changes.next()).await.expect("a change");
    let elapsed = started.elapsed();
    assert_eq!((change.value.data.as_slice(), change.expired), (b"hello listeners".as_slice(), false));
    let report = bounded("put", put).await.unwrap().unwrap();
    assert_eq!(change.value.id, report.value_id);
    eprintln!("listen heard the put after {elapsed:?}");

    // A second listen, started after the put, is told of the stored value at once.
    let mut late = net.nodes[5].listen(key).await.unwrap();
    let first = bounded("late listen", late.next()).await.unwrap();
    assert_eq!((first.value.id, first.expired), (report.value_id, false));

    assert_eq!(net.nodes[2].info().await.unwrap().listens, 1);
    drop(changes);
    bounded("listen cancelled", async {
        while net.nodes[2].info().await.unwrap().listens != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    drop(late);
    net.shutdown().await;
}

/// On a paused clock: a listen hears an ICE-candidate value (type 5, which lives 1 minute) put
/// on another node, then hears it expire about a minute later; afterwards a get finds nothing.
#[tokio::test(start_paused = true)]
async fn listen_reports_expiry_after_the_type_lifetime() {
    let net = bounded("testnet", Testnet::new(6)).await.unwrap();
    let key = Id::of_str("short-lived key");
    let mut changes = net.nodes[0].listen(key).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let options = PutOptions::default().value_type(ValueType::ICE_CANDIDATES.id);
    assert_eq!(options.lifetime(), Duration::from_secs(60));
    let put_at = Instant::now();
    let report = bounded("put", net.nodes[4].put(key, "candidate", options)).await.unwrap();
    let added = bounded("value", changes.next()).await.unwrap();
    assert_eq!((added.value.id, added.expired), (report.value_id, false));
    assert!(put_at.elapsed() < Duration::from_secs(1), "heard after {:?}", put_at.elapsed());

    let gone = tokio::time::timeout(Duration::from_secs(90), changes.next()).await.expect("expiry heard").unwrap();
    let lived = put_at.elapsed();
    assert_eq!((gone.value.id, gone.expired), (report.value_id, true));
    eprintln!("expiry heard {lived:?} after the put");
    assert!(lived >= Duration::from_secs(59) && lived <= Duration::from_secs(70), "expired after {lived:?}");

    let left = bounded("get", async { net.nodes[3].get(key).await.unwrap().collect_values().await }).await;
    assert!(left.is_empty(), "{left:?}");
    drop(changes);
    net.shutdown().await;
}

/// On a paused clock: a permanent put of a 1-minute value is refreshed by its node and still
/// found 3 minutes later; after `cancel_put` the other nodes let it expire.
#[tokio::test(start_paused = true)]
async fn permanent_put_outlives_its_type_until_cancelled() {
    let net = bounded("testnet", Testnet::new(6)).await.unwrap();
    let key = Id::of_str("permanent key");
    let options = PutOptions::default().value_type(ValueType::ICE_CANDIDATES.id).permanent(true);
    let report = bounded("put", net.nodes[1].put(key, "kept", options)).await.unwrap();
    assert_eq!(net.nodes[1].info().await.unwrap().permanent_puts, 1);

    tokio::time::sleep(Duration::from_secs(180)).await;
    let found = bounded("get", async { net.nodes[5].get(key).await.unwrap().collect_values().await }).await;
    assert_eq!(found.iter().map(|v| v.id).collect::<Vec<_>>(), [report.value_id]);

    assert!(net.nodes[1].cancel_put(key, report.value_id).await.unwrap());
    assert!(!net.nodes[1].cancel_put(key, report.value_id).await.unwrap(), "cancelled once");
    tokio::time::sleep(Duration::from_secs(70)).await;
    let found = bounded("get", async { net.nodes[5].get(key).await.unwrap().collect_values().await }).await;
    assert!(found.is_empty(), "{found:?}");
    net.shutdown().await;
}

/// A node stopped and restarted from its saved state (through a file) keeps its node ID and
/// rejoins through its saved contacts with no bootstrap node at all, then gets a value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_node_rejoins_without_bootstrap_nodes() {
    let net = bounded("testnet", Testnet::new(8)).await.unwrap();
    let node = OpenDht::builder()
        .bind(LOOPBACK)
        .port(0)
        .bootstrap(net.bootstrap_addrs().into_iter().take(1).map(|a| a.to_string()))
        .build()
        .await
        .unwrap();
    bounded("bootstrap", node.bootstrapped()).await.unwrap();
    let id = node.node_id();
    let state = node.shutdown().await.unwrap();
    assert!(state.contacts.len() >= 4, "saved {} contacts", state.contacts.len());
    let file = std::env::temp_dir().join(format!("kadmos-opendht-state-{}.json", std::process::id()));
    state.save(&file).unwrap();
    let loaded = OpenDhtState::load(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    assert_eq!(loaded, state);

    let key = Id::of_str("value for the restored node");
    bounded("put", net.nodes[3].put(key, "welcome back", PutOptions::default())).await.unwrap();

    let restored = OpenDht::builder().bind(LOOPBACK).port(0).no_bootstrap().state(loaded).build().await.unwrap();
    assert_eq!(restored.node_id(), id);
    bounded("rejoin", restored.bootstrapped()).await.unwrap();
    let info = restored.info().await.unwrap();
    assert!(info.routing_table_ipv4.unwrap() >= 4, "rejoined with {:?} contacts", info.routing_table_ipv4);
    let values = bounded("get", async { restored.get(key).await.unwrap().collect_values().await }).await;
    assert_eq!(values.iter().map(|v| v.data.as_slice()).collect::<Vec<_>>(), [b"welcome back".as_slice()]);
    restored.shutdown().await.unwrap();
    net.shutdown().await;
}

/// What a node stores survives a restart: a value another node put there comes back from the
/// saved state (through JSON) with its remaining lifetime and its source, and is served to a
/// get on a network that never saw it; the node's own permanent put is put to that new network
/// as soon as the restarted node has joined (its first bootstrap, through the saved contacts of
/// the old network, reaches nobody; the fallback through the new network's router succeeds). Saved entries that are corrupt, forged or expired
/// are skipped without stopping the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_and_permanent_puts_survive_a_restart() {
    let first = bounded("testnet", Testnet::new(4)).await.unwrap();
    let join = |net: &Testnet| net.bootstrap_addrs().into_iter().take(1).map(|a| a.to_string()).collect::<Vec<_>>();
    let builder = || OpenDht::builder().bind(LOOPBACK).port(0).rate_limits(None, None);
    let node = builder().bootstrap(join(&first)).build().await.unwrap();
    bounded("bootstrap", node.bootstrapped()).await.unwrap();

    let theirs = Id::of_str("a value stored for another node");
    let put = bounded("put", first.nodes[1].put(theirs, "kept across restarts", PutOptions::default())).await.unwrap();
    assert!(put.stored_at.iter().any(|n| n.id == node.node_id()), "the node did not store it: {:?}", put.stored_at);
    let mine = Id::of_str("the node's own permanent value");
    let permanent = PutOptions::default().permanent(true);
    let own = bounded("permanent put", node.put(mine, "mine forever", permanent)).await.unwrap();

    let state = node.shutdown().await.unwrap();
    first.shutdown().await;
    let saved = state.values.iter().find(|v| v.key == theirs.to_string()).expect("the stored value is saved");
    assert_eq!(saved.source, Some(LOOPBACK));
    assert!((590..=600).contains(&saved.expires_in_secs), "{}", saved.expires_in_secs);
    assert_eq!(state.permanent_puts.len(), 1);
    assert!(state.values.iter().all(|v| v.key != mine.to_string()), "a permanent value is saved once, as a put");

    // Corrupt entries beside the good ones: bad hex, a value whose data was changed after it
    // was signed, an expired value.
    let mut tampered = state.clone();
    tampered.values.push(kadmos::opendht::SavedValue { value: "zz".into(), ..saved.clone() });
    let owner = kadmos::opendht::OwnerKey::generate(&mut rand::thread_rng(), 1024).unwrap();
    let mut forged = PutOptions::default().id(7).value("signed");
    kadmos::opendht::crypto::sign_value(&owner, &mut forged).unwrap();
    forged.data = b"changed".to_vec();
    tampered.values.push(kadmos::opendht::SavedValue::new(Id::of_str("forged"), &forged, Some(LOOPBACK), 300));
    tampered.values.push(kadmos::opendht::SavedValue { expires_in_secs: 0, ..saved.clone() });
    let loaded = OpenDhtState::from_json(&tampered.to_json()).unwrap();

    let second = bounded("testnet", Testnet::new(4)).await.unwrap();
    let restarted = builder().state(loaded).bootstrap(join(&second)).build().await.unwrap();
    bounded("rejoin", restarted.bootstrapped()).await.unwrap();
    let info = restarted.info().await.unwrap();
    assert_eq!((info.stored_values, info.permanent_puts), (2, 1), "{info:?}");
    let values = bounded("get", async { second.nodes[2].get(theirs).await.unwrap().collect_values().await }).await;
    assert_eq!(values.iter().map(|v| v.data.as_slice()).collect::<Vec<_>>(), [b"kept across restarts".as_slice()]);
    // The new network's nodes hold nothing but the permanent value, once it has been put: at
    // the end of the join, well before the 10 s fallback delay.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut held = 0;
        for n in &second.nodes {
            held += n.info().await.unwrap().stored_values;
        }
        if held >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the permanent value reached only {held} nodes of the new network in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = bounded("get", async { second.nodes[3].get(mine).await.unwrap().collect_values().await }).await;
    assert_eq!(
        found.iter().map(|v| (v.id, v.data.as_slice())).collect::<Vec<_>>(),
        [(own.value_id, &b"mine forever"[..])]
    );
    restarted.shutdown().await.unwrap();
    second.shutdown().await;
}

/// An OpenDHT put issued right after `bootstrap()` on a node that started with nobody to join
/// waits for that join (as OpenDHT's own puts do) and is then found by a get from another node;
/// repeated on several fresh nodes (before this was fixed, most such puts failed with "no
/// contacts").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_right_after_bootstrap_waits_for_the_join() {
    let net = bounded("testnet", Testnet::new(4)).await.unwrap();
    // Every node stays up to the end: a node gone would be a contact that times out in later
    // joins, slowing them down.
    let mut joined = Vec::new();
    for attempt in 0..8u8 {
        let node =
            OpenDht::builder().bind(LOOPBACK).port(0).rate_limits(None, None).no_bootstrap().build().await.unwrap();
        node.bootstrap(net.bootstrap_addrs()).await.unwrap();
        let key = Id::of_str(&format!("right after bootstrap {attempt}"));
        let put = bounded("put", node.put(key, vec![attempt], PutOptions::default())).await;
        assert!(put.is_ok(), "put right after bootstrap, attempt {attempt}: {put:?}");
        let values = bounded("get", async { net.nodes[0].get(key).await.unwrap().collect_values().await }).await;
        assert_eq!(values.iter().map(|v| v.data.clone()).collect::<Vec<_>>(), [vec![attempt]]);
        joined.push(node);
    }
    for node in joined {
        let _ = node.shutdown().await;
    }
    net.shutdown().await;
}
