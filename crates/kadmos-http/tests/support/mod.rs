//! Shared by the gateway tests: OpenDHT testnets with gateways on loopback, and small request
//! helpers over the crate's own HTTP client.
#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::Method;
use bytes::Bytes;
use kadmos::opendht::Testnet;
use kadmos_http::{send, Gateway, GatewayConfig, HttpResponse, RunningGateway};
use serde_json::Value as Json;

/// Generous: a debug build on two busy cores.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// An OpenDHT testnet with a gateway on some of its nodes.
pub struct GatewayNet {
    pub testnet: Testnet,
    pub gateways: Vec<RunningGateway>,
}

impl GatewayNet {
    /// `nodes` OpenDHT nodes, gateways (with `config`) on the first `gateways` of them.
    pub async fn start(nodes: usize, gateways: usize, config: GatewayConfig) -> GatewayNet {
        let testnet = Testnet::new(nodes).await.expect("testnet");
        let mut running = Vec::new();
        for node in testnet.nodes.iter().take(gateways) {
            let gateway = Gateway::new(Some(node.clone()), None, config.clone());
            running.push(gateway.bind("127.0.0.1:0".parse().unwrap()).await.expect("bind gateway"));
        }
        GatewayNet { testnet, gateways: running }
    }

    pub fn addr(&self, gateway: usize) -> SocketAddr {
        self.gateways[gateway].local_addr
    }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    send(addr, method, path, headers, Bytes::from(body.to_string()), DEADLINE).await.expect("an answer")
}

/// Status and whole body of a request.
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let response = request(addr, method, path, &[("content-type", "application/json")], body).await;
    let status = response.status.as_u16();
    (status, response.text().await.expect("body"))
}

/// Status and JSON body.
pub async fn call_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Json) {
    let (status, text) = call(addr, method, path, body).await;
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
    (status, json)
}

/// Each line of a newline-delimited answer, parsed.
pub fn json_lines(text: &str) -> Vec<Json> {
    text.lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

/// Reads lines of a stream until one satisfies `wanted`, within `within`; returns it.
pub async fn wait_line(stream: &mut HttpResponse, within: Duration, wanted: impl Fn(&str) -> bool) -> String {
    let result = tokio::time::timeout(within, async {
        while let Some(line) = stream.next_line().await {
            let line = line.expect("stream intact");
            if wanted(&line) {
                return line;
            }
        }
        panic!("the stream ended before the awaited line");
    })
    .await;
    result.expect("the awaited line arrived in time")
}
