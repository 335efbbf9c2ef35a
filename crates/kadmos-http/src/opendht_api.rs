//! OpenDHT's proxy routes on a key: get (`GET /key/{h}`), put (`POST /key/{h}`) and listen
//! (`GET /key/{h}/listen`), with OpenDHT's semantics: values streamed as the lookup finds
//! them, a POST answered after the put with the stored value (and the id the gateway gave it),
//! listen streams that never end and mark expirations.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, Stream, StreamExt};
use kadmos::opendht::{Filter, Value};
use kadmos::Id;

use crate::api_error::{ApiError, ApiResult};
use crate::client_limits::ListenSlot;
use crate::framing::{stream_response, Framing, StreamEvent};
use crate::gateway::{OpenListen, Shared};
use crate::hot_keys::Answer;
use crate::listen_sink::ListenSink;
use crate::node_status::{require_contacts, Network};
use crate::value_json;

/// Largest POST body: a 64 KiB value in base64 (87,384 bytes) plus the JSON around it, a PEM
/// owner key and a signature.
pub const MAX_POST_BODY: usize = 96 * 1024;

fn value_event(value: &Value, expired: bool) -> StreamEvent {
    StreamEvent {
        kind: if expired { "expired" } else { "value" },
        id: Some(value.id.to_string()),
        json: value_json::to_json(value, expired).to_string(),
    }
}

/// Streams the values a lookup of `key` finds, each as soon as it arrives; the answer ends with
/// the lookup, or at the gateway's deadline. The lookup is shared with concurrent and recent
/// GETs of the key ([`crate::hot_keys`]); a listen of the key running here answers instead.
pub async fn get(shared: &Shared, key: Id, headers: &HeaderMap) -> ApiResult<Response> {
    let dht = shared.opendht()?;
    // A node still joining would hold the lookup back: past the deadline that is a 504. (Once
    // joined, the check is answered at once, without arming the deadline's timer.)
    if dht.bootstrapped().now_or_never().is_none() {
        shared.within(dht.bootstrapped()).await?;
    }
    if let Some(values) = shared.listens.current_values(&key, shared.config.listen_answers_gets_after) {
        let events = futures_util::stream::iter(values).map(|v| value_event(&v, false));
        return Ok(stream_response(Framing::negotiate(headers), events, None, ()));
    }
    let framing = Framing::negotiate(headers);
    match shared.hot_keys.get(dht, key, shared.config.operation_deadline) {
        // A finished lookup's answer is encoded once and sent whole to every GET of the key.
        Answer::Complete { body, .. } if framing == Framing::Ndjson => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        Answer::Complete { values, .. } => {
            let events = futures_util::stream::iter(values.to_vec()).map(|v| value_event(&v, false));
            Ok(stream_response(framing, events, None, ()))
        }
        Answer::Streaming(values) => Ok(stream_response(framing, values.map(|v| value_event(&v, false)), None, ())),
    }
}

/// A client's listen: its events, encoded for the stream, and what must live as long as the
/// stream does (the count of open listens, the client's listen slot).
pub(crate) type OpenedListen = (Pin<Box<dyn Stream<Item = StreamEvent> + Send>>, (OpenListen, ListenSlot));

/// What a client's listen needs first: its slot (429 over the cap), and the value id it resumes
/// after (`Last-Event-ID`, the last value id an SSE client saw).
fn admit_listen(shared: &Shared, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<(ListenSlot, Option<u64>)> {
    let slot = shared.limits.open_listen(peer.ip())?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    Ok((slot, resume))
}

/// Opens a client's listen of `key` on the shared listen ([`crate::listen_hub`]), resumed
/// after `Last-Event-ID` when the journal still has it.
pub(crate) async fn open_listen(
    shared: &Shared,
    key: Id,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> ApiResult<OpenedListen> {
    let dht = shared.opendht()?;
    let (slot, resume) = admit_listen(shared, headers, peer)?;
    let subscription = shared.within(shared.listens.subscribe(dht, key, resume)).await?;
    let open = (shared.stats.listen_opened(), slot);
    let events = subscription.into_stream().map(|shared| shared.stream_event());
    Ok((Box::pin(events), open))
}

/// Opens a client's listen of `key` written by the shared listen straight to `sink` (a stream
/// served on its own socket, [`crate::listen_stream`]). What it returns must live as long as
/// the stream does.
pub(crate) async fn attach_listen(
    shared: &Shared,
    key: Id,
    headers: &HeaderMap,
    peer: SocketAddr,
    sink: &Arc<ListenSink>,
) -> ApiResult<impl Send + 'static> {
    let dht = shared.opendht()?;
    let (slot, resume) = admit_listen(shared, headers, peer)?;
    let held = shared.within(shared.listens.attach(dht, key, resume, sink)).await?;
    Ok((held, shared.stats.listen_opened(), slot))
}

/// Streams the values at `key` now, then every change, until the client goes away. (Most
/// listens do not come this way: [`crate::listen_stream`] serves a connection that opens
/// with one on its socket.)
pub async fn listen(shared: &Shared, key: Id, headers: &HeaderMap, peer: SocketAddr) -> ApiResult<Response> {
    let (events, open) = open_listen(shared, key, headers, peer).await?;
    Ok(stream_response(Framing::negotiate(headers), events, Some(shared.config.heartbeat), open))
}

/// Reads a request body of at most `limit` bytes (413 beyond).
pub async fn read_body(body: Body, limit: usize) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::TooLarge(format!("the request body is larger than {limit} bytes")))
}

/// Puts the posted value at `key` and answers with it as stored (with the id given to it), once
/// the put is done: 502 if no node stored it (no node acknowledged it, or this node refused it
/// and no node holds it), 503 at once if the node has no good contact.
pub async fn post(shared: &Shared, key: Id, body: Body) -> ApiResult<Response> {
    let dht = shared.opendht()?;
    let body = read_body(body, MAX_POST_BODY).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("Missing parameters: the body must be a value in JSON".into()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("Incorrect JSON: {e}")))?;
    let posted = value_json::from_json(&json).map_err(|e| match e {
        value_json::ValueJsonError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        _ => ApiError::BadRequest(format!("Incorrect value: {e}")),
    })?;
    require_contacts(shared, Network::OpenDht).await?;
    let mut value = posted.value;
    if posted.permanent && value.id == 0 {
        if let Some(id) = shared.permanent.same_content(&key, &value) {
            value.id = id;
        }
    }
    if value.id == 0 {
        // Chosen here rather than by the node so that a put cut short can be cancelled by id.
        value.id = rand::random::<u64>().max(1);
    }
    let stored = match shared.within(dht.put_value(key, value.clone(), posted.permanent)).await {
        Ok(report) if report.stored_here || stored_elsewhere(shared, key, &value).await => Ok(report),
        Ok(_) => Err(ApiError::BadGateway(
            "no node stored the value (this node's storage refused it, and no storing node holds it)".into(),
        )),
        Err(e) => Err(e),
    };
    let report = match stored {
        Ok(report) => report,
        Err(e) => {
            if posted.permanent {
                // A put cut short by the deadline may still be kept alive by the node.
                let _ = dht.cancel_put(key, value.id).await;
            }
            return Err(match e {
                ApiError::BadGateway(reason) => ApiError::BadGateway(format!("Put failed: {reason}")),
                other => other,
            });
        }
    };
    value.id = report.value_id;
    shared.stats.puts.fetch_add(1, Ordering::Relaxed);
    shared.hot_keys.note_put(&key, &value);
    if posted.permanent {
        shared.permanent.refresh(key, value.clone());
    }
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], value_json::to_line(&value, false))
        .into_response())
}

/// Whether a node of the network holds `value` at `key`, asked with a get of its id. A
/// storing node answers a put it refused (its storage full, say) exactly like one it stored,
/// as OpenDHT's nodes do on purpose, so the put's acknowledgements cannot tell; this is asked
/// only when this node's own storage refused the value, which is when the others' likely did
/// too (and when a refused put costs one more round, not every put).
async fn stored_elsewhere(shared: &Shared, key: Id, value: &Value) -> bool {
    let Ok(dht) = shared.opendht() else { return false };
    let found = shared.within(async {
        let mut values = dht.get_filtered(key, Filter::default().id(value.id)).await?;
        while let Some(found) = values.next().await {
            if found.content_equals(value) {
                return Ok(true);
            }
        }
        Ok(false)
    });
    found.await.unwrap_or(false)
}
