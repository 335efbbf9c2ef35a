//! Push notifications, as OpenDHT's proxy sends them: `SUBSCRIBE /key/{h}` with a device token
//! starts a listen on the key held by the gateway (24 h from the last SUBSCRIBE); each change
//! sends the device a push *without* the values (`{"key", "to", "t", "s", "ids"}`, plus `"exp"`
//! for expirations), after which the app GETs the key. Android and iOS tokens go through a
//! gorush-compatible push server (`POST {server}/api/push`); a UnifiedPush token is the
//! endpoint URL itself, posted to directly with `TTL` and `Urgency` headers. Two hours before a
//! subscription expires the device gets `{"timeout": key, "to": client_id}`, OpenDHT's hint to
//! subscribe again. `UNSUBSCRIBE` stops it. Subscriptions are saved with the gateway's state
//! and started again, for the time they had left, by the next gateway. Only `http://` push servers and endpoints are
//! reached (put a TLS-terminating relay in front of an `https://` one). A UnifiedPush
//! subscription whose topic is the device's keys (`"<p256dh>|<auth>"`) gets its payloads
//! encrypted (RFC 8291, `aes128gcm`); without keys they go as plain JSON, as OpenDHT 2.x sends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use kadmos::opendht::ListenEvent;
use kadmos::Id;
use serde_json::{json, Value as Json};
use tokio::task::JoinHandle;

use crate::api_error::{ApiError, ApiResult};
use crate::gateway::Shared;
use crate::gateway_state::Changed;
use crate::opendht_api::{self, read_body};
use crate::{transport, web_push_encryption};

/// How long a push may take to be delivered to the push server or endpoint.
const PUSH_DEADLINE: Duration = Duration::from_secs(10);
/// Events arriving this close together go out as one push.
const GATHER: Duration = Duration::from_millis(50);
/// How long before expiry the device is told to subscribe again.
const TIMEOUT_NOTICE: Duration = Duration::from_secs(2 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Platform {
    Android,
    Ios,
    UnifiedPush,
}

impl Platform {
    /// OpenDHT's names; anything else is Android, as in OpenDHT.
    fn from_name(name: &str) -> Platform {
        match name {
            "ios" => Platform::Ios,
            "unifiedpush" => Platform::UnifiedPush,
            _ => Platform::Android,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Ios => "ios",
            Platform::UnifiedPush => "unifiedpush",
        }
    }
}

/// Where a subscription's pushes go.
#[derive(Clone, Debug)]
struct Device {
    token: String,
    platform: Platform,
    client_id: String,
    session_id: String,
    topic: String,
}

struct Entry {
    expires: Instant,
    warned: bool,
    device: Device,
    forwarder: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// The push subscriptions of a gateway, by (token, key, client id).
pub struct PushSubscriptions {
    entries: Mutex<HashMap<(String, Id, String), Entry>>,
    lifetime: Duration,
    /// Changed since last saved.
    pub changed: Changed,
}

impl PushSubscriptions {
    pub fn new(lifetime: Duration) -> PushSubscriptions {
        PushSubscriptions { entries: Mutex::new(HashMap::new()), lifetime, changed: Changed::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Id, String), Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Stops every subscription, without forgetting them in the saved state (a gateway being
    /// stopped; the next one restarts them).
    pub fn clear(&self) {
        let entries = std::mem::take(&mut *self.lock());
        drop(entries);
    }

    /// The subscriptions and the time each has left, as JSON (to save).
    pub fn to_json(&self) -> Json {
        let now = Instant::now();
        let saved: Vec<Json> = self
            .lock()
            .iter()
            .map(|((_, key, _), e)| {
                let d = &e.device;
                json!({ "key": key.to_string(), "token": d.token, "platform": d.platform.name(),
                        "client_id": d.client_id, "session_id": d.session_id, "topic": d.topic,
                        "left_secs": e.expires.saturating_duration_since(now).as_secs() })
            })
            .collect();
        Json::Array(saved)
    }

    /// Starts again the subscriptions [`PushSubscriptions::to_json`] saved, each for the time
    /// it had left. Entries that do not parse, or whose listen cannot start, are skipped.
    pub async fn restore(shared: &Arc<Shared>, saved: &Json) -> usize {
        let mut restored = 0;
        for entry in saved.as_array().into_iter().flatten() {
            let Some(key) = entry["key"].as_str().and_then(|k| k.parse::<Id>().ok()) else { continue };
            let left = Duration::from_secs(entry["left_secs"].as_u64().unwrap_or(0)).min(shared.push.lifetime);
            let token = field(entry, "token");
            if left.is_zero() || token.is_empty() {
                continue;
            }
            let device = Device {
                token,
                platform: Platform::from_name(entry["platform"].as_str().unwrap_or_default()),
                client_id: field(entry, "client_id"),
                session_id: field(entry, "session_id"),
                topic: field(entry, "topic"),
            };
            match start(shared, key, device, Instant::now() + left).await {
                Ok(()) => restored += 1,
                Err(e) => tracing::warn!("restoring a push subscription to {key}: {e}"),
            }
        }
        restored
    }

    /// Drops expired subscriptions; sends the timeout notice to those about to expire.
    pub fn sweep(&self, shared: &Arc<Shared>) {
        let now = Instant::now();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.expires > now);
        if entries.len() != before {
            self.changed.mark();
        }
        for ((_, key, _), entry) in entries.iter_mut() {
            if !entry.warned && entry.expires.saturating_duration_since(now) <= TIMEOUT_NOTICE {
                entry.warned = true;
                let data = json!({ "timeout": key.to_string(), "to": entry.device.client_id });
                tokio::spawn(deliver(shared.clone(), entry.device.clone(), data, false));
            }
        }
    }
}

fn field(body: &Json, name: &str) -> String {
    body[name].as_str().unwrap_or_default().to_string()
}

fn empty_object() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}\n").into_response()
}

/// `SUBSCRIBE /key/{h}`.
pub async fn subscribe(shared: &Arc<Shared>, key: Id, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    shared.opendht()?;
    let body = read_body(body, 4096).await?;
    let json: Json = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("Incorrect JSON: {e}")))?;
    let token = field(&json, "key");
    if token.is_empty() {
        return Err(ApiError::BadRequest("No token".into()));
    }
    let platform = Platform::from_name(json["platform"].as_str().unwrap_or_default());
    if platform != Platform::UnifiedPush && shared.config.push_server.is_none() {
        return Err(ApiError::NotImplemented("no push server is configured for Android and iOS tokens".into()));
    }
    if platform == Platform::UnifiedPush && transport::split_url(&token).is_err() {
        return Err(ApiError::BadRequest("a UnifiedPush token must be an http:// endpoint URL".into()));
    }
    let device = Device {
        token: token.clone(),
        platform,
        client_id: field(&json, "client_id"),
        session_id: field(&json, "session_id"),
        topic: field(&json, "topic"),
    };
    let id = (token, key, device.client_id.clone());
    let expires = Instant::now() + shared.push.lifetime;
    let existing = {
        let mut entries = shared.push.lock();
        match entries.get_mut(&id) {
            Some(entry) => {
                entry.expires = expires;
                entry.warned = false;
                entry.device = device.clone();
                shared.push.changed.mark();
                true
            }
            None => false,
        }
    };
    if existing {
        // OpenDHT answers a repeated SUBSCRIBE with the key's values, a refresh with `{}`.
        return if json["refresh"].as_bool() == Some(true) {
            Ok(empty_object())
        } else {
            opendht_api::get(shared, key, headers).await
        };
    }
    start(shared, key, device, expires).await?;
    Ok(empty_object())
}

/// Starts a subscription: a shared listen on `key` whose changes are pushed to `device`.
async fn start(shared: &Arc<Shared>, key: Id, device: Device, expires: Instant) -> ApiResult<()> {
    let dht = shared.opendht()?;
    let subscription = shared.within(shared.listens.subscribe(dht, key, None)).await?;
    let forwarder =
        tokio::spawn(forward(shared.clone(), key, device.clone(), subscription.into_stream().map(|e| e.event.clone())));
    let id = (device.token.clone(), key, device.client_id.clone());
    shared.push.lock().insert(id, Entry { expires, warned: false, device, forwarder });
    shared.push.changed.mark();
    Ok(())
}

/// `UNSUBSCRIBE /key/{h}`: `{"key": token, "client_id"}`.
pub async fn unsubscribe(shared: &Shared, key: Id, body: Body) -> ApiResult<Response> {
    let body = read_body(body, 4096).await?;
    let json: Json = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("Incorrect JSON: {e}")))?;
    let token = field(&json, "key");
    if token.is_empty() {
        return Err(ApiError::BadRequest("No token".into()));
    }
    if shared.push.lock().remove(&(token, key, field(&json, "client_id"))).is_some() {
        shared.push.changed.mark();
    }
    Ok(StatusCode::OK.into_response())
}

/// Turns a subscription's listen events into pushes, gathering those that come together.
async fn forward(
    shared: Arc<Shared>,
    key: Id,
    device: Device,
    events: impl futures_util::Stream<Item = ListenEvent> + Send + 'static,
) {
    let mut events = std::pin::pin!(events);
    while let Some(first) = events.next().await {
        let mut batch = vec![first];
        let gather = tokio::time::sleep(GATHER);
        tokio::pin!(gather);
        loop {
            tokio::select! {
                () = &mut gather => break,
                next = events.next() => match next {
                    Some(event) => batch.push(event),
                    None => break,
                },
            }
        }
        let ids = |expired: bool| {
            batch.iter().filter(|e| e.expired == expired).map(|e| e.value.id.to_string()).collect::<Vec<_>>().join(",")
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut data = json!({ "key": key.to_string(), "to": device.client_id, "t": now_ms, "s": device.session_id });
        let (new, gone) = (ids(false), ids(true));
        if !new.is_empty() {
            data["ids"] = Json::String(new);
        }
        if !gone.is_empty() {
            data["exp"] = Json::String(gone);
        }
        let high = batch.iter().any(|e| !e.expired && e.value.priority == 0);
        deliver(shared.clone(), device.clone(), data, high).await;
    }
}

/// Sends one push to the device's push server or endpoint (failures are logged: the device
/// can still GET the key).
async fn deliver(shared: Arc<Shared>, device: Device, data: Json, high_priority: bool) {
    let priority = if high_priority { "high" } else { "normal" };
    let (url, body, headers): (String, Bytes, Vec<(&str, String)>) = match device.platform {
        Platform::UnifiedPush => {
            let mut headers = vec![("ttl", "86400".to_string()), ("urgency", priority.to_string())];
            let body = match web_push_encryption::DeviceKeys::from_topic(&device.topic) {
                // The device gave its keys: RFC 8291, so that the push service cannot read it.
                Some(keys) => match web_push_encryption::encrypt(data.to_string().as_bytes(), &keys) {
                    Ok(sealed) => {
                        headers.push(("content-encoding", "aes128gcm".into()));
                        headers.push(("content-type", "application/octet-stream".into()));
                        Bytes::from(sealed)
                    }
                    Err(e) => return tracing::warn!("encrypting a push for {}: {e}", device.token),
                },
                None => {
                    headers.push(("content-type", "application/json".into()));
                    Bytes::from(data.to_string())
                }
            };
            (device.token.clone(), body, headers)
        }
        Platform::Android | Platform::Ios => {
            let Some(server) = &shared.config.push_server else { return };
            let mut notification = json!({ "tokens": [device.token], "data": data, "priority": priority });
            if device.platform == Platform::Android {
                notification["platform"] = json!(2);
                notification["time_to_live"] = json!(86400);
            } else {
                notification["platform"] = json!(1);
                notification["topic"] = json!(device.topic);
            }
            let url = format!("{}/api/push", server.trim_end_matches('/'));
            let body = Bytes::from(json!({ "notifications": [notification] }).to_string());
            (url, body, vec![("content-type", "application/json".into())])
        }
    };
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    match transport::post_url(&url, &headers, body, PUSH_DEADLINE).await {
        Ok(status) if (200..300).contains(&status) => {}
        Ok(status) => tracing::warn!("push to {url} answered {status}"),
        Err(e) => tracing::warn!("push to {url}: {e}"),
    }
}
