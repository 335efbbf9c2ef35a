//! Pieces the end-to-end tests of the `kadmos` binary share: a long-running process and its
//! stdout line by line, and its memory from /proc. (Not every test file uses every piece.)
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The child's stdout, line by line, read by a thread of its own so that a test can wait for a
/// line with a time limit. The child must have been spawned with a piped stdout.
pub fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A `Vm…:` figure of /proc/PID/status in KiB (0 where there is no /proc).
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A long-running `kadmos` process and its stdout, line by line.
pub struct Process {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn start(args: &[&str], data: &std::path::Path) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kadmos"))
            .args(args)
            .env("XDG_DATA_HOME", data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = stdout_lines(&mut child);
        Process { child, lines }
    }

    /// The next JSON line, within `limit`.
    pub fn next_json(&self, limit: Duration) -> serde_json::Value {
        let line = self.lines.recv_timeout(limit).expect("a line within the time limit");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    /// The next JSON line for which `wanted` holds, within 60 s (other lines are skipped).
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within 60 s"));
            let value: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            if wanted(&value) {
                return value;
            }
        }
    }

    /// Asks the process to stop as Ctrl-C would (SIGTERM) and waits at most 10 s for its exit.
    #[cfg(unix)]
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the process did not stop within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
