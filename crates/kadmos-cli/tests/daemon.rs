//! The daemon seen from outside: `kadmos node` records its control API in the data directory,
//! the one-shot commands use it (and fall back to a node of their own without it),
//! `routing-table`, `stats` and `stop` talk to it, its port survives a restart, and `/metrics`
//! is valid Prometheus text whose counters follow the traffic. Every process runs on loopback
//! against a `kadmos testnet` and is killed when its test ends.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// A process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kadmos_command(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kadmos"));
    command.env("XDG_DATA_HOME", data).env_remove("KADMOS_GATEWAY").env_remove("RUST_LOG");
    command
}

/// A fresh data directory for one test.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kadmos-daemon-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The next line of `lines` for which `pick` gives something, within 30 s.
fn wait_for<T>(lines: &Receiver<String>, what: &str, mut pick: impl FnMut(&Json) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} line within 30 s"));
        if let Some(found) = serde_json::from_str(&line).ok().as_ref().and_then(&mut pick) {
            return found;
        }
    }
}

/// A long-running `kadmos` process and its stdout lines.
fn spawn(data: &Path, args: &[&str]) -> (Process, Receiver<String>) {
    let mut child = kadmos_command(data).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let lines = support::stdout_lines(&mut child);
    (Process(child), lines)
}

/// `kadmos testnet --nodes n --network network`: its process and the address to bootstrap from.
fn testnet(n: usize, data: &Path, network: &str) -> (Process, String) {
    let (process, lines) = spawn(data, &["testnet", "--nodes", &n.to_string(), "--network", network, "--json"]);
    let bootstrap = wait_for(&lines, "testnet", |j| j["bootstrap"].as_str().map(String::from));
    (process, bootstrap)
}

/// A running `kadmos node`: its process, UDP address and control URL.
struct Daemon {
    process: Process,
    udp: SocketAddr,
    control: SocketAddr,
}

fn daemon(data: &Path, args: &[&str]) -> Daemon {
    let args: Vec<&str> = ["node", "--bind", "127.0.0.1", "--json"].iter().chain(args).copied().collect();
    let (process, lines) = spawn(data, &args);
    let udp = wait_for(&lines, "listening", |j| j["addr"].as_str()?.parse().ok().filter(|_| j["type"] == "listening"));
    let control = wait_for(&lines, "control", |j| j["url"].as_str()?.strip_prefix("http://")?.parse().ok());
    Daemon { process, udp, control }
}

/// A data directory, a testnet of `n` nodes, and a daemon joined to it.
fn daemon_on_testnet(name: &str, n: usize) -> (PathBuf, Process, Daemon) {
    let data = data_dir(name);
    let (net, bootstrap) = testnet(n, &data, "mainline");
    let node = daemon(&data, &["--port", "0", "--bootstrap", &bootstrap]);
    (data, net, node)
}

/// Runs a one-shot command (60 s at most).
fn kadmos(data: &Path, args: &[&str]) -> Output {
    let child = kadmos_command(data).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("kadmos {args:?} (pid {pid}) ran over 60 s"))
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_lines(text: &str) -> Vec<Json> {
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// The body of `GET path` from an HTTP server (HTTP/1.0-style: the server closes after it).
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

/// One sample of the exposition format: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses Prometheus's text format strictly enough to catch what a scraper rejects: every
/// sample's family has a TYPE line before it, a family's samples form one group, labels are
/// `name="value"` with escapes, and values are numbers.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none(), "second TYPE for {name}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}').expect("closing brace"))),
        };
        assert!(name.starts_with("kadmos_"), "{name}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|k| k == "histogram")))
            .unwrap_or(&name)
            .to_string();
        assert!(types.contains_key(&family), "sample {name} before its TYPE");
        if current.as_ref() != Some(&family) {
            assert!(!finished.contains(&family), "samples of {family} are not one group");
            if let Some(previous) = current.replace(family.clone()) {
                finished.insert(previous);
            }
        }
        samples.push((name, labels, value));
    }
    samples
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} without a quoted value");
        let mut value = String::new();
        loop {
            match chars.next().expect("unterminated label value") {
                '"' => break,
                '\\' => value.push(match chars.next() {
                    Some('n') => '\n',
                    Some(c) => c,
                    None => panic!("dangling escape"),
                }),
                c => value.push(c),
            }
        }
        labels.push((name, value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of the sample `name` whose labels include `labels` (0 if absent).
fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|(_, _, v)| v)
        .sum()
}

fn scrape(daemon: &Daemon) -> Vec<Sample> {
    parse_exposition(&http_get(daemon.control, "/metrics"))
}

const INFO_HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// With a daemon running, `announce`, `peers`, `find-node` and `ping` are answered by it (its
/// request counters move for each, and the peer announced through it is found through it);
/// `--standalone` bypasses it; once it is gone (its record left behind, stale), `ping` falls
/// back to a node of its own and still answers.
#[test]
fn one_shot_commands_use_the_daemon_and_fall_back_without_it() {
    let data = data_dir("oneshot");
    let (_net, bootstrap) = testnet(10, &data, "mainline");
    let node = daemon(&data, &["--port", "0", "--bootstrap", &bootstrap]);
    let served =
        |route: &str| metric(&scrape(&node), "kadmos_gateway_requests_total", &[("route", route), ("status", "200")]);

    let announced = json_lines(&succeeded(&kadmos(&data, &["announce", INFO_HASH, "--port", "7777", "--json"])));
    assert_eq!(announced[0]["type"], "announced");
    assert!(!announced[0]["stored_at"].as_array().unwrap().is_empty());
    assert_eq!(served("/daemon/mainline/announce/{infohash}"), 1.0);

    let peers = json_lines(&succeeded(&kadmos(&data, &["peers", INFO_HASH, "--json"])));
    assert!(peers.iter().any(|p| p["type"] == "peer" && p["peer"] == "127.0.0.1:7777"), "{peers:?}");
    assert!(peers.iter().any(|p| p["type"] == "peer" && p["from"]["id"].is_string()), "from carries the node ID");
    assert_eq!(peers.last().unwrap()["type"], "done");
    assert_eq!(served("/daemon/mainline/peers/{infohash}"), 1.0);

    let nodes = json_lines(&succeeded(&kadmos(&data, &["find-node", INFO_HASH, "--json"])));
    assert_eq!(nodes.len(), 8, "the 8 closest nodes");
    assert_eq!(served("/daemon/mainline/find-node/{id}"), 1.0);

    let pong = json_lines(&succeeded(&kadmos(&data, &["ping", &bootstrap, "--json"])));
    assert_eq!(pong[0]["type"], "pong");
    assert_eq!(served("/daemon/mainline/ping/{addr}"), 1.0);

    succeeded(&kadmos(&data, &["ping", &bootstrap, "--standalone", "--json"]));
    assert_eq!(served("/daemon/mainline/ping/{addr}"), 1.0, "--standalone went through the daemon");

    // Killed, not stopped: its daemon.json stays behind and must be recognised as stale.
    let Daemon { process, .. } = node;
    drop(process);
    assert!(data.join("kadmos/daemon.json").exists());
    let pong = json_lines(&succeeded(&kadmos(&data, &["ping", &bootstrap, "--json"])));
    assert_eq!(pong[0]["type"], "pong");
    let stats = kadmos(&data, &["stats"]);
    assert_eq!(stats.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&stats.stderr).contains("does not answer"));
}

/// The contacts of a JSON routing-table dump (one line per network): (id, addr, status).
fn contacts_listed(text: &str) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for table in json_lines(text) {
        assert_eq!(table["type"], "routing_table");
        for family in [&table["ipv4"], &table["ipv6"]].into_iter().filter(|f| !f.is_null()) {
            for bucket in family["buckets"].as_array().unwrap() {
                assert!(bucket["prefix_len"].is_u64() && bucket["capacity"].is_u64());
                for contact in bucket["contacts"].as_array().unwrap() {
                    let field = |f: &str| contact[f].as_str().unwrap().to_string();
                    out.insert((field("id"), field("addr"), field("status")));
                }
            }
        }
    }
    out
}

/// On a 30-node testnet, `kadmos routing-table` lists every contact the daemon holds: once the
/// table has settled, its contacts are exactly those the daemon saves when `kadmos stop` stops
/// it, each with its address, status and measured round-trip time, and the human form names
/// each of them with its round trip.
#[test]
fn routing_table_lists_every_contact_of_the_daemon() {
    let (data, _net, node) = daemon_on_testnet("table", 30);

    // Settled: two listings in a row agree (joining is over).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut listed = contacts_listed(&succeeded(&kadmos(&data, &["routing-table", "--json"])));
    loop {
        let again = contacts_listed(&succeeded(&kadmos(&data, &["routing-table", "--json"])));
        if again == listed && listed.len() >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the routing table did not settle: {} contacts", again.len());
        listed = again;
    }
    assert!(listed.iter().all(|(_, addr, status)| addr.starts_with("127.0.0.1:") && status == "good"));
    // Every contact entered the table by answering one of our requests, so each has a
    // measured round trip: a loopback one, under the request timeout.
    let dumps = json_lines(&succeeded(&kadmos(&data, &["routing-table", "--json"])));
    let contacts =
        dumps[0]["ipv4"]["buckets"].as_array().unwrap().iter().flat_map(|b| b["contacts"].as_array().unwrap());
    for contact in contacts {
        let rtt = contact["round_trip_us"].as_u64().unwrap_or_else(|| panic!("no round trip: {contact}"));
        assert!(rtt < 5_000_000, "{contact}");
    }
    let human = succeeded(&kadmos(&data, &["routing-table"]));
    for (id, addr, _) in &listed {
        let line =
            human.lines().find(|l| l.contains(id.as_str())).unwrap_or_else(|| panic!("{id} missing from:\n{human}"));
        assert!(line.contains(addr.as_str()) && line.contains(" ms, "), "{line}");
    }

    let stopped = json_lines(&succeeded(&kadmos(&data, &["stop", "--json"])));
    assert_eq!(stopped[0]["type"], "stopped");
    let state: Json = serde_json::from_str(&std::fs::read_to_string(data.join("kadmos/state.json")).unwrap()).unwrap();
    let saved: BTreeSet<(String, String)> = state["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["addr"].as_str().unwrap().to_string()))
        .collect();
    let listed: BTreeSet<(String, String)> = listed.into_iter().map(|(id, addr, _)| (id, addr)).collect();
    assert_eq!(listed, saved);
    drop(node);
}

/// A daemon restarted in the same data directory listens on the port it had (saved in its
/// state), and an explicit `--port` that is taken is an error naming the port, not a node on
/// some other port.
#[test]
fn a_restarted_daemon_listens_on_the_same_port() {
    let data = data_dir("port");
    let first = daemon(&data, &["--port", "0", "--no-bootstrap"]);
    succeeded(&kadmos(&data, &["stop"]));
    let mut first = first;
    assert!(first.process.0.wait().unwrap().success(), "the daemon exits cleanly when stopped");
    let udp = first.udp;

    let second = daemon(&data, &["--port", "0", "--no-bootstrap"]);
    assert_eq!(second.udp, udp);
    drop(second);

    let held = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let refused = kadmos(&data, &["node", "--bind", "127.0.0.1", "--no-bootstrap", "--port", &port]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let message = stderr.lines().last().unwrap_or_default();
    assert!(message.starts_with("error: ") && message.contains(&format!(":{port}")), "{message}");
    assert!(message.contains(&format!("--port {port},0")), "the message shows the way out: {message}");
}

/// `/metrics` is valid exposition text with the documented families, and its counters follow
/// the traffic: an announce through the daemon raises its datagrams and bytes out, its
/// messages, its lookup histogram and the gateway's request count; the advertisement the
/// daemon was started with is counted as a quest, and so are its rounds.
#[test]
fn metrics_parse_and_move_with_traffic() {
    let data = data_dir("metrics");
    let (_net, bootstrap) = testnet(10, &data, "mainline");
    let advertised = format!("{}:6999", "cd".repeat(20));
    let node = daemon(&data, &["--port", "0", "--bootstrap", &bootstrap, "--advertise", &advertised]);
    // Joined: the routing table has a good contact.
    let deadline = Instant::now() + Duration::from_secs(30);
    let good = [("family", "ipv4"), ("status", "good")];
    let before = loop {
        let samples = scrape(&node);
        if metric(&samples, "kadmos_routing_table_contacts", &good) >= 1.0 {
            break samples;
        }
        assert!(Instant::now() < deadline, "the daemon did not join within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    for family in [
        "kadmos_uptime_seconds",
        "kadmos_datagrams_total",
        "kadmos_traffic_bytes_total",
        "kadmos_messages_total",
        "kadmos_routing_table_contacts",
        "kadmos_stored_peers",
        "kadmos_lookup_duration_seconds_count",
        "kadmos_gateway_listen_streams",
    ] {
        assert!(before.iter().any(|(n, _, _)| n == family), "no {family}");
    }

    succeeded(&kadmos(&data, &["announce", INFO_HASH, "--json"]));
    let after = scrape(&node);
    let out = [("network", "mainline"), ("direction", "out")];
    for name in ["kadmos_datagrams_total", "kadmos_traffic_bytes_total"] {
        assert!(metric(&after, name, &out) > metric(&before, name, &out), "{name} did not move");
    }
    let queries = [("kind", "query"), ("direction", "out")];
    assert!(metric(&after, "kadmos_messages_total", &queries) > metric(&before, "kadmos_messages_total", &queries));
    for method in ["get_peers", "announce_peer"] {
        let sent = [("method", method), ("direction", "out")];
        for name in ["kadmos_krpc_queries_total", "kadmos_krpc_query_bytes_total"] {
            assert!(metric(&after, name, &sent) > metric(&before, name, &sent), "{name} of {method} did not move");
        }
    }
    let refused = [("code", "203"), ("direction", "out")];
    assert!(after.iter().any(|(n, l, _)| n == "kadmos_krpc_errors_total"
        && refused.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))));
    let announces = [("kind", "announce")];
    assert_eq!(metric(&after, "kadmos_lookup_duration_seconds_count", &announces), 1.0);
    assert_eq!(metric(&after, "kadmos_lookup_duration_seconds_bucket", &[("kind", "announce"), ("le", "+Inf")]), 1.0);
    assert!(metric(&after, "kadmos_lookup_messages_total", &announces) >= 1.0);
    let scrapes = [("route", "/metrics"), ("status", "200")];
    assert!(metric(&after, "kadmos_gateway_requests_total", &scrapes) >= 1.0);
    assert_eq!(metric(&after, "kadmos_quest_advertisements", &[]), 1.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&scrape(&node), "kadmos_quest_rounds_total", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "no advertisement round within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = succeeded(&kadmos(&data, &["stats"]));
    assert!(stats.contains("quests: advertising 1 torrents"), "{stats}");
}

/// Debian's Chromium, or `KADMOS_CHROMIUM`; `None` (after a note) when it is absent and
/// `KADMOS_SKIP_BROWSER=1`; a panic saying how to install it otherwise.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("KADMOS_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("KADMOS_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("note: skipping the dashboard browser test: {} is missing (KADMOS_SKIP_BROWSER=1)", path.display());
        return None;
    }
    panic!(
        "{} is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does), point \
         KADMOS_CHROMIUM at a Chromium, or set KADMOS_SKIP_BROWSER=1 to skip the browser test",
        path.display()
    );
}

/// Runs headless Chromium on `url` with `args` (90 s at most, killed on the way out); returns
/// its stdout and stderr. The flags keep it off the network (this machine refuses outside
/// connections) and give it a fresh profile; the virtual time budget lets the page's fetches
/// and first redraws finish before the DOM is dumped or the screenshot taken.
fn headless_chromium(chromium: &Path, profile: &Path, url: &str, args: &[&str]) -> (String, String) {
    let child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", "--window-size=1280,1100"])
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx.recv_timeout(Duration::from_secs(90)).unwrap_or_else(|_| {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        panic!("chromium ran over 90 s")
    });
    let output = output.unwrap();
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Headless Chromium loads `/ui/` from a daemon on a testnet: the page draws every contact of
/// the daemon's routing table (one circle per contact, by ID), its scripts raise no error and
/// the console logs none, and a screenshot of it is saved (its path is printed).
#[test]
fn dashboard_draws_the_routing_table_in_a_browser() {
    let Some(chromium) = chromium() else { return };
    let (data, _net, node) = daemon_on_testnet("browser", 20);
    // Wait until the table holds the testnet, so that the page has buckets to draw.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = contacts_listed(&succeeded(&kadmos(&data, &["routing-table", "--json"])));
        if listed.len() >= 15 {
            break listed;
        }
        assert!(Instant::now() < deadline, "the daemon knows only {} contacts", listed.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = format!("http://{}/ui/", node.control);

    let profile = data.join("chromium-profile");
    let (dom, log) = headless_chromium(&chromium, &profile, &url, &["--dump-dom"]);
    assert!(dom.contains("data-loaded=\"1\""), "the page never drew its data:\n{dom}");
    assert!(!dom.contains("data-errors"), "the page's scripts raised errors:\n{dom}");
    for (id, _, _) in &listed {
        assert!(dom.contains(&format!("data-id=\"{id}\"")), "contact {id} not drawn");
    }
    assert!(dom.contains("mainline ipv4: "), "no family heading");
    // Chromium logs every console message as an `INFO:CONSOLE` line whatever its level
    // (`console.error` and uncaught exceptions included), and the page logs nothing of its own,
    // so any such line is a failure.
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");

    let screenshot = std::env::var_os("KADMOS_DASHBOARD_SCREENSHOT")
        .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"), PathBuf::from);
    let _ = std::fs::remove_file(&screenshot);
    headless_chromium(&chromium, &profile, &url, &[&format!("--screenshot={}", screenshot.display())]);
    let png = std::fs::read(&screenshot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "not a screenshot of a page: {} bytes", png.len());
    println!("dashboard screenshot: {}", screenshot.display());
}

/// `--log-format json` makes every log line on stderr one JSON object with the level, the
/// message and the event's fields; the default stays readable text.
#[test]
fn logs_as_json_lines_on_request() {
    let data = data_dir("logs");
    let stderr_of = |format: &[&str]| {
        let args: Vec<&str> = ["node", "--bind", "127.0.0.1", "--port", "0", "--no-bootstrap", "--json"]
            .iter()
            .chain(format)
            .copied()
            .collect();
        let mut child =
            kadmos_command(&data).args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let lines = support::stdout_lines(&mut child);
        let mut process = Process(child);
        wait_for(&lines, "control", |j| j["url"].as_str().map(String::from));
        succeeded(&kadmos(&data, &["stop"]));
        let mut stderr = String::new();
        process.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    };
    let json = stderr_of(&["--log-format", "json"]);
    let records: Vec<Json> = json_lines(&json);
    assert!(records.iter().any(|r| r["message"] == "node started" && r["node_id"].is_string()), "{json}");
    assert!(records.iter().all(|r| r["level"].is_string() && r["timestamp"].is_string()));
    let text = stderr_of(&[]);
    assert!(text.contains("node started") && !text.trim_start().starts_with('{'), "{text}");
}

/// `--no-control` runs a node without the control API: it runs (its status lines come, which
/// it prints only after the control API would have started) but records no daemon.json, so
/// `kadmos stop` finds no daemon.
#[test]
fn runs_without_the_control_api_on_request() {
    let data = data_dir("nocontrol");
    let (_process, lines) = spawn(
        &data,
        &[
            "node",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--no-bootstrap",
            "--json",
            "--no-control",
            "--stats-interval",
            "1",
        ],
    );
    wait_for(&lines, "stats", |j| j["routing_table_ipv4"].as_u64());
    assert!(!data.join("kadmos/daemon.json").exists());
    let stop = kadmos(&data, &["stop"]);
    assert!(!stop.status.success(), "kadmos stop found a daemon: {stop:?}");
}

/// An OpenDHT daemon answers `put`, `get` and `routing-table`: the value put through it is got
/// back through it (both visible in its request counters), its table is listed under
/// `opendht` with measured round trips, and `/metrics` counts the put and get requests it
/// sent and the replies it got by message kind.
#[test]
fn opendht_commands_use_the_daemon() {
    let data = data_dir("opendht");
    let (_net, bootstrap) = testnet(8, &data, "opendht");
    let node = daemon(&data, &["--network", "opendht", "--port", "0", "--bootstrap", &bootstrap]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while contacts_listed(&succeeded(&kadmos(&data, &["routing-table", "--json"]))).is_empty() {
        assert!(Instant::now() < deadline, "the OpenDHT daemon did not join within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let table = json_lines(&succeeded(&kadmos(&data, &["routing-table", "--json"])));
    assert_eq!(table.len(), 1);
    assert_eq!(table[0]["network"], "opendht");
    // Round trips are measured on this network too (a contact that only sent us requests, or
    // answered a retry, has none, so not necessarily every one).
    let timed = table[0]["ipv4"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["contacts"].as_array().unwrap())
        .filter(|c| c["round_trip_us"].as_u64().is_some_and(|us| us < 5_000_000))
        .count();
    assert!(timed >= 1, "no OpenDHT contact with a round trip: {}", table[0]);

    let before = scrape(&node);
    let put = json_lines(&succeeded(&kadmos(&data, &["put", "--network", "opendht", "room", "hello", "--json"])));
    assert_eq!(put[0]["type"], "put");
    let got = json_lines(&succeeded(&kadmos(&data, &["get", "--network", "opendht", "room", "--json"])));
    assert!(got.iter().any(|v| v["type"] == "value" && v["data"] == "hello"), "{got:?}");
    let served = metric(&scrape(&node), "kadmos_gateway_requests_total", &[("route", "/key/{h}"), ("status", "200")]);
    assert_eq!(served, 2.0, "the put and the get went through the daemon");
    // The OpenDHT traffic by kind follows: the put sent `put` requests, the get `get`
    // requests, and their answers came back as replies.
    let after = scrape(&node);
    for (kind, direction) in [("put", "out"), ("get", "out"), ("reply", "in")] {
        let labels = [("network", "opendht"), ("kind", kind), ("direction", direction)];
        for name in ["kadmos_opendht_datagrams_total", "kadmos_opendht_bytes_total"] {
            let (was, is) = (metric(&before, name, &labels), metric(&after, name, &labels));
            assert!(is > was, "{name} of {kind} {direction} did not move ({was} -> {is})");
        }
    }
    let other_errors = [("network", "opendht"), ("code", "0"), ("direction", "in")];
    assert!(after.iter().any(|(n, l, _)| n == "kadmos_opendht_errors_total"
        && other_errors.iter().all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))));
}

/// BEP 44 through the daemon: an immutable `put` and the `get` of its target are answered by
/// the daemon; a `put --key` is signed by the command (which holds the key) and put through
/// the daemon's gateway route, and the `get` of that mutable item is answered by the daemon.
#[test]
fn bep44_put_and_get_use_the_daemon() {
    let (data, _net, node) = daemon_on_testnet("bep44", 10);
    let served =
        |route: &str| metric(&scrape(&node), "kadmos_gateway_requests_total", &[("route", route), ("status", "200")]);

    let put = json_lines(&succeeded(&kadmos(&data, &["put", "hello daemon", "--json"])));
    assert_eq!(put[0]["type"], "put");
    assert!(!put[0]["stored_at"].as_array().unwrap().is_empty());
    let target = put[0]["target"].as_str().unwrap().to_string();
    assert_eq!(served("/daemon/mainline/immutable"), 1.0);
    let got = json_lines(&succeeded(&kadmos(&data, &["get", &target, "--json"])));
    assert_eq!((got[0]["type"].as_str(), got[0]["value"].as_str()), (Some("item"), Some("hello daemon")));
    assert_eq!(served("/daemon/mainline/immutable/{target}"), 1.0);

    let key = data.join("item.key");
    let keygen = json_lines(&succeeded(&kadmos(&data, &["keygen", "--out", key.to_str().unwrap(), "--json"])));
    let public_key = keygen[0]["public_key"].as_str().unwrap().to_string();
    succeeded(&kadmos(&data, &["put", "--key", key.to_str().unwrap(), "--salt", "s", "v1", "--json"]));
    let signed = [("route", "/mainline/mutable/{public_key}"), ("status", "204")];
    let signed_puts = metric(&scrape(&node), "kadmos_gateway_requests_total", &signed);
    assert_eq!(signed_puts, 1.0, "the signed put went through the daemon");
    let got = json_lines(&succeeded(&kadmos(&data, &["get", "--public-key", &public_key, "--salt", "s", "--json"])));
    assert_eq!((got[0]["value"].as_str(), got[0]["seq"].as_i64()), (Some("v1"), Some(1)));
    assert_eq!(served("/daemon/mainline/mutable/{public_key}"), 1.0);
}

/// `advertise` and `watch` run as quests of the daemon for as long as the commands run: the
/// watch (through the daemon) finds the peer the advertisement (through the daemon) announces,
/// and once the advertising command is gone, the daemon stops advertising.
#[test]
fn quests_run_in_the_daemon_while_their_commands_run() {
    let (data, _net, node) = daemon_on_testnet("quests", 10);
    let hash = "ef".repeat(20);
    let (advertiser, rounds) = spawn(&data, &["advertise", &hash, "--port", "7100", "--json"]);
    let first = wait_for(&rounds, "advertised", |j| (j["type"] == "advertised").then(|| j.clone()));
    assert_eq!((first["port"].as_u64(), first["implied_port"].as_bool()), (Some(7100), Some(false)));
    assert!(first["stored_at"].as_u64().unwrap() >= 1, "{first}");
    let served =
        |route: &str| metric(&scrape(&node), "kadmos_gateway_requests_total", &[("route", route), ("status", "200")]);
    assert_eq!(served("/daemon/mainline/advertise/{infohash}"), 1.0);

    let (_watcher, events) = spawn(&data, &["watch", &hash, "--json"]);
    let found = wait_for(&events, "peer", |j| (j["type"] == "peer").then(|| j.clone()));
    assert_eq!(found["peer"], "127.0.0.1:7100");
    assert!(found["from"]["id"].is_string());
    assert_eq!(served("/daemon/mainline/watch/{infohash}"), 1.0);

    let stats: Json = serde_json::from_str(&http_get(node.control, "/daemon/stats")).unwrap();
    assert_eq!(stats["advertisements"][0]["info_hash"], hash.as_str(), "{stats}");
    drop(advertiser);
    // The daemon notices the closed connection at the stream's next heartbeat (15 s).
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let stats: Json = serde_json::from_str(&http_get(node.control, "/daemon/stats")).unwrap();
        if stats["advertisements"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still advertising 45 s after the command ended: {stats}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A daemon keeps its `--watch` across a restart: the watch is saved with the peer it has
/// reported; the restarted daemon (given no `--watch`) resumes it, reports a peer that started
/// advertising while it was down, and never reports again the peer it reported before its
/// restart; `kadmos watch` through the daemon attaches to that watch and hears of both;
/// `kadmos unwatch` stops it, and it is no longer saved.
#[test]
fn a_restarted_daemon_resumes_its_watches() {
    let data = data_dir("watch-resume");
    let (_net, bootstrap) = testnet(10, &data, "mainline");
    let hash = "ab".repeat(20);
    let announce = |port: &str| {
        let args = ["announce", &hash, "--port", port, "--bootstrap", &bootstrap, "--json"];
        succeeded(&kadmos(&data, &args));
    };
    // Every peer line left, once the process has ended (its stdout then closes).
    let peer_lines = |lines: &Receiver<String>| -> Vec<String> {
        std::iter::from_fn(|| lines.recv_timeout(Duration::from_secs(10)).ok())
            .filter_map(|l| serde_json::from_str::<Json>(&l).ok())
            .filter(|j| j["type"] == "peer")
            .map(|j| j["peer"].as_str().unwrap().to_string())
            .collect()
    };
    let node_args = ["node", "--bind", "127.0.0.1", "--json", "--port", "0", "--bootstrap", &bootstrap];
    let saved_peers = || -> Vec<String> {
        let state: Json =
            serde_json::from_str(&std::fs::read_to_string(data.join("kadmos/state.json")).unwrap()).unwrap();
        let watches = state["watches"].as_array().unwrap();
        assert_eq!(watches.len(), 1, "{state}");
        assert_eq!(watches[0]["info_hash"], hash.as_str());
        let mut peers: Vec<String> =
            watches[0]["peers"].as_array().unwrap().iter().map(|p| p["addr"].as_str().unwrap().to_string()).collect();
        peers.sort();
        peers
    };

    announce("7201");
    let args: Vec<&str> = node_args.iter().copied().chain(["--watch", hash.as_str()]).collect();
    let (mut first, lines) = spawn(&data, &args);
    let found = wait_for(&lines, "peer", |j| (j["type"] == "peer").then(|| j["peer"].as_str().unwrap().to_string()));
    assert_eq!(found, "127.0.0.1:7201");
    succeeded(&kadmos(&data, &["stop"]));
    assert!(first.0.wait().unwrap().success());
    assert_eq!(saved_peers(), ["127.0.0.1:7201"]);

    // While the daemon is down, another peer starts advertising.
    announce("7202");
    let (mut second, lines) = spawn(&data, &node_args);
    let control: SocketAddr = wait_for(&lines, "control", |j| j["url"].as_str()?.strip_prefix("http://")?.parse().ok());
    // The peers a search returns are reported in one go, and the nodes that store 7202 store
    // 7201 too: had the resumed watch forgotten 7201, it would be reported with 7202.
    let found = wait_for(&lines, "peer", |j| (j["type"] == "peer").then(|| j["peer"].as_str().unwrap().to_string()));
    assert_eq!(found, "127.0.0.1:7202", "the resumed watch reported {found} first");

    // A client attaching through the daemon hears of both peers the watch knows.
    let (watcher, events) = spawn(&data, &["watch", &hash, "--json"]);
    let mut heard = vec![
        wait_for(&events, "peer", |j| (j["type"] == "peer").then(|| j["peer"].as_str().unwrap().to_string())),
        wait_for(&events, "peer", |j| (j["type"] == "peer").then(|| j["peer"].as_str().unwrap().to_string())),
    ];
    heard.sort();
    assert_eq!(heard, ["127.0.0.1:7201", "127.0.0.1:7202"]);
    drop(watcher);
    let stats: Json = serde_json::from_str(&http_get(control, "/daemon/stats")).unwrap();
    assert_eq!(stats["watches"][0]["kept"], true, "{stats}");
    assert_eq!(stats["watches"][0]["peers"], 2, "{stats}");
    let kept = metric(&parse_exposition(&http_get(control, "/metrics")), "kadmos_quest_watches", &[("kept", "true")]);
    assert_eq!(kept, 1.0);

    succeeded(&kadmos(&data, &["stop"]));
    assert!(second.0.wait().unwrap().success());
    let later = peer_lines(&lines);
    assert!(!later.contains(&"127.0.0.1:7201".to_string()), "reported again after the restart: {later:?}");
    assert_eq!(saved_peers(), ["127.0.0.1:7201", "127.0.0.1:7202"]);

    // `kadmos unwatch` stops the kept watch: the next saved state has none.
    let (mut third, lines) = spawn(&data, &node_args);
    wait_for(&lines, "control", |j| j["url"].as_str().map(String::from));
    let unwatched = json_lines(&succeeded(&kadmos(&data, &["unwatch", &hash, "--json"])));
    assert_eq!((&unwatched[0]["type"], &unwatched[0]["stopped"]), (&Json::from("unwatched"), &Json::from(true)));
    succeeded(&kadmos(&data, &["stop"]));
    assert!(third.0.wait().unwrap().success());
    let state: Json = serde_json::from_str(&std::fs::read_to_string(data.join("kadmos/state.json")).unwrap()).unwrap();
    assert_eq!(state["watches"], serde_json::json!([]), "{state}");
}
