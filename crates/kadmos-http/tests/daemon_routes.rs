//! The daemon's routes on a gateway over a Mainline testnet: the control routes need the
//! control's token (and do not exist on a gateway without a control), a stop request reaches
//! the daemon, bad input is a clear 400, and the daemon's own routes keep to the gateway's
//! per-address request rate.

mod support;

use kadmos::Testnet;
use kadmos_http::{DaemonControl, Gateway, GatewayConfig, LimitsConfig};
use support::*;

const TOKEN: &str = "0123456789abcdef";

/// Without the token the control routes are 401; with it they work; a gateway without a
/// control answers 404 there; `POST /daemon/stop` wakes the daemon's `stop_requested`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_routes_need_the_token() {
    let testnet = Testnet::new(6).await.expect("testnet");
    let control = DaemonControl::new(TOKEN.into());
    let node = testnet.nodes[0].clone();
    let gateway = Gateway::new(None, Some(node.clone()), GatewayConfig::default()).with_control(control.clone());
    let running = gateway.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let daemon = running.local_addr;
    let plain = Gateway::new(None, Some(node), GatewayConfig::default());
    let plain = plain.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();

    let find = format!("/daemon/mainline/find-node/{}", "ab".repeat(20));
    assert_eq!(call(daemon, "GET", &find, "").await.0, 401);
    let auth = format!("Bearer {TOKEN}");
    let answer = request(daemon, "GET", &find, &[("authorization", &auth)], "").await;
    assert_eq!(answer.status, 200);
    let nodes: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert!(!nodes.as_array().unwrap().is_empty(), "{nodes}");
    let wrong = request(daemon, "GET", &find, &[("authorization", "Bearer 0123456789abcdeX")], "").await;
    assert_eq!(wrong.status, 401);
    let bad = request(daemon, "GET", "/daemon/mainline/find-node/xyz", &[("authorization", &auth)], "").await;
    assert_eq!(bad.status, 400);
    let (status, body) = call_json(plain.local_addr, "GET", &find, "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["err"].is_string());

    // Reads are open on both.
    assert_eq!(call(plain.local_addr, "GET", "/daemon/routing-table", "").await.0, 200);
    assert_eq!(call(plain.local_addr, "GET", "/daemon/stats", "").await.0, 200);

    assert_eq!(call(daemon, "POST", "/daemon/stop", "").await.0, 401);
    let stop = request(daemon, "POST", "/daemon/stop", &[("authorization", &auth)], "").await;
    assert_eq!(stop.status, 202);
    tokio::time::timeout(DEADLINE, control.stop_requested()).await.expect("the stop request reached the daemon");
}

/// With loopback not exempt and a rate of 1 request per second (burst 2), `/metrics` is
/// answered twice, then 429 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_routes_keep_to_the_request_rate() {
    let testnet = Testnet::new(2).await.expect("testnet");
    let limits =
        LimitsConfig { requests_per_sec: Some(1.0), burst: 2.0, exempt_loopback: false, ..LimitsConfig::default() };
    let config = GatewayConfig { limits, ..GatewayConfig::default() };
    let gateway = Gateway::new(None, Some(testnet.nodes[0].clone()), config);
    let running = gateway.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = running.local_addr;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(request(addr, "GET", "/metrics", &[], "").await);
    }
    assert_eq!(statuses[0].status, 200);
    let refused = statuses.iter().find(|r| r.status == 429).expect("a 429 within 4 quick requests");
    assert!(refused.headers.contains_key("retry-after"));
}
