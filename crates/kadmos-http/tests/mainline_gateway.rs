//! The gateway's Mainline routes (peers, announce, BEP 44 items) and the pkarr relay API,
//! against a Mainline testnet on loopback.

mod support;

use std::time::Duration;

use kadmos::{ItemSigner, MutableItem, Testnet};
use kadmos_http::{relay_payload, zbase32, Gateway, GatewayConfig, RunningGateway};
use support::*;

/// A Mainline testnet of `n` nodes with gateways on the first two.
async fn mainline_net(n: usize) -> (Testnet, Vec<RunningGateway>) {
    let testnet = Testnet::new(n).await.expect("testnet");
    let mut gateways = Vec::new();
    for node in testnet.nodes.iter().take(2) {
        let gateway = Gateway::new(None, Some(node.clone()), GatewayConfig::default());
        gateways.push(gateway.bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
    }
    (testnet, gateways)
}

const INFO_HASH: &str = "e5f96f6f38320f0f33959cb4d3d656452117aadb";

/// An announce through one gateway is found by a peers lookup through another, streamed as
/// NDJSON (`{"peer", "from"}`) or as SSE `peer` events; bad infohashes and ports are 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announce_then_peers_as_ndjson_and_sse() {
    let (_net, gw) = mainline_net(6).await;
    let (status, answer) =
        call_json(gw[0].local_addr, "POST", &format!("/mainline/announce/{INFO_HASH}"), r#"{"port":4242}"#).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["stored"].as_u64().unwrap() >= 1, "{answer}");

    let (status, text) = call(gw[1].local_addr, "GET", &format!("/mainline/peers/{INFO_HASH}"), "").await;
    assert_eq!(status, 200);
    let peers = json_lines(&text);
    assert!(peers.iter().any(|p| p["peer"] == "127.0.0.1:4242"), "{text}");
    let sse = request(
        gw[1].local_addr,
        "GET",
        &format!("/mainline/peers/{INFO_HASH}"),
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    let text = sse.text().await.unwrap();
    assert!(text.contains("event: peer\ndata: {") && text.contains("127.0.0.1:4242"), "{text}");

    assert_eq!(call(gw[0].local_addr, "GET", "/mainline/peers/nothex", "").await.0, 400);
    let (status, _) = call(gw[0].local_addr, "POST", &format!("/mainline/announce/{INFO_HASH}"), r#"{"port":0}"#).await;
    assert_eq!(status, 400);
}

/// An immutable item POSTed through one gateway (plain bytes are stored as a byte string) is
/// read back through another as its bencoded value; an unknown target is 404, a value over
/// BEP 44's 1000 bytes is 413, bad bencode (declared as such) 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_items() {
    let (_net, gw) = mainline_net(6).await;
    let (status, stored) = call_json(gw[0].local_addr, "POST", "/mainline/immutable", "hello").await;
    assert_eq!(status, 200, "{stored}");
    let target = stored["target"].as_str().unwrap().to_string();
    assert_eq!(target, kadmos::Id::sha1_of(b"5:hello").to_string());
    let (status, value) = call(gw[1].local_addr, "GET", &format!("/mainline/immutable/{target}"), "").await;
    assert_eq!((status, value.as_str()), (200, "5:hello"));

    let unknown = "0123456789abcdef0123456789abcdef01234567";
    assert_eq!(call(gw[1].local_addr, "GET", &format!("/mainline/immutable/{unknown}"), "").await.0, 404);
    assert_eq!(call(gw[0].local_addr, "POST", "/mainline/immutable", &"x".repeat(1001)).await.0, 413);
    let bad =
        request(gw[0].local_addr, "POST", "/mainline/immutable", &[("content-type", "application/x-bencode")], "5:abc")
            .await;
    assert_eq!(bad.status, 400);
}

fn signed_payload(signer: &ItemSigner, salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut bencoded = format!("{}:", value.len()).into_bytes();
    bencoded.extend_from_slice(value);
    let item = MutableItem::sign(signer, salt, seq, bencoded).unwrap();
    relay_payload::from_item(&item).unwrap()
}

async fn put_bytes(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
    let method = axum::http::Method::PUT;
    let response = kadmos_http::send(addr, method, path, headers, body.into(), DEADLINE).await.unwrap();
    response.status.as_u16()
}

/// A mutable item signed by the client is stored through `PUT /mainline/mutable/{key}?salt=`
/// (204) and read back through another gateway in the same relay form; the gateway refuses a
/// bad signature (400), an older seq (409) and a failed compare-and-swap (`If-Match`, 412).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_items_signed_by_the_client() {
    let (_net, gw) = mainline_net(6).await;
    let signer = ItemSigner::from_seed([3; 32]);
    let path = format!("/mainline/mutable/{}?salt={}", hex::encode(signer.public_key()), hex::encode(b"s"));
    let body = signed_payload(&signer, b"s", 5, b"five");
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[], body.clone()).await, 204);
    let got = request(gw[1].local_addr, "GET", &path, &[], "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);

    let mut forged = signed_payload(&signer, b"s", 6, b"six");
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[], forged).await, 400);
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[], signed_payload(&signer, b"s", 4, b"four")).await, 409);
    let newer = signed_payload(&signer, b"s", 7, b"seven");
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[("if-match", "3")], newer.clone()).await, 412);
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[("if-match", "5")], newer).await, 204);
    assert_eq!(put_bytes(gw[0].local_addr, &path, &[], vec![0; 10]).await, 400);
}

/// The pkarr relay API: a packet PUT to `/pkarr/{z-base32 key}` as a pkarr client sends it
/// (signature ‖ seq ‖ value) is stored on the DHT under the key with no salt, found there by
/// a node directly, and served back by another gateway byte for byte; a preflight allows PUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkarr_relay() {
    let (net, gw) = mainline_net(6).await;
    let signer = ItemSigner::from_seed([9; 32]);
    let key = zbase32::encode(&signer.public_key());
    let seq = 1_733_400_000_000_000; // pkarr uses the time in microseconds
    let body = signed_payload(&signer, b"", seq, b"\x00\x00\x84\x00 a DNS packet");
    assert_eq!(put_bytes(gw[0].local_addr, &format!("/pkarr/{key}"), &[], body.clone()).await, 204);
    let got = request(gw[1].local_addr, "GET", &format!("/pkarr/{key}"), &[], "").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), body);

    let direct = net.nodes[4].get_mutable(signer.public_key(), b"", None).await.unwrap().most_recent().await;
    assert_eq!(direct.map(|item| item.seq), Some(seq));

    let preflight = request(gw[0].local_addr, "OPTIONS", &format!("/pkarr/{key}"), &[], "").await;
    assert_eq!(preflight.headers["access-control-allow-methods"], "GET, PUT, OPTIONS");
    assert_eq!(call(gw[0].local_addr, "GET", "/pkarr/not-a-key", "").await.0, 400);
    let missing = zbase32::encode(&ItemSigner::from_seed([1; 32]).public_key());
    let (status, _) =
        tokio::time::timeout(Duration::from_secs(60), call(gw[0].local_addr, "GET", &format!("/pkarr/{missing}"), ""))
            .await
            .unwrap();
    assert_eq!(status, 404);
}

/// A gateway without a Mainline node answers its Mainline routes 404 with a JSON error, and
/// one without an OpenDHT node its OpenDHT routes the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_of_a_network_not_served_are_404() {
    let (_net, gw) = mainline_net(3).await;
    let (status, err) = call_json(gw[0].local_addr, "GET", "/key/abc", "").await;
    assert_eq!(status, 404);
    assert!(err["err"].as_str().unwrap().contains("no OpenDHT node"), "{err}");
    let odht = GatewayNet::start(2, 1, GatewayConfig::default()).await;
    let (status, err) = call_json(odht.addr(0), "GET", &format!("/mainline/peers/{INFO_HASH}"), "").await;
    assert_eq!(status, 404);
    assert!(err["err"].as_str().unwrap().contains("no Mainline node"), "{err}");
}

/// A real pkarr client (the pkarr npm package 1.3.0, `interop/js/pkarr_client.js`) uses the
/// gateway as its relay: `Pkarr.relayPut` stores a signed DNS packet (204), `Pkarr.relayGet`
/// reads it back and verifies it, and the item is on the DHT under the client's key, where a
/// node finds it directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkarr_npm_client_uses_the_gateway_as_relay() {
    let js = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/js");
    if !js.join("node_modules/pkarr/package.json").exists() {
        if std::env::var("KADMOS_SKIP_INTEROP").is_ok_and(|v| v == "1") {
            eprintln!("note: skipping the pkarr client test: interop/js/node_modules/pkarr is missing");
            return;
        }
        panic!("the pkarr npm package is not installed: run `bash interop/install.sh`");
    }
    let (net, gw) = mainline_net(6).await;
    let seed = [0x42u8; 32];
    let relay = format!("http://{}/pkarr", gw[0].local_addr);
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("node")
            .arg("pkarr_client.js")
            .arg(&relay)
            .arg(hex::encode(seed))
            .current_dir(&js)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("node runs");
        let deadline = std::time::Instant::now() + DEADLINE;
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the pkarr client did not finish within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(result["ok"], serde_json::json!(true), "{result}");
    assert_eq!(result["put_status"], serde_json::json!(204));
    let public_key = ItemSigner::from_seed(seed).public_key();
    assert_eq!(result["public_key"].as_str(), Some(zbase32::encode(&public_key).as_str()));
    assert_eq!(result["records"][0][1], serde_json::json!("bar"), "{result}");

    let item = net.nodes[5].get_mutable(public_key, b"", None).await.unwrap().most_recent().await.expect("on the DHT");
    assert_eq!(Some(item.seq), result["timestamp"].as_i64());
}
