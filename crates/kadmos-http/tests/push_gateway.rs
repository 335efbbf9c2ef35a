//! Push notifications: SUBSCRIBE with a device token, pushes through a loopback HTTP sink
//! standing in for a gorush push server or a UnifiedPush endpoint, UNSUBSCRIBE.

mod support;

use std::net::SocketAddr;

use axum::extract::Request;
use axum::http::HeaderMap;
use kadmos::Id;
use kadmos_http::GatewayConfig;
use serde_json::{json, Value as Json};
use support::*;
use tokio::sync::mpsc;

/// What the sink received: path, headers, JSON body (null if not JSON), raw body.
type Received = (String, HeaderMap, Json, Vec<u8>);

/// An HTTP server on loopback that answers every request as gorush does and reports it.
async fn sink() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |request: Request| {
        let tx = tx.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let json = serde_json::from_slice(&body).unwrap_or(Json::Null);
            let _ = tx.send((parts.uri.path().to_string(), parts.headers, json, body.to_vec()));
            r#"{"counts":1,"logs":[],"success":"ok"}"#
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rx)
}

async fn next_push(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a push in time").expect("the sink runs")
}

/// An Android token subscribed to a key gets a push through the gorush server when a value is
/// put there: `/api/push`, platform 2, the token, and data naming the key, the client, the
/// session and the value's id (not the value). A repeated SUBSCRIBE with `refresh` answers
/// `{}`; UNSUBSCRIBE ends it (the stats count it gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gorush_push_on_a_new_value() {
    let (sink_addr, mut pushes) = sink().await;
    let config = GatewayConfig { push_server: Some(format!("http://{sink_addr}")), ..GatewayConfig::default() };
    let net = GatewayNet::start(3, 1, config).await;
    let gw = net.addr(0);
    let subscribe = r#"{"key":"fake-fcm-token","platform":"android","client_id":"client-1","session_id":"sess-1"}"#;
    assert_eq!(call(gw, "SUBSCRIBE", "/key/pushed", subscribe).await, (200, "{}\n".to_string()));
    let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert_eq!(stats["pushListenersCount"], json!(1));

    assert_eq!(call(gw, "POST", "/key/pushed", r#"{"data":"eA==","id":"77"}"#).await.0, 200);
    let (path, _, body, _) = next_push(&mut pushes).await;
    assert_eq!(path, "/api/push");
    let notification = &body["notifications"][0];
    assert_eq!(notification["tokens"], json!(["fake-fcm-token"]));
    assert_eq!((notification["platform"].as_u64(), notification["priority"].as_str()), (Some(2), Some("high")));
    let data = &notification["data"];
    assert_eq!(data["key"], json!(Id::of_str("pushed").to_string()));
    assert_eq!(
        (data["to"].as_str(), data["s"].as_str(), data["ids"].as_str()),
        (Some("client-1"), Some("sess-1"), Some("77"))
    );
    assert!(data.get("data").is_none(), "pushes carry no values");

    let refresh = r#"{"key":"fake-fcm-token","client_id":"client-1","platform":"android","refresh":true}"#;
    assert_eq!(call(gw, "SUBSCRIBE", "/key/pushed", refresh).await, (200, "{}\n".to_string()));
    assert_eq!(
        call(gw, "UNSUBSCRIBE", "/key/pushed", r#"{"key":"fake-fcm-token","client_id":"client-1"}"#).await.0,
        200
    );
    let (_, stats) = call_json(gw, "GET", "/node/stats", "").await;
    assert_eq!(stats["pushListenersCount"], json!(0));
    assert_eq!(call_json(gw, "SUBSCRIBE", "/key/pushed", r#"{"platform":"android"}"#).await.0, 400, "no token");
}

/// A UnifiedPush token is the endpoint URL: the push goes straight there, with `TTL` and
/// `Urgency` headers; Android tokens without a push server are refused with 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unifiedpush_goes_to_the_endpoint() {
    let (sink_addr, mut pushes) = sink().await;
    let net = GatewayNet::start(3, 1, GatewayConfig::default()).await;
    let gw = net.addr(0);
    let endpoint = format!("http://{sink_addr}/up/device-7");
    let subscribe =
        json!({"key": endpoint, "platform": "unifiedpush", "client_id": "c7", "session_id": "s7"}).to_string();
    assert_eq!(call(gw, "SUBSCRIBE", "/key/up", &subscribe).await.0, 200);
    assert_eq!(call(gw, "POST", "/key/up", r#"{"data":"eQ==","id":"8"}"#).await.0, 200);
    let (path, headers, body, _) = next_push(&mut pushes).await;
    assert_eq!(path, "/up/device-7");
    assert_eq!((headers["ttl"].to_str().unwrap(), headers["urgency"].to_str().unwrap()), ("86400", "high"));
    assert_eq!((body["to"].as_str(), body["ids"].as_str()), (Some("c7"), Some("8")));

    let android = r#"{"key":"tok","platform":"android","client_id":"c"}"#;
    assert_eq!(call_json(gw, "SUBSCRIBE", "/key/up", android).await.0, 501);
}

/// Push subscriptions survive a restart: a gateway with a state file saves a subscription, and
/// a new gateway started with that file (over another node) pushes the next change to the
/// same endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_subscriptions_survive_a_restart() {
    let (sink_addr, mut pushes) = sink().await;
    let file = std::env::temp_dir().join(format!("kadmos-gw-push-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let config = GatewayConfig { state_file: Some(file.clone()), ..GatewayConfig::default() };
    let net = GatewayNet::start(4, 1, config).await;
    let endpoint = format!("http://{sink_addr}/up/restarted");
    let subscribe =
        json!({"key": endpoint, "platform": "unifiedpush", "client_id": "c9", "session_id": "s9"}).to_string();
    assert_eq!(call(net.addr(0), "SUBSCRIBE", "/key/restarted", &subscribe).await.0, 200);
    let deadline = std::time::Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&file).is_ok_and(|t| t.contains("/up/restarted")) {
        assert!(std::time::Instant::now() < deadline, "the subscription was never saved");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let GatewayNet { testnet, gateways } = net;
    drop(gateways);

    let config = GatewayConfig { state_file: Some(file.clone()), ..GatewayConfig::default() };
    let restarted = kadmos_http::Gateway::new(Some(testnet.nodes[2].clone()), None, config)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let (_, stats) = call_json(restarted.local_addr, "GET", "/node/stats", "").await;
        if stats["pushListenersCount"] == json!(1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the subscription was not restored: {stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(call(restarted.local_addr, "POST", "/key/restarted", r#"{"data":"eg==","id":"12"}"#).await.0, 200);
    let (path, _, body, _) = next_push(&mut pushes).await;
    assert_eq!((path.as_str(), body["ids"].as_str(), body["s"].as_str()), ("/up/restarted", Some("12"), Some("s9")));
    let _ = std::fs::remove_file(&file);
}

/// A UnifiedPush subscription whose topic carries the device's keys (`<p256dh>|<auth>`) gets
/// its pushes encrypted (RFC 8291, `Content-Encoding: aes128gcm`): the sink sees no JSON, and
/// the device's private key opens OpenDHT's payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unifiedpush_with_device_keys_is_encrypted() {
    use base64::Engine;
    use kadmos_http::web_push_encryption;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let device = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let auth: [u8; 16] = rand::random();
    let p256dh = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&device.public_key(), false);
    let topic = format!("{}|{}", b64.encode(p256dh.as_bytes()), b64.encode(auth));

    let (sink_addr, mut pushes) = sink().await;
    let net = GatewayNet::start(3, 1, GatewayConfig::default()).await;
    let endpoint = format!("http://{sink_addr}/up/secret");
    let subscribe = json!({"key": endpoint, "platform": "unifiedpush", "client_id": "c", "topic": topic}).to_string();
    assert_eq!(call(net.addr(0), "SUBSCRIBE", "/key/sealed", &subscribe).await.0, 200);
    assert_eq!(call(net.addr(0), "POST", "/key/sealed", r#"{"data":"eA==","id":"21"}"#).await.0, 200);
    let (_, headers, json, raw) = next_push(&mut pushes).await;
    assert_eq!(headers["content-encoding"], "aes128gcm");
    assert_eq!(json, Json::Null, "the push service sees no JSON");
    let opened = web_push_encryption::decrypt(&raw, &device, &auth).expect("the device opens it");
    let payload: Json = serde_json::from_slice(&opened).unwrap();
    assert_eq!((payload["ids"].as_str(), payload["to"].as_str()), (Some("21"), Some("c")));
}
