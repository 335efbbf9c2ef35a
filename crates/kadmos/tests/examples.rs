//! Every program in `examples/` runs against an in-process test network, as a user would run it
//! (`KADMOS_BOOTSTRAP=<a node's address> <example> <arguments>`), and does what it says: the
//! test checks its output against what the network holds.
//!
//! The example binaries are built by `cargo test` along with the package's other targets; a
//! test target selected alone (`cargo test -p kadmos --test examples`) does not build them, so
//! run `cargo build -p kadmos --examples` first in that case.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use kadmos::opendht::{key_from_str, PutOptions};
use kadmos::{Id, InfoHash, Testnet};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// How long an example gets to print a line or to exit: generous, since a busy machine can
/// delay a datagram or a whole process by seconds.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running example: its output lines as they come, killed if the test ends before it.
struct Example {
    name: &'static str,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Where cargo puts the example binaries: `target/<profile>/examples`, beside the `deps`
/// directory that holds this test.
fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build -p kadmos --examples` (cargo test builds it unless a single test target is selected)",
        path.display()
    );
    path
}

impl Example {
    /// Starts example `name` with `args`, joining the network through `bootstrap`.
    fn start(name: &'static str, args: &[&str], bootstrap: SocketAddr) -> Example {
        let mut child = Command::new(example_path(name))
            .args(args)
            .env("KADMOS_BOOTSTRAP", bootstrap.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start example {name}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Example { name, child, lines, seen: Vec::new(), stderr }
    }

    /// Waits for a line of output that satisfies `wanted` and returns it.
    async fn expect(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("{} ended without printing {what}; it printed {:#?}", self.name, self.seen),
                Err(_) => panic!("{} did not print {what} within {DEADLINE:?}; it printed {:#?}", self.name, self.seen),
            }
        }
    }

    /// Waits for the example to exit and returns its status, every line it printed and its
    /// standard error.
    async fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + DEADLINE;
        // Standard output closes when the program exits.
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.seen.push(line),
                Ok(None) => break,
                Err(_) => panic!("{} did not exit within {DEADLINE:?}; it printed {:#?}", self.name, self.seen),
            }
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the example") {
                break status;
            }
            assert!(Instant::now() < deadline, "{} closed its output but did not exit", self.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let stderr = std::mem::replace(&mut self.stderr, std::thread::spawn(String::new));
        let stderr = stderr.join().unwrap_or_default();
        (status, std::mem::take(&mut self.seen), stderr)
    }

    /// Waits for a successful exit and returns every line printed.
    async fn succeed(self) -> Vec<String> {
        let name = self.name;
        let (status, lines, stderr) = self.finish().await;
        assert!(status.success(), "{name} failed ({status}): printed {lines:#?}, stderr:\n{stderr}");
        lines
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        // Nothing outlives its test: an example still running (the test failed, or it runs
        // until stopped) is killed and reaped.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The number after `prefix` in one of `lines`.
fn number_after(lines: &[String], prefix: &str) -> usize {
    let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"));
    let digits: String = line[prefix.len()..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {prefix:?} in {line:?}"))
}

/// The text after `prefix` in one of `lines`, up to the next space.
fn word_after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    let line = lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {lines:#?}"));
    line[prefix.len()..].split(' ').next().unwrap_or_default()
}

fn random_info_hash() -> InfoHash {
    Id::random(&mut rand::thread_rng())
}

/// `node` joins the network through the address it is given, reports its contacts, stops by
/// itself after the time it is given, and hands back a state holding the contacts it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_joins_reports_and_stops() {
    let testnet = Testnet::new(6).await.expect("testnet");
    let example = Example::start("node", &["2"], testnet.bootstrap_addrs()[0]);
    let lines = example.succeed().await;
    assert!(number_after(&lines, "joined: ") >= 1, "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("contacts: ")), "{lines:#?}");
    let saved = lines.last().expect("a last line");
    assert!(saved.starts_with("stopped; state to save: node ID "), "{lines:#?}");
    let saved_contacts = saved.rsplit(" and ").next().and_then(|rest| rest.strip_suffix(" contacts"));
    assert!(saved_contacts.and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n >= 1), "{saved}");
    testnet.shutdown().await;
}

/// `get_peers` streams the peer another node announced, and ends when its lookup does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_peers_finds_the_announced_peer() {
    let testnet = Testnet::new(8).await.expect("testnet");
    let info_hash = random_info_hash();
    let announced = testnet.nodes[3].announce_peer(info_hash, Some(7001)).await.expect("announce");
    assert!(!announced.stored_at.is_empty());

    let example = Example::start("get_peers", &[&info_hash.to_string()], testnet.bootstrap_addrs()[0]);
    let lines = example.succeed().await;
    assert!(lines.iter().any(|l| l.starts_with("peer 127.0.0.1:7001 (from node ")), "{lines:#?}");
    assert_eq!(lines.last().map(String::as_str), Some("lookup over: 1 peers"), "{lines:#?}");
    testnet.shutdown().await;
}

/// `bep44` stores an immutable item and two versions of a mutable one that another node of the
/// network then reads back, and reads them back itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bep44_items_are_readable_by_others() {
    let testnet = Testnet::new(8).await.expect("testnet");
    let text = "from the examples test";
    let bencoded = format!("{}:{text}", text.len());
    let example = Example::start("bep44", &[text], testnet.bootstrap_addrs()[0]);
    let lines = example.succeed().await;
    assert!(lines.contains(&format!("immutable got back: {bencoded}")), "{lines:#?}");
    assert!(lines.contains(&"mutable got back seq 2: 6:second".to_string()), "{lines:#?}");

    let reader = &testnet.nodes[5];
    let target: Id = word_after(&lines, "immutable target: ").parse().expect("a target");
    assert_eq!(reader.get_immutable(target).await.expect("immutable item"), bencoded.as_bytes());
    let public_key: [u8; 32] =
        hex::decode(word_after(&lines, "mutable public key: ")).expect("hex").try_into().expect("32 bytes");
    let newest = reader.get_mutable(public_key, b"kadmos example", None).await.expect("get").most_recent().await;
    let newest = newest.expect("the mutable item is on the network");
    assert_eq!((newest.seq, newest.value.as_slice()), (2, &b"6:second"[..]));
    testnet.shutdown().await;
}

/// `opendht_put_listen` puts its value where another node listening to the key hears it, and
/// hears it through its own listen too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opendht_put_reaches_listeners() {
    let testnet = kadmos::opendht::Testnet::new(6).await.expect("testnet");
    let key_text = "examples test key";
    let data = "hello from the examples test";
    let mut listener = testnet.nodes[4].listen(key_from_str(key_text)).await.expect("listen");

    let mut example = Example::start("opendht_put_listen", &[key_text, data, "600"], testnet.bootstrap_addrs()[0]);
    let put = example.expect("its put", |l| l.starts_with("put value ")).await;
    let value_id = put["put value ".len()..].split(' ').next().unwrap().to_string();
    example.expect("its own value", |l| l == format!("value {value_id}: {data}")).await;

    let heard = timeout(DEADLINE, async {
        while let Some(change) = listener.next().await {
            if !change.expired && change.value.data == data.as_bytes() {
                return change.value;
            }
        }
        panic!("the node shut down");
    })
    .await
    .expect("the other listener hears the value");
    assert_eq!(format!("{:x}", heard.id), value_id);
    // A put from the test reaches the example's listen as well.
    testnet.nodes[2].put(key_from_str(key_text), "second", PutOptions::default()).await.expect("put");
    example.expect("the test's value", |l| l.ends_with(": second") && l.starts_with("value ")).await;
    drop(example); // it listens until stopped: killed here
    testnet.shutdown().await;
}

/// `blocking` finds the announced peer and stores and reads back an item, without an async
/// runtime of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_finds_peers_and_stores() {
    let testnet = Testnet::new(8).await.expect("testnet");
    let info_hash = random_info_hash();
    testnet.nodes[6].announce_peer(info_hash, Some(7002)).await.expect("announce");

    let example = Example::start("blocking", &[&info_hash.to_string()], testnet.bootstrap_addrs()[0]);
    let lines = example.succeed().await;
    assert!(number_after(&lines, "joined: ") >= 1, "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("peer 127.0.0.1:7002 (from node ")), "{lines:#?}");
    let text = "stored from a blocking program";
    assert!(lines.iter().any(|l| l.ends_with(&format!("got back: {}:{text}", text.len()))), "{lines:#?}");
    testnet.shutdown().await;
}

/// Bad arguments end an example with a message that says what is wrong, not a panic.
#[tokio::test]
async fn bad_arguments_are_reported() {
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for (name, args, message) in [
        ("get_peers", vec!["not-a-hash"], "not an infohash"),
        ("get_peers", vec![], "usage: get_peers"),
        ("node", vec!["soon"], "expected a number of seconds"),
    ] {
        let (status, _, stderr) = Example::start(name, &args, unused).finish().await;
        assert!(!status.success(), "{name} {args:?} succeeded");
        assert!(stderr.contains(message) && !stderr.contains("panicked"), "{name} {args:?}: {stderr}");
    }
}
