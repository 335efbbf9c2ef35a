//! kadmos-http: the gateway. Any kadmos node serves clients that run no node, over HTTP,
//! with the routes of OpenDHT's proxy server, so that OpenDHT's own proxy client works
//! against it unchanged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kadmos_http::{Gateway, GatewayConfig};
//! let dht = kadmos::OpenDht::builder().build().await?;
//! let gateway = Gateway::new(Some(dht), None, GatewayConfig::default());
//! let running = gateway.bind("127.0.0.1:8080".parse()?).await?;
//! println!("serving on http://{}", running.local_addr);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`gateway`]: [`Gateway`], [`GatewayConfig`], the server task.
//! - `server`: the accept loop: listen streams to `listen_stream`, the rest to hyper.
//! - `listen_stream`: a connection opening with a listen, served straight on its socket.
//! - `gateway_state`: permanent puts and push subscriptions saved across restarts.
//! - `router`: matching method and raw path to a route; CORS, 404/405, the write token.
//! - `opendht_api`: OpenDHT's get, put and listen on a key.
//! - `hot_keys`: GETs of a key share one lookup; recent results answer the next GETs.
//! - `listen_hub`: one node listen per key shared by its clients; journal for resuming.
//! - `listen_sink`: a listen stream's socket as the hub writes each event to it.
//! - `mainline_api`: Mainline peers and announces, BEP 44 items, the pkarr relay API.
//! - `push`: SUBSCRIBE/UNSUBSCRIBE, pushes through gorush or UnifiedPush.
//! - [`web_push_encryption`]: RFC 8291 encryption of UnifiedPush payloads.
//! - [`relay_payload`]: pkarr's `sig ‖ seq ‖ v` body; [`zbase32`]: pkarr's key encoding.
//! - `node_status`: node info, stats, `/healthz`, `/readyz`.
//! - [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json`.
//! - `permanent`: permanent puts and their 24 h lifetime.
//! - `websocket`: `/ws`, listens on many keys over one WebSocket.
//! - [`framing`]: newline-delimited JSON or Server-Sent Events.
//! - [`value_json`]: OpenDHT's JSON form of a value.
//! - [`client`]: [`Client`], the thin client over a list of gateways (probing, failover).
//! - [`client_limits`]: per-address request rate and listen-stream cap (429).
//! - [`transport`]: a small HTTP/1.1 client (one connection per request, deadlines).
//! - [`api_error`]: error answers (`{"err": ...}` with a status code).
//! - `daemon_api`: the daemon's routes (stats, routing table, history, stop, Mainline
//!   operations for the CLI) and [`DaemonControl`]; `daemon_history`: the last hour sampled;
//!   `metrics`: `/metrics` in Prometheus's format; `dashboard`: the page at `/ui/`.

pub mod api_error;
pub mod client;
pub mod client_limits;
mod daemon_api;
mod daemon_history;
mod dashboard;
pub mod framing;
pub mod gateway;
mod gateway_state;
mod hot_keys;
mod listen_hub;
mod listen_sink;
mod listen_stream;
mod mainline_api;
mod metrics;
mod node_status;
pub mod openapi;
mod opendht_api;
mod permanent;
mod push;
pub mod relay_payload;
mod router;
mod server;
pub mod transport;
pub mod value_json;
pub mod web_push_encryption;
mod websocket;
pub mod zbase32;
pub use transport::{send, HttpResponse, TransportError};

pub use api_error::ApiError;
pub use client::{Client, ClientConfig, ClientError, ClientListen};
pub use client_limits::LimitsConfig;
pub use daemon_api::DaemonControl;
pub use gateway::{Gateway, GatewayConfig, RunningGateway};
