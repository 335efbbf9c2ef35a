//! The `kadmos` binary on the OpenDHT network, end to end on loopback: a
//! `kadmos testnet --network opendht` process, a `kadmos listen` and a `kadmos node` process
//! beside it, and one-shot `put` and `get` commands, with `--json` output and exit statuses.
//! Every process is killed when the test ends, however it ends.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value as Json;

mod support;

use support::Process;

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-shot command against the network bootstrapped from `bootstrap`, at most 60 s.
fn kadmos(args: &[&str], bootstrap: &str, data: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kadmos"));
    command.args(args).args(["--network", "opendht", "--bootstrap", bootstrap, "--bind", "127.0.0.1", "--json"]);
    command.env("XDG_DATA_HOME", data);
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("kadmos {args:?} did not finish within 60 s");
        }
    }
}

fn json_lines(output: &Output) -> Vec<Json> {
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

fn sorted_data(lines: &[Json]) -> Vec<String> {
    let mut data: Vec<String> = lines.iter().map(|l| l["data"].as_str().unwrap().to_string()).collect();
    data.sort();
    data
}

/// `testnet`, `listen`, `put`, `get` and `node` with `--network opendht`: keys given as text are
/// hashed like OpenDHT's InfoHash::get and 40 hex digits work too; several values live under
/// one key; a listen process prints values put by other processes as they come; `--type`
/// sets the lifetime; a node process serves the network, and on SIGTERM saves an OpenDHT
/// state file and exits 0; mistakes give a non-zero status and one `error:` line.
#[test]
fn opendht_commands_against_a_testnet() {
    let data = TempDir(std::env::temp_dir().join(format!("kadmos-opendht-cli-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&data.0);
    std::fs::create_dir_all(&data.0).unwrap();

    let testnet = Process::start(&["testnet", "--network", "opendht", "--nodes", "8", "--json"], &data.0);
    let started = testnet.next_json(Duration::from_secs(30));
    assert_eq!((started["type"].as_str(), started["network"].as_str()), (Some("testnet"), Some("opendht")));
    let bootstrap = started["bootstrap"].as_str().unwrap().to_string();

    let mut listen = Process::start(
        &["listen", "room", "--network", "opendht", "--bootstrap", &bootstrap, "--bind", "127.0.0.1", "--json"],
        &data.0,
    );
    let key = "27a5a05c01ee6e7b614f4055d6908eaee91d9c95"; // SHA-1 of "room"
    assert_eq!(listen.next_json(Duration::from_secs(30)), serde_json::json!({ "type": "listen", "key": key }));

    let out = kadmos(&["put", "room", "hello"], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let put = &json_lines(&out)[0];
    assert_eq!((put["type"].as_str(), put["key"].as_str()), (Some("put"), Some(key)));
    assert_eq!((put["value_type"].as_u64(), put["lifetime_secs"].as_u64()), (Some(0), Some(600)));
    assert!(!put["stored_at"].as_array().unwrap().is_empty(), "{put}");
    let hello_id = put["value_id"].as_str().unwrap().to_string();
    let out = kadmos(&["put", "room", "world", "--type", "5"], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["lifetime_secs"], 60);

    let out = kadmos(&["get", "room"], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let values = json_lines(&out);
    assert_eq!(sorted_data(&values), ["hello", "world"]);
    let hello = values.iter().find(|v| v["data"] == "hello").unwrap();
    assert_eq!((hello["type"].as_str(), hello["key"].as_str()), (Some("value"), Some(key)));
    assert_eq!((hello["id"].as_str(), hello["data_hex"].as_str()), (Some(hello_id.as_str()), Some("68656c6c6f")));
    assert_eq!((hello["value_type"].as_u64(), hello["expired"].as_bool()), (Some(0), Some(false)));
    let out = kadmos(&["get", key], &bootstrap, &data.0);
    assert_eq!(sorted_data(&json_lines(&out)), ["hello", "world"], "a key given as 40 hex digits");

    let heard = [listen.next_json(Duration::from_secs(10)), listen.next_json(Duration::from_secs(10))];
    assert_eq!(sorted_data(&heard), ["hello", "world"]);
    assert!(heard.iter().all(|v| v["type"] == "value" && v["expired"] == false && v["key"] == key), "{heard:?}");

    // A node process joins the testnet; a get bootstrapped from it alone finds the values.
    let mut node = Process::start(
        &[
            "node",
            "--network",
            "opendht",
            "--port",
            "0",
            "--bind",
            "127.0.0.1",
            "--bootstrap",
            &bootstrap,
            "--json",
            "--stats-interval",
            "1",
        ],
        &data.0,
    );
    let listening = node.next_json(Duration::from_secs(30));
    assert_eq!((listening["type"].as_str(), listening["network"].as_str()), (Some("listening"), Some("opendht")));
    let node_addr = listening["addr"].as_str().unwrap().to_string();
    // Wait until it has joined: a stats line showing contacts in its routing table.
    loop {
        let line = node.next_json(Duration::from_secs(30));
        if line["type"] == "stats" && line["routing_table_ipv4"].as_u64() > Some(0) {
            break;
        }
    }
    let out = kadmos(&["get", "room"], &node_addr, &data.0);
    assert_eq!(sorted_data(&json_lines(&out)), ["hello", "world"], "through the node process");

    let out = kadmos(&["put", "room"], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() == 1 && stderr.starts_with("error: ") && stderr.contains("KEY VALUE"), "{stderr}");
    let out = kadmos(&["get", "nobody put anything here"], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = Command::new(env!("CARGO_BIN_EXE_kadmos")).args(["listen", "room", "--no-bootstrap"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--network opendht"));

    #[cfg(unix)]
    {
        assert!(listen.terminate().success(), "listen exits 0 on SIGTERM");
        assert!(node.terminate().success(), "node exits 0 on SIGTERM");
        let stopped = node.next_json(Duration::from_secs(5));
        assert_eq!(stopped["type"], "stopped");
        let saved = data.0.join("kadmos/state-opendht.json");
        assert_eq!(stopped["state"].as_str(), saved.to_str());
        let saved: Json = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
        assert_eq!(saved["network"], "opendht");
        assert!(!saved["contacts"].as_array().unwrap().is_empty(), "{saved}");
    }
    drop(testnet);
}

/// A `kadmos keygen --network opendht` key pair, read back from its `--json` line.
fn keygen(name: &str, data: &std::path::Path) -> (std::path::PathBuf, String) {
    let file = data.join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_kadmos"))
        .args(["keygen", "--network", "opendht", "--bits", "2048", "--json", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = &json_lines(&out)[0];
    assert_eq!(line["public_file"].as_str().map(std::path::PathBuf::from), Some(data.join(format!("{name}.pub"))));
    (file, line["key_id"].as_str().unwrap().to_string())
}

/// Signed and encrypted values through the CLI: `keygen --network opendht` writes a private key
/// only its owner can read and a public key beside it; `put --sign` stores a value that `get`
/// shows as signed by that key id and verified; a second `put --sign --value-id` replaces it
/// with the next seq, while the same id signed by another key is refused and changes nothing;
/// `put --encrypt-to` stores a value that a `listen --decrypt-with` of the recipient opens
/// (learning the sender) and that stays sealed to everyone else; key mistakes fail clearly.
#[test]
fn signed_and_encrypted_values_from_the_command_line() {
    let data = TempDir(std::env::temp_dir().join(format!("kadmos-opendht-cli-crypto-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&data.0);
    std::fs::create_dir_all(&data.0).unwrap();
    let (alice, alice_id) = keygen("alice.key", &data.0);
    let (bob, bob_id) = keygen("bob.key", &data.0);
    assert_ne!(alice_id, bob_id);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&alice).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let (alice, bob) = (alice.to_str().unwrap().to_string(), bob.to_str().unwrap().to_string());
    let bob_pub = format!("{bob}.pub");

    let testnet = Process::start(&["testnet", "--network", "opendht", "--nodes", "6", "--json"], &data.0);
    let bootstrap = testnet.next_json(Duration::from_secs(30))["bootstrap"].as_str().unwrap().to_string();
    let listen = Process::start(
        &[
            "listen",
            "inbox",
            "--decrypt-with",
            &bob,
            "--network",
            "opendht",
            "--bootstrap",
            &bootstrap,
            "--bind",
            "127.0.0.1",
            "--json",
        ],
        &data.0,
    );
    assert_eq!(listen.next_json(Duration::from_secs(30))["type"], "listen");

    // A signed value, then its edit.
    let out = kadmos(&["put", "board", "v1", "--sign", &alice, "--value-id", "2a"], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let put = &json_lines(&out)[0];
    assert_eq!((put["value_id"].as_str(), put["owner"].as_str()), (Some("2a"), Some(alice_id.as_str())));
    let out = kadmos(&["put", "board", "v2", "--sign", &alice, "--value-id", "2a"], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kadmos(&["put", "board", "forged", "--sign", &bob, "--value-id", "2a"], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(1), "another owner cannot replace the value");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&alice_id) && stderr.contains("only its owner"), "{stderr}");
    let out = kadmos(&["get", "board"], &bootstrap, &data.0);
    let values = json_lines(&out);
    assert_eq!(values.len(), 1, "{values:?}");
    let board = &values[0];
    assert_eq!((board["data"].as_str(), board["seq"].as_u64()), (Some("v2"), Some(1)));
    assert_eq!((board["owner"].as_str(), board["signed"].as_bool()), (Some(alice_id.as_str()), Some(true)));
    assert_eq!((board["verified"].as_bool(), board["encrypted"].as_bool()), (Some(true), Some(false)));

    // An encrypted value: the recipient's listen opens it; others see only that it is sealed.
    let out =
        kadmos(&["put", "inbox", "for bob only", "--sign", &alice, "--encrypt-to", &bob_pub], &bootstrap, &data.0);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["recipient"].as_str(), Some(bob_id.as_str()));
    let heard = listen.next_json(Duration::from_secs(10));
    assert_eq!((heard["data"].as_str(), heard["decrypted"].as_bool()), (Some("for bob only"), Some(true)));
    assert_eq!((heard["owner"].as_str(), heard["verified"].as_bool()), (Some(alice_id.as_str()), Some(true)));
    for args in [vec!["get", "inbox"], vec!["get", "inbox", "--decrypt-with", &alice]] {
        let out = kadmos(&args, &bootstrap, &data.0);
        let sealed = &json_lines(&out)[0];
        assert_eq!(
            (sealed["encrypted"].as_bool(), sealed["decrypted"].as_bool()),
            (Some(true), Some(false)),
            "{args:?}"
        );
        assert!(sealed["data"].is_null() && sealed["owner"].is_null(), "{sealed}");
    }

    // Mistakes: no sender key, a missing key file, a public key given to sign with.
    let out = kadmos(&["put", "inbox", "x", "--encrypt-to", &bob_pub], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sign"));
    let missing = data.0.join("missing.key");
    let out = kadmos(&["put", "board", "x", "--sign", missing.to_str().unwrap()], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.key"));
    let out = kadmos(&["put", "board", "x", "--sign", &bob_pub], &bootstrap, &data.0);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"), "{}", String::from_utf8_lossy(&out.stderr));
    drop(listen);
    drop(testnet);
}
