//! Mainline routes: peers of a torrent as the lookup finds them, announces, BEP 44 immutable
//! and mutable items (the client signs mutable items; the gateway checks the signature), and
//! the pkarr relay API over the same mutable items.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use kadmos::{Id, InfoHash};
use kadmos_proto::mainline::ItemError;
use serde_json::json;

use crate::api_error::{ApiError, ApiResult};
use crate::framing::{stream_response, Framing, StreamEvent};
use crate::gateway::Shared;
use crate::node_status::{require_contacts, Network};
use crate::opendht_api::read_body;
use crate::relay_payload::{self, PayloadError};

fn parse_id(text: &str, what: &str) -> ApiResult<Id> {
    if text.len() != 40 {
        return Err(ApiError::BadRequest(format!("{what} must be 40 hex digits, not {text:?}")));
    }
    text.parse().map_err(|_| ApiError::BadRequest(format!("{what} must be 40 hex digits, not {text:?}")))
}

/// Streams the peers a `get_peers` lookup finds, each once, as it arrives: NDJSON lines
/// `{"peer": "ip:port", "from": "ip:port"}` or SSE events named `peer`. Ends with the lookup or
/// at the gateway's deadline.
pub async fn peers(shared: &Shared, info_hash: &str, headers: &HeaderMap) -> ApiResult<Response> {
    let info_hash: InfoHash = parse_id(info_hash, "the infohash")?;
    let dht = shared.mainline()?;
    let batches = shared.within(dht.get_peers(info_hash)).await?;
    let deadline = tokio::time::sleep_until((Instant::now() + shared.config.operation_deadline).into());
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let events = batches
        .take_until(deadline)
        .flat_map(|batch| {
            let from = batch.from.addr;
            futures_util::stream::iter(batch.peers.into_iter().map(move |peer| (from, peer)))
        })
        .filter_map(move |(from, peer)| {
            let new = seen.insert(peer);
            std::future::ready(new.then(|| StreamEvent {
                kind: "peer",
                id: None,
                json: json!({ "peer": peer.to_string(), "from": from.to_string() }).to_string(),
            }))
        });
    Ok(stream_response(Framing::negotiate(headers), events, None, ()))
}

/// Announces a peer: body `{"port": N}`, or empty / `{}` / `{"implied_port": true}` for the
/// node's own port. Answers `{"stored": n}` once the nodes closest to the infohash stored it.
pub async fn announce(shared: &Shared, info_hash: &str, body: Body) -> ApiResult<Response> {
    let info_hash: InfoHash = parse_id(info_hash, "the infohash")?;
    let dht = shared.mainline()?;
    let body = read_body(body, 1024).await?;
    let port = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let json: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("Incorrect JSON: {e}")))?;
        match &json["port"] {
            serde_json::Value::Null => None,
            port => Some(
                port.as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0)
                    .ok_or_else(|| ApiError::BadRequest("port must be 1-65535".into()))?,
            ),
        }
    };
    require_contacts(shared, Network::Mainline).await?;
    let result = shared.within(dht.announce_peer(info_hash, port)).await?;
    let body = json!({ "stored": result.stored_at.len() });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string() + "\n").into_response())
}

/// The typed answer to a failed BEP 44 put.
fn item_error(error: kadmos::Error) -> ApiError {
    match error {
        kadmos::Error::InvalidItem(ItemError::ValueTooBig(n)) => {
            ApiError::TooLarge(format!("the value is {n} bytes bencoded; BEP 44 allows 1000"))
        }
        kadmos::Error::InvalidItem(e) => ApiError::BadRequest(e.to_string()),
        kadmos::Error::CasMismatch(m) => ApiError::PreconditionFailed(m),
        kadmos::Error::SeqTooLow(m) => ApiError::Conflict(m),
        kadmos::Error::InvalidSignature(m) => ApiError::BadRequest(m),
        kadmos::Error::Shutdown => ApiError::Unavailable("the node is shutting down".into()),
        other => ApiError::BadGateway(format!("Put failed: {other}")),
    }
}

/// `GET /mainline/immutable/{target}`: the item's bencoded value, checked against the target.
pub async fn get_immutable(shared: &Shared, target: &str) -> ApiResult<Response> {
    let target = parse_id(target, "the target")?;
    let dht = shared.mainline()?;
    match shared.deadline(dht.get_immutable(target)).await? {
        Ok(value) => Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/x-bencode")], value).into_response()),
        Err(kadmos::Error::NotFound) => Err(ApiError::NotFound(format!("no node holds an item {target}"))),
        Err(e) => Err(ApiError::BadGateway(e.to_string())),
    }
}

/// `POST /mainline/immutable`: stores the body, as is when it is `application/x-bencode`,
/// otherwise as a byte string. Answers `{"target": hex, "stored": n}`.
pub async fn put_immutable(shared: &Shared, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    let dht = shared.mainline()?.without_keep_alive();
    let body = read_body(body, relay_payload::MAX_VALUE).await?;
    let bencoded =
        headers.get(header::CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/x-bencode"));
    require_contacts(shared, Network::Mainline).await?;
    let put = if bencoded {
        shared.deadline(dht.put_immutable_bencoded(body.to_vec())).await?
    } else {
        shared.deadline(dht.put_immutable(&body)).await?
    };
    let result = put.map_err(item_error)?;
    let body = json!({ "target": result.target.to_string(), "stored": result.stored_at.len() });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string() + "\n").into_response())
}

/// The public key of `/mainline/mutable/{hex}`.
pub fn hex_public_key(text: &str) -> ApiResult<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key)
        .map_err(|_| ApiError::BadRequest(format!("the public key must be 64 hex digits, not {text:?}")))?;
    Ok(key)
}

/// The `salt` query parameter (hex), empty when absent.
pub fn salt_of(query: Option<&str>) -> ApiResult<Vec<u8>> {
    let Some(salt) = query.into_iter().flat_map(|q| q.split('&')).find_map(|p| p.strip_prefix("salt=")) else {
        return Ok(Vec::new());
    };
    let salt = hex::decode(salt).map_err(|_| ApiError::BadRequest("salt must be hex digits".into()))?;
    if salt.len() > 64 {
        return Err(ApiError::BadRequest(format!("salt is {} bytes; BEP 44 allows 64", salt.len())));
    }
    Ok(salt)
}

/// The newest version of a mutable item as a pkarr relay payload (`sig ‖ seq ‖ v`).
pub async fn get_mutable(shared: &Shared, public_key: [u8; 32], salt: &[u8]) -> ApiResult<Response> {
    let dht = shared.mainline()?;
    let lookup = async { Ok(dht.get_mutable(public_key, salt, None).await?.most_recent().await) };
    let newest = shared.within(lookup).await?.ok_or_else(|| ApiError::NotFound("no node holds this item".into()))?;
    let body = relay_payload::from_item(&newest)
        .ok_or_else(|| ApiError::BadGateway("the stored value is not a byte string: it has no relay form".into()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/pkarr.org/relays#payload")], body).into_response())
}

/// Stores a mutable item the client signed (a pkarr relay payload), after checking the
/// signature: 204 when stored; 400 bad signature, 409 seq not above the stored one, 412 when
/// `If-Match` (the seq the client expects stored: BEP 44's CAS) does not hold.
pub async fn put_mutable(
    shared: &Shared,
    public_key: [u8; 32],
    salt: &[u8],
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let dht = shared.mainline()?.without_keep_alive();
    let body = read_body(body, relay_payload::MAX_BODY).await?;
    let item = relay_payload::to_item(public_key, salt, &body)
        .map_err(|e: PayloadError| ApiError::BadRequest(e.to_string()))?;
    item.verify().map_err(|e| item_error(kadmos::Error::InvalidItem(e)))?;
    let cas = match headers.get(header::IF_MATCH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().trim_matches('"').parse::<i64>().ok())
                .ok_or_else(|| ApiError::BadRequest("If-Match must be the expected seq".into()))?,
        ),
    };
    require_contacts(shared, Network::Mainline).await?;
    shared.deadline(dht.put_signed_mutable(item, cas)).await?.map_err(item_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
