//! Interop with real third-party Mainline DHT nodes on 127.0.0.1, in both directions:
//! libtorrent 2.1.1 (PyPI, driven by `interop/lt_node.py`) and bittorrent-dht 11.0.12 (npm,
//! driven by `interop/js/bt_node.js`). The drivers speak JSON lines (see `interop/README.md`).
//!
//! The drivers are installed by `bash interop/install.sh`. Without them these tests fail, unless
//! `KADMOS_SKIP_INTEROP=1` is set (then they pass with a printed note). `KADMOS_INTEROP_LOG=1`
//! makes the drivers log every DHT packet to stderr.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kadmos::{Dht, Id, InfoHash, NodeId, NodeInfo, Testnet};
use serde_json::{json, Value};
use support::*;

/// Bucket size: what one `nodes` reply and one `find_node` result hold at most.
const K: usize = 8;

// ------------------------------------------------------------------ test support

/// The driver commands of these tests (the shared ones are in `support`).
impl Driver {
    /// Its routing table.
    async fn nodes(&mut self) -> Vec<NodeInfo> {
        parse_nodes(&self.call("nodes", json!({})).await["nodes"])
    }

    /// Its own `get_peers` lookup (bittorrent-dht: peers from its own store left out).
    async fn get_peers(&mut self, info_hash: InfoHash, timeout_secs: u64) -> Vec<SocketAddr> {
        let args = json!({ "infohash": info_hash.to_string(), "timeout": timeout_secs, "remote_only": true });
        let reply = self.call("get_peers", args).await;
        reply["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p.as_str().and_then(|s| s.parse().ok()).expect("peer ip:port"))
            .collect()
    }

    /// Announces `info_hash` (`None`: implied port) and checks that no node answered the
    /// announce with an error.
    async fn announce(&mut self, info_hash: InfoHash, port: Option<u16>, timeout_secs: u64) -> Value {
        let mut args = json!({ "infohash": info_hash.to_string(), "timeout": timeout_secs });
        if let Some(port) = port {
            args["port"] = json!(port);
        }
        let reply = self.call("announce", args).await;
        assert_eq!(reply["errors"], json!([]), "{} got error replies to its announce", self.imp.name());
        reply
    }

    /// One `find_node` query to the node at `addr` (libtorrent: as `sample_infohashes`), or
    /// (bittorrent-dht only) an iterative lookup when `addr` is `None`.
    async fn find_node(&mut self, target: NodeId, addr: Option<SocketAddr>) -> Value {
        let mut args = json!({ "target": target.to_string(), "timeout": 10 });
        if let Some(addr) = addr {
            args["addr"] = json!(addr.to_string());
        }
        self.call("find_node", args).await
    }
}

/// `[{addr, id}]` of a driver reply.
fn parse_nodes(v: &Value) -> Vec<NodeInfo> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of nodes, got {v}"))
        .iter()
        .map(|n| NodeInfo {
            id: n["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("node id in {n}")),
            addr: n["addr"].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("node addr in {n}")),
        })
        .collect()
}

/// An ID one bit away from `id` (the last bit): in a small network, `id` is its closest node.
fn near(id: NodeId) -> InfoHash {
    let mut bytes = *id.as_bytes();
    bytes[19] ^= 1;
    Id(bytes)
}

/// The IPv4 contacts of a kadmos node's routing table.
async fn contacts(node: &Dht) -> Vec<NodeInfo> {
    let table = node.routing_table().await.unwrap();
    let v4 = table.ipv4.expect("an IPv4 table");
    v4.buckets.iter().flat_map(|b| b.contacts.iter()).map(|c| NodeInfo { id: c.id, addr: c.addr }).collect()
}

/// Waits (up to `secs`) until the routing table of `node` holds `who`.
async fn wait_contact(node: &Dht, who: NodeInfo, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let table = contacts(node).await;
        if table.contains(&who) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after {secs} s, kadmos node {} does not hold {who:?}; it holds {table:?}",
            node.node_id()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ------------------------------------------------------------------ scenarios

/// kadmos joins a network of three `imp` nodes through one of them.
async fn kadmos_bootstraps_from(imp: Impl) {
    let mut x0 = Driver::spawn(imp, &[]).await;
    let x1 = Driver::spawn(imp, &[x0.addr]).await;
    let x2 = Driver::spawn(imp, &[x0.addr]).await;
    // x0 must know the other two before it can tell kadmos about them (libtorrent: ~5 s).
    x0.wait_nodes(2, 20).await;

    let node = Dht::builder().bind(LOOPBACK).bootstrap([x0.addr.to_string()]).build().await.unwrap();
    bounded("bootstrap", 20, node.bootstrapped()).await.unwrap();
    let table = contacts(&node).await;
    for x in [&x0, &x1, &x2] {
        // x1 and x2 were only known to x0: kadmos learnt them from x0's `nodes`.
        assert!(table.contains(&info(x)), "kadmos's routing table lacks {} node {:?}: {table:?}", imp.name(), info(x));
    }

    let found = bounded("find_node", 20, node.find_node(x1.id)).await.unwrap();
    let expected = closest(x1.id, &[info(&x0), info(&x1), info(&x2)], K);
    assert_eq!(found, expected, "kadmos find_node through {} nodes", imp.name());
    node.shutdown().await.unwrap();
}

/// Two `imp` nodes join a network of eight kadmos nodes, each through one kadmos node.
async fn bootstraps_from_kadmos(imp: Impl) {
    let net = bounded("kadmos testnet", 20, Testnet::new(8)).await.unwrap();
    let kadmos = kadmos_infos(&net);
    let mut xs = vec![Driver::spawn(imp, &[kadmos[0].addr]).await, Driver::spawn(imp, &[kadmos[1].addr]).await];
    for (i, x) in xs.iter_mut().enumerate() {
        x.wait_nodes(5, 20).await;
        let table = x.nodes().await;
        let known: Vec<_> = table.iter().filter(|n| kadmos.contains(n)).collect();
        assert!(table.contains(&kadmos[i]), "{} lacks the kadmos node it bootstrapped from: {table:?}", imp.name());
        assert!(
            known.len() >= 5,
            "{} learnt only {} kadmos nodes (id and address) when bootstrapping from kadmos: {table:?}",
            imp.name(),
            known.len()
        );
    }
    // The kadmos node each one contacted put it in its routing table (after a verifying ping).
    for (i, x) in xs.iter().enumerate() {
        wait_contact(&net.nodes[i], info(x), 10).await;
    }
    drop(xs);
    net.shutdown().await;
}

/// Peers announced through kadmos are found by `imp`'s `get_peers`, and peers `imp` announces
/// (explicit port and implied port) are found by kadmos's `get_peers`.
async fn peers_both_ways(imp: Impl) {
    let (net, mut xs) = mixed_network(imp, 8, 3).await;

    // kadmos → imp, explicit port and implied port. Each hash is next to a foreign node's ID, so
    // that node is the closest and must have accepted kadmos's announce_peer (with the token it
    // issued); another foreign node's get_peers then finds the peer.
    for (owner, finder, port) in [(0, 1, Some(45_001)), (2, 0, None)] {
        let hash = near(xs[owner].id);
        let announcer = &net.nodes[3];
        let announced = bounded("kadmos announce", 20, announcer.announce_peer(hash, port)).await.unwrap();
        assert!(
            announced.stored_at.contains(&info(&xs[owner])),
            "the {} node closest to the hash did not store kadmos's announce (port {port:?}): stored at {:?}",
            imp.name(),
            announced.stored_at
        );
        let expected = match port {
            Some(p) => SocketAddr::new(LOOPBACK, p),
            None => announcer.local_addr_v4().unwrap(),
        };
        let peers = xs[finder].get_peers(hash, 20).await;
        assert_eq!(peers, vec![expected], "{} get_peers of kadmos's peer (port {port:?})", imp.name());
    }

    // imp → kadmos, explicit port and implied port. Each hash is next to a kadmos node's ID, so
    // that node is the closest and must have stored the announce.
    for (x, port, target) in [(2, Some(45_002), 5), (1, None, 6)] {
        let hash = near(net.nodes[target].node_id());
        let stored_before = net.nodes[target].info().await.unwrap().stored_peers;
        xs[x].announce(hash, port, 25).await;
        // The driver's announce may return just before its last announce_peer lands.
        let mut stored_after = stored_before;
        for _ in 0..50 {
            stored_after = net.nodes[target].info().await.unwrap().stored_peers;
            if stored_after != stored_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            stored_after,
            stored_before + 1,
            "the kadmos node closest to the hash did not store {}'s announce (port {port:?})",
            imp.name()
        );
        let expected = match port {
            Some(p) => SocketAddr::new(LOOPBACK, p),
            None => xs[x].addr,
        };
        let peers = bounded("kadmos get_peers", 20, async {
            net.nodes[0].get_peers(hash).await.unwrap().collect_peers().await
        })
        .await;
        assert_eq!(peers, vec![expected], "kadmos get_peers of a peer {} announced with port {port:?}", imp.name());
    }
    drop(xs);
    net.shutdown().await;
}

/// `find_node` across implementations in a mixed network.
async fn find_node_across(imp: Impl) {
    let (net, mut xs) = mixed_network(imp, 8, 3).await;
    let kadmos = kadmos_infos(&net);
    let mut everyone = kadmos.clone();
    everyone.extend(xs.iter().map(info));

    // kadmos's iterative find_node returns the foreign nodes where they are the closest.
    let searcher = &net.nodes[2];
    let others: Vec<NodeInfo> = everyone.iter().copied().filter(|n| n.id != searcher.node_id()).collect();
    for x in &xs {
        let found = bounded("kadmos find_node", 20, searcher.find_node(x.id)).await.unwrap();
        assert_eq!(found[0], info(x), "kadmos find_node of a {} node's ID", imp.name());
        assert_eq!(found, closest(x.id, &others, K), "kadmos find_node of a {} node's ID", imp.name());
    }

    // One find_node from the foreign node to a kadmos node returns that node's closest contacts
    // (libtorrent sends it as sample_infohashes; kadmos answers with `nodes`). The mainline
    // crate has no single query to one address: its iterative lookup is checked below.
    if imp != Impl::MainlineCrate {
        one_find_node_to_kadmos(imp, &net, &mut xs[0]).await;
    }

    // bittorrent-dht's and the mainline crate's iterative find_node walk through kadmos nodes to
    // the closest ones.
    if matches!(imp, Impl::BittorrentDht | Impl::MainlineCrate) {
        let target = near(net.nodes[4].node_id());
        let reply = xs[0].find_node(target, None).await;
        let nodes = parse_nodes(&reply["nodes"]);
        let others: Vec<NodeInfo> = everyone.iter().copied().filter(|n| n.id != xs[0].id).collect();
        assert_eq!(nodes, closest(target, &others, K), "{} iterative find_node through kadmos", imp.name());
        assert_eq!(nodes[0], kadmos[4]);
    }
    drop(xs);
    net.shutdown().await;
}

/// One find_node from a foreign node to a kadmos node returns that node's closest contacts.
async fn one_find_node_to_kadmos(imp: Impl, net: &Testnet, x: &mut Driver) {
    let kadmos = kadmos_infos(net);
    let asked = &net.nodes[2];
    let target = net.nodes[5].node_id();
    let before = contacts(asked).await;
    let reply = x.find_node(target, Some(kadmos[2].addr)).await;
    let after = contacts(asked).await;
    let nodes = parse_nodes(&reply["nodes"]);
    assert_eq!(nodes.first(), Some(&kadmos[5]), "{} find_node to kadmos: the target node comes first", imp.name());
    assert!(
        nodes == closest(target, &before, K) || nodes == closest(target, &after, K),
        "{} find_node to kadmos returned {nodes:?}, not the closest of its contacts {after:?}",
        imp.name()
    );
    if imp == Impl::BittorrentDht {
        assert_eq!(reply["node_id"], json!(asked.node_id().to_string()), "the answering node's ID");
    }
}

// ------------------------------------------------------------------ tests

/// kadmos bootstraps from a libtorrent node: its routing table then holds that node and the two
/// others only the bootstrap node knew (parsed from libtorrent's `nodes`), and kadmos's
/// find_node through them returns exactly the three libtorrent nodes, closest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kadmos_bootstraps_from_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(kadmos_bootstraps_from(Impl::Libtorrent)).await;
    }
}

/// kadmos bootstraps from a bittorrent-dht node: its routing table then holds that node and the
/// two others only the bootstrap node knew, and kadmos's find_node through them returns exactly
/// the three bittorrent-dht nodes, closest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kadmos_bootstraps_from_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(kadmos_bootstraps_from(Impl::BittorrentDht)).await;
    }
}

/// libtorrent nodes bootstrapping from a kadmos node each learn at least five kadmos nodes (ID
/// and address) of an eight-node kadmos network, and the kadmos node they contacted adds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libtorrent_bootstraps_from_kadmos() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(bootstraps_from_kadmos(Impl::Libtorrent)).await;
    }
}

/// bittorrent-dht nodes bootstrapping from a kadmos node each learn at least five kadmos nodes
/// (ID and address) of an eight-node kadmos network, and the kadmos node they contacted adds
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bittorrent_dht_bootstraps_from_kadmos() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(bootstraps_from_kadmos(Impl::BittorrentDht)).await;
    }
}

/// In a network of 8 kadmos and 3 libtorrent nodes: kadmos's announce_peer (explicit port,
/// implied port) is stored by the libtorrent node closest to the hash, and another libtorrent
/// node's get_peers finds the peer; libtorrent's announces (explicit port, implied port) are stored by the kadmos node
/// closest to the hash, and kadmos's get_peers finds exactly the announced peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_across_kadmos_and_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(peers_both_ways(Impl::Libtorrent)).await;
    }
}

/// In a network of 8 kadmos and 3 bittorrent-dht nodes: kadmos's announce_peer (explicit port,
/// implied port) is stored by the bittorrent-dht node closest to the hash, and another
/// bittorrent-dht node's get_peers finds the peer; bittorrent-dht's announces (explicit port, implied port) are stored by the kadmos
/// node closest to the hash, and kadmos's get_peers finds exactly the announced peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_across_kadmos_and_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(peers_both_ways(Impl::BittorrentDht)).await;
    }
}

/// In a network of 8 kadmos and 3 libtorrent nodes: kadmos's find_node of each libtorrent
/// node's ID returns exactly the 8 closest nodes of the network, that libtorrent node first;
/// libtorrent's direct query to a kadmos node (BEP 51 `sample_infohashes`, the only node query
/// its bindings expose) gets back the kadmos node's 8 closest contacts, the target first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_node_across_kadmos_and_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(find_node_across(Impl::Libtorrent)).await;
    }
}

/// In a network of 8 kadmos and 3 bittorrent-dht nodes: kadmos's find_node of each
/// bittorrent-dht node's ID returns exactly the 8 closest nodes of the network, that node first;
/// a bittorrent-dht `find_node` query to a kadmos node gets back its 8 closest contacts, the
/// target first; bittorrent-dht's iterative find_node through kadmos nodes returns exactly the
/// 8 closest nodes of the network, the kadmos node next to the target first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_node_across_kadmos_and_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(find_node_across(Impl::BittorrentDht)).await;
    }
}

/// kadmos bootstraps from a node of the pubky `mainline` crate (which ignores queries whose
/// transaction ID is not 4 bytes long): its routing table then holds that node and the two
/// others only the bootstrap node knew, and kadmos's find_node through them returns exactly the
/// three crate nodes, closest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kadmos_bootstraps_from_the_mainline_crate() {
    if drivers_installed(Impl::MainlineCrate) {
        whole_test(kadmos_bootstraps_from(Impl::MainlineCrate)).await;
    }
}

/// `mainline` crate nodes bootstrapping from a kadmos node each learn at least five kadmos
/// nodes (ID and address) of an eight-node kadmos network, and the kadmos node they contacted
/// adds them (after a verifying ping the crate answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mainline_crate_bootstraps_from_kadmos() {
    if drivers_installed(Impl::MainlineCrate) {
        whole_test(bootstraps_from_kadmos(Impl::MainlineCrate)).await;
    }
}

/// In a network of 8 kadmos and 3 `mainline` crate nodes (every kadmos node pings every crate
/// node and gets its ID back): kadmos's announce_peer (explicit port, implied port) is stored by
/// the crate node closest to the hash, and another crate node's get_peers finds the peer; the
/// crate's announces are stored by the kadmos node closest to the hash, and kadmos's get_peers
/// finds exactly the announced peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_across_kadmos_and_the_mainline_crate() {
    if drivers_installed(Impl::MainlineCrate) {
        whole_test(peers_both_ways(Impl::MainlineCrate)).await;
    }
}

/// In a network of 8 kadmos and 3 `mainline` crate nodes: kadmos's find_node of each crate
/// node's ID returns exactly the 8 closest nodes of the network, that node first; the crate's
/// iterative find_node through kadmos nodes returns exactly the 8 closest nodes of the network,
/// the kadmos node next to the target first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_node_across_kadmos_and_the_mainline_crate() {
    if drivers_installed(Impl::MainlineCrate) {
        whole_test(find_node_across(Impl::MainlineCrate)).await;
    }
}
