//! What the gateway says about its nodes: OpenDHT's node info (`GET /`, `/node/info`) and
//! stats (`/node/stats`), `/healthz` and `/readyz`. Every answer is read from the nodes when it
//! is asked for (OpenDHT's proxy serves a snapshot up to two minutes old, which keeps clients
//! on an isolated proxy).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kadmos::opendht::OpenDhtInfo;
use kadmos::{ContactCounts, Info};
use serde_json::{json, Value as Json};

use crate::api_error::{ApiError, ApiResult, RETRY_AFTER_SECS};
use crate::gateway::Shared;

/// Both nodes' snapshots (each `None` when not served).
struct Snapshot {
    opendht: Option<OpenDhtInfo>,
    mainline: Option<Info>,
}

async fn snapshot(shared: &Shared) -> ApiResult<Snapshot> {
    let opendht = match &shared.opendht {
        Some(dht) => Some(shared.within(dht.info()).await?),
        None => None,
    };
    let mainline = match &shared.mainline {
        Some(dht) => Some(shared.within(dht.info()).await?),
        None => None,
    };
    Ok(Snapshot { opendht, mainline })
}

fn family(counts: Option<ContactCounts>) -> Json {
    let counts = counts.unwrap_or_default();
    json!({ "good": counts.good, "dubious": counts.dubious })
}

fn good(counts: [Option<ContactCounts>; 2]) -> usize {
    counts.iter().flatten().map(|c| c.good).sum()
}

fn mainline_json(info: &Info) -> Json {
    json!({
        "node_id": info.node_id.to_string(),
        "ipv4": family(info.contacts_ipv4),
        "ipv6": family(info.contacts_ipv6),
        "ops": info.running_operations,
        "stored_peers": info.stored_peers,
        "stored_items": info.stored_items,
    })
}

/// OpenDHT's NodeInfo: per-family `good`/`dubious` contacts (which OpenDHT's client reads to
/// decide it is connected), `node_id`, `ops`, the client's address as `public_ip`, storage
/// sizes; and the Mainline node under `mainline`. A Mainline-only gateway puts the Mainline
/// node's figures at the top level.
async fn node_info_json(shared: &Shared, peer: SocketAddr) -> ApiResult<Json> {
    let snap = snapshot(shared).await?;
    let mut info = match (&snap.opendht, &snap.mainline) {
        (Some(o), _) => json!({
            "node_id": o.node_id.to_string(),
            "ipv4": family(o.contacts_ipv4),
            "ipv6": family(o.contacts_ipv6),
            "ops": o.running_operations,
            "storage_values": o.stored_values,
            "storage_size": o.remote_bytes + o.local_bytes,
            "local_storage_size": o.local_bytes,
        }),
        (None, Some(m)) => mainline_json(m),
        (None, None) => json!({}),
    };
    info["public_ip"] = Json::String(peer.ip().to_canonical().to_string());
    if let (Some(_), Some(m)) = (&snap.opendht, &snap.mainline) {
        info["mainline"] = mainline_json(m);
    }
    Ok(info)
}

fn json_response(status: StatusCode, body: &Json) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string() + "\n").into_response()
}

pub async fn node_info(shared: &Shared, peer: SocketAddr) -> ApiResult<Response> {
    Ok(json_response(StatusCode::OK, &node_info_json(shared, peer).await?))
}

/// OpenDHT's ServerStats fields, live.
pub async fn node_stats(shared: &Shared, peer: SocketAddr) -> ApiResult<Response> {
    let stats = &shared.stats;
    let body = json!({
        "listenCount": stats.open_listens.load(Ordering::Relaxed),
        "putCount": stats.puts.load(Ordering::Relaxed),
        "totalPermanentPuts": shared.permanent.len(),
        "pushListenersCount": shared.push.len(),
        "rememberedKeys": shared.hot_keys.len(),
        "sharedListens": shared.listens.len(),
        "requestRate": stats.request_rate(),
        "serverStartTime": shared.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "nodeInfo": node_info_json(shared, peer).await?,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// Liveness: the HTTP side answers.
pub fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// Good contacts of each served node: `(opendht, mainline)`.
async fn good_contacts(shared: &Shared) -> ApiResult<(Option<usize>, Option<usize>)> {
    let snap = snapshot(shared).await?;
    Ok((
        snap.opendht.map(|o| good([o.contacts_ipv4, o.contacts_ipv6])),
        snap.mainline.map(|m| good([m.contacts_ipv4, m.contacts_ipv6])),
    ))
}

/// Readiness: every served node has at least one good contact. 503 + `Retry-After` otherwise.
pub async fn readyz(shared: &Shared) -> ApiResult<Response> {
    let (opendht, mainline) = good_contacts(shared).await?;
    let ready = opendht != Some(0) && mainline != Some(0);
    let body = json!({
        "ready": ready,
        "opendht": opendht.map(|good| json!({ "good": good })),
        "mainline": mainline.map(|good| json!({ "good": good })),
    });
    let mut response = json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body);
    if !ready {
        response.headers_mut().insert(header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    }
    Ok(response)
}

/// Which network a write goes to, for [`require_contacts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    OpenDht = 0,
    Mainline = 1,
}

/// How long a count of good contacts answers the writes' check (a busy gateway would
/// otherwise ask the node for its counts on every write).
const CONTACTS_FRESH: Duration = Duration::from_millis(250);

/// The last count of good contacts of each network, and when it was taken.
#[derive(Default)]
pub struct ContactCache(Mutex<[Option<(Instant, usize)>; 2]>);

/// Fails at once (503 + `Retry-After`) when the node a write needs has no good contact: the
/// write could not reach the network, and waiting out a lookup would only delay the client's
/// failover to another gateway.
pub async fn require_contacts(shared: &Shared, network: Network) -> ApiResult<()> {
    let slot = network as usize;
    let cached = shared.contact_cache.0.lock().unwrap_or_else(|e| e.into_inner())[slot];
    let good_now = match cached {
        Some((at, good)) if at.elapsed() < CONTACTS_FRESH => good,
        _ => {
            let counts = match network {
                Network::OpenDht => {
                    let info = shared.within(shared.opendht()?.info()).await?;
                    [info.contacts_ipv4, info.contacts_ipv6]
                }
                Network::Mainline => {
                    let info = shared.within(shared.mainline()?.info()).await?;
                    [info.contacts_ipv4, info.contacts_ipv6]
                }
            };
            let good_now = good(counts);
            shared.contact_cache.0.lock().unwrap_or_else(|e| e.into_inner())[slot] = Some((Instant::now(), good_now));
            good_now
        }
    };
    if good_now == 0 {
        return Err(ApiError::Unavailable("the node has no good contacts: it cannot reach the network now".into()));
    }
    Ok(())
}
