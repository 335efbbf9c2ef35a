//! A `kadmos node` process under floods: its memory and its stores stay bounded and it keeps
//! answering honest queries.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kadmos_proto::mainline::{Body, Message, Query};
use kadmos_proto::Id;

mod support;

/// Kills the node when the test ends, however it ends.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: TempDir,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_node() -> NodeProcess {
    let dir = std::env::temp_dir().join(format!("kadmos-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadmos"))
        .args(["node", "--port", "0", "--no-bootstrap", "--bind", "127.0.0.1", "--json", "--stats-interval", "1"])
        .arg("--state")
        .arg(dir.join("state.json"))
        // The daemon records itself (daemon.json) in the data directory: keep it in the test's.
        .env("XDG_DATA_HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rx = support::stdout_lines(&mut child);
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("the node prints where it listens");
    let json: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(json["type"], "listening");
    let addr = json["addr"].as_str().unwrap().parse().unwrap();
    NodeProcess { child, addr, lines: rx, _dir: TempDir(dir) }
}

fn latest_stats(node: &NodeProcess) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = serde_json::Value::Null;
    // Wait for a stats line printed after the flood.
    while Instant::now() < deadline {
        if let Ok(line) = node.lines.recv_timeout(Duration::from_millis(1500)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "stats" {
                last = v;
            }
        } else if !last.is_null() {
            break;
        }
    }
    last
}

/// Sends `datagram` and returns the node's answer, sending it again every second (a datagram
/// can be lost, or dropped by the node's rate limit while the flood runs) for up to 10 s.
fn ask(socket: &UdpSocket, node: SocketAddr, datagram: &[u8]) -> Option<Message> {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resend = Instant::now();
    while Instant::now() < deadline {
        if Instant::now() >= resend {
            socket.send_to(datagram, node).unwrap();
            resend = Instant::now() + Duration::from_secs(1);
        }
        if let Ok((len, from)) = socket.recv_from(&mut buf) {
            let m = Message::decode(&buf[..len]).unwrap();
            if from == node && !matches!(m.body, Body::Query { .. }) {
                return Some(m);
            }
        }
    }
    None
}

/// 30,000 announces with valid tokens for distinct infohashes from 1000 source addresses, then
/// 20,000 find_node queries from unknown node IDs: the node stores at most its limit of 2000
/// torrents, its resident memory stays under 64 MiB, and it still answers an honest ping.
#[test]
fn floods_stay_bounded() {
    let node = start_node();
    let pid = node.child.id();
    let sockets: Vec<UdpSocket> = (0..1000u32)
        .map(|i| {
            let s = UdpSocket::bind((Ipv4Addr::new(127, 1, (i >> 8) as u8, i as u8), 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            s
        })
        .collect();
    let tokens: Vec<Vec<u8>> = sockets
        .iter()
        .map(|s| {
            let q =
                Message::query(b"gp".to_vec(), Id::sha1_of(b"x"), Query::GetPeers { info_hash: Id::MAX, want: None });
            match ask(s, node.addr, &q.to_bytes()).expect("get_peers answered").body {
                Body::Response(r) => r.token.unwrap(),
                other => panic!("{other:?}"),
            }
        })
        .collect();
    for s in &sockets {
        s.set_nonblocking(true).unwrap();
    }
    let drain = |s: &UdpSocket| {
        let mut buf = [0u8; 2048];
        while s.recv_from(&mut buf).is_ok() {}
    };
    // Between batches, wait until the node has handled what it was sent (a ping answered in
    // turn), so that a machine too busy to give the node its share of the CPU does not make
    // the kernel drop the flood at the node's full socket buffer.
    let barrier = UdpSocket::bind("127.0.0.1:0").unwrap();
    barrier.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let caught_up = || {
        let ping = Message::query(b"bp".to_vec(), Id::MAX, Query::Ping).to_bytes();
        assert!(ask(&barrier, node.addr, &ping).is_some(), "the node stopped answering pings during the flood");
    };
    for round in 0..30u32 {
        for (i, s) in sockets.iter().enumerate() {
            let info_hash = Id::sha1_of(&(round * 1000 + i as u32).to_be_bytes());
            let q = Message::query(
                b"an".to_vec(),
                Id::random(&mut rand::thread_rng()),
                Query::AnnouncePeer {
                    info_hash,
                    port: 1000,
                    implied_port: false,
                    token: tokens[i].clone(),
                    seed: None,
                },
            );
            let _ = s.send_to(&q.to_bytes(), node.addr);
            if i % 100 == 99 {
                caught_up();
                sockets[i - 99..=i].iter().for_each(drain);
            }
        }
    }
    for (i, s) in sockets.iter().enumerate() {
        for _ in 0..20 {
            let q = Message::query(
                b"fn".to_vec(),
                Id::random(&mut rand::thread_rng()),
                Query::FindNode { target: Id::MAX, want: None },
            );
            let _ = s.send_to(&q.to_bytes(), node.addr);
        }
        if i % 10 == 9 {
            caught_up();
            sockets[i - 9..=i].iter().for_each(drain);
        }
    }
    let mut node = node;
    assert!(node.child.try_wait().unwrap().is_none(), "the node survived the flood");
    let honest = UdpSocket::bind("127.0.0.1:0").unwrap();
    honest.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let ping = Message::query(b"hp".to_vec(), Id::MAX, Query::Ping).to_bytes();
    assert!(matches!(ask(&honest, node.addr, &ping).map(|m| m.body), Some(Body::Response(_))), "honest ping answered");

    let stats = latest_stats(&node);
    let stored = stats["stored_infohashes"].as_u64().expect("stats line");
    let queries = stats["traffic"]["queries_received"].as_u64().unwrap();
    let peak_mib = support::vm_kib(pid, "VmHWM:") / 1024;
    eprintln!("stored {stored} torrents, {queries} queries received, peak RSS {peak_mib} MiB");
    assert!(queries > 40_000, "most of the flood arrived: {queries}");
    assert!(stored > 1000 && stored <= 2000, "peer store holds {stored} torrents (limit 2000)");
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
}
