//! The gateway's OpenDHT proxy routes, against an OpenDHT testnet on loopback.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kadmos::opendht::OpenDht;
use kadmos::{Id, PortSpec};
use kadmos_http::{Gateway, GatewayConfig};
use serde_json::json;
use support::*;

/// `GET /`, `/node/info` and `/node/stats` answer live figures: the node's id, good contacts
/// per family (what OpenDHT's client reads to call itself connected), the caller's address;
/// `/healthz` and `/readyz` say the gateway is up and joined; `/openapi.json` is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_info_stats_and_health() {
    let net = GatewayNet::start(4, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    for path in ["/", "/node/info"] {
        let (status, info) = call_json(gw, "GET", path, "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(info["node_id"], json!(net.testnet.nodes[0].node_id().to_string()));
        assert!(info["ipv4"]["good"].as_u64().unwrap() >= 1, "{info}");
        assert_eq!(info["public_ip"], json!("127.0.0.1"));
    }
    let (status, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert_eq!(status, 200);
    for field in ["listenCount", "putCount", "totalPermanentPuts", "pushListenersCount", "requestRate", "nodeInfo"] {
        assert!(stats.get(field).is_some(), "stats lack {field}: {stats}");
    }
    let (status, legacy) = call_json(gw, "STATS", "/", "").await;
    assert_eq!((status, legacy["putCount"].as_u64()), (200, Some(0)));
    assert_eq!(call_json(gw, "GET", "/healthz", "").await, (200, json!({"status": "ok"})));
    let (status, ready) = call_json(gw, "GET", "/readyz", "").await;
    assert_eq!((status, &ready["ready"]), (200, &json!(true)));
    let (status, doc) = call_json(gw, "GET", "/openapi.json", "").await;
    assert_eq!((status, &doc["openapi"]), (200, &json!("3.1.0")));
    assert!(doc["paths"]["/key/{h}/listen"]["get"].is_object(), "{doc}");
}

/// A POST with id 0 is answered after the put with the stored value and the id the gateway
/// gave it (a decimal string); a GET through another gateway, on another node, finds it, on
/// both the `/key/{h}` and the legacy `/{h}` route. A key that is not 40 hex digits is the
/// SHA-1 of the raw, still percent-encoded path segment, as in OpenDHT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_then_get_through_another_gateway() {
    let net = GatewayNet::start(5, 2, GatewayConfig::default()).await;
    let body = r#"{"data":"aGVsbG8=","id":"0","type":0,"utype":"text/plain"}"#;
    let (status, stored) = call_json(net.addr(0), "POST", "/key/hello%20world", body).await;
    assert_eq!(status, 200, "{stored}");
    let id: u64 = stored["id"].as_str().expect("id as a string").parse().expect("decimal id");
    assert_ne!(id, 0);
    assert_eq!((&stored["data"], &stored["utype"]), (&json!("aGVsbG8="), &json!("text/plain")));

    for path in ["/key/hello%20world", "/hello%20world"] {
        let (status, text) = call(net.addr(1), "GET", path, "").await;
        assert_eq!(status, 200);
        let values = json_lines(&text);
        assert!(values.contains(&stored), "{path}: {text}");
    }
    // The key is sha1("hello%20world"), not sha1("hello world").
    let direct = net.testnet.nodes[3].get(Id::of_str("hello%20world")).await.unwrap().collect_values().await;
    assert!(direct.iter().any(|v| v.id == id && v.data == b"hello"), "{direct:?}");
    let hex = Id::of_str("hello%20world").to_string();
    let (_, text) = call(net.addr(1), "GET", &format!("/key/{hex}"), "").await;
    assert!(json_lines(&text).contains(&stored), "40 hex digits are the key itself");
}

/// A listen client that reads nothing does not hold the others back: the gateway writes each
/// event to every stream of the key, and a stream whose socket is full keeps the rest in a
/// queue of its own. The other client gets every value while the first one's socket is
/// full (200 values of 48 KiB are 12 MiB of events; a socket whose reader reads nothing holds
/// about 4 MiB on loopback); when the first one reads at last, it gets every value too, once
/// each, in the order they were put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_reads_nothing_holds_no_one_back() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const VALUES: u64 = 200;
    let net = GatewayNet::start(2, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let mut stalled = tokio::net::TcpStream::connect(gw).await.unwrap();
    stalled.write_all(b"GET /key/slow-reader/listen HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut reading = request(gw, "GET", "/key/slow-reader/listen", &[], "").await;
    assert_eq!(reading.status, 200);
    let data = "QUJD".repeat(16 * 1024); // 48 KiB once decoded
    for id in 1..=VALUES {
        let (status, text) = call(gw, "POST", "/key/slow-reader", &format!(r#"{{"data":"{data}","id":"{id}"}}"#)).await;
        assert_eq!(status, 200, "value {id}: {text}");
    }
    let last = format!(r#""id":"{VALUES}""#);
    wait_line(&mut reading, DEADLINE, |line| line.contains(&last)).await;

    // Now the stalled client reads: every value, in order.
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + DEADLINE;
    let tail_has_last =
        |seen: &[u8]| String::from_utf8_lossy(&seen[seen.len().saturating_sub(64 * 1024)..]).contains(&last);
    while !tail_has_last(&seen) {
        let n = tokio::time::timeout_at(deadline.into(), stalled.read(&mut buf)).await.expect("in time").unwrap();
        assert!(n > 0, "the gateway closed the stalled stream after {} bytes", seen.len());
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let ids: Vec<u64> =
        text.split(r#""id":""#).skip(1).filter_map(|rest| rest.split('"').next()?.parse().ok()).collect();
    assert_eq!(ids, (1..=VALUES).collect::<Vec<_>>(), "every value once, in order");
}

/// A POST that no node stored answers 502, though every storing node acknowledged the put: a
/// node answers a put it refused exactly like one it stored (as OpenDHT's do), so the gateway
/// asks the network for the value when its own node refused it. Here the key is full on both
/// nodes (1024 values, all from one address: nothing to evict), so a new value is refused
/// everywhere; a value already there, posted again, is still a 200 (a refresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_refused_by_full_storage_answers_502() {
    const PER_KEY: u64 = 1024; // a kadmos node's default limit of values under one key
    let net = GatewayNet::start(2, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let mut posts = tokio::task::JoinSet::new();
    for worker in 0..16 {
        posts.spawn(async move {
            for id in (1 + worker..=PER_KEY).step_by(16) {
                let (status, text) = call(gw, "POST", "/key/full", &format!(r#"{{"data":"eA==","id":"{id}"}}"#)).await;
                assert_eq!(status, 200, "value {id}: {text}");
            }
        });
    }
    while let Some(done) = posts.join_next().await {
        done.expect("a POST worker");
    }
    let (status, err) = call_json(gw, "POST", "/key/full", r#"{"data":"eA==","id":"5000"}"#).await;
    assert_eq!(status, 502, "{err}");
    assert!(err["err"].as_str().unwrap().starts_with("Put failed: no node stored the value"), "{err}");
    let other = net.testnet.nodes[1].get_filtered(Id::of_str("full"), kadmos::opendht::Filter::default().id(5000));
    assert!(other.await.unwrap().collect_values().await.is_empty(), "the storing node refused it");
    let (status, again) = call(gw, "POST", "/key/full", r#"{"data":"eA==","id":"7"}"#).await;
    assert_eq!(status, 200, "a value already stored is refreshed: {again}");
}

/// A listen stream sends the values already there, then each value put later (through another
/// gateway), as newline-delimited JSON; with `Accept: text/event-stream` the same arrives as
/// Server-Sent Events named `value`, with the value id as the event id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_streams_present_and_later_values_as_ndjson_and_sse() {
    let net = GatewayNet::start(5, 2, GatewayConfig::default()).await;
    let path = "/key/listened";
    let (status, _) = call(net.addr(0), "POST", path, r#"{"data":"YmVmb3Jl","id":"11"}"#).await;
    assert_eq!(status, 200);

    let mut ndjson = request(net.addr(1), "GET", "/key/listened/listen", &[], "").await;
    assert_eq!(ndjson.status, 200);
    let mut sse = request(net.addr(1), "GET", "/key/listened/listen", &[("accept", "text/event-stream")], "").await;
    assert_eq!(sse.headers["content-type"], "text/event-stream");
    wait_line(&mut ndjson, DEADLINE, |l| l.contains(r#""id":"11""#)).await;
    wait_line(&mut sse, DEADLINE, |l| l == "id: 11").await;

    let (status, _) = call(net.addr(0), "POST", path, r#"{"data":"YWZ0ZXI=","id":"12"}"#).await;
    assert_eq!(status, 200);
    let line = wait_line(&mut ndjson, DEADLINE, |l| l.contains(r#""id":"12""#)).await;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&line).unwrap()["data"], json!("YWZ0ZXI="));
    // SSE: the event name, then the id, then the data line.
    wait_line(&mut sse, DEADLINE, |l| l == "event: value").await;
    assert_eq!(sse.next_line().await.unwrap().unwrap(), "id: 12");
    assert!(sse.next_line().await.unwrap().unwrap().starts_with("data: {"));

    let (_, stats) = call_json(net.addr(1), "GET", "/node/stats", "").await;
    assert_eq!(stats["listenCount"], json!(2), "both streams are counted while open");
}

/// A value of type 5 (ICE candidates, one minute) shows up on a listen stream, then again
/// with `"expired": true` once storing nodes drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reports_expiry() {
    let net = GatewayNet::start(4, 1, GatewayConfig::default()).await;
    let mut listen = request(net.addr(0), "GET", "/key/short-lived/listen", &[], "").await;
    let (status, _) = call(net.addr(0), "POST", "/key/short-lived", r#"{"data":"eA==","id":"77","type":5}"#).await;
    assert_eq!(status, 200);
    let posted = Instant::now();
    wait_line(&mut listen, DEADLINE, |l| l.contains(r#""id":"77""#)).await;
    let line = wait_line(&mut listen, Duration::from_secs(120), |l| l.contains(r#""expired":true"#)).await;
    assert!(line.contains(r#""id":"77""#), "{line}");
    assert!(posted.elapsed() >= Duration::from_secs(50), "expired after {:?}", posted.elapsed());
}

/// Bad input gets a JSON error and the right status, never a crash: empty body and bad JSON
/// 400, a body over the largest value 413, an unknown route 404, a wrong method 405 with
/// `Allow`; OPTIONS on any route is a CORS preflight; every answer allows any origin; the
/// node keeps serving afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let net = GatewayNet::start(3, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("POST", "/key/k", String::new(), 400),
        ("POST", "/key/k", "{not json".into(), 400),
        ("POST", "/key/k", r#"{"data":"%%%"}"#.into(), 400),
        ("POST", "/key/k", r#"{"id":"-3"}"#.into(), 400),
        ("POST", "/key/k", format!(r#"{{"data":"{}"}}"#, "A".repeat(200_000)), 413),
        ("POST", "/key/k", format!(r#"{{"data":"{}"}}"#, "AAAA".repeat(22_000)), 413),
        ("GET", "/no/such/route/here", String::new(), 404),
        ("DELETE", "/key/k", String::new(), 405),
        ("PUT", "/node/info", String::new(), 405),
    ];
    for (method, path, body, expected) in cases {
        let (status, err) = call_json(gw, method, path, &body).await;
        assert_eq!(status, expected, "{method} {path}: {err}");
        assert!(err["err"].is_string(), "{method} {path}: {err}");
    }
    let wrong = request(gw, "DELETE", "/key/k", &[], "").await;
    assert_eq!(wrong.headers["allow"], "GET, POST, SUBSCRIBE, UNSUBSCRIBE, OPTIONS");

    for path in ["/key/k", "/key/k/listen", "/k", "/node/info", "/"] {
        let preflight = request(
            gw,
            "OPTIONS",
            path,
            &[("origin", "https://example.org"), ("access-control-request-method", "POST")],
            "",
        )
        .await;
        assert_eq!(preflight.status, 200, "{path}");
        assert_eq!(preflight.headers["access-control-allow-origin"], "*");
        assert!(preflight.headers["access-control-allow-headers"].to_str().unwrap().contains("content-type"));
        assert!(preflight.headers["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    }
    let info = request(gw, "GET", "/node/info", &[], "").await;
    assert_eq!(info.headers["access-control-allow-origin"], "*");
    let (status, _) = call(gw, "POST", "/key/k", r#"{"data":"b2s="}"#).await;
    assert_eq!(status, 200, "still serving after the bad requests");
}

/// With a write token, writes without `Authorization: Bearer <token>` (or with another one)
/// are refused 401 and reads still work; with the token the write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_token_guards_writes() {
    let config = GatewayConfig { write_token: Some("s3cret".into()), ..GatewayConfig::default() };
    let net = GatewayNet::start(3, 1, config).await;
    let gw = net.addr(0);
    let body = r#"{"data":"eA=="}"#;
    assert_eq!(call(gw, "POST", "/key/k", body).await.0, 401);
    let wrong = request(gw, "POST", "/key/k", &[("authorization", "Bearer nope!!")], body).await;
    assert_eq!(wrong.status, 401);
    let right = request(gw, "POST", "/key/k", &[("authorization", "Bearer s3cret")], body).await;
    assert_eq!(right.status, 200);
    assert_eq!(call(gw, "GET", "/key/k", "").await.0, 200);
}

/// A gateway whose node has no contact is not ready (503 + `Retry-After` on `/readyz`), says
/// so truthfully in its node info (0 good), and fails a POST at once with 503 + `Retry-After`
/// rather than after a lookup. A node that cannot finish joining makes a GET hit the
/// gateway's deadline: 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_node_fails_fast_and_deadline_gives_504() {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let alone = OpenDht::builder().bind(loopback).ports(PortSpec::any()).no_bootstrap().build().await.unwrap();
    let config = GatewayConfig { operation_deadline: Duration::from_secs(2), ..GatewayConfig::default() };
    let gw = Gateway::new(Some(alone), None, config.clone()).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (status, info) = call_json(gw.local_addr, "GET", "/node/info", "").await;
    assert_eq!((status, &info["ipv4"]["good"]), (200, &json!(0)));
    let ready = request(gw.local_addr, "GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    assert!(ready.headers.contains_key("retry-after"));
    let started = Instant::now();
    let post = request(gw.local_addr, "POST", "/key/k", &[], r#"{"data":"eA=="}"#).await;
    assert_eq!(post.status, 503);
    assert!(post.headers.contains_key("retry-after"));
    assert!(started.elapsed() < config.operation_deadline, "failed at once, not after a lookup");

    // A silent bootstrap node: the join waits for its requests to time out (a second or more),
    // longer than this gateway's deadline.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let joining = OpenDht::builder()
        .bind(loopback)
        .ports(PortSpec::any())
        .bootstrap([silent.local_addr().unwrap().to_string()])
        .build()
        .await
        .unwrap();
    let config = GatewayConfig { operation_deadline: Duration::from_millis(300), ..config };
    let gw = Gateway::new(Some(joining), None, config).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (status, err) = call_json(gw.local_addr, "GET", "/key/k", "").await;
    assert_eq!(status, 504, "{err}");
}

/// A permanent put is kept alive while the client re-POSTs it (an identical id-less re-POST
/// refreshes the same value rather than adding one) and dropped one lifetime after the last
/// POST: the gateway stops counting it and the node stops keeping it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_put_lives_a_lifetime_after_the_last_post() {
    let config = GatewayConfig { permanent_lifetime: Duration::from_secs(3), ..GatewayConfig::default() };
    let net = GatewayNet::start(3, 1, config).await;
    let gw = net.addr(0);
    let body = r#"{"data":"a2VlcA==","id":"0","permanent":true}"#;
    let (status, first) = call_json(gw, "POST", "/key/kept", body).await;
    assert_eq!(status, 200);
    let (_, again) = call_json(gw, "POST", "/key/kept", body).await;
    assert_eq!(first["id"], again["id"], "an identical re-POST refreshes the same value");
    let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert_eq!(stats["totalPermanentPuts"], json!(1));
    assert_eq!(net.testnet.nodes[0].info().await.unwrap().permanent_puts, 1);

    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
        let kept = net.testnet.nodes[0].info().await.unwrap().permanent_puts;
        if stats["totalPermanentPuts"] == json!(0) && kept == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the permanent put was never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Requests the gateway's node sent so far.
async fn requests_sent(net: &GatewayNet) -> u64 {
    net.testnet.nodes[0].info().await.unwrap().traffic.requests_sent
}

/// Concurrent GETs of one key share one lookup: 20 at once cost the node about the requests
/// of a single GET, not 20 times them; all 20 get the value. A value POSTed through the gateway
/// shows up in a GET right after, even one answered from the shared lookup (read your writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_one_lookup() {
    let net = GatewayNet::start(8, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    for key in ["single", "hot"] {
        net.testnet.nodes[5].put(Id::of_str(key), "v", kadmos::opendht::PutOptions::default()).await.unwrap();
    }
    let before = requests_sent(&net).await;
    let (_, text) = call(gw, "GET", "/key/single", "").await;
    assert_eq!(json_lines(&text).len(), 1);
    let one = requests_sent(&net).await - before;

    let before = requests_sent(&net).await;
    let gets = (0..20).map(|_| call(gw, "GET", "/key/hot", ""));
    for (status, text) in futures_util::future::join_all(gets).await {
        assert_eq!((status, json_lines(&text).len()), (200, 1), "{text}");
    }
    let twenty = requests_sent(&net).await - before;
    assert!(one > 0, "a GET searches the network");
    assert!(twenty < 2 * one + 4, "20 concurrent GETs sent {twenty} requests; one GET sent {one}");

    let (status, _) = call(gw, "POST", "/key/hot", r#"{"data":"bmV3","id":"5"}"#).await;
    assert_eq!(status, 200);
    let (_, text) = call(gw, "GET", "/key/hot", "").await;
    assert!(text.contains(r#""id":"5""#), "the POSTed value is in the next GET: {text}");
}

/// The gateway remembers at most `max_remembered_keys` keys' lookups: GETs of many distinct
/// keys are all answered, and the remembered state stays within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_keys_are_bounded() {
    let config = GatewayConfig { max_remembered_keys: 3, ..GatewayConfig::default() };
    let net = GatewayNet::start(3, 1, config).await;
    let gw = net.addr(0);
    net.testnet.nodes[2].put(Id::of_str("k7"), "seven", kadmos::opendht::PutOptions::default()).await.unwrap();
    for i in 0..10 {
        let (status, text) = call(gw, "GET", &format!("/key/k{i}"), "").await;
        assert_eq!(status, 200);
        assert_eq!(json_lines(&text).len(), usize::from(i == 7), "k{i}: {text}");
    }
    let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert!(stats["rememberedKeys"].as_u64().unwrap() <= 3, "{stats}");
}

/// Per-address limits answer 429 with `Retry-After`: past the request burst, and past the
/// cap of open listen streams (a closed stream frees its slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limits_answer_429() {
    use kadmos_http::LimitsConfig;
    let rate = LimitsConfig { requests_per_sec: Some(0.5), burst: 3.0, listens_per_ip: 100, exempt_loopback: false };
    let net = GatewayNet::start(2, 1, GatewayConfig { limits: rate, ..GatewayConfig::default() }).await;
    for _ in 0..3 {
        assert_eq!(call(net.addr(0), "GET", "/healthz", "").await.0, 200);
    }
    let refused = request(net.addr(0), "GET", "/healthz", &[], "").await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);

    let streams = LimitsConfig { requests_per_sec: None, listens_per_ip: 1, exempt_loopback: false, ..rate };
    let net = GatewayNet::start(2, 1, GatewayConfig { limits: streams, ..GatewayConfig::default() }).await;
    let first = request(net.addr(0), "GET", "/key/a/listen", &[], "").await;
    assert_eq!(first.status, 200);
    let (status, err) = call_json(net.addr(0), "GET", "/key/b/listen", "").await;
    assert_eq!(status, 429, "{err}");
    drop(first);
    let deadline = Instant::now() + DEADLINE;
    while request(net.addr(0), "GET", "/key/c/listen", &[], "").await.status != 200 {
        assert!(Instant::now() < deadline, "the closed stream's slot was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Permanent puts survive a restart of the gateway: a gateway with a state file saves them,
/// and a new gateway over a new node started with that file puts them again and keeps
/// counting their lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_puts_survive_a_restart() {
    let net = GatewayNet::start(3, 0, GatewayConfig::default()).await;
    let file = std::env::temp_dir().join(format!("kadmos-gw-permanent-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let config = GatewayConfig {
        state_file: Some(file.clone()),
        permanent_lifetime: Duration::from_secs(600),
        ..GatewayConfig::default()
    };
    let join = || async {
        let seed = net.testnet.bootstrap_addrs()[0].to_string();
        let node = OpenDht::builder()
            .bind(IpAddr::V4(Ipv4Addr::LOCALHOST))
            .ports(PortSpec::any())
            .rate_limits(None, None)
            .bootstrap([seed])
            .build()
            .await
            .unwrap();
        node.bootstrapped().await.unwrap();
        node
    };
    let first = join().await;
    let gw =
        Gateway::new(Some(first.clone()), None, config.clone()).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (status, _) =
        call(gw.local_addr, "POST", "/key/survivor", r#"{"data":"c3Vydml2ZQ==","id":"31","permanent":true}"#).await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("c3Vydml2ZQ==")) {
        assert!(Instant::now() < deadline, "the permanent put was never saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(gw);
    first.shutdown().await.unwrap();

    let second = join().await;
    let gw = Gateway::new(Some(second.clone()), None, config).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (_, stats) = call_json(gw.local_addr, "GET", "/node/stats", "").await;
        let kept = second.info().await.unwrap().permanent_puts;
        if stats["totalPermanentPuts"] == json!(1) && kept == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the permanent put was not restored: {stats}, node keeps {kept}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_file(&file);
}

/// Listens on one key share one node listen (two streams, one listen at the node), a GET of
/// a listened key is answered from the listen, and an SSE client reconnecting with
/// `Last-Event-ID` gets only the events after that one, not the values it already saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_are_shared_and_sse_resumes_after_last_event_id() {
    let config = GatewayConfig { listen_answers_gets_after: Duration::ZERO, ..GatewayConfig::default() };
    let net = GatewayNet::start(4, 1, config).await;
    let gw = net.addr(0);
    let post =
        |id: u32| async move { call(gw, "POST", "/key/resumed", &format!(r#"{{"data":"eA==","id":"{id}"}}"#)).await };
    assert_eq!(post(1).await.0, 200);
    let mut ndjson = request(gw, "GET", "/key/resumed/listen", &[], "").await;
    let mut sse = request(gw, "GET", "/key/resumed/listen", &[("accept", "text/event-stream")], "").await;
    wait_line(&mut ndjson, DEADLINE, |l| l.contains(r#""id":"1""#)).await;
    wait_line(&mut sse, DEADLINE, |l| l == "id: 1").await;
    assert_eq!(net.testnet.nodes[0].info().await.unwrap().listens, 1, "one node listen for two streams");
    let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert_eq!((stats["listenCount"].as_u64(), stats["sharedListens"].as_u64()), (Some(2), Some(1)));

    assert_eq!(post(2).await.0, 200);
    wait_line(&mut sse, DEADLINE, |l| l == "id: 2").await;
    drop(sse);
    assert_eq!(post(3).await.0, 200);
    wait_line(&mut ndjson, DEADLINE, |l| l.contains(r#""id":"3""#)).await;

    let mut resumed =
        request(gw, "GET", "/key/resumed/listen", &[("accept", "text/event-stream"), ("last-event-id", "2")], "").await;
    let first_id = wait_line(&mut resumed, DEADLINE, |l| l.starts_with("id: ")).await;
    assert_eq!(first_id, "id: 3", "resumed after event 2, without repeating 1 and 2");

    let before = net.testnet.nodes[0].info().await.unwrap().traffic.requests_sent;
    let (_, text) = call(gw, "GET", "/key/resumed", "").await;
    assert_eq!(json_lines(&text).len(), 3, "{text}");
    // A lookup would query the node's three contacts; one stray maintenance request may happen.
    let sent = net.testnet.nodes[0].info().await.unwrap().traffic.requests_sent - before;
    assert!(sent <= 1, "answered from the listen, without a lookup ({sent} requests sent)");
}

/// One WebSocket carries listens on several keys: each `listen` is acknowledged, values put
/// later at either key arrive tagged with their key, an `unlisten` stops that key's values
/// (the next message is the other key's), and a malformed message gets an error, not a close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_websocket_carries_listens_on_many_keys() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let net = GatewayNet::start(3, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let stream = tokio::net::TcpStream::connect(gw).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{gw}/ws"), stream).await.expect("upgrade");
    let (a, b) = (Id::of_str("ws-a").to_string(), Id::of_str("ws-b").to_string());
    for key in ["ws-a", "ws-b"] {
        ws.send(Message::Text(json!({ "listen": key }).to_string())).await.unwrap();
    }
    let mut acks = Vec::new();
    for _ in 0..2 {
        let message = read_json(&mut ws).await;
        assert_eq!(message["listening"], json!(true), "{message}");
        acks.push(message["key"].as_str().unwrap().to_string());
    }
    acks.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(acks, expected);

    assert_eq!(call(gw, "POST", "/key/ws-a", r#"{"data":"YQ==","id":"1"}"#).await.0, 200);
    let message = read_json(&mut ws).await;
    assert_eq!((message["key"].as_str(), &message["value"]["data"]), (Some(a.as_str()), &json!("YQ==")));
    assert_eq!(call(gw, "POST", "/key/ws-b", r#"{"data":"Yg==","id":"2"}"#).await.0, 200);
    let message = read_json(&mut ws).await;
    assert_eq!((message["key"].as_str(), &message["value"]["data"]), (Some(b.as_str()), &json!("Yg==")));

    ws.send(Message::Text(json!({ "unlisten": "ws-a" }).to_string())).await.unwrap();
    assert_eq!(read_json(&mut ws).await["listening"], json!(false));
    assert_eq!(call(gw, "POST", "/key/ws-a", r#"{"data":"YQ==","id":"3"}"#).await.0, 200);
    assert_eq!(call(gw, "POST", "/key/ws-b", r#"{"data":"Yg==","id":"4"}"#).await.0, 200);
    let message = read_json(&mut ws).await;
    assert_eq!((message["key"].as_str(), &message["value"]["id"]), (Some(b.as_str()), &json!("4")), "{message}");

    ws.send(Message::Text("not json".into())).await.unwrap();
    assert!(read_json(&mut ws).await["err"].is_string());
}

/// The next JSON text message of a WebSocket, within the deadline.
async fn read_json<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(DEADLINE, ws.next()).await.expect("a message in time").unwrap().unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Reads from `stream` into `seen` until `done` holds for what has been read (or fails the
/// test at the deadline).
async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>, done: impl Fn(&str) -> bool) {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + DEADLINE;
    while !done(&String::from_utf8_lossy(seen)) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("not seen within {DEADLINE:?}; got:\n{}", String::from_utf8_lossy(seen)))
            .unwrap();
        assert!(n > 0, "the gateway closed the connection; got:\n{}", String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// The head of an answer: its status line and its headers (names in lower case), sorted.
fn head_of(answer: &[u8]) -> (String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(answer);
    let head = text.split("\r\n\r\n").next().unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| n != "date")
        .collect();
    headers.sort();
    (status, headers)
}

/// A listen is answered alike whether it opens its connection (served straight on the socket)
/// or follows another request on a keep-alive connection (served by hyper): same status and
/// headers, the value already there, then a value put later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_first_or_after_another_request_answers_alike() {
    use tokio::io::AsyncWriteExt;
    let net = GatewayNet::start(4, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let (status, _) = call(gw, "POST", "/key/both-paths", r#"{"data":"b25l","id":"21"}"#).await;
    assert_eq!(status, 200);
    let listen = b"GET /key/both-paths/listen HTTP/1.1\r\nHost: test\r\n\r\n";

    let mut first = tokio::net::TcpStream::connect(gw).await.unwrap();
    first.write_all(listen).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(gw).await.unwrap();
    second.write_all(b"GET /node/info HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
    let mut info = Vec::new();
    read_until(&mut second, &mut info, |t| {
        let Some((head, body)) = t.split_once("\r\n\r\n") else { return false };
        let length = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()));
        length.and_then(|v| v.parse::<usize>().ok()).is_some_and(|n| body.len() >= n)
    })
    .await;
    assert!(info.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&info));
    second.write_all(listen).await.unwrap();

    let (mut on_socket, mut by_hyper) = (Vec::new(), Vec::new());
    read_until(&mut first, &mut on_socket, |t| t.contains(r#""id":"21""#)).await;
    read_until(&mut second, &mut by_hyper, |t| t.contains(r#""id":"21""#)).await;
    let head = head_of(&on_socket);
    assert_eq!(head, head_of(&by_hyper));
    assert_eq!(head.0, "HTTP/1.1 200 OK");
    for expected in
        [("transfer-encoding", "chunked"), ("content-type", "application/json"), ("access-control-allow-origin", "*")]
    {
        assert!(head.1.contains(&(expected.0.to_string(), expected.1.to_string())), "{head:?}");
    }

    let (status, _) = call(gw, "POST", "/key/both-paths", r#"{"data":"dHdv","id":"22"}"#).await;
    assert_eq!(status, 200);
    read_until(&mut first, &mut on_socket, |t| t.contains(r#""id":"22""#)).await;
    read_until(&mut second, &mut by_hyper, |t| t.contains(r#""id":"22""#)).await;
}
