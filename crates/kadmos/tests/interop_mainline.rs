//! Interop with real third-party Mainline DHT nodes on 127.0.0.1, in both directions:
//! libtorrent 2.1.1 (PyPI, driven by `interop/lt_node.py`) and bittorrent-dht 11.0.12 (npm,
//! driven by `interop/js/bt_node.js`). The drivers speak JSON lines (see `interop/README.md`).
//!
//! The drivers are installed by `bash interop/install.sh`. Without them these tests fail, unless
//! `KADMOS_SKIP_INTEROP=1` is set (then they pass with a printed note). `KADMOS_INTEROP_LOG=1`
//! makes the drivers log every DHT packet to stderr.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kadmos::{Dht, Id, InfoHash, NodeId, NodeInfo, Testnet};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Bucket size: what one `nodes` reply and one `find_node` result hold at most.
const K: usize = 8;

// ------------------------------------------------------------------ test support

/// A third-party implementation and its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Libtorrent,
    BittorrentDht,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Libtorrent => "libtorrent",
            Impl::BittorrentDht => "bittorrent-dht",
        }
    }

    /// What `interop/install.sh` creates for this implementation.
    fn installed_marker(self) -> PathBuf {
        match self {
            Impl::Libtorrent => interop_dir().join(".venv/bin/python"),
            Impl::BittorrentDht => interop_dir().join("js/node_modules"),
        }
    }

    fn command(self) -> Command {
        let dir = interop_dir();
        let mut cmd = match self {
            Impl::Libtorrent => {
                let mut c = Command::new(dir.join(".venv/bin/python"));
                c.arg(dir.join("lt_node.py"));
                c
            }
            Impl::BittorrentDht => {
                let mut c = Command::new("node");
                c.arg(dir.join("js/bt_node.js"));
                c
            }
        };
        cmd.current_dir(&dir);
        cmd
    }
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Whether the drivers of `imp` are installed. Panics when they are not, unless
/// `KADMOS_SKIP_INTEROP=1` (then prints a note and returns false: the caller returns early).
fn drivers_installed(imp: Impl) -> bool {
    let marker = imp.installed_marker();
    if marker.exists() {
        return true;
    }
    if std::env::var("KADMOS_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!(
            "note: skipping the {} interop test: {} is missing (KADMOS_SKIP_INTEROP=1)",
            imp.name(),
            marker.display()
        );
        return false;
    }
    panic!(
        "the {} interop driver is not installed ({} is missing): run `bash interop/install.sh` \
         from the repository root, or set KADMOS_SKIP_INTEROP=1 to skip the interop tests",
        imp.name(),
        marker.display()
    );
}

/// Runs a whole test body with a time limit (the drivers it started are killed on the way out).
async fn whole_test(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(90), f).await.expect("interop test took over 90 s");
}

async fn bounded<T>(what: &str, secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.unwrap_or_else(|_| panic!("{what} took over {secs} s"))
}

/// One third-party DHT node: a driver child process spoken to over JSON lines. Killed on drop.
struct Driver {
    imp: Impl,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
    /// Its UDP address.
    addr: SocketAddr,
    id: NodeId,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts a node of `imp` on 127.0.0.1 that bootstraps from `bootstrap` (nobody if empty)
    /// and waits for its `ready` line.
    async fn spawn(imp: Impl, bootstrap: &[SocketAddr]) -> Driver {
        let log = std::env::var("KADMOS_INTEROP_LOG").is_ok_and(|v| v == "1");
        let mut cmd = imp.command();
        for b in bootstrap {
            cmd.arg("--bootstrap").arg(b.to_string());
        }
        if log {
            cmd.arg("--log");
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start the {} driver ({cmd:?}): {e}", imp.name()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let name = imp.name();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if log {
                    eprintln!("[{name}] {line}");
                }
                let mut tail = tail.lock().unwrap();
                if tail.len() == 40 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });

        let mut driver = Driver {
            imp,
            child,
            stdin,
            lines,
            stderr_tail,
            next_id: 1,
            addr: SocketAddr::new(LOOPBACK, 0),
            id: NodeId::ZERO,
        };
        let ready = match tokio::time::timeout(Duration::from_secs(20), driver.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the {} driver exited before `ready`{}", imp.name(), driver.stderr()),
            Err(_) => panic!("the {} driver sent no `ready` line within 20 s{}", imp.name(), driver.stderr()),
        };
        let ready: Value = serde_json::from_str(&ready)
            .unwrap_or_else(|e| panic!("bad ready line {ready:?} from {}: {e}", imp.name()));
        assert_eq!(ready["event"], "ready", "first line of the {} driver", imp.name());
        let port = ready["port"].as_u64().and_then(|p| u16::try_from(p).ok()).expect("ready.port");
        driver.addr = SocketAddr::new(LOOPBACK, port);
        driver.id = ready["id"].as_str().and_then(|s| s.parse().ok()).expect("ready.id");
        driver
    }

    /// The last lines the driver wrote to stderr, for failure messages.
    fn stderr(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        if tail.is_empty() {
            return String::new();
        }
        format!(
            "\n--- stderr of the {} driver (last lines) ---\n{}",
            self.imp.name(),
            Vec::from(tail.clone()).join("\n")
        )
    }

    /// Sends one command and returns its reply: `Ok` with the reply object when `ok` is true,
    /// `Err` with the driver's error message otherwise. Panics when no reply comes in time (the
    /// command's own `timeout` plus 10 s) or the driver died.
    async fn request(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = args;
        command["cmd"] = json!(cmd);
        command["id"] = json!(id);
        let wait = command["timeout"].as_f64().unwrap_or(10.0) + 10.0;
        let name = self.imp.name();
        if let Err(e) = writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()) {
            panic!("cannot write {cmd} to the {name} driver: {e}{}", self.stderr());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(wait);
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("the {name} driver exited during {command}{}", self.stderr()),
                Err(_) => panic!("no reply from the {name} driver to {command} within {wait} s{}", self.stderr()),
            };
            let reply: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("the {name} driver wrote {line:?}, not JSON: {e}"));
            match reply["id"].as_u64() {
                Some(n) if n == id => {}
                Some(n) if n < id => continue, // a late reply to an earlier command
                _ => panic!("the {name} driver answered {command} with {reply}"),
            }
            return if reply["ok"] == true {
                Ok(reply)
            } else {
                Err(reply["error"].as_str().unwrap_or("(no error text)").to_string())
            };
        }
    }

    /// Like [`Driver::request`], but a failed command panics.
    async fn call(&mut self, cmd: &str, args: Value) -> Value {
        let shown = args.to_string();
        match self.request(cmd, args).await {
            Ok(reply) => reply,
            Err(e) => panic!("{} {cmd} {shown} failed: {e}{}", self.imp.name(), self.stderr()),
        }
    }

    /// Its routing table.
    async fn nodes(&mut self) -> Vec<NodeInfo> {
        parse_nodes(&self.call("nodes", json!({})).await["nodes"])
    }

    /// Waits until its routing table holds at least `min` nodes.
    async fn wait_nodes(&mut self, min: usize, timeout_secs: u64) {
        self.call("wait_nodes", json!({ "min": min, "timeout": timeout_secs })).await;
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

/// The `k` nodes of `all` closest to `target`, closest first.
fn closest(target: NodeId, all: &[NodeInfo], k: usize) -> Vec<NodeInfo> {
    let mut sorted = all.to_vec();
    sorted.sort_by_key(|n| n.id.distance(&target));
    sorted.truncate(k);
    sorted
}

/// The IPv4 contacts of a kadmos node's routing table.
async fn contacts(node: &Dht) -> Vec<NodeInfo> {
    let table = node.routing_table().await.unwrap();
    let v4 = table.ipv4.expect("an IPv4 table");
    v4.buckets.iter().flat_map(|b| b.contacts.iter()).map(|c| NodeInfo { id: c.id, addr: c.addr }).collect()
}

fn kadmos_infos(net: &Testnet) -> Vec<NodeInfo> {
    net.nodes.iter().map(|n| NodeInfo { id: n.node_id(), addr: n.local_addr_v4().unwrap() }).collect()
}

fn info(d: &Driver) -> NodeInfo {
    NodeInfo { id: d.id, addr: d.addr }
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

/// A network of `n_kadmos` kadmos nodes and `n_foreign` nodes of `imp`, all knowing each other:
/// each foreign node bootstraps from two kadmos nodes, every kadmos node pings every foreign
/// node (so it is in their tables), and each foreign table holds at least `n_kadmos` nodes.
async fn mixed_network(imp: Impl, n_kadmos: usize, n_foreign: usize) -> (Testnet, Vec<Driver>) {
    let net = bounded("kadmos testnet", 20, Testnet::new(n_kadmos)).await.unwrap();
    let boot = net.bootstrap_addrs();
    let mut foreign = Vec::new();
    for i in 0..n_foreign {
        foreign.push(Driver::spawn(imp, &[boot[i % n_kadmos], boot[(i + 1) % n_kadmos]]).await);
    }
    for node in &net.nodes {
        for x in &foreign {
            let pong = bounded("ping", 10, node.ping(x.addr)).await.unwrap();
            assert_eq!(pong.id, x.id, "{} answered a kadmos ping with another ID", imp.name());
        }
    }
    // libtorrent adds the nodes that contacted it after about 5 s.
    for x in &mut foreign {
        x.wait_nodes(n_kadmos, 20).await;
    }
    (net, foreign)
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
    // (libtorrent sends it as sample_infohashes; kadmos answers with `nodes`).
    let asked = &net.nodes[2];
    let target = net.nodes[5].node_id();
    let before = contacts(asked).await;
    let reply = xs[0].find_node(target, Some(kadmos[2].addr)).await;
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

    // bittorrent-dht's iterative find_node walks through kadmos nodes to the closest ones.
    if imp == Impl::BittorrentDht {
        let target = near(net.nodes[4].node_id());
        let reply = xs[0].find_node(target, None).await;
        let nodes = parse_nodes(&reply["nodes"]);
        let others: Vec<NodeInfo> = everyone.iter().copied().filter(|n| n.id != xs[0].id).collect();
        assert_eq!(nodes, closest(target, &others, K), "bittorrent-dht iterative find_node through kadmos");
        assert_eq!(nodes[0], kadmos[4]);
    }
    drop(xs);
    net.shutdown().await;
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
