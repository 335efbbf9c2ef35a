//! `kadmos-bench hardening`: the hardening figures (memory, flood, soak), in one run, all on loopback.
//!
//! 1. Idle RSS: a `kadmos node` joins a 30-node testnet (`kadmos testnet`, another process),
//!    then sits idle; its resident memory (VmRSS) is read after `--idle-secs`.
//! 2. RSS per stored peer: a fresh node (limits raised to hold them) is sent 100,000
//!    `announce_peer`s over 10,000 torrents, then another over 100,000 torrents; the growth
//!    of its RSS divided by the peers it reports stored.
//! 3. Flood: one source sends find_node at `--flood-rate` queries/s while 32 honest sources
//!    send 10/s each, for `--flood-secs`, at a node with its default limits: the share of
//!    honest queries answered, the flooder's answers per second, the node's CPU.
//! 4. Soak (`--soak-minutes`, default 30; 0 skips it): the joined node of part 1 under mixed
//!    queries from 16 sources (find_node, get_peers, announce_peer, ping, about 160/s) while
//!    every 2 minutes 3 nodes that joined through it are killed and 3 new ones join (churn);
//!    RSS printed each minute.
//!
//! Figures only; nothing is asserted. Run on an otherwise idle machine.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use kadmos_proto::mainline::{Body, Message, Query};
use kadmos_proto::Id;

use crate::procs::{self, Server, TempDir};

#[derive(Args, Clone)]
pub struct HardeningArgs {
    /// The kadmos binary (default: `kadmos` next to this executable).
    #[arg(long, value_name = "PATH")]
    kadmos: Option<PathBuf>,
    /// Seconds the joined node sits idle before its RSS is read.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    idle_secs: u64,
    /// Queries per second of the flooding source.
    #[arg(long, default_value_t = 50_000, value_name = "N")]
    flood_rate: u64,
    /// Seconds the flood lasts.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    flood_secs: u64,
    /// Minutes of the soak (0: skip it).
    #[arg(long, default_value_t = 30, value_name = "MIN")]
    soak_minutes: u64,
}

/// `kadmos node` options that turn every rate limit off (for measuring raw speed or memory).
pub const NO_RATE_LIMITS: &[&str] =
    &["--rate-limit", "0", "--rate-limit-per-ip", "0", "--unverified-reply-limit", "0", "--outbound-limit", "0"];

pub fn run(args: &HardeningArgs) -> Result<(), String> {
    let kadmos = match &args.kadmos {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("kadmos"),
    };
    if !kadmos.is_file() {
        return Err(format!("no kadmos binary at {} (cargo build --release -p kadmos-cli)", kadmos.display()));
    }
    let dir = TempDir::new("kadmos-hardening").map_err(|e| e.to_string())?;

    let (mut testnet, testnet_addr) = start(&kadmos, "testnet", &["testnet", "--nodes", "30"], &[])?;
    let bootstrap = testnet_addr.to_string();
    let (mut joined, joined_addr) = start_node(&kadmos, dir.path(), "joined", &["--bootstrap", &bootstrap])?;
    let contacts = wait_joined(joined_addr)?;
    std::thread::sleep(Duration::from_secs(args.idle_secs));
    let idle = rss_kib(joined.pid())?;
    println!(
        "idle node joined to a 30-node testnet ({contacts} contacts in its answers), after {} s idle: RSS {:.2} MiB ({idle} KiB)",
        args.idle_secs,
        idle as f64 / 1024.0
    );

    for torrents in [10_000u32, 100_000] {
        per_peer(&kadmos, dir.path(), torrents)?;
    }
    flood(&kadmos, dir.path(), args)?;
    if args.soak_minutes > 0 {
        soak(&kadmos, dir.path(), &mut joined, joined_addr, args.soak_minutes)?;
    }
    joined.stop(Duration::from_secs(5));
    testnet.stop(Duration::from_secs(5));
    Ok(())
}

pub(crate) fn start(kadmos: &Path, name: &str, args: &[&str], extra: &[&str]) -> Result<(Server, SocketAddr), String> {
    let argv: Vec<String> = std::iter::once(kadmos.to_string_lossy().into_owned())
        .chain(args.iter().chain(extra).map(|a| a.to_string()))
        .collect();
    let (mut server, rx) = Server::spawn(name, &argv, None).map_err(|e| e.to_string())?;
    let addr = server.wait_addr(&rx, Duration::from_secs(60))?;
    Ok((server, addr))
}

pub(crate) fn start_node(
    kadmos: &Path,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> Result<(Server, SocketAddr), String> {
    let state = dir.join(format!("{name}.json")).to_string_lossy().into_owned();
    let base = ["node", "--bind", "127.0.0.1", "--port", "0", "--state", state.as_str(), "--stats-interval", "3600"];
    start(kadmos, name, &base, extra)
}

/// Current resident memory of a process.
fn rss_kib(pid: u32) -> Result<u64, String> {
    procs::status_kib(pid, "VmRSS:").map_err(|e| e.to_string())
}

fn socket(ip: Ipv4Addr) -> Result<UdpSocket, String> {
    let s = UdpSocket::bind((ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Sends a query and waits up to `wait` for the answer with the same transaction id.
fn ask(s: &UdpSocket, to: SocketAddr, tx: &[u8], query: Query, wait: Duration) -> Option<Message> {
    let q = Message::query(tx.to_vec(), Id::sha1_of(tx), query);
    s.send_to(&q.to_bytes(), to).ok()?;
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .ok()?;
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            match Message::decode(&buf[..n]) {
                Ok(m) if from == to && m.transaction_id == tx && !matches!(m.body, Body::Query { .. }) => {
                    return Some(m)
                }
                _ => {}
            }
        }
    }
    None
}

/// Waits until the node's find_node answers carry 8 nodes (its table holds at least k).
pub(crate) fn wait_joined(node: SocketAddr) -> Result<usize, String> {
    let s = socket(Ipv4Addr::new(127, 0, 0, 1))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(Message { body: Body::Response(r), .. }) =
            ask(&s, node, b"jn", Query::FindNode { target: Id::sha1_of(b"x"), want: None }, Duration::from_secs(2))
        {
            if r.nodes.len() >= 8 {
                return Ok(r.nodes.len());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err("the node did not join the testnet within 60 s".into())
}

/// RSS growth per stored peer: 100,000 announces over `torrents` torrents.
fn per_peer(kadmos: &Path, dir: &Path, torrents: u32) -> Result<(), String> {
    const PEERS: u32 = 100_000;
    let store = ["--no-bootstrap", "--max-torrents", "1000000", "--max-peers-per-torrent", "1000000"];
    let extra: Vec<&str> = store.iter().chain(NO_RATE_LIMITS).copied().collect();
    let (mut node, addr) = start_node(kadmos, dir, &format!("store{torrents}"), &extra)?;
    let s = socket(Ipv4Addr::new(127, 0, 0, 1))?;
    let token = match ask(&s, addr, b"tk", Query::GetPeers { info_hash: Id::MAX, want: None }, Duration::from_secs(2)) {
        Some(Message { body: Body::Response(r), .. }) => r.token.ok_or("no token")?,
        _ => return Err("no answer to get_peers".into()),
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(node.pid())?;
    let mut answered = 0u32;
    let mut buf = [0u8; 2048];
    s.set_nonblocking(true).map_err(|e| e.to_string())?;
    for i in 0..PEERS {
        let info_hash = Id::sha1_of(&(i % torrents).to_be_bytes());
        let port = (i / torrents + 1) as u16;
        let q = Query::AnnouncePeer { info_hash, port, implied_port: false, token: token.clone(), seed: None };
        let _ = s.send_to(&Message::query(i.to_be_bytes().to_vec(), Id::sha1_of(b"a"), q).to_bytes(), addr);
        // Keep a bounded number in flight, so that no socket buffer overflows.
        while i + 1 - answered > 256 {
            match s.recv_from(&mut buf) {
                Ok(_) => answered += 1,
                Err(_) => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while answered < PEERS && Instant::now() < deadline {
        match s.recv_from(&mut buf) {
            Ok(_) => answered += 1,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(node.pid())?;
    let grown = after.saturating_sub(before) as f64 * 1024.0;
    println!(
        "{PEERS} peers over {torrents} torrents ({answered} announces answered): RSS {:.2} → {:.2} MiB, {:.1} bytes per stored peer",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        grown / f64::from(answered.max(1))
    );
    node.stop(Duration::from_secs(5));
    Ok(())
}

/// One source floods while 32 honest sources query slowly.
fn flood(kadmos: &Path, dir: &Path, args: &HardeningArgs) -> Result<(), String> {
    let (mut node, addr) = start_node(kadmos, dir, "flooded", &["--no-bootstrap"])?;
    let pid = node.pid();
    let stop = Arc::new(AtomicBool::new(false));
    let flood_answers = Arc::new(AtomicU64::new(0));
    let flooder = socket(Ipv4Addr::new(127, 0, 9, 1))?;
    let receiver = flooder.try_clone().map_err(|e| e.to_string())?;
    let counter = {
        let (stop, answers) = (stop.clone(), flood_answers.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if receiver.recv_from(&mut buf).is_ok() {
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let flood_thread = {
        let (stop, rate) = (stop.clone(), args.flood_rate);
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    let q = Message::query(
                        (sent as u32).to_be_bytes().to_vec(),
                        Id::sha1_of(b"flooder"),
                        Query::FindNode { target: Id::sha1_of(&sent.to_be_bytes()), want: None },
                    );
                    let _ = flooder.send_to(&q.to_bytes(), addr);
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    };
    let honest: Vec<UdpSocket> = (0..32).map(|i| socket(Ipv4Addr::new(127, 0, 8, i + 1))).collect::<Result<_, _>>()?;
    let cpu_before = procs::cpu_seconds(pid).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (mut asked, mut answered) = (0u32, 0u32);
    let mut round = 0u32;
    while started.elapsed() < Duration::from_secs(args.flood_secs) {
        let tick = Instant::now();
        for s in &honest {
            round += 1;
            asked += 1;
            let tx = round.to_be_bytes();
            let q = Query::FindNode { target: Id::sha1_of(&tx), want: None };
            if ask(s, addr, &tx, q, Duration::from_millis(100)).is_some() {
                answered += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = procs::cpu_seconds(pid).map_err(|e| e.to_string())? - cpu_before;
    stop.store(true, Ordering::Relaxed);
    let sent = flood_thread.join().map_err(|_| "flood thread panicked")?;
    let _ = counter.join();
    let flood_answered = flood_answers.load(Ordering::Relaxed);
    println!(
        "flood: one source sent {sent} queries ({:.0}/s) for {wall:.1} s; it got {flood_answered} answers ({:.0}/s; its limit is 100/s after a burst of 200)",
        sent as f64 / wall,
        flood_answered as f64 / wall
    );
    println!(
        "flood: 32 honest sources asked {asked} times, {answered} answered ({:.2}%); node CPU {:.0}% of one core",
        100.0 * f64::from(answered) / f64::from(asked.max(1)),
        100.0 * cpu / wall
    );
    node.stop(Duration::from_secs(5));
    Ok(())
}

/// Mixed queries and churn for `minutes`, RSS each minute.
fn soak(kadmos: &Path, dir: &Path, node: &mut Server, addr: SocketAddr, minutes: u64) -> Result<(), String> {
    let target = addr.to_string();
    let sources: Vec<UdpSocket> = (0..16).map(|i| socket(Ipv4Addr::new(127, 0, 7, i + 1))).collect::<Result<_, _>>()?;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; sources.len()];
    let started = Instant::now();
    let mut churn: Vec<Server> = Vec::new();
    let mut churned = 0u32;
    let mut next_churn = Instant::now();
    let mut next_sample = Instant::now() + Duration::from_secs(60);
    let mut samples = Vec::new();
    let mut seen_torrents = HashSet::new();
    let mut n = 0u64;
    println!(
        "soak: {minutes} minutes of mixed queries from 16 sources (about 160/s) and 3 nodes replaced every 2 minutes"
    );
    while started.elapsed() < Duration::from_secs(minutes * 60) {
        if Instant::now() >= next_churn {
            // Three nodes leave (killed: their contacts go bad) and three new ones, with new
            // IDs, join through the node under test.
            for mut old in churn.drain(..) {
                old.stop(Duration::from_secs(1));
            }
            for _ in 0..3 {
                churned += 1;
                let (server, _) = start_node(kadmos, dir, &format!("churn{churned}"), &["--bootstrap", &target])?;
                churn.push(server);
            }
            next_churn = Instant::now() + Duration::from_secs(120);
        }
        let tick = Instant::now();
        for (i, s) in sources.iter().enumerate() {
            n += 1;
            let info_hash = Id::sha1_of(&(n % 5000).to_be_bytes());
            let tx = (n as u32).to_be_bytes();
            let query = match (n % 4, &tokens[i]) {
                (0, _) => Query::FindNode { target: Id::sha1_of(&tx), want: None },
                (1, _) | (2, None) => Query::GetPeers { info_hash, want: None },
                (2, Some(token)) => {
                    seen_torrents.insert(info_hash);
                    Query::AnnouncePeer {
                        info_hash,
                        port: 1000 + i as u16,
                        implied_port: false,
                        token: token.clone(),
                        seed: None,
                    }
                }
                _ => Query::Ping,
            };
            if let Some(Message { body: Body::Response(r), .. }) = ask(s, addr, &tx, query, Duration::from_millis(50)) {
                if r.token.is_some() {
                    tokens[i] = r.token;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(tick.elapsed()));
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(60);
            let rss = rss_kib(node.pid())?;
            samples.push(rss);
            println!(
                "soak minute {:>2}: RSS {:.2} MiB ({} torrents announced so far)",
                samples.len(),
                rss as f64 / 1024.0,
                seen_torrents.len()
            );
        }
    }
    for mut old in churn.drain(..) {
        old.stop(Duration::from_secs(1));
    }
    if let (Some(first), Some(last), Some(max)) = (samples.first(), samples.last(), samples.iter().max()) {
        println!(
            "soak: RSS first minute {:.2} MiB, last {:.2} MiB, highest {:.2} MiB",
            *first as f64 / 1024.0,
            *last as f64 / 1024.0,
            *max as f64 / 1024.0
        );
    }
    Ok(())
}
