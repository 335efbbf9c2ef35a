//! Test support shared by the interop test crates (`interop_mainline.rs`, `interop_bep44.rs`):
//! the third-party implementations, their driver processes (JSON lines, see `interop/README.md`)
//! and a mixed kadmos / third-party network. Each test file includes it with `mod support;` and
//! adds its own driver commands in an `impl Driver` block of its own.

// Each test crate that includes this module uses a different subset of it, so what one of them
// leaves unused would otherwise warn (and fail `clippy -D warnings`) in that crate.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kadmos::{Id, NodeId, NodeInfo, Testnet};
use serde_json::{json, Value};
use tokio::sync::mpsc;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A third-party implementation and its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Libtorrent,
    BittorrentDht,
    OpenDht,
    /// The pubky `mainline` crate (pkarr's DHT), driven by `interop/mainline_node`.
    MainlineCrate,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Libtorrent => "libtorrent",
            Impl::BittorrentDht => "bittorrent-dht",
            Impl::OpenDht => "opendht",
            Impl::MainlineCrate => "mainline crate",
        }
    }

    /// What `interop/install.sh` creates for this implementation.
    pub fn installed_marker(self) -> PathBuf {
        match self {
            Impl::Libtorrent | Impl::OpenDht => interop_dir().join(".venv/bin/python"),
            Impl::BittorrentDht => interop_dir().join("js/node_modules"),
            Impl::MainlineCrate => interop_dir().join(MAINLINE_DRIVER),
        }
    }

    pub fn command(self) -> Command {
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
            Impl::OpenDht => {
                let mut c = Command::new(dir.join(".venv/bin/python"));
                c.arg(dir.join("odht_node.py"));
                c
            }
            Impl::MainlineCrate => Command::new(dir.join(MAINLINE_DRIVER)),
        };
        cmd.current_dir(&dir);
        cmd
    }
}

/// The `mainline` crate's driver binary, as `interop/install.sh` builds it.
const MAINLINE_DRIVER: &str = "mainline_node/target/debug/mainline-node";

pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

/// Whether the drivers of `imp` are installed. Panics when they are not, unless
/// `KADMOS_SKIP_INTEROP=1` (then prints a note and returns false: the caller returns early).
pub fn drivers_installed(imp: Impl) -> bool {
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
pub async fn whole_test(f: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(90), f).await.expect("interop test took over 90 s");
}

pub async fn bounded<T>(what: &str, secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.unwrap_or_else(|_| panic!("{what} took over {secs} s"))
}

/// One third-party DHT node: a driver child process spoken to over JSON lines. Killed on drop.
pub struct Driver {
    pub imp: Impl,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    next_id: u64,
    /// Its UDP address.
    pub addr: SocketAddr,
    pub id: NodeId,
    /// The whole `ready` line (drivers may add fields of their own).
    pub ready: Value,
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
    pub async fn spawn(imp: Impl, bootstrap: &[SocketAddr]) -> Driver {
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
            ready: Value::Null,
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
        driver.ready = ready;
        driver
    }

    /// The last lines the driver wrote to stderr, for failure messages.
    pub fn stderr(&self) -> String {
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
    pub async fn request(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
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
    pub async fn call(&mut self, cmd: &str, args: Value) -> Value {
        let shown = args.to_string();
        match self.request(cmd, args).await {
            Ok(reply) => reply,
            Err(e) => panic!("{} {cmd} {shown} failed: {e}{}", self.imp.name(), self.stderr()),
        }
    }

    /// Waits until its routing table holds at least `min` nodes.
    pub async fn wait_nodes(&mut self, min: usize, timeout_secs: u64) {
        self.call("wait_nodes", json!({ "min": min, "timeout": timeout_secs })).await;
    }
}

/// The `k` nodes of `all` closest to `target`, closest first.
pub fn closest(target: Id, all: &[NodeInfo], k: usize) -> Vec<NodeInfo> {
    let mut sorted = all.to_vec();
    sorted.sort_by_key(|n| n.id.distance(&target));
    sorted.truncate(k);
    sorted
}

pub fn kadmos_infos(net: &Testnet) -> Vec<NodeInfo> {
    net.nodes.iter().map(|n| NodeInfo { id: n.node_id(), addr: n.local_addr_v4().unwrap() }).collect()
}

pub fn info(d: &Driver) -> NodeInfo {
    NodeInfo { id: d.id, addr: d.addr }
}

/// A network of `n_kadmos` kadmos nodes and `n_foreign` nodes of `imp`, all knowing each other:
/// each foreign node bootstraps from two kadmos nodes, every kadmos node pings every foreign
/// node (so it is in their tables), and each foreign table holds at least `n_kadmos` nodes.
pub async fn mixed_network(imp: Impl, n_kadmos: usize, n_foreign: usize) -> (Testnet, Vec<Driver>) {
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
