//! A `kadmos node --network opendht` process under floods from many loopback addresses: garbage,
//! puts past the per-key limit, puts with forged tokens, listen floods and never-finished
//! fragmented messages. Its stores stay within their limits, its memory stays small, and it
//! keeps answering an honest client.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kadmos_proto::opendht::Value;
use kadmos_proto::opendht::{Body, Fragment, ListenArgs, Message, PutArgs, Request, ValueParts, ValueSlot};
use kadmos_proto::Id;

mod support;

/// Values per key a node keeps (`StorageConfig::max_values_per_key`'s default).
const MAX_VALUES_PER_KEY: u64 = 1024;
/// Remote listeners a node keeps per address (`Config`'s default; 4096 in all).
const MAX_LISTENERS_PER_IP: u64 = 64;
/// Flooding addresses.
const CLIENTS: u8 = 32;
/// Datagrams per second the flood sends, from all addresses together.
const FLOOD_RATE: u32 = 6000;
/// How long a client waits for an answer before asking again, and how many times it asks.
const ANSWER_WAIT: Duration = Duration::from_secs(3);
const ATTEMPTS: usize = 3;
/// Datagrams the flood sends between two waits for the node to catch up (a few hundred KB at
/// most in its socket buffer).
const BARRIER_EVERY: u64 = 500;

/// Kills the node when the test ends, however it ends.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    dir: std::path::PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_node() -> NodeProcess {
    let dir = std::env::temp_dir().join(format!("kadmos-flood-opendht-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadmos"))
        .args(["node", "--network", "opendht", "--port", "0", "--no-bootstrap", "--bind", "127.0.0.1"])
        .args(["--json", "--stats-interval", "1", "--state"])
        .arg(dir.join("state.json"))
        // The daemon records itself (daemon.json) in the data directory: keep it in the test's.
        .env("XDG_DATA_HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = support::stdout_lines(&mut child);
    let mut node = NodeProcess { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), lines, dir };
    let first = node.lines.recv_timeout(Duration::from_secs(30)).expect("the node prints where it listens");
    let json: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(json["type"], "listening");
    node.addr = json["addr"].as_str().unwrap().parse().unwrap();
    node
}

/// The node's `stats` line once it has gone quiet: two lines in a row with the same count of
/// datagrams received, so that everything sent before has been handled, however busy the
/// machine. Gives up after `limit`.
fn settled_stats(node: &NodeProcess, limit: Duration) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    let mut previous: Option<serde_json::Value> = None;
    while let Ok(line) = node.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        if json["type"] != "stats" {
            continue;
        }
        let received = &json["traffic"]["datagrams_received"];
        if previous.as_ref().is_some_and(|p| &p["traffic"]["datagrams_received"] == received) {
            return json;
        }
        previous = Some(json);
    }
    panic!("the node did not settle within {limit:?}; last stats: {previous:?}")
}

/// A client socket on its own loopback address (the node limits requests per address).
struct Client {
    socket: UdpSocket,
    id: Id,
    tid: u32,
}

impl Client {
    fn new(host: u8) -> Client {
        let socket = UdpSocket::bind((Ipv4Addr::new(127, 0, 1, host), 0)).unwrap();
        Client { socket, id: Id::sha1_of(&[host]), tid: 0 }
    }

    fn send(&mut self, node: SocketAddr, request: Request) {
        self.tid += 1;
        let _ = self.socket.send_to(&Message::request(self.tid, self.id, request).to_bytes(), node);
    }

    /// Sends a request and returns the answer to it (other datagrams are skipped). A datagram can
    /// be late or lost on a busy machine, so the request is sent again after a silent
    /// `ANSWER_WAIT`, up to `ATTEMPTS` times; an answer to any of the attempts counts.
    fn ask(&mut self, node: SocketAddr, request: Request) -> Option<Message> {
        let first_tid = self.tid + 1;
        let mut buf = [0u8; 65536];
        for _ in 0..ATTEMPTS {
            self.send(node, request.clone());
            let deadline = Instant::now() + ANSWER_WAIT;
            while let Some(wait) = deadline.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
                self.socket.set_read_timeout(Some(wait)).unwrap();
                let Ok((n, _)) = self.socket.recv_from(&mut buf) else { break };
                match Message::decode(&buf[..n]) {
                    Ok(m)
                        if (first_tid..=self.tid).contains(&m.tid)
                            && matches!(m.body, Body::Reply(_) | Body::Error { .. }) =>
                    {
                        return Some(m)
                    }
                    _ => continue,
                }
            }
        }
        None
    }

    /// A write token for this socket (from a `get`'s answer).
    fn token(&mut self, node: SocketAddr, key: Id) -> Vec<u8> {
        match self.ask(node, Request::Get { key, query: None, want: None }).map(|m| m.body) {
            Some(Body::Reply(r)) => r.token,
            other => panic!("no token for {key} from {:?}: {other:?}", self.socket.local_addr()),
        }
    }
}

/// Sends at most `FLOOD_RATE` datagrams per second, well within the request rate limit of one
/// address (1024/s) and of the node (8192/s), so that what is tested is the stores' limits, not
/// the rate limiter. A pacer that fell behind (the node was slow to answer a get, the test
/// thread was descheduled) does not burst to catch up: a catch-up burst once exceeded 8192
/// requests in one second and the node rightly dropped a get. And every
/// `BARRIER_EVERY` datagrams it waits until the node has handled all it was sent (a ping from
/// an address of its own, answered in turn): on a machine too busy to give the node its share
/// of the CPU, the flood would otherwise overflow the node's socket buffer and the kernel would
/// drop most of it.
struct Pacer {
    next: Instant,
    sent: u64,
    barrier: Client,
    node: SocketAddr,
}

impl Pacer {
    fn new(node: SocketAddr) -> Pacer {
        Pacer { next: Instant::now(), sent: 0, barrier: Client::new(100), node }
    }

    /// Waits for the next send's turn.
    fn pace(&mut self) {
        let now = Instant::now();
        if let Some(wait) = self.next.checked_duration_since(now) {
            std::thread::sleep(wait);
        }
        // Behind schedule: start again from now rather than sending the missed turns at once.
        self.next = self.next.max(now) + Duration::from_secs(1) / FLOOD_RATE;
        self.sent += 1;
        if self.sent.is_multiple_of(BARRIER_EVERY) {
            self.wait_for_node();
        }
    }

    /// Returns once the node has answered a ping sent after everything before it.
    fn wait_for_node(&mut self) {
        let answer = self.barrier.ask(self.node, Request::Ping);
        assert!(answer.is_some(), "the node stopped answering pings after {} datagrams", self.sent);
        self.next = self.next.max(Instant::now());
    }
}

/// Floods of every kind leave the node within its limits: a key holds at most 1024 values
/// however many are put, forged tokens store nothing,
/// listeners stay within 64 per address, garbage and unfinished fragments are dropped; a flood
/// paced within the rate limits has no request dropped by them; the node stays under 64 MiB of
/// resident memory and still answers an honest get with the values it kept.
#[cfg(target_os = "linux")]
#[test]
fn opendht_floods_stay_bounded() {
    let node = start_node();
    let pid = node.child.id();
    let hot = Id::of_str("flooded key");
    let mut clients: Vec<Client> = (1..=CLIENTS).map(Client::new).collect();
    let tokens: Vec<Vec<u8>> = clients.iter_mut().map(|c| c.token(node.addr, hot)).collect();
    let (started, mut pacer) = (Instant::now(), Pacer::new(node.addr));

    // 3,200 values of 600 bytes under one key, 100 from each address.
    for round in 0..100u64 {
        for (i, c) in clients.iter_mut().enumerate() {
            let value = Value::new(1 + round * 32 + i as u64, 0, vec![i as u8; 600]);
            let args =
                PutArgs { key: hot, token: tokens[i].clone(), values: vec![ValueSlot::Value(value)], created: None };
            c.send(node.addr, Request::Put(args));
            pacer.pace();
        }
    }
    // 3,200 puts with forged tokens under other keys.
    for n in 0..3200u64 {
        let c = &mut clients[(n % 32) as usize];
        let key = Id::of_str(&format!("forged {n}"));
        let value = Value::new(n + 1, 0, vec![7; 600]);
        let args = PutArgs { key, token: vec![0xAA; 32], values: vec![ValueSlot::Value(value)], created: None };
        c.send(node.addr, Request::Put(args));
        pacer.pace();
    }
    // 8,000 listens: 250 subscriptions from each address, on the hot key and on others.
    for n in 0..8000u32 {
        let i = (n % 32) as usize;
        let key = if n % 2 == 0 { hot } else { Id::of_str(&format!("listened {n}")) };
        let token = if key == hot {
            tokens[i].clone()
        } else {
            pacer.pace(); // the get for the token counts against the rate limit too
            clients[i].token(node.addr, key)
        };
        let args = ListenArgs { key, token, socket_id: n, version: Some(1), query: None };
        clients[i].send(node.addr, Request::Listen(args));
        pacer.pace();
    }
    // 20,000 datagrams of garbage, and 2,000 fragmented puts whose parts never all come.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..20_000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let garbage: Vec<u8> = (0..(seed % 300) as usize).map(|j| (seed >> (j % 56)) as u8).collect();
        let _ = clients[n % 32].socket.send_to(&garbage, node.addr);
        pacer.pace();
    }
    for n in 0..2000u32 {
        let i = (n % 32) as usize;
        let args =
            PutArgs { key: hot, token: tokens[i].clone(), values: vec![ValueSlot::Announced(60_000)], created: None };
        clients[i].send(node.addr, Request::Put(args));
        let parts = ValueParts { fragments: [(0, Fragment { offset: 0, data: vec![1; 1000] })].into_iter().collect() };
        let _ = clients[i].socket.send_to(&Message::value_parts(clients[i].tid, parts).to_bytes(), node.addr);
        pacer.pace();
    }

    pacer.wait_for_node();
    let stats = settled_stats(&node, Duration::from_secs(120));
    assert!(node_alive(&node), "the node died in the flood");
    let stored = stats["stored_values"].as_u64().unwrap();
    assert_eq!(stats["stored_keys"], 1, "only the flooded key holds values: forged tokens stored nothing");
    let listeners = stats["remote_listeners"].as_u64().unwrap();
    let received = stats["traffic"]["datagrams_received"].as_u64().unwrap();
    let peak_mib = support::vm_kib(pid, "VmHWM:") / 1024;
    println!(
        "received {received} datagrams; stored {stored} values; {listeners} listeners; peak RSS {peak_mib} MiB; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(received > 30_000, "most of the flood arrived: {received} of {} sent", pacer.sent);
    assert_eq!(stats["traffic"]["rate_limited"], 0, "the flood stayed within the rate limits");
    assert!(stored > MAX_VALUES_PER_KEY / 2 && stored <= MAX_VALUES_PER_KEY, "stored {stored} values (one key)");
    assert!(listeners > 1000 && listeners <= u64::from(CLIENTS) * MAX_LISTENERS_PER_IP, "{listeners} listeners");
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");

    // An honest client on a fresh address still gets the hot key's values (their ids at least).
    let mut honest = Client::new(200);
    let select = kadmos_proto::opendht::Query::select([kadmos_proto::opendht::Field::Id]);
    let answer = honest.ask(node.addr, Request::Get { key: hot, query: Some(select), want: None });
    match answer.map(|m| m.body) {
        Some(Body::Reply(r)) => {
            let ids = r.fields.map_or(0, |f| f.rows.len()) + r.values.len();
            assert!(ids > 0, "the honest get found nothing");
        }
        other => panic!("honest get not answered: {other:?}"),
    }
}

fn node_alive(node: &NodeProcess) -> bool {
    std::process::Command::new("kill").args(["-0", &node.child.id().to_string()]).status().is_ok_and(|s| s.success())
}
