//! OpenDHT's own proxy client (`dhtnode --proxyclient`, Debian's 2.4.12, unpacked by
//! `interop/install.sh`) against a kadmos gateway, and the same transcript against OpenDHT's
//! own proxy server (`dhtnode --proxyserver`): both must give the same answers. Everything on
//! loopback; every process is killed when the test ends, however it ends.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use axum::http::Method;
use bytes::Bytes;
use kadmos_http::GatewayConfig;
use support::*;

fn dhtnode_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/dhtnode.sh")
}

/// Whether `interop/install.sh` unpacked dhtnode. Panics when it did not, unless
/// `KADMOS_SKIP_INTEROP=1` (then the test returns early with a note).
fn dhtnode_installed() -> bool {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/dhtnode/usr/bin/dhtnode");
    if binary.exists() {
        return true;
    }
    if std::env::var("KADMOS_SKIP_INTEROP").is_ok_and(|v| v == "1") {
        eprintln!("note: skipping the OpenDHT proxy interop test: {} is missing", binary.display());
        return false;
    }
    panic!("dhtnode is not unpacked ({} is missing): run `bash interop/install.sh`", binary.display());
}

/// A `dhtnode` process; its stdout arrives line by line.
struct Dhtnode {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// The last command sent, for failure messages.
    last_command: String,
}

impl Drop for Dhtnode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dhtnode {
    fn start(args: &[&str]) -> Dhtnode {
        let mut child = Command::new(dhtnode_script())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dhtnode");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The interactive prompt is printed before each answer.
                let line = line.trim_start_matches(">> ").trim().to_string();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Dhtnode { child, stdin, lines, last_command: String::new() }
    }

    fn command(&mut self, line: &str) {
        self.last_command = line.to_string();
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("dhtnode reads its commands");
    }

    /// Lines up to and including the first that satisfies `done`, within `limit`.
    fn until(&self, limit: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let finished = done(&line);
                    seen.push(line);
                    if finished {
                        return seen;
                    }
                }
                Err(_) => panic!("dhtnode did not answer {:?} in {limit:?}; it printed: {seen:#?}", self.last_command),
            }
        }
    }
}

/// A value line as dhtnode prints it, without the value's id (which differs between runs):
/// `Value[id:1a2b data(text/plain):"x"]` → `Value[data(text/plain):"x"]`.
fn without_id(line: &str) -> String {
    match (line.find("id:"), line.find("Value[")) {
        (Some(start), Some(_)) => {
            let rest = &line[start + 3..];
            let end = rest.find([' ', ']']).unwrap_or(rest.len());
            let rest = rest[end..].trim_start();
            format!("{}{}", &line[..start], rest)
        }
        _ => line.to_string(),
    }
}

fn value_lines(lines: &[String]) -> Vec<String> {
    let mut values: Vec<String> = lines.iter().filter(|l| l.starts_with("Value[")).map(|l| without_id(l)).collect();
    values.sort();
    values
}

/// POSTs a value as another client would, on the blocking side of the test.
fn post(server: SocketAddr, key: &str, body: &str) {
    let handle = tokio::runtime::Handle::current();
    let response = handle
        .block_on(kadmos_http::send(
            server,
            Method::POST,
            &format!("/key/{key}"),
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
            DEADLINE,
        ))
        .expect("the server answered the POST");
    assert_eq!(response.status, 200, "POST {key} on {server}");
}

/// The transcript of OpenDHT's proxy client against the proxy server at `server`: what each
/// step printed, without value ids and timings.
fn transcript(server: SocketAddr) -> Vec<String> {
    let url = format!("http://{server}");
    let mut out = Vec::new();
    let mut client = Dhtnode::start(&["--proxyclient", &url]);
    // Generous: OpenDHT's client re-checks a proxy it found unready only once a minute, and the
    // machine may be loaded.
    let long = Duration::from_secs(150);

    client.command("p demo-key hello-from-proxy-client");
    let put = client.until(long, |l| l.starts_with("Put: "));
    out.push(put.last().unwrap().split(',').next().unwrap().to_string());

    client.command("g demo-key");
    let got = client.until(long, |l| l.starts_with("Get: completed"));
    out.push(format!("get: {:?}", value_lines(&got)));

    client.command("l demo-key");
    let listened = client.until(long, |l| l.starts_with("Value["));
    out.push(format!("listen, present: {:?}", value_lines(&listened)));

    // Another client puts a value (type 5: it expires after a minute), the listen hears it...
    post(server, "demo-key", r#"{"data":"c2VlbiBieSBsaXN0ZW4=","id":"4242","type":5}"#);
    let later = client.until(long, |l| l.starts_with("Value[") && l.contains("7365656e206279206c697374656e"));
    out.push(format!("listen, later: {:?}", value_lines(&later[later.len() - 1..])));

    client.command("pp demo-key permanent-one");
    let permanent = client.until(long, |l| l.starts_with("Put: "));
    out.push(format!("permanent {}", permanent.last().unwrap().split(',').next().unwrap()));

    // ... and, a minute later, its expiry.
    let expiry = client.until(Duration::from_secs(150), |l| l.contains("expired"));
    let expired_line = expiry.iter().rev().find(|l| l.contains("expired")).unwrap();
    out.push(format!("listen, expiry: {}", expired_line.split(" (").next().unwrap()));
    drop(client);

    // A signed put from a client with an identity (its certificate is put first, permanently).
    let mut signer = Dhtnode::start(&["-i", "--proxyclient", &url]);
    signer.command("s signed-key hello-signed");
    let signed = signer.until(long, |l| l.starts_with("Put signed: "));
    out.push(signed.last().unwrap().split(" (").next().unwrap().to_string());
    signer.command("g signed-key");
    let got = signer.until(long, |l| l.starts_with("Get: completed"));
    out.push(format!("get signed: {:?}", value_lines(&got)));
    out
}

fn free_port() -> u16 {
    // Bound on both protocols at once so that dhtnode can take it for UDP and TCP alike.
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until the proxy server at `addr` reports a good contact (OpenDHT refreshes its node
/// info a few seconds after start).
async fn wait_connected(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) =
            kadmos_http::send(addr, Method::GET, "/node/info", &[], Bytes::new(), Duration::from_secs(5)).await
        {
            let text = response.text().await.unwrap_or_default();
            if let Ok(info) = serde_json::from_str::<serde_json::Value>(text.trim()) {
                if info["ipv4"]["good"].as_u64().unwrap_or(0) + info["ipv6"]["good"].as_u64().unwrap_or(0) > 0 {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "the OpenDHT proxy server never reported a good contact");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// OpenDHT's proxy client put, get, listen (present values, a value put later by another
/// client, and that value's expiry a minute later), permanent put and signed put (with an
/// identity, whose certificate goes first) all succeed through a kadmos gateway, and print the
/// same transcript as against OpenDHT's own proxy server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opendht_proxy_client_gets_the_same_answers_from_kadmos_and_opendht() {
    if !dhtnode_installed() {
        return;
    }
    let kadmos = GatewayNet::start(4, 1, GatewayConfig::default()).await;

    // OpenDHT's reference: a peer node, and a node serving the proxy bootstrapped from it.
    let (peer_port, proxy_udp, proxy_http) = (free_port(), free_port(), free_port());
    let _peer = Dhtnode::start(&["-s", "-p", &peer_port.to_string()]);
    let _proxy = Dhtnode::start(&[
        "-s",
        "-p",
        &proxy_udp.to_string(),
        "-b",
        &format!("127.0.0.1:{peer_port}"),
        "--proxyserver",
        &proxy_http.to_string(),
    ]);
    let reference: SocketAddr = ([127, 0, 0, 1], proxy_http).into();
    wait_connected(reference).await;

    let ours = tokio::task::spawn_blocking({
        let addr = kadmos.addr(0);
        move || transcript(addr)
    });
    let theirs = tokio::task::spawn_blocking(move || transcript(reference));
    let (ours, theirs) = (ours.await.expect("kadmos transcript"), theirs.await.expect("OpenDHT transcript"));
    eprintln!("kadmos:  {ours:#?}\nOpenDHT: {theirs:#?}");
    assert_eq!(ours[0], "Put: success");
    assert!(ours[1].contains("hello-from-proxy-client"), "{ours:?}");
    assert!(ours[6].contains("success"), "{ours:?}");
    assert_eq!(ours, theirs, "the same client, the same answers");
}
