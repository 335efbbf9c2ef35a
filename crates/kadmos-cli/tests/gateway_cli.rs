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

/// `kadmos node --network both --http 127.0.0.1:0` bootstrapped from the two seeds.
fn both_node(mainline_seed: &str, odht_seed: &str) -> NodeProcess {
    NodeProcess::start(&[
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
        mainline_seed,
        "--opendht-bootstrap",
        odht_seed,
        "--http",
        "127.0.0.1:0",
        "--json",
    ])
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
    let mut node = both_node(&mainline_seed, &odht_seed);
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

/// `kadmos node --network opendht --http 127.0.0.1:0` bootstrapped from `seed` (or from nobody:
/// an isolated node), and its gateway's address.
fn opendht_gateway(seed: Option<&str>) -> (NodeProcess, std::net::SocketAddr) {
    let mut args =
        vec!["node", "--network", "opendht", "--bind", "127.0.0.1", "--port", "0", "--http", "127.0.0.1:0", "--json"];
    match seed {
        Some(seed) => args.extend(["--bootstrap", seed]),
        None => args.push("--no-bootstrap"),
    }
    let node = NodeProcess::start(&args);
    let addr = node.wait_for("http")["addr"].as_str().unwrap().parse().unwrap();
    (node, addr)
}

/// Waits until the gateway at `addr` is ready (its node has a good contact).
async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + DEADLINE;
    while call(addr, Method::GET, "/readyz", "").await.0 != 200 {
        assert!(Instant::now() < deadline, "gateway {addr} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Failover: a client of three gateways, one of them over an isolated node, never uses the
/// isolated one; when the gateway it uses is killed in the middle of a listen, the listen
/// re-opens on the third and keeps delivering (a value put afterwards arrives, the values seen
/// before are not repeated), and gets and puts carry on through it. A client of the isolated
/// gateway alone fails with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_fails_over_and_its_listen_keeps_delivering() {
    use kadmos::opendht::{Value, ValueType};
    let testnet = kadmos::opendht::Testnet::new(4).await.unwrap();
    let seed = testnet.bootstrap_addrs()[0].to_string();
    let (first, first_addr) = opendht_gateway(Some(&seed));
    let (second, second_addr) = opendht_gateway(Some(&seed));
    let (_isolated, isolated_addr) = opendht_gateway(None);
    wait_ready(first_addr).await;
    wait_ready(second_addr).await;
    let urls: Vec<String> = [isolated_addr, first_addr, second_addr].iter().map(|a| format!("http://{a}")).collect();
    let choice = std::env::temp_dir().join(format!("kadmos-choice-{}-{}.json", std::process::id(), rand_suffix()));
    let config = kadmos_http::ClientConfig { choice_file: Some(choice.clone()), ..Default::default() };
    let client = kadmos_http::Client::new(&urls, config).unwrap();

    let key = kadmos::Id::of_str("failover");
    let stored = client.put(key, &Value::new(0, ValueType::USER_DATA.id, b"one".to_vec()), false).await.unwrap();
    let chosen = client.current().expect("a gateway was chosen");
    assert_ne!(chosen, urls[0], "the isolated gateway is never chosen");
    let remembered = std::fs::read_to_string(&choice).unwrap();
    assert!(remembered.contains(&chosen), "the choice is remembered: {remembered}");

    let mut listen = client.listen(key);
    let event = tokio::time::timeout(DEADLINE, listen.next()).await.unwrap().unwrap();
    assert_eq!((event.value.id, event.expired), (stored.id, false));

    // Kill the gateway in use; the other one must take over.
    let (mut killed, survivor) = if chosen == urls[1] { (first, &urls[2]) } else { (second, &urls[1]) };
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    drop(killed);
    let later = testnet.nodes[3].put(key, "two", kadmos::opendht::PutOptions::default()).await.unwrap();
    let event =
        tokio::time::timeout(DEADLINE, listen.next()).await.expect("the listen delivered after failover").unwrap();
    assert_eq!(
        (event.value.id, event.value.data.as_slice()),
        (later.value_id, &b"two"[..]),
        "no repeat of seen values"
    );
    assert_eq!(client.current().as_ref(), Some(survivor));
    let values = client.get(key).await.unwrap();
    assert_eq!(values.len(), 2, "{values:?}");
    client.put(key, &Value::new(0, 0, b"three".to_vec()), false).await.unwrap();

    let lonely = kadmos_http::Client::new(&urls[..1], Default::default()).unwrap();
    let err = lonely.get(key).await.unwrap_err();
    assert!(matches!(err, kadmos_http::ClientError::NoGatewayAvailable(_)), "{err}");
    assert!(err.to_string().contains("no good contact"), "{err}");
    let _ = std::fs::remove_file(choice);
}

/// Runs a one-shot `kadmos` command (off the async threads); exit code, stdout, stderr.
async fn kadmos_cli(data: std::path::PathBuf, args: Vec<String>) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let output =
            Command::new(env!("CARGO_BIN_EXE_kadmos")).args(&args).env("XDG_DATA_HOME", &data).output().unwrap();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (output.status.code(), text(&output.stdout), text(&output.stderr))
    })
    .await
    .unwrap()
}

/// `kadmos put|get --network opendht --gateway URL`, `peers|announce --gateway URL` and
/// BEP 44 `put|get --gateway URL` (immutable, and mutable signed by the CLI, the second put
/// getting the next seq) work through a node process's gateway, with the same kinds of JSON
/// lines as without one; a command that cannot use a gateway refuses `--gateway` (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_through_a_gateway() {
    let opendht = kadmos::opendht::Testnet::new(3).await.unwrap();
    let mainline = kadmos::Testnet::new(3).await.unwrap();
    let (odht_seed, mainline_seed) =
        (opendht.bootstrap_addrs()[0].to_string(), mainline.bootstrap_addrs()[0].to_string());
    let node = both_node(&mainline_seed, &odht_seed);
    let addr: std::net::SocketAddr = node.wait_for("http")["addr"].as_str().unwrap().parse().unwrap();
    wait_ready(addr).await;
    let url = format!("http://{addr}");
    let through = |list: &[&str]| {
        let mut args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        args.extend(["--gateway".to_string(), url.clone(), "--json".to_string()]);
        kadmos_cli(node.data.clone(), args)
    };

    let (code, out, err) = through(&["put", "--network", "opendht", "gw-key", "through-the-gateway"]).await;
    assert_eq!(code, Some(0), "{err}");
    let put: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(put["type"], "put");
    let (code, out, err) = through(&["get", "--network", "opendht", "gw-key"]).await;
    assert_eq!(code, Some(0), "{err}");
    let value: Json = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!((value["data"].as_str(), &value["id"]), (Some("through-the-gateway"), &put["value_id"]));

    let info_hash = "0123456789abcdef0123456789abcdef01234567";
    let (code, _, err) = through(&["announce", info_hash, "--port", "7777"]).await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = through(&["peers", info_hash]).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("127.0.0.1:7777"), "{out}");

    // BEP 44 through the gateway: an immutable item, and a mutable one signed by the CLI.
    let (code, out, err) = through(&["put", "immutable-through-gateway"]).await;
    assert_eq!(code, Some(0), "{err}");
    let target = serde_json::from_str::<Json>(out.trim()).unwrap()["target"].as_str().unwrap().to_string();
    let (code, out, err) = through(&["get", &target]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<Json>(out.trim()).unwrap()["value"], "immutable-through-gateway");
    let keygen = kadmos_cli(node.data.clone(), vec!["keygen".into(), "--json".into()]).await;
    let public_key = serde_json::from_str::<Json>(keygen.1.trim()).unwrap()["public_key"].as_str().unwrap().to_string();
    for version in ["first", "second"] {
        let (code, _, err) =
            through(&["put", "--key", node.data.join("kadmos/ed25519.key").to_str().unwrap(), version]).await;
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, out, err) = through(&["get", "--public-key", &public_key]).await;
    assert_eq!(code, Some(0), "{err}");
    let item: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!((item["value"].as_str(), item["seq"].as_i64()), (Some("second"), Some(2)), "{item}");

    let (code, _, err) = through(&["find-node", info_hash]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--gateway does not apply"), "{err}");
}
