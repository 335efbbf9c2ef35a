//! The `kadmos` binary end to end: a `kadmos testnet` process, and one-shot commands against
//! it with `--json` output and exit statuses.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::Process;

struct Testnet {
    child: Child,
    bootstrap: String,
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn testnet(nodes: usize) -> Testnet {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kadmos"))
        .args(["testnet", "--nodes", &nodes.to_string(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).expect("testnet prints one JSON line");
    let bootstrap = json["bootstrap"].as_str().unwrap().to_string();
    Testnet { child, bootstrap }
}

fn kadmos(args: &[&str], net: &Testnet, data: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kadmos"));
    command.args(args).args(["--bootstrap", &net.bootstrap, "--bind", "127.0.0.1", "--json"]);
    command.env("XDG_DATA_HOME", data);
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("command finished within 60 s").unwrap()
}

/// A long-running `kadmos` command against the testnet.
fn spawn_kadmos(args: &[&str], net: &Testnet, data: &std::path::Path) -> Process {
    let mut args = args.to_vec();
    args.extend(["--bootstrap", &net.bootstrap, "--bind", "127.0.0.1", "--json"]);
    Process::start(&args, data)
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// announce, peers, find-node, put, get and keygen work through the binary: JSON lines with
/// stable fields, exit status 0, and failures give a non-zero status with one `error:` line.
#[test]
fn one_shot_commands_against_a_testnet() {
    let net = testnet(10);
    let data = std::env::temp_dir().join(format!("kadmos-cli-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let hash = "0123456789abcdef0123456789abcdef01234567";

    let out = kadmos(&["announce", hash, "--port", "7777"], &net, &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let announced = &json_lines(&out)[0];
    assert_eq!(announced["type"], "announced");
    assert_eq!(announced["port"], 7777);

    let out = kadmos(&["peers", hash], &net, &data);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert!(lines.iter().any(|l| l["type"] == "peer" && l["peer"] == "127.0.0.1:7777"), "{lines:?}");
    assert_eq!(lines.last().unwrap()["type"], "done");

    let out = kadmos(&["find-node", hash], &net, &data);
    assert!(out.status.success());
    assert_eq!(json_lines(&out).len(), 8);

    let out = kadmos(&["put", "Hello World!"], &net, &data);
    assert!(out.status.success());
    assert_eq!(json_lines(&out)[0]["target"], "e5f96f6f38320f0f33959cb4d3d656452117aadb");
    let out = kadmos(&["get", "e5f96f6f38320f0f33959cb4d3d656452117aadb"], &net, &data);
    assert_eq!(json_lines(&out)[0]["value"], "Hello World!");

    let out = Command::new(env!("CARGO_BIN_EXE_kadmos"))
        .args(["keygen", "--json"])
        .env("XDG_DATA_HOME", &data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public_key = json_lines(&out)[0]["public_key"].as_str().unwrap().to_string();
    let key_file = data.join("kadmos/ed25519.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key = key_file.to_str().unwrap();
    let out = kadmos(&["put", "first", "--key", key, "--salt", "s"], &net, &data);
    assert_eq!(json_lines(&out)[0]["seq"], 1);
    let out = kadmos(&["put", "second", "--key", key, "--salt", "s"], &net, &data);
    assert_eq!(json_lines(&out)[0]["seq"], 2);
    let out = kadmos(&["get", "--public-key", &public_key, "--salt", "s"], &net, &data);
    let item = &json_lines(&out)[0];
    assert_eq!((item["value"].as_str(), item["seq"].as_i64()), (Some("second"), Some(2)));

    let out = kadmos(&["put", "stale", "--key", key, "--salt", "s", "--seq", "1"], &net, &data);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: ") && stderr.contains("302"), "{stderr}");

    let out = kadmos(&["get", "ffffffffffffffffffffffffffffffffffffffff"], &net, &data);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = kadmos(&["peers", "not-a-hash"], &net, &data);
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&data);
}

/// `kadmos watch` prints the peer that `kadmos advertise` advertises (a `peer` line, not
/// flagged as advertised by the watcher), `advertise` prints a round per interval, each
/// stored by nodes; `kadmos node --advertise HASH:PORT` advertises (a one-shot `peers` finds
/// it) and, stopped with SIGTERM, saves the advertisement in its state file; bad values exit
/// non-zero with one `error:` line.
#[test]
fn advertise_watch_and_node_advertise_against_a_testnet() {
    let net = testnet(10);
    let data = std::env::temp_dir().join(format!("kadmos-cli-quests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let hash = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";

    let watch = spawn_kadmos(&["watch", hash, "--interval", "1"], &net, &data);
    let advertise = spawn_kadmos(&["advertise", hash, "--port", "7788", "--interval", "2"], &net, &data);
    for _ in 0..2 {
        let round = advertise.wait_for("an advertised round", |l| l["type"] == "advertised");
        assert!(round["stored_at"].as_u64().unwrap() > 0, "{round}");
        assert_eq!((round["port"].as_u64(), round["implied_port"].as_bool()), (Some(7788), Some(false)));
    }
    let found = watch.wait_for("the advertiser", |l| l["type"] == "peer" && l["peer"] == "127.0.0.1:7788");
    assert_eq!(found["advertised"], false);
    assert_eq!(found["info_hash"], hash);

    let served = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1";
    let state = data.join("node-state.json");
    let advertised = format!("{served}:7799");
    let state_arg = state.to_str().unwrap();
    let mut node = spawn_kadmos(&["node", "--advertise", &advertised, "--state", state_arg], &net, &data);
    node.wait_for("the node's first round", |l| l["type"] == "advertised" && l["stored_at"].as_u64() > Some(0));
    let out = kadmos(&["peers", served], &net, &data);
    assert!(json_lines(&out).iter().any(|l| l["type"] == "peer" && l["peer"] == "127.0.0.1:7799"));
    assert!(node.terminate().success());
    let stopped = node.wait_for("the node to stop", |l| l["type"] == "stopped");
    assert_eq!(stopped["advertisements"], 1);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["advertisements"], serde_json::json!([{ "info_hash": served, "port": 7799 }]));

    let out = kadmos(&["node", "--advertise", &format!("{served}:0")], &net, &data);
    assert_eq!(out.status.code(), Some(2));
    let out = kadmos(&["advertise", served, "--interval", "0"], &net, &data);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    let _ = std::fs::remove_dir_all(&data);
}
