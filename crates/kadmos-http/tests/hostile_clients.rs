//! Whatever a client sends, the gateway answers with a status (never a crash or a hang), and
//! the node's stored data is still there afterwards.

mod support;

use kadmos::Testnet;
use kadmos_http::{Gateway, GatewayConfig};
use rand::{Rng, SeedableRng};
use support::*;

/// Random bodies (bytes, truncated and mistyped JSON, huge numbers), odd keys (control bytes,
/// percent escapes, 3,000-character segments) and every method on every route, including
/// the Mainline and pkarr ones: each request gets an answer below 500 or one of the gateway's
/// own 50x (501-504), the gateway still answers `/healthz`, and a value stored before is still
/// returned by a GET.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_never_crashes_the_gateway() {
    let net = GatewayNet::start(3, 0, GatewayConfig::default()).await;
    let mainline = Testnet::new(3).await.unwrap();
    let gw =
        Gateway::new(Some(net.testnet.nodes[0].clone()), Some(mainline.nodes[0].clone()), GatewayConfig::default())
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let addr = gw.local_addr;
    let (status, _) = call(addr, "POST", "/key/kept-safe", r#"{"data":"c2FmZQ==","id":"5"}"#).await;
    assert_eq!(status, 200);

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let keys = ["%00%ff", "..", "a%2Fb", &"k".repeat(3000), "ünï", "0123456789abcdef0123456789abcdef0123456g"];
    let templates = [
        "/key/{}",
        "/key/{}/listen",
        "/{}",
        "/mainline/peers/{}",
        "/mainline/announce/{}",
        "/mainline/immutable/{}",
        "/mainline/mutable/{}?salt=zz",
        "/pkarr/{}",
        "/node/{}",
        "/key/{}/options",
    ];
    let methods = ["GET", "POST", "PUT", "SUBSCRIBE", "UNSUBSCRIBE", "LISTEN", "DELETE", "PATCH", "OPTIONS"];
    for round in 0..120 {
        let path = templates[rng.gen_range(0..templates.len())].replace("{}", keys[rng.gen_range(0..keys.len())]);
        let method = methods[rng.gen_range(0..methods.len())];
        let body: String = match round % 4 {
            0 => (0..rng.gen_range(0..300)).map(|_| rng.gen_range(0x20u8..0x7f) as char).collect(),
            1 => r#"{"id":"99999999999999999999999","data":5,"type":-1}"#.into(),
            2 => r#"{"key":"tok","platform":"unifiedpush"}"#.into(),
            _ => r#"{"data":"eA==","permanent":{"key":null}"#.into(),
        };
        // Only the head is awaited: listen streams never end.
        let response = request(addr, method, &path, &[], &body).await;
        let status = response.status.as_u16();
        assert!(status < 500 || (501..=504).contains(&status), "{method} {path}: {status}");
    }
    assert_eq!(call(addr, "GET", "/healthz", "").await.0, 200);
    let (_, text) = call(addr, "GET", "/key/kept-safe", "").await;
    assert!(text.contains("c2FmZQ=="), "stored data survives: {text}");
}
