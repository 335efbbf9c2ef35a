//! The daemon's own routes, next to the gateway's: what `kadmos node` serves on loopback so
//! that the CLI can ask the warm node instead of starting a cold one, and what an operator
//! reads (`/metrics`, the dashboard at `/ui/`).
//!
//! - Reads, on every gateway: `GET /daemon/stats` (both nodes' counters and sizes, the
//!   gateway's), `GET /daemon/routing-table` (both nodes' tables: buckets, contacts with status
//!   and last answer, replacement caches), `GET /daemon/history` (traffic and contacts sampled
//!   every 10 s over the last hour), `GET /metrics`, `GET /ui/`.
//! - Control, only on a gateway given a [`DaemonControl`], and only with its bearer token:
//!   `POST /daemon/stop`, and the Mainline operations the one-shot commands run through the
//!   daemon (`GET /daemon/mainline/peers/{infohash}`, `POST
//!   /daemon/mainline/announce/{infohash}[?port=N]`, `GET /daemon/mainline/find-node/{id}`,
//!   `GET /daemon/mainline/ping/{addr}`, `DELETE /daemon/mainline/watch/{infohash}`, `POST
//!   /daemon/mainline/immutable`, `GET
//!   /daemon/mainline/immutable/{target}`, `GET /daemon/mainline/mutable/{public key}?salt=`),
//!   which answer in the library's own JSON forms
//!   (`PeerBatch`, `AnnounceResult`, `NodeInfo`) so the CLI prints exactly what it prints
//!   from an ephemeral node. The token keeps other local users and web pages (which can reach
//!   loopback) from steering the node; these routes carry no CORS headers, so a page of
//!   another origin cannot read them either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use futures_util::future::OptionFuture;
use futures_util::StreamExt;
use kadmos::{InfoHash, NodeId};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::api_error::{ApiError, ApiResult};
use crate::daemon_history::History;
use crate::framing::{stream_response, Framing, StreamEvent};
use crate::gateway::Shared;
use crate::metrics::{LookupKind, Metrics};
use crate::{dashboard, metrics};

/// What makes a gateway the control API of a daemon: the token its control routes require,
/// and the stop request it passes on to the daemon.
#[derive(Clone, Debug)]
pub struct DaemonControl {
    token: String,
    stop: Arc<Notify>,
}

impl DaemonControl {
    pub fn new(token: String) -> DaemonControl {
        DaemonControl { token, stop: Arc::new(Notify::new()) }
    }

    /// Resolves once a client asked the daemon to stop (`POST /daemon/stop`).
    pub async fn stop_requested(&self) {
        self.stop.notified().await;
    }
}

/// What the daemon routes read: the gateway's nodes, the control (if any), the metrics and
/// the history.
pub(crate) struct DaemonState {
    pub shared: Arc<Shared>,
    control: Option<DaemonControl>,
    pub metrics: Metrics,
    pub history: History,
    pub started: Instant,
}

impl DaemonState {
    pub fn new(shared: Arc<Shared>, control: Option<DaemonControl>) -> Arc<DaemonState> {
        let (metrics, history, started) = (Metrics::default(), History::default(), Instant::now());
        Arc::new(DaemonState { shared, control, metrics, history, started })
    }

    /// The control, if the token in `headers` is its token.
    fn authorise(&self, headers: &HeaderMap) -> ApiResult<&DaemonControl> {
        let control = self
            .control
            .as_ref()
            .ok_or_else(|| ApiError::NotFound("this gateway is not a daemon's control API".into()))?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compared in full whatever the first difference, so timing does not reveal the token.
        let same = given.len() == control.token.len()
            && given.bytes().zip(control.token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if same {
            Ok(control)
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// The infohash of a control route, once the token is checked.
    fn authorised_info_hash(&self, headers: &HeaderMap, text: &str) -> ApiResult<InfoHash> {
        self.authorise(headers)?;
        parse_id(text, "the infohash")
    }

    fn mainline(&self) -> ApiResult<&kadmos::Dht> {
        self.shared.mainline()
    }
}

/// One of the daemon's routes: its path template (`{name}` stands for a segment), its method,
/// and whether it needs the control token. The router is built from [`DAEMON_ROUTES`] and
/// `/openapi.json` describes it, so the two cannot drift apart.
pub(crate) struct DaemonRoute {
    pub template: &'static str,
    pub method: &'static str,
    pub control: bool,
}

const fn route(template: &'static str, method: &'static str, control: bool) -> DaemonRoute {
    DaemonRoute { template, method, control }
}

pub(crate) const DAEMON_ROUTES: &[DaemonRoute] = &[
    route("/daemon/stats", "GET", false),
    route("/daemon/routing-table", "GET", false),
    route("/daemon/history", "GET", false),
    route("/daemon/stop", "POST", true),
    route("/daemon/mainline/peers/{infohash}", "GET", true),
    route("/daemon/mainline/announce/{infohash}", "POST", true),
    route("/daemon/mainline/find-node/{id}", "GET", true),
    route("/daemon/mainline/ping/{addr}", "GET", true),
    route("/daemon/mainline/advertise/{infohash}", "POST", true),
    route("/daemon/mainline/watch/{infohash}", "GET", true),
    route("/daemon/mainline/watch/{infohash}", "DELETE", true),
    route("/daemon/mainline/immutable", "POST", true),
    route("/daemon/mainline/immutable/{target}", "GET", true),
    route("/daemon/mainline/mutable/{public_key}", "GET", true),
    route("/metrics", "GET", false),
    route("/ui", "GET", false),
    route("/ui/", "GET", false),
    route("/ui/{file}", "GET", false),
];

/// The handler of a route of [`DAEMON_ROUTES`], answering the route's method (`None` for a
/// template or method it does not know).
fn handler(route: &DaemonRoute) -> Option<MethodRouter<Arc<DaemonState>>> {
    let method = match route.method {
        "GET" => MethodFilter::GET,
        "POST" => MethodFilter::POST,
        "DELETE" => MethodFilter::DELETE,
        _ => return None,
    };
    Some(match (route.template, route.method) {
        ("/daemon/stats", _) => on(method, stats),
        ("/daemon/routing-table", _) => on(method, routing_table),
        ("/daemon/history", _) => on(method, history),
        ("/daemon/stop", _) => on(method, stop),
        ("/daemon/mainline/peers/{infohash}", _) => on(method, peers),
        ("/daemon/mainline/announce/{infohash}", _) => on(method, announce),
        ("/daemon/mainline/find-node/{id}", _) => on(method, find_node),
        ("/daemon/mainline/ping/{addr}", _) => on(method, ping),
        ("/daemon/mainline/advertise/{infohash}", _) => on(method, advertise),
        ("/daemon/mainline/watch/{infohash}", "DELETE") => on(method, unwatch),
        ("/daemon/mainline/watch/{infohash}", _) => on(method, watch),
        ("/daemon/mainline/immutable", _) => on(method, put_immutable),
        ("/daemon/mainline/immutable/{target}", _) => on(method, get_immutable),
        ("/daemon/mainline/mutable/{public_key}", _) => on(method, get_mutable),
        ("/metrics", _) => on(method, metrics::serve),
        ("/ui", _) => on(method, dashboard::redirect),
        ("/ui/", _) => on(method, dashboard::page),
        ("/ui/{file}", _) => on(method, dashboard::asset),
        _ => return None,
    })
}

/// A template in axum's syntax (`:name` for a segment).
fn axum_path(template: &str) -> String {
    template
        .split('/')
        .map(|s| {
            s.strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .map_or_else(|| s.to_string(), |name| format!(":{name}"))
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The gateway's router with the daemon routes added and every request counted by route and
/// status for `/metrics`.
pub(crate) fn around(gateway: Router, state: Arc<DaemonState>) -> Router {
    let mut daemon = Router::new();
    for route in DAEMON_ROUTES {
        // Every template has a handler (a unit test checks it); one without is left out.
        if let Some(handler) = handler(route) {
            daemon = daemon.route(&axum_path(route.template), handler);
        }
    }
    gateway.merge(daemon.with_state(state.clone())).layer(axum::middleware::from_fn_with_state(state, count_request))
}

/// Counts each answer under its route and status. The daemon's own routes are held to the
/// gateway's per-address request rate here (the gateway's routes check it themselves), since
/// a public gateway serves them too.
async fn count_request(State(state): State<Arc<DaemonState>>, request: Request, next: Next) -> Response {
    let route = metrics::route_label(request.uri().path());
    let own_route = route.starts_with("/daemon/") || route == "/metrics" || route == "/ui/";
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).filter(|_| own_route);
    let response = match peer.map(|ip| state.shared.limits.admit(ip)) {
        Some(Err(refused)) => refused.into_response(),
        _ => next.run(request).await,
    };
    state.metrics.count_request(route, response.status().as_u16());
    response
}

async fn stats(State(state): State<Arc<DaemonState>>) -> ApiResult<Response> {
    let shared = &state.shared;
    let mainline = OptionFuture::from(shared.mainline.as_ref().map(|d| shared.within(d.info()))).await.transpose()?;
    let opendht = OptionFuture::from(shared.opendht.as_ref().map(|d| shared.within(d.info()))).await.transpose()?;
    let gateway = json!({
        "requests": state.metrics.requests_total(),
        "open_listen_streams": shared.stats.open_listens.load(std::sync::atomic::Ordering::Relaxed),
        "puts": shared.stats.puts.load(std::sync::atomic::Ordering::Relaxed),
    });
    let advertisements =
        OptionFuture::from(shared.mainline.as_ref().map(|d| shared.within(d.advertisements()))).await.transpose()?;
    let watches = OptionFuture::from(shared.mainline.as_ref().map(|d| shared.within(d.watches()))).await.transpose()?;
    let body = json!({
        "pid": std::process::id(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "mainline": mainline,
        "opendht": opendht,
        "gateway": gateway,
        "advertisements": advertisements,
        "watches": watches,
    });
    Ok(json_body(&body))
}

async fn routing_table(State(state): State<Arc<DaemonState>>) -> ApiResult<Response> {
    let shared = &state.shared;
    let mainline =
        OptionFuture::from(shared.mainline.as_ref().map(|d| shared.within(d.routing_table()))).await.transpose()?;
    let opendht =
        OptionFuture::from(shared.opendht.as_ref().map(|d| shared.within(d.routing_table()))).await.transpose()?;
    Ok(json_body(&json!({ "mainline": mainline, "opendht": opendht })))
}

async fn history(State(state): State<Arc<DaemonState>>) -> Response {
    json_body(&state.history.samples())
}

async fn stop(State(state): State<Arc<DaemonState>>, headers: HeaderMap) -> ApiResult<Response> {
    let control = state.authorise(&headers)?;
    // notify_one keeps the request if the daemon is not waiting at this very moment.
    control.stop.notify_one();
    Ok((StatusCode::ACCEPTED, json_body(&json!({ "stopping": true }))).into_response())
}

/// A JSON answer (the gateway builds axum without its `json` feature).
fn json_body(value: &impl Serialize) -> Response {
    let body = serde_json::to_string(value).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn parse_id(text: &str, what: &str) -> ApiResult<NodeId> {
    match text.parse::<NodeId>() {
        Ok(id) if text.len() == 40 => Ok(id),
        _ => Err(ApiError::BadRequest(format!("{what} must be 40 hex digits, not {text:?}"))),
    }
}

/// Peers of a torrent as the daemon's lookup finds them: one `PeerBatch` JSON per line.
async fn peers(
    State(state): State<Arc<DaemonState>>,
    Path(info_hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let info_hash = state.authorised_info_hash(&headers, &info_hash)?;
    let dht = state.mainline()?;
    let started = Instant::now();
    let batches = state.shared.within(dht.get_peers(info_hash)).await?;
    let deadline = tokio::time::sleep_until((started + state.shared.config.operation_deadline).into());
    let timing = LookupTimer { state: state.clone(), kind: LookupKind::GetPeers, started };
    // The timer rides along with the stream and records the lookup when the stream ends.
    Ok(json_lines(batches.take_until(deadline), None, timing))
}

/// Records a lookup's duration when dropped (a streamed lookup ends when its stream does).
struct LookupTimer {
    state: Arc<DaemonState>,
    kind: LookupKind,
    started: Instant,
}

impl Drop for LookupTimer {
    fn drop(&mut self) {
        self.state.metrics.record_lookup(self.kind, self.started.elapsed(), None);
    }
}

#[derive(Deserialize)]
struct AnnounceQuery {
    port: Option<u16>,
}

async fn announce(
    State(state): State<Arc<DaemonState>>,
    Path(info_hash): Path<String>,
    Query(query): Query<AnnounceQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let info_hash = state.authorised_info_hash(&headers, &info_hash)?;
    let port = query.port.filter(|p| *p != 0);
    let dht = state.mainline()?;
    let started = Instant::now();
    let result = state.shared.within(dht.announce_peer(info_hash, port)).await?;
    state.metrics.record_lookup(LookupKind::Announce, started.elapsed(), Some(result.lookup_requests));
    // The port announced, for the CLI to print (the daemon's own with implied_port).
    let own_port = dht.local_addr_v4().or(dht.local_addrs().first().copied()).map(|a| a.port());
    Ok(json_body(&json!({ "result": result, "port": port.or(own_port) })))
}

async fn find_node(
    State(state): State<Arc<DaemonState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.authorise(&headers)?;
    let id = parse_id(&id, "the node ID")?;
    let dht = state.mainline()?;
    let started = Instant::now();
    let nodes = state.shared.within(dht.find_node(id)).await?;
    state.metrics.record_lookup(LookupKind::FindNode, started.elapsed(), None);
    Ok(json_body(&nodes))
}

async fn ping(
    State(state): State<Arc<DaemonState>>,
    Path(addr): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.authorise(&headers)?;
    let addr: SocketAddr =
        addr.parse().map_err(|_| ApiError::BadRequest(format!("{addr:?} is not an IP address and port")))?;
    let dht = state.mainline()?;
    let started = Instant::now();
    let pong = state.shared.within(dht.ping(addr)).await?;
    let rtt = started.elapsed();
    state.metrics.record_lookup(LookupKind::Ping, rtt, Some(1));
    let answer = json!({ "id": pong.id.to_string(), "addr": pong.addr, "rtt_ms": rtt.as_secs_f64() * 1000.0 });
    Ok(json_body(&answer))
}

/// How often a quest's stream carries a heartbeat (`{}`) while its quest is quiet (rounds are
/// minutes apart): writing is how the daemon learns that the client has gone, and the quest
/// is stopped when its stream is dropped.
const QUEST_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// Advertises a torrent for as long as the client stays connected: one `Renewal` JSON per
/// line per round (`?port=N`, or the daemon's own port).
async fn advertise(
    State(state): State<Arc<DaemonState>>,
    Path(info_hash): Path<String>,
    Query(query): Query<AnnounceQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let info_hash = state.authorised_info_hash(&headers, &info_hash)?;
    let dht = state.mainline()?;
    let advertisement = state.shared.within(dht.advertise(info_hash, query.port.filter(|p| *p != 0))).await?;
    let renewals = futures_util::stream::unfold(advertisement, |mut advertisement| async move {
        let renewal = advertisement.next_renewal().await?;
        Some((renewal, advertisement))
    });
    Ok(json_lines(renewals, Some(QUEST_HEARTBEAT), ()))
}

/// Watches a torrent for as long as the client stays connected: one `WatchEvent` JSON per line.
async fn watch(
    State(state): State<Arc<DaemonState>>,
    Path(info_hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let info_hash = state.authorised_info_hash(&headers, &info_hash)?;
    let watch = state.shared.within(state.mainline()?.watch(info_hash)).await?;
    Ok(json_lines(watch, Some(QUEST_HEARTBEAT), ()))
}

/// Stops the daemon's watch of a torrent, kept or not (clients watching it see their stream
/// end): `{"stopped": whether there was one}`.
async fn unwatch(
    State(state): State<Arc<DaemonState>>,
    Path(info_hash): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let info_hash = state.authorised_info_hash(&headers, &info_hash)?;
    let stopped = state.shared.within(state.mainline()?.stop_watching(info_hash)).await?;
    Ok(json_body(&json!({ "stopped": stopped })))
}

/// A 200 answer streaming each item as one JSON line as it comes (`guard` lives as long as
/// the stream).
fn json_lines<T: Serialize, G: Send + 'static>(
    items: impl futures_util::Stream<Item = T> + Send + 'static,
    heartbeat: Option<std::time::Duration>,
    guard: G,
) -> Response {
    let events = items.map(|item| StreamEvent {
        kind: "item",
        id: None,
        json: serde_json::to_string(&item).unwrap_or_default(),
    });
    stream_response(Framing::Ndjson, events, heartbeat, guard)
}

/// Stores the body as an immutable item (a byte string); answers the `PutResult`. Not kept
/// alive: the CLI's own puts are not either (their user republishes).
async fn put_immutable(
    State(state): State<Arc<DaemonState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    state.authorise(&headers)?;
    let dht = state.mainline()?.without_keep_alive();
    match state.shared.deadline(dht.put_immutable(&body)).await? {
        Ok(result) => Ok(json_body(&result)),
        Err(kadmos::Error::InvalidItem(e)) => Err(ApiError::TooLarge(e.to_string())),
        Err(e) => Err(ApiError::BadGateway(e.to_string())),
    }
}

/// An immutable item's bencoded value (checked against its target), in hex.
async fn get_immutable(
    State(state): State<Arc<DaemonState>>,
    Path(target): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.authorise(&headers)?;
    let target = parse_id(&target, "the target")?;
    match state.shared.deadline(state.mainline()?.get_immutable(target)).await? {
        Ok(value) => Ok(json_body(&json!({ "bencoded": hex::encode(value) }))),
        Err(kadmos::Error::NotFound) => Err(ApiError::NotFound("not found on the DHT".into())),
        Err(e) => Err(ApiError::BadGateway(e.to_string())),
    }
}

#[derive(Deserialize)]
struct SaltQuery {
    salt: Option<String>,
}

/// The newest verified version of a mutable item: its seq, target and bencoded value (hex).
async fn get_mutable(
    State(state): State<Arc<DaemonState>>,
    Path(public_key): Path<String>,
    Query(query): Query<SaltQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.authorise(&headers)?;
    let key: [u8; 32] = hex::decode(&public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("the public key must be 64 hex digits, not {public_key:?}")))?;
    let salt =
        hex::decode(query.salt.unwrap_or_default()).map_err(|_| ApiError::BadRequest("the salt must be hex".into()))?;
    let items = state.shared.within(state.mainline()?.get_mutable(key, &salt, None)).await?;
    let item = state.shared.deadline(items.most_recent()).await?;
    let item = item.ok_or_else(|| ApiError::NotFound("not found on the DHT".into()))?;
    let answer = json!({ "seq": item.seq, "target": item.target().to_string(), "bencoded": hex::encode(&item.value) });
    Ok(json_body(&answer))
}

/// Samples the nodes into the history every [`History::EVERY`] while the gateway runs.
pub(crate) async fn sample_history(state: Arc<DaemonState>) {
    let mut tick = tokio::time::interval(History::EVERY);
    loop {
        tick.tick().await;
        let mainline = OptionFuture::from(state.shared.mainline.as_ref().map(|d| d.info())).await.and_then(Result::ok);
        let opendht = OptionFuture::from(state.shared.opendht.as_ref().map(|d| d.info())).await.and_then(Result::ok);
        state.history.record(mainline.as_ref(), opendht.as_ref(), state.metrics.lookup_totals());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route of the table has a handler (which answers the route's method by
    /// construction), and its template becomes the path axum routes (`{name}` as `:name`).
    #[test]
    fn every_route_has_its_handler() {
        for route in DAEMON_ROUTES {
            assert!(handler(route).is_some(), "{} {} has no handler", route.method, route.template);
        }
        assert_eq!(axum_path("/daemon/mainline/peers/{infohash}"), "/daemon/mainline/peers/:infohash");
        assert_eq!(axum_path("/ui/"), "/ui/");
    }
}
