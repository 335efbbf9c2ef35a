//! A network of real kadmos nodes on 127.0.0.1 (UDP, port 0), driven through the public API.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kadmos::{Dht, InfoHash, Testnet};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

/// In a 30-node network, a peer announced through one node is found by `get_peers` from
/// another, streamed as a batch from a node that stores it; find_node returns the k closest
/// nodes that answered, closest first; and routing tables fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_announce_and_find_peers() {
    let net = bounded("testnet", Testnet::new(30)).await.unwrap();
    let info_hash: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();

    let announced = bounded("announce", net.nodes[3].announce_peer(info_hash, Some(40_000))).await.unwrap();
    assert!(announced.stored_at.len() >= 4, "stored at only {:?}", announced.stored_at);

    let mut stream = net.nodes[17].get_peers(info_hash).await.unwrap();
    let batch = bounded("first batch", stream.next()).await.expect("a batch of peers");
    assert_eq!(batch.peers, vec!["127.0.0.1:40000".parse().unwrap()]);
    assert!(announced.stored_at.iter().any(|n| n.addr == batch.from.addr), "batch from a node that stored it");
    while bounded("rest of the lookup", stream.next()).await.is_some() {}

    // An implied-port announce stores the announcer's UDP source port.
    let other: InfoHash = "1123456789abcdef0123456789abcdef01234567".parse().unwrap();
    bounded("implied announce", net.nodes[5].announce_peer(other, None)).await.unwrap();
    let peers =
        bounded("get implied", async { net.nodes[20].get_peers(other).await.unwrap().collect_peers().await }).await;
    assert_eq!(peers, vec![net.nodes[5].local_addr_v4().unwrap()]);

    let target = net.nodes[9].node_id();
    let closest = bounded("find_node", net.nodes[0].find_node(target)).await.unwrap();
    assert_eq!(closest.len(), 8);
    assert_eq!(closest[0].id, target, "the node itself is the closest to its own ID");
    for pair in closest.windows(2) {
        assert!(pair[0].id.distance(&target) < pair[1].id.distance(&target));
    }
    let table = net.nodes[12].routing_table().await.unwrap();
    let v4 = table.ipv4.unwrap();
    assert!(v4.size >= 10, "routing table holds {} contacts", v4.size);
    assert!(table.ipv6.is_none());
    net.shutdown().await;
}

/// A node stopped and restarted from its saved state keeps its node ID and rejoins through its
/// saved contacts with no bootstrap routers at all, then finds peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_node_rejoins_without_routers() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let node = Dht::builder()
        .bind(LOOPBACK)
        .bootstrap(net.bootstrap_addrs().into_iter().take(1).map(|a| a.to_string()))
        .build()
        .await
        .unwrap();
    bounded("bootstrap", node.bootstrapped()).await.unwrap();
    let id = node.node_id();
    let state = node.shutdown().await.unwrap();
    assert!(state.contacts.len() >= 5, "saved {} contacts", state.contacts.len());

    let info_hash: InfoHash = "2123456789abcdef0123456789abcdef01234567".parse().unwrap();
    bounded("announce", net.nodes[4].announce_peer(info_hash, Some(41_000))).await.unwrap();

    let restored = Dht::builder().bind(LOOPBACK).no_bootstrap().state(state).build().await.unwrap();
    assert_eq!(restored.node_id(), id);
    bounded("rejoin", restored.bootstrapped()).await.unwrap();
    let info = restored.info().await.unwrap();
    assert!(info.routing_table_ipv4.unwrap() >= 5, "rejoined with {:?} contacts", info.routing_table_ipv4);
    let peers =
        bounded("get_peers", async { restored.get_peers(info_hash).await.unwrap().collect_peers().await }).await;
    assert_eq!(peers, vec!["127.0.0.1:41000".parse().unwrap()]);
    restored.shutdown().await.unwrap();
    net.shutdown().await;
}

/// Pinging answers with the node's ID; pinging a closed port fails with a timeout error
/// instead of hanging; a lookup on a node with no contacts fails with a clear error.
#[tokio::test]
async fn ping_and_clear_errors() {
    let a = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
    let b = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
    let pong = a.ping(b.local_addr_v4().unwrap()).await.unwrap();
    assert_eq!(pong.id, b.node_id());
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap();
    drop(closed);
    let err = bounded("dead ping", a.ping(dead)).await.unwrap_err();
    assert!(err.to_string().contains("no answer"), "{err}");
    let lonely = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
    let err = lonely.find_node(b.node_id()).await.unwrap_err();
    assert!(err.to_string().contains("routing table is empty"), "{err}");
    let err = a.ping("[::1]:5".parse().unwrap()).await.unwrap_err();
    assert!(err.to_string().contains("address family"), "{err}");
}

/// The blocking wrapper works without an async runtime in the caller: ping, announce and
/// get_peers, and BEP 44 immutable and mutable items (the newest version wins).
#[test]
fn blocking_wrapper() {
    let a = kadmos::blocking::Dht::start(Dht::builder().bind(LOOPBACK).no_bootstrap()).unwrap();
    let addr = a.local_addrs()[0];
    let b = kadmos::blocking::Dht::start(Dht::builder().bind(LOOPBACK).bootstrap([addr.to_string()])).unwrap();
    b.bootstrapped().unwrap();
    assert_eq!(b.ping(addr).unwrap().id, a.node_id());
    let info_hash: InfoHash = "3123456789abcdef0123456789abcdef01234567".parse().unwrap();
    b.announce_peer(info_hash, Some(42_000)).unwrap();
    // The announce was stored at `a`, the only other node; b's lookup asks a.
    let from_b: Vec<_> = b.get_peers(info_hash).unwrap().flat_map(|batch| batch.peers).collect();
    assert_eq!(from_b, vec!["127.0.0.1:42000".parse().unwrap()]);
    // BEP 44 through the same handles (stored at `a`, got by `b` from it).
    let put = b.put_immutable(b"blocking item").unwrap();
    assert_eq!(put.stored_at.iter().map(|n| n.id).collect::<Vec<_>>(), [a.node_id()]);
    assert_eq!(b.get_immutable(put.target).unwrap(), b"13:blocking item".to_vec());
    let signer = kadmos::ItemSigner::from_seed([7; 32]);
    b.put_mutable(&signer, b"", b"3:one".to_vec(), kadmos::Seq::Next, None).unwrap();
    b.put_mutable(&signer, b"", b"3:two".to_vec(), kadmos::Seq::Next, None).unwrap();
    let newest = b.get_mutable_most_recent(signer.public_key(), b"").unwrap().unwrap();
    assert_eq!((newest.seq, newest.value.as_slice()), (2, b"3:two".as_slice()));
    assert!(b.get_mutable(signer.public_key(), b"", None).unwrap().count() >= 1);
    b.shutdown().unwrap();
    a.shutdown().unwrap();
}

/// The blocking OpenDHT wrapper: put, get as an iterator, and a listen iterator that yields a
/// value put by another node, all without an async runtime in the caller.
#[test]
fn blocking_opendht_wrapper() {
    use kadmos::opendht::{OpenDht, PutOptions};
    let a = kadmos::blocking::OpenDht::start(OpenDht::builder().bind(LOOPBACK).port(0).no_bootstrap()).unwrap();
    let addr = a.local_addrs()[0];
    let b = kadmos::blocking::OpenDht::start(OpenDht::builder().bind(LOOPBACK).port(0).bootstrap([addr.to_string()]))
        .unwrap();
    b.bootstrapped().unwrap();
    assert_eq!(b.ping(addr).unwrap().id, a.node_id());
    let key = kadmos::Id::of_str("blocking opendht");
    let mut changes = a.listen(key).unwrap();
    let put = b.put(key, "hello", PutOptions::default()).unwrap();
    let heard = changes.next().expect("the listen hears the put");
    assert_eq!(
        (heard.value.id, heard.value.data.as_slice(), heard.expired),
        (put.value_id, b"hello".as_slice(), false)
    );
    let got: Vec<_> = a.get(key).unwrap().map(|v| v.data).collect();
    assert!(got.contains(&b"hello".to_vec()), "{got:?}");
    drop(changes);
    b.shutdown().unwrap();
    a.shutdown().unwrap();
}

/// BEP 32 on a dual-stack loopback network (127.0.0.1 and ::1): a node that joins through an
/// IPv4 address only learns IPv6 nodes from the `nodes6` of IPv4 answers, asks them, and fills
/// its IPv6 routing table; get_peers then finds a peer announced over IPv6. (Skipped, saying
/// so, where the machine has no ::1.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_node_learns_ipv6_nodes_through_ipv4() {
    use std::net::Ipv6Addr;
    const LOOPBACK6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
    if std::net::UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        eprintln!("skipped: no IPv6 loopback on this machine");
        return;
    }
    let dual = || Dht::builder().bind(LOOPBACK).bind(LOOPBACK6);
    let first = dual().no_bootstrap().build().await.unwrap();
    let seeds: Vec<String> = first.local_addrs().iter().map(|a| a.to_string()).collect();
    let mut nodes = vec![first];
    for _ in 0..11 {
        let node = dual().bootstrap(seeds.iter()).build().await.unwrap();
        bounded("join", node.bootstrapped()).await.unwrap();
        nodes.push(node);
    }
    for node in &nodes {
        let _ = bounded("find_node", node.find_node(node.node_id())).await;
    }
    let v4_seed = nodes[0].local_addrs().iter().find(|a| a.is_ipv4()).unwrap().to_string();
    let newcomer = dual().bootstrap([v4_seed]).build().await.unwrap();
    bounded("join", newcomer.bootstrapped()).await.unwrap();
    let table = newcomer.routing_table().await.unwrap();
    let v6 = table.ipv6.expect("an IPv6 table");
    assert!(v6.size >= 4, "IPv6 table after joining through IPv4: {} contacts", v6.size);

    let info_hash: InfoHash = "3123456789abcdef0123456789abcdef0123456a".parse().unwrap();
    bounded("announce", nodes[5].announce_peer(info_hash, Some(40_006))).await.unwrap();
    let mut stream = newcomer.get_peers(info_hash).await.unwrap();
    let mut peers = Vec::new();
    while let Some(batch) = bounded("get_peers", stream.next()).await {
        peers.extend(batch.peers);
    }
    assert!(peers.contains(&"[::1]:40006".parse().unwrap()), "{peers:?}");
    assert!(peers.contains(&"127.0.0.1:40006".parse().unwrap()), "{peers:?}");
}

/// An operation issued right after `bootstrap()` on a node that started with nobody to join
/// waits for that join instead of failing with "no contacts": a BEP 44 put and a find_node,
/// each on several fresh nodes (before this was fixed, most such puts failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_right_after_bootstrap_wait_for_the_join() {
    let net = bounded("testnet", Testnet::new(6)).await.unwrap();
    // Every node stays up to the end: a node gone would be a contact that times out in later
    // joins, slowing them down.
    let mut joined = Vec::new();
    for attempt in 0..8u8 {
        let node = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
        node.bootstrap(net.bootstrap_addrs()).await.unwrap();
        let put = bounded("put", node.put_immutable(&[attempt])).await;
        assert!(put.is_ok(), "put right after bootstrap, attempt {attempt}: {put:?}");
        let fresh = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
        fresh.bootstrap(net.bootstrap_addrs()).await.unwrap();
        let found = bounded("find_node", fresh.find_node(fresh.node_id())).await;
        assert!(found.is_ok_and(|nodes| !nodes.is_empty()), "find_node right after bootstrap, attempt {attempt}");
        joined.extend([node, fresh]);
    }
    for node in joined {
        let _ = node.shutdown().await;
    }
    net.shutdown().await;
}
