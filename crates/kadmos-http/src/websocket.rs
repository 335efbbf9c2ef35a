//! `GET /ws`: one WebSocket carrying listens on many keys, for browsers and mobile apps that
//! would otherwise hold a connection per key. Text messages, JSON:
//!
//! - client → gateway: `{"listen": KEY}` and `{"unlisten": KEY}`, KEY as on the HTTP routes
//!   (40 hex digits, or text whose SHA-1 is the key);
//! - gateway → client: `{"key": HEX, "listening": true}` once a listen runs, then
//!   `{"key": HEX, "value": VALUE}` per value and change (VALUE is OpenDHT's Value JSON, with
//!   `"expired": true` on expiries), `{"key": HEX, "listening": false}` after an unlisten, and
//!   `{"err": MESSAGE}` (with `key` when about one) for a bad message or a refused listen.
//!
//! Each listen counts against the client address's listen cap, like an HTTP listen stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use kadmos::opendht::key_from_str;
use kadmos::Id;
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api_error::{ApiError, ApiResult};
use crate::gateway::Shared;
use crate::value_json;

/// Messages queued for a client before its listens wait for it to read.
const OUTBOX: usize = 1024;

/// Accepts the upgrade (400 if the request is not one).
pub async fn upgrade(shared: Arc<Shared>, peer: SocketAddr, mut parts: Parts) -> ApiResult<Response> {
    shared.opendht()?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|_| ApiError::BadRequest("GET /ws expects a WebSocket upgrade".into()))?;
    Ok(upgrade.on_upgrade(move |socket| session(shared, peer, socket)))
}

/// The listens of one connection, stopped when it closes.
struct Listens(HashMap<Id, JoinHandle<()>>);

impl Drop for Listens {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn session(shared: Arc<Shared>, peer: SocketAddr, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let (outbox, mut outgoing) = mpsc::channel::<String>(OUTBOX);
    let mut listens = Listens(HashMap::new());
    loop {
        tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = command(&shared, peer, &text, &mut listens, &outbox).await {
                        if sink.send(Message::Text(reply.to_string())).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // pings are answered by the library; binary is ignored
            },
            Some(text) = outgoing.recv() => {
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Carries out one client message; returns the direct answer, if any.
async fn command(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    text: &str,
    listens: &mut Listens,
    outbox: &mpsc::Sender<String>,
) -> Option<Json> {
    let message: Json = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(e) => return Some(json!({ "err": format!("not JSON: {e}") })),
    };
    if let Some(key) = message["unlisten"].as_str() {
        let key = key_from_str(key);
        if let Some(task) = listens.0.remove(&key) {
            task.abort();
        }
        return Some(json!({ "key": key.to_string(), "listening": false }));
    }
    let Some(key) = message["listen"].as_str() else {
        return Some(json!({ "err": "expected {\"listen\": KEY} or {\"unlisten\": KEY}" }));
    };
    let key = key_from_str(key);
    if listens.0.get(&key).is_some_and(|t| !t.is_finished()) {
        return Some(json!({ "key": key.to_string(), "listening": true }));
    }
    let dht = shared.opendht().ok()?;
    let refused = |e: ApiError| Some(json!({ "key": key.to_string(), "err": e.to_string() }));
    let slot = match shared.limits.open_listen(peer.ip()) {
        Ok(slot) => slot,
        Err(e) => return refused(e),
    };
    let subscription = match shared.within(shared.listens.subscribe(dht, key, None)).await {
        Ok(subscription) => subscription,
        Err(e) => return refused(e),
    };
    let (outbox, open) = (outbox.clone(), shared.stats.listen_opened());
    let task = tokio::spawn(async move {
        let _held = (slot, open);
        let mut events = std::pin::pin!(subscription.into_stream());
        while let Some(event) = events.next().await {
            let value = value_json::to_json(&event.event.value, event.event.expired);
            if outbox.send(json!({ "key": key.to_string(), "value": value }).to_string()).await.is_err() {
                break;
            }
        }
    });
    listens.0.insert(key, task);
    Some(json!({ "key": key.to_string(), "listening": true }))
}
