//! BEP 43 adaptive mode on loopback: a real node behind a firewall that drops unsolicited
//! datagrams turns read-only by itself, serves again once the firewall opens, and turns
//! read-only again when it closes.

mod firewall;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kadmos::{AdaptiveReadOnly, Dht, NodeId, Testnet};

use firewall::Firewall;

/// How long one switch may take: the mode is judged at the node's maintenance (every 10 s),
/// so a switch takes one or two of those, plus slack for a busy machine.
const SWITCH_DEADLINE: Duration = Duration::from_secs(90);

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

async fn read_only(node: &Dht) -> bool {
    node.info().await.expect("info").read_only
}

/// Keeps the node's own queries going (lookups through the firewall, which it lets back in
/// as answers) until `read_only` says `want`, or fails after the deadline.
async fn wait_for_mode(node: &Dht, want: bool, what: &str) {
    let deadline = tokio::time::Instant::now() + SWITCH_DEADLINE;
    while read_only(node).await != want {
        assert!(tokio::time::Instant::now() < deadline, "{what}: no switch within {SWITCH_DEADLINE:?}");
        let _ = bounded("lookup", node.find_node(NodeId::random(&mut rand::thread_rng()))).await;
    }
}

/// Behind a closed firewall (only answers and other datagrams from peers it sent to get in),
/// a node whose own lookups work turns read-only, and a stranger's ping does not reach it;
/// once the firewall opens, the stranger's ping gets in, the node serves again at once and
/// answers it; closed again, it turns read-only again. `info().read_only` says which each
/// time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_read_only_behind_a_firewall_and_back_when_it_opens() {
    let net = bounded("testnet", Testnet::new(8)).await.unwrap();
    // The node binds first so that the firewall knows where it is; it is bootstrapped from the
    // testnet's first node under its alias once the firewall is up.
    let adaptive = AdaptiveReadOnly {
        window: Duration::from_secs(1),
        min_answers: 2,
        // Long: in this test only a query from a stranger may end a read-only spell.
        read_only_for: Duration::from_secs(3600),
    };
    let node = Testnet::node_builder().no_bootstrap().adaptive_read_only(Some(adaptive)).build().await.unwrap();
    let firewall = Firewall::start(node.local_addr_v4().unwrap(), Duration::from_secs(5)).await.unwrap();
    let seed = firewall.alias_of(net.nodes[0].local_addr_v4().unwrap()).unwrap();
    node.bootstrap(vec![seed]).await.unwrap();
    bounded("join", node.bootstrapped()).await.unwrap();
    assert!(!read_only(&node).await, "a node starts serving");

    // A node of its own address, which the node behind the firewall never asks anything.
    let stranger = Dht::builder()
        .bind(IpAddr::V4(Ipv4Addr::new(127, 9, 0, 1)))
        .no_bootstrap()
        .adaptive_read_only(None)
        .build()
        .await
        .unwrap();

    wait_for_mode(&node, true, "closed firewall").await;
    let refused = firewall.refused();
    assert!(stranger.ping(firewall.public_addr()).await.is_err(), "the firewall keeps a stranger's ping out");
    assert!(firewall.refused() > refused, "the firewall refused the stranger's ping");
    assert!(read_only(&node).await);
    let counters = node.info().await.unwrap().traffic;
    assert!(counters.responses_received > 0, "its own queries were answered through the firewall");

    firewall.set_open(true);
    let answer = bounded("stranger's ping", stranger.ping(firewall.public_addr())).await;
    assert_eq!(answer.expect("the node answers a stranger once reachable").id, node.node_id());
    assert!(!read_only(&node).await, "an unasked query shows the node is reachable");

    firewall.set_open(false);
    wait_for_mode(&node, true, "firewall closed again").await;

    let _ = stranger.shutdown().await;
    let _ = node.shutdown().await;
    net.shutdown().await;
}
