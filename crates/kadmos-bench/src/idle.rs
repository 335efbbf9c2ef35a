//! `kadmos-bench idle`: the memory of an idle joined node, next to the pubky `mainline`
//! crate's node measured in the same run.
//!
//! One 30-node testnet (`kadmos testnet`, another process, run from a copy of the first
//! binary); then, one at a time, each node under test joins it, sits idle for `--idle-secs`, and its memory is read from
//! `/proc/PID/smaps_rollup` and `/proc/PID/smaps`: RSS (what the target is stated in: every
//! page mapped into the process, including clean pages of the executable and of shared
//! libraries, which the kernel may drop and other processes share), PSS (shared pages split
//! between the processes that map them), private pages, anonymous memory (heap, stacks),
//! threads, and RSS by mapped file. The nodes under test: each `--kadmos` binary (a
//! `kadmos node`, as an operator runs it), each also with `--no-control` (no control API),
//! and `interop/mainline_node` (the `mainline` crate 8.0.1 in server mode; build it with
//! `cargo build --release --manifest-path interop/mainline_node/Cargo.toml`) as the anchor.
//!
//! Figures only; nothing is asserted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use clap::Args;

use crate::hardening::{start, start_node, wait_joined};
use crate::procs::{self, TempDir};

/// The issue's target: 3 MB resident.
const TARGET_KIB: u64 = 3_000_000 / 1024;

#[derive(Args, Clone)]
pub struct IdleArgs {
    /// A kadmos binary to measure (repeatable; default: `kadmos` next to this executable).
    /// The first one also runs the testnet.
    #[arg(long, value_name = "PATH")]
    kadmos: Vec<PathBuf>,
    /// The `mainline` crate's node (default: interop/mainline_node/target/release/mainline-node
    /// under the current directory, skipped when absent).
    #[arg(long, value_name = "PATH")]
    mainline_node: Option<PathBuf>,
    /// Seconds each node sits idle after joining before it is measured.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    idle_secs: u64,
}

/// What one process has resident, in KiB.
struct Memory {
    rss: u64,
    pss: u64,
    private: u64,
    anonymous: u64,
    threads: u64,
    /// Mappings in `/proc/PID/maps`: each costs the kernel memory that RSS does not count
    /// (about 200 bytes), and a kadmos node cuts its read-only file mappings into pages.
    mappings: u64,
    /// RSS by mapped file (file name only) or kind of anonymous mapping.
    by_mapping: Vec<(String, u64)>,
}

pub fn run(args: &IdleArgs) -> Result<(), String> {
    let mut binaries = args.kadmos.clone();
    if binaries.is_empty() {
        binaries.push(std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("kadmos"));
    }
    for binary in &binaries {
        if !binary.is_file() {
            return Err(format!("no kadmos binary at {} (cargo build --release -p kadmos-cli)", binary.display()));
        }
    }
    let anchor = args
        .mainline_node
        .clone()
        .or_else(|| Some(PathBuf::from("interop/mainline_node/target/release/mainline-node")).filter(|p| p.is_file()));
    let dir = TempDir::new("kadmos-idle").map_err(|e| e.to_string())?;
    // The testnet runs from a copy: 30 nodes mapping the same file as the node under test
    // would keep its pages in memory for them (a node on the real network shares its
    // executable with nobody).
    let testnet_binary = dir.path().join("kadmos-testnet");
    std::fs::copy(&binaries[0], &testnet_binary).map_err(|e| format!("copying {}: {e}", binaries[0].display()))?;
    // A freshly linked executable's pages are dirty in the page cache until written back, and
    // dirty pages are not paged out: flush them first, as they would be on an installed binary.
    for binary in &binaries {
        std::fs::File::open(binary).and_then(|f| f.sync_all()).map_err(|e| format!("{}: {e}", binary.display()))?;
    }
    let (mut testnet, testnet_addr) = start(&testnet_binary, "testnet", &["testnet", "--nodes", "30"], &[])?;
    let bootstrap = testnet_addr.to_string();
    let idle = Duration::from_secs(args.idle_secs);

    let mut rows = Vec::new();
    for (i, binary) in binaries.iter().enumerate() {
        // Older builds, measured for comparison, may not have --no-control.
        let help = Command::new(binary).args(["node", "--help"]).output().map_err(|e| e.to_string())?;
        let variants: &[bool] =
            if String::from_utf8_lossy(&help.stdout).contains("--no-control") { &[true, false] } else { &[true] };
        for &control in variants {
            let name = format!("node{i}{}", if control { "" } else { "-nocontrol" });
            let mut extra = vec!["--bootstrap", bootstrap.as_str()];
            if !control {
                extra.push("--no-control");
            }
            let what = format!("{}{}", binary.display(), if control { "" } else { " --no-control" });
            eprintln!("measuring {what}");
            let (mut node, addr) = start_node(binary, dir.path(), &name, &extra)?;
            wait_joined(addr).map_err(|e| format!("{what}: {e}"))?;
            std::thread::sleep(idle);
            let memory = memory(node.pid()).map_err(|e| format!("reading {name}'s memory: {e}"))?;
            node.stop(Duration::from_secs(5));
            rows.push((what, memory));
        }
    }
    if let Some(anchor) = &anchor {
        eprintln!("measuring {}", anchor.display());
        let mut node = MainlineNode::start(anchor, testnet_addr)?;
        node.wait_joined().map_err(|e| format!("{}: {e}", anchor.display()))?;
        std::thread::sleep(idle);
        let memory = memory(node.child.id()).map_err(|e| format!("reading the mainline node's memory: {e}"))?;
        rows.push((format!("{} (the mainline crate)", anchor.display()), memory));
        node.stop();
    } else {
        println!("(no mainline-node binary: the anchor is not measured)");
    }
    testnet.stop(Duration::from_secs(5));

    println!(
        "Idle nodes joined to a 30-node testnet, {} s after joining (KiB; target RSS ≤ 3 MB = {TARGET_KIB} KiB):",
        args.idle_secs
    );
    println!("{:>7} {:>7} {:>7} {:>7} {:>7} {:>8}  node", "RSS", "PSS", "private", "anon", "threads", "mappings");
    for (what, m) in &rows {
        println!(
            "{:>7} {:>7} {:>7} {:>7} {:>7} {:>8}  {what}",
            m.rss, m.pss, m.private, m.anonymous, m.threads, m.mappings
        );
        let top: Vec<String> = m.by_mapping.iter().take(6).map(|(name, kib)| format!("{name} {kib}")).collect();
        println!("{:>48}  by mapping: {}", "", top.join(", "));
    }
    Ok(())
}

fn memory(pid: u32) -> std::io::Result<Memory> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| -> u64 {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut by_mapping: BTreeMap<String, u64> = BTreeMap::new();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut current = String::new();
    let mut mappings = 0;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            mappings += 1;
            // A mapping's header: range, perms, offset, dev, inode, then the path if any.
            let path = words.nth(4).unwrap_or("[anonymous]");
            current = Path::new(path).file_name().map_or(path.to_string(), |n| n.to_string_lossy().into_owned());
        } else if first == "Rss:" {
            *by_mapping.entry(current.clone()).or_default() += words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let mut by_mapping: Vec<(String, u64)> = by_mapping.into_iter().filter(|(_, kib)| *kib > 0).collect();
    by_mapping.sort_by_key(|(_, kib)| std::cmp::Reverse(*kib));
    Ok(Memory {
        rss: field("Rss:"),
        pss: field("Pss:"),
        private: field("Private_Clean:") + field("Private_Dirty:"),
        anonymous: field("Anonymous:"),
        threads: procs::thread_count(pid).unwrap_or(0),
        mappings,
        by_mapping,
    })
}

/// The `mainline` crate's driver: JSON lines on stdin/stdout; it runs while its stdin is open.
struct MainlineNode {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl MainlineNode {
    fn start(binary: &Path, bootstrap: SocketAddr) -> Result<MainlineNode, String> {
        let mut child = Command::new(binary)
            .args(["--bootstrap", &bootstrap.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut node = MainlineNode { child, stdout };
        // Its first line: {"event":"ready","port":N,...}.
        let ready = node.read_line()?;
        if ready["event"] != "ready" {
            return Err(format!("{} printed no ready line (got {ready})", binary.display()));
        }
        Ok(node)
    }

    fn read_line(&mut self) -> Result<serde_json::Value, String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        serde_json::from_str(&line).map_err(|e| format!("{e} in {line:?}"))
    }

    /// Waits until its routing table holds k = 8 nodes, as `wait_joined` does for kadmos.
    fn wait_joined(&mut self) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, r#"{{"id":1,"cmd":"wait_nodes","min":8,"timeout":60}}"#).map_err(|e| e.to_string())?;
        let reply = self.read_line()?;
        if reply["ok"] == true {
            Ok(())
        } else {
            Err(format!("not joined: {reply}"))
        }
    }

    fn stop(&mut self) {
        // Closing its stdin ends it; kill it if it does not.
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MainlineNode {
    fn drop(&mut self) {
        self.stop();
    }
}
