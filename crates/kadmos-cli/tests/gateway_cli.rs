//! `kadmos node --http`: the gateway served by the daemon, end to end on loopback, with the
//! node process bootstrapped from in-process testnets. The process is killed when the test
//! ends, however it ends.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use serde_json::Value as Json;

mod support;

const DEADLINE: Duration = Duration::from_secs(30);

struct NodeProcess {
    child: Child,
    lines: Receiver<String>,
    data: std::path::PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

impl NodeProcess {
    fn start(args: &[&str]) -> NodeProcess {
        let data = std::env::temp_dir().join(format!("kadmos-gateway-cli-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&data).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kadmos"))
            .args(args)
            .env("XDG_DATA_HOME", &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = support::stdout_lines(&mut child);
        NodeProcess { child, lines, data }
    }

    /// The next JSON line of type `kind`, skipping others, within the deadline.
    fn wait_for(&self, kind: &str) -> Json {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {kind:?} line in time"));
            let json: Json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if json["type"] == kind {
                return json;
            }
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

async fn call(addr: std::net::SocketAddr, method: Method, path: &str, body: &str) -> (u16, Json) {
    let response =
        kadmos_http::send(addr, method, path, &[], Bytes::from(body.to_string()), DEADLINE).await.expect("an answer");
    let status = response.status.as_u16();
    let text = response.text().await.unwrap();
    let first_line = text.lines().next().unwrap_or("null");
    (status, serde_json::from_str(first_line).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

/// `kadmos node --network both --http 127.0.0.1:0` runs a Mainline and an OpenDHT node in one
/// process and serves both through one gateway: it prints the gateway's URL, becomes ready
/// once both nodes have good contacts, stores and finds an OpenDHT value, reports the Mainline
/// node in its node info, and stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_network_both_serves_a_gateway() {
    let opendht = kadmos::opendht::Testnet::new(3).await.unwrap();
    let mainline = kadmos::Testnet::new(3).await.unwrap();
    let odht_seed = opendht.bootstrap_addrs()[0].to_string();
    let mainline_seed = mainline.bootstrap_addrs()[0].to_string();
    let mut node = NodeProcess::start(&[
        "node",
        "--network",
        "both",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--opendht-port",
        "0",
        "--bootstrap",
        &mainline_seed,
        "--opendht-bootstrap",
        &odht_seed,
        "--http",
        "127.0.0.1:0",
        "--json",
    ]);
    let http = node.wait_for("http");
    let addr: std::net::SocketAddr = http["addr"].as_str().unwrap().parse().unwrap();

    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, ready) = call(addr, Method::GET, "/readyz", "").await;
        if status == 200 {
            assert_eq!(ready["ready"], Json::Bool(true));
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {ready}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, info) = call(addr, Method::GET, "/node/info", "").await;
    assert_eq!(status, 200);
    assert!(info["ipv4"]["good"].as_u64().unwrap() >= 1, "{info}");
    assert!(info["mainline"]["ipv4"]["good"].as_u64().unwrap() >= 1, "{info}");

    let (status, stored) = call(addr, Method::POST, "/key/from-cli", r#"{"data":"Y2xp"}"#).await;
    assert_eq!(status, 200, "{stored}");
    let found = opendht.nodes[2].get(kadmos::Id::of_str("from-cli")).await.unwrap().collect_values().await;
    assert!(found.iter().any(|v| v.data == b"cli"), "the value reached the network: {found:?}");

    let pid = node.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

/// `--http` takes ADDR:PORT or a bare PORT; anything else is refused with a one-line error
/// (exit status 2), before any node starts.
#[test]
fn bad_http_address_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_kadmos")).args(["node", "--http", "nowhere:port"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not ADDR:PORT or PORT"), "{stderr}");
}
