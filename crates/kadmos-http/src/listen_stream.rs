//! Listen streams served straight on the socket. A connection whose first request is `GET
//! /key/{h}/listen` (HTTP/1.1, no body, no upgrade) is answered here instead of by hyper: the
//! same checks, headers and events as the router's listen route, as HTTP/1.1 chunks, without
//! hyper's per-connection buffers. The listen hub writes each event to the socket itself
//! ([`crate::listen_sink`]); the stream's own small task only flushes what the socket could not
//! take at once, sends heartbeats and notices the client leaving. A listen stream never ends
//! while the client stays, so its connection carries no other request; anything else the
//! client sends is read and dropped, and its closing the connection ends the stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kadmos::opendht::key_from_str;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::daemon_api::DaemonState;
use crate::framing::{http_chunk, Framing};
use crate::listen_sink::ListenSink;
use crate::metrics::route_label;
use crate::opendht_api;
use crate::router::{add_cors, Route};
use crate::server::peek_head;

/// Headers of a listen request looked at; a request with more goes to hyper.
const MAX_HEADERS: usize = 32;
/// The largest error answer written here (they are one short JSON line).
const MAX_ERROR_BODY: usize = 4096;

/// A listen request recognised in what the client sent first.
struct ListenRequest {
    /// Length of the request head, to consume from the socket.
    head_len: usize,
    path: String,
    raw_key: String,
    headers: HeaderMap,
}

/// The request at the start of `bytes` if it is a listen this module serves.
fn recognise(bytes: &[u8]) -> Option<ListenRequest> {
    let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut parsed);
    let httparse::Status::Complete(head_len) = request.parse(bytes).ok()? else { return None };
    if request.method? != "GET" || request.version? != 1 {
        return None;
    }
    let path = request.path?.split('?').next()?.to_string();
    let Some(Route::Listen(raw_key)) = Route::parse(&path) else { return None };
    let mut headers = HeaderMap::new();
    for h in request.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // A body or an upgrade is not a plain listen: hyper deals with those.
        if name == header::UPGRADE || name == header::TRANSFER_ENCODING {
            return None;
        }
        if name == header::CONTENT_LENGTH && h.value.iter().any(|&b| b != b'0') {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(ListenRequest { head_len, path, raw_key, headers })
}

/// Serves the connection here if its first request is a listen; otherwise gives it back,
/// untouched, for hyper.
pub(crate) async fn try_serve(stream: TcpStream, peer: SocketAddr, daemon: &DaemonState) -> Option<TcpStream> {
    let shared = &daemon.shared;
    if shared.opendht.is_none() {
        return Some(stream);
    }
    let Some(request) = peek_head(&stream).await.as_deref().and_then(recognise) else { return Some(stream) };
    // From here the connection is this module's: the request is consumed and answered.
    // Events are small and each should leave at once, not wait for the last one's ACK.
    let _ = stream.set_nodelay(true);
    if discard(&stream, request.head_len).await.is_err() {
        return None;
    }
    let route = route_label(&request.path);
    shared.stats.count_request();
    let key = key_from_str(&request.raw_key);
    let framing = Framing::negotiate(&request.headers);
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncache-control: no-cache\r\n\
         access-control-allow-origin: *\r\naccess-control-expose-headers: retry-after, allow\r\n\
         transfer-encoding: chunked\r\n\r\n",
        framing.content_type()
    );
    let sink = Arc::new(ListenSink::new(stream, framing, Bytes::from(head)));
    let attached = match shared.limits.admit(peer.ip()) {
        Ok(()) => Box::pin(opendht_api::attach_listen(shared, key, &request.headers, peer, &sink)).await,
        Err(refused) => Err(refused),
    };
    let held = match attached {
        Ok(held) => held,
        Err(e) => {
            let response = e.into_response();
            daemon.metrics.count_request(route, response.status().as_u16());
            let _ = write_answer(sink.socket(), response).await;
            return None;
        }
    };
    daemon.metrics.count_request(route, 200);
    let heartbeat = shared.config.heartbeat;
    drop(request);
    serve_stream(&sink, heartbeat).await;
    drop(held);
    None
}

/// Runs one stream while the listen hub writes its events: flushes what could not be written
/// at once, sends a heartbeat after each `heartbeat` of silence, and notices the client
/// leaving, until the client goes or the stream ends.
async fn serve_stream(sink: &ListenSink, heartbeat: Duration) {
    let heartbeat_chunk = http_chunk(&sink.framing().heartbeat());
    let beat = tokio::time::sleep(heartbeat);
    tokio::pin!(beat);
    // The head and the first events are queued.
    if !matches!(sink.flush().await, Ok(true)) {
        return;
    }
    loop {
        tokio::select! {
            () = sink.flush_wanted() => {
                if !matches!(sink.flush().await, Ok(true)) {
                    return;
                }
            }
            readable = sink.socket().readable() => {
                if readable.is_err() || client_closed(sink.socket()) {
                    return;
                }
            }
            () = &mut beat => {
                let now = Instant::now();
                let due = sink.last_sent() + heartbeat;
                if now >= due {
                    // An ended stream takes no heartbeat: its flush is on its way.
                    let _ = sink.send(&heartbeat_chunk, now);
                    beat.as_mut().reset(now + heartbeat);
                } else {
                    beat.as_mut().reset(due);
                }
            }
        }
    }
}

/// Reads and drops what the client sent; whether it closed the connection.
fn client_closed(stream: &TcpStream) -> bool {
    let mut sink = [0u8; 256];
    loop {
        match stream.try_read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Consumes the `len` bytes of the request head (already received: they were peeked).
async fn discard(stream: &TcpStream, mut len: usize) -> std::io::Result<()> {
    let mut sink = vec![0u8; len];
    while len > 0 {
        stream.readable().await?;
        match stream.try_read(&mut sink[..len]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => len -= n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes a whole (error) answer, as the router would have, and closes the connection.
async fn write_answer(stream: &TcpStream, mut response: Response) -> std::io::Result<()> {
    add_cors(response.headers_mut());
    let status = response.status();
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_ERROR_BODY).await.unwrap_or_else(|_| Bytes::new());
    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    write_all(stream, head.as_bytes()).await?;
    write_all(stream, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain listen is recognised (query ignored, headers kept); anything hyper must handle
    /// (another route or method, HTTP/1.0, a body, an upgrade, an incomplete head) is not.
    #[test]
    fn recognises_plain_listens_only() {
        let head = b"GET /key/abc/listen?x=1 HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 7\r\n\r\n";
        let mut sent = head.to_vec();
        sent.extend_from_slice(b"GET /node/info HTTP/1.1\r\n");
        let listen = recognise(&sent).unwrap();
        assert_eq!(listen.raw_key, "abc");
        assert_eq!(listen.path, "/key/abc/listen");
        assert_eq!(listen.headers.get("last-event-id").unwrap(), "7");
        assert_eq!(listen.head_len, head.len(), "the head ends where the next request starts");
        for other in [
            &b"GET /key/abc HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"POST /key/abc/listen HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /key/abc/listen HTTP/1.0\r\nHost: h\r\n\r\n",
            b"GET /key/abc/listen HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /key/abc/listen HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"GET /key/abc/listen HTTP/1.1\r\nHost: h\r\n",
        ] {
            assert!(recognise(other).is_none(), "{}", String::from_utf8_lossy(other));
        }
    }
}
