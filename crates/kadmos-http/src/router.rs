//! Request routing. OpenDHT's proxy uses methods axum's router does not know (`SUBSCRIBE`,
//! `UNSUBSCRIBE`, and the older `LISTEN` and `STATS`) and hashes the *raw* (still
//! percent-encoded) path segment of a key that is not 40 hex digits, so routes are matched here
//! on the method and the raw path. Every answer carries CORS headers; `OPTIONS` on any route is
//! a preflight answer listing that route's methods; unknown paths get 404 and known paths with
//! another method 405 with `Allow`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use kadmos::opendht::key_from_str;

use crate::api_error::{ApiError, ApiResult};
use crate::gateway::Shared;
use crate::{mainline_api, node_status, openapi, opendht_api, push, websocket, zbase32};

/// Every route: its path template and its methods besides OPTIONS. The OpenAPI document is made
/// from this table, and a test checks the table against [`Route::parse`] and [`Route::methods`].
pub(crate) const ROUTES: &[(&str, &[&str])] = &[
    ("/", &["GET", "STATS"]),
    ("/node/info", &["GET"]),
    ("/node/stats", &["GET"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/ws", &["GET"]),
    ("/key/{h}", &["GET", "POST", "SUBSCRIBE", "UNSUBSCRIBE"]),
    ("/key/{h}/listen", &["GET"]),
    ("/key/{h}/options", &["GET"]),
    ("/{h}", &["GET", "POST", "LISTEN", "SUBSCRIBE", "UNSUBSCRIBE"]),
    ("/mainline/peers/{infohash}", &["GET"]),
    ("/mainline/announce/{infohash}", &["POST"]),
    ("/mainline/immutable", &["POST"]),
    ("/mainline/immutable/{target}", &["GET"]),
    ("/mainline/mutable/{public_key}", &["GET", "PUT"]),
    ("/pkarr/{key}", &["GET", "PUT"]),
];

/// The routes, as matched on the raw path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/` (OpenDHT's legacy node info, and `STATS /`) and `/node/info`.
    Root,
    NodeInfo,
    NodeStats,
    Healthz,
    Readyz,
    OpenApi,
    /// `/ws`: listens on many keys over one WebSocket.
    WebSocket,
    /// `/key/{h}`, or the legacy `/{h}` (which also takes `LISTEN`).
    Key {
        raw: String,
        legacy: bool,
    },
    /// `/key/{h}/listen`.
    Listen(String),
    /// `/key/{h}/options`: OpenDHT's way of asking for the CORS headers with a GET.
    KeyOptions,
    /// `/mainline/peers/{infohash}`.
    Peers(String),
    /// `/mainline/announce/{infohash}`.
    Announce(String),
    /// `/mainline/immutable/{target}` (GET) and `/mainline/immutable` (POST).
    Immutable(String),
    ImmutablePost,
    /// `/mainline/mutable/{public key hex}?salt=`.
    Mutable(String),
    /// `/pkarr/{z-base32 public key}`: the pkarr relay API.
    Pkarr(String),
}

impl Route {
    pub(crate) fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let route = match segments.as_slice() {
            [""] => Route::Root,
            ["node", "info"] => Route::NodeInfo,
            ["node", "stats"] => Route::NodeStats,
            ["healthz"] => Route::Healthz,
            ["readyz"] => Route::Readyz,
            ["openapi.json"] => Route::OpenApi,
            ["ws"] => Route::WebSocket,
            ["key", h] if !h.is_empty() => Route::Key { raw: h.to_string(), legacy: false },
            ["key", h, "listen"] if !h.is_empty() => Route::Listen(h.to_string()),
            ["key", h, "options"] if !h.is_empty() => Route::KeyOptions,
            ["mainline", "peers", h] => Route::Peers(h.to_string()),
            ["mainline", "announce", h] => Route::Announce(h.to_string()),
            ["mainline", "immutable"] => Route::ImmutablePost,
            ["mainline", "immutable", t] => Route::Immutable(t.to_string()),
            ["mainline", "mutable", k] => Route::Mutable(k.to_string()),
            ["pkarr", k] => Route::Pkarr(k.to_string()),
            [h] if !h.is_empty() && !["key", "node", "mainline", "pkarr", "openapi.json", "ws"].contains(h) => {
                Route::Key { raw: h.to_string(), legacy: true }
            }
            _ => return None,
        };
        Some(route)
    }

    /// The methods the route answers, besides `OPTIONS` (which every route answers).
    pub(crate) fn methods(&self) -> &'static [&'static str] {
        match self {
            Route::Root => &["GET", "STATS"],
            Route::NodeInfo | Route::NodeStats | Route::Healthz | Route::Readyz | Route::OpenApi | Route::Listen(_) => {
                &["GET"]
            }
            Route::KeyOptions | Route::Peers(_) | Route::Immutable(_) | Route::WebSocket => &["GET"],
            Route::Announce(_) | Route::ImmutablePost => &["POST"],
            Route::Mutable(_) | Route::Pkarr(_) => &["GET", "PUT"],
            Route::Key { legacy: false, .. } => &["GET", "POST", "SUBSCRIBE", "UNSUBSCRIBE"],
            Route::Key { legacy: true, .. } => &["GET", "POST", "LISTEN", "SUBSCRIBE", "UNSUBSCRIBE"],
        }
    }
}

/// Methods that change something: these need the bearer token when the gateway has one.
fn is_write(method: &Method) -> bool {
    matches!(method.as_str(), "POST" | "PUT" | "SUBSCRIBE" | "UNSUBSCRIBE")
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    shared.stats.count_request();
    let mut response = handle(&shared, peer, request).await.unwrap_or_else(IntoResponse::into_response);
    add_cors(response.headers_mut());
    response
}

/// What every answer carries so that any web page may read it.
pub(crate) fn add_cors(headers: &mut HeaderMap) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after, allow"));
}

fn allow_list(route: &Route) -> String {
    let mut methods = route.methods().to_vec();
    methods.push("OPTIONS");
    methods.join(", ")
}

/// The answer to a CORS preflight (and to `GET /key/{h}/options`).
fn preflight(route: &Route) -> Response {
    let allow = HeaderValue::from_str(&allow_list(route)).unwrap_or(HeaderValue::from_static("GET, OPTIONS"));
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ALLOW, allow.clone());
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization, last-event-id, accept"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn check_token(shared: &Shared, headers: &HeaderMap) -> ApiResult<()> {
    let Some(token) = &shared.config.write_token else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    // Compared in full whatever the first difference, so timing does not reveal the token.
    let matches = given.is_some_and(|g| {
        g.len() == token.len() && g.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    });
    if matches {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn pkarr_key(text: &str) -> ApiResult<[u8; 32]> {
    let text = text.strip_prefix("pk:").unwrap_or(text);
    zbase32::decode_key(text)
        .ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not a pkarr key (52 z-base-32 characters)")))
}

async fn handle(shared: &Arc<Shared>, peer: SocketAddr, request: Request) -> ApiResult<Response> {
    shared.limits.admit(peer.ip())?;
    let route = Route::parse(request.uri().path())
        .ok_or_else(|| ApiError::NotFound(format!("no route {}", request.uri().path())))?;
    let method = request.method().clone();
    if method == Method::OPTIONS {
        return Ok(preflight(&route));
    }
    if !route.methods().contains(&method.as_str()) {
        return Err(ApiError::MethodNotAllowed { allow: allow_list(&route) });
    }
    if is_write(&method) {
        check_token(shared, request.headers())?;
    }
    let (parts, body) = request.into_parts();
    match (route, method.as_str()) {
        (Route::Root | Route::NodeInfo, "GET") => node_status::node_info(shared, peer).await,
        (Route::Root, "STATS") | (Route::NodeStats, _) => node_status::node_stats(shared, peer).await,
        (Route::Healthz, _) => Ok(node_status::healthz()),
        (Route::Readyz, _) => node_status::readyz(shared).await,
        (Route::WebSocket, _) => websocket::upgrade(shared.clone(), peer, parts).await,
        (Route::OpenApi, _) => {
            Ok(([(header::CONTENT_TYPE, "application/json")], openapi::document().to_string()).into_response())
        }
        (route @ Route::KeyOptions, _) => Ok(preflight(&route)),
        (Route::Listen(raw), _) | (Route::Key { raw, .. }, "LISTEN") => {
            opendht_api::listen(shared, key_from_str(&raw), &parts.headers, peer).await
        }
        (Route::Key { raw, .. }, "GET") => opendht_api::get(shared, key_from_str(&raw), &parts.headers).await,
        (Route::Key { raw, .. }, "POST") => opendht_api::post(shared, key_from_str(&raw), body).await,
        (Route::Peers(h), _) => mainline_api::peers(shared, &h, &parts.headers).await,
        (Route::Announce(h), _) => mainline_api::announce(shared, &h, body).await,
        (Route::Immutable(t), _) => mainline_api::get_immutable(shared, &t).await,
        (Route::ImmutablePost, _) => mainline_api::put_immutable(shared, &parts.headers, body).await,
        (Route::Mutable(k), "GET") => {
            mainline_api::get_mutable(
                shared,
                mainline_api::hex_public_key(&k)?,
                &mainline_api::salt_of(parts.uri.query())?,
            )
            .await
        }
        (Route::Mutable(k), "PUT") => {
            let (key, salt) = (mainline_api::hex_public_key(&k)?, mainline_api::salt_of(parts.uri.query())?);
            mainline_api::put_mutable(shared, key, &salt, &parts.headers, body).await
        }
        (Route::Pkarr(k), "GET") => mainline_api::get_mutable(shared, pkarr_key(&k)?, &[]).await,
        (Route::Pkarr(k), "PUT") => mainline_api::put_mutable(shared, pkarr_key(&k)?, &[], &parts.headers, body).await,
        (Route::Key { raw, .. }, "SUBSCRIBE") => {
            push::subscribe(shared, key_from_str(&raw), &parts.headers, body).await
        }
        (Route::Key { raw, .. }, "UNSUBSCRIBE") => push::unsubscribe(shared, key_from_str(&raw), body).await,
        (route, method) => Err(ApiError::MethodNotAllowed { allow: format!("{} (not {method})", allow_list(&route)) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paths map to OpenDHT's routes; the raw segment is kept (it is what gets hashed).
    #[test]
    fn paths() {
        assert_eq!(Route::parse("/"), Some(Route::Root));
        assert_eq!(Route::parse("/node/info"), Some(Route::NodeInfo));
        assert_eq!(Route::parse("/key/hello%20world"), Some(Route::Key { raw: "hello%20world".into(), legacy: false }));
        assert_eq!(Route::parse("/key/abc/listen"), Some(Route::Listen("abc".into())));
        assert_eq!(Route::parse("/abc"), Some(Route::Key { raw: "abc".into(), legacy: true }));
        assert_eq!(Route::parse("/key/"), None);
        assert_eq!(Route::parse("/a/b/c/d"), None);
    }
}
