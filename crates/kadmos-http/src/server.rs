//! The gateway's accept loop. A connection whose first request is a listen (`GET
//! /key/{h}/listen`) is served straight on its socket by [`crate::listen_stream`]; every other
//! connection goes to hyper and the axum router. The reason is memory: hyper keeps two 8 KiB
//! buffers per connection for as long as it lives, which for thousands of long-lived listen
//! streams is most of the gateway's memory; a listen stream needs neither.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tower_service::Service;

use crate::daemon_api::DaemonState;
use crate::listen_stream;

/// The most of a first request looked at to recognise a listen; a longer head goes to hyper.
const PEEK: usize = 2048;

/// Accepts connections on `listener` and serves them until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, app: Router, daemon: Arc<DaemonState>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close rather than spin.
                tracing::warn!("gateway accept: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let (app, daemon) = (app.clone(), daemon.clone());
        tokio::spawn(async move {
            let Some(stream) = listen_stream::try_serve(stream, peer, &daemon).await else { return };
            serve_http(stream, peer, app).await;
        });
    }
}

/// Serves a connection with hyper and the router, as `axum::serve` does (with upgrades, for
/// WebSockets), the peer's address given to handlers as `ConnectInfo`.
async fn serve_http(stream: TcpStream, peer: SocketAddr, app: Router) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        // A router is always ready: no poll_ready needed.
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
    // An error here is a client that went away mid-request: nothing to answer.
    let _ = connection.await;
}

/// Errors of one incoming connection (not of the listening socket).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Reads up to [`PEEK`] bytes of what the client sent first without consuming them.
pub(crate) async fn peek_head(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut head = vec![0u8; PEEK];
    let n = stream.peek(&mut head).await.ok()?;
    head.truncate(n);
    Some(head)
}
