//! A small HTTP/1.1 client over hyper: one TCP connection per request (as OpenDHT's proxy
//! client does), a deadline on connecting and on the answer's head, and newline-delimited
//! streams read line by line. The gateway [`Client`](crate::client) and the tests use it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("no answer from {0} within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("HTTP error with {0}: {1}")]
    Http(SocketAddr, String),
}

/// The `host:port` (port 80 by default) and the path of an `http://` URL.
pub fn split_url(url: &str) -> Result<(String, String), String> {
    let bad = || format!("{url:?} is not an http:// URL");
    let uri: axum::http::Uri = url.trim().parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") {
        return Err(bad());
    }
    let authority = uri.authority().ok_or_else(bad)?;
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((format!("{host}:{port}"), path))
}

/// The address of a `host:port` (an IPv6 host without its brackets is accepted).
pub async fn resolve(authority: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        if let Ok(addr) = format!("[{host}]:{port}").parse::<SocketAddr>() {
            return Ok(addr);
        }
    }
    let mut addrs = tokio::net::lookup_host(authority).await.map_err(|e| format!("resolving {authority}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{authority} has no address"))
}

/// POSTs `body` to an `http://` URL and reads the answer; returns its status.
pub async fn post_url(url: &str, headers: &[(&str, &str)], body: Bytes, deadline: Duration) -> Result<u16, String> {
    let (authority, path) = split_url(url)?;
    let addr = resolve(&authority).await?;
    let response = send(addr, Method::POST, &path, headers, body, deadline).await.map_err(|e| e.to_string())?;
    let status = response.status.as_u16();
    tokio::time::timeout(deadline, response.bytes()).await.map_err(|_| format!("{url}: the answer did not end"))??;
    Ok(status)
}

/// An answer whose body is still to be read.
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    buffer: BytesMut,
}

/// Sends one request to `addr` and returns once the answer's head arrived (or `deadline` passed).
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    deadline: Duration,
) -> Result<HttpResponse, TransportError> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| TransportError::Connect(addr, e))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| TransportError::Http(addr, e.to_string()))?;
        tokio::spawn(connection);
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body)).map_err(|e| TransportError::Http(addr, e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| TransportError::Http(addr, e.to_string()))?;
        let (parts, body) = response.into_parts();
        Ok(HttpResponse { status: parts.status, headers: parts.headers, body, buffer: BytesMut::new() })
    };
    tokio::time::timeout(deadline, exchange).await.map_err(|_| TransportError::Timeout(addr, deadline))?
}

impl HttpResponse {
    /// The next piece of the body; `None` at its end.
    async fn next_bytes(&mut self) -> Option<Result<Bytes, String>> {
        loop {
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, String> {
        let mut all = std::mem::take(&mut self.buffer);
        while let Some(chunk) = self.next_bytes().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }

    /// The whole body as text (lossy).
    pub async fn text(self) -> Result<String, String> {
        self.bytes().await.map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The next line of a newline-delimited body, without its `\n`; `None` at the end of the body
    /// (a last line without `\n` is returned too).
    pub async fn next_line(&mut self) -> Option<Result<String, String>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                return Some(Ok(String::from_utf8_lossy(&line[..end]).into_owned()));
            }
            match self.next_bytes().await {
                Some(Ok(data)) => self.buffer.extend_from_slice(&data),
                Some(Err(e)) => return Some(Err(e)),
                None if self.buffer.is_empty() => return None,
                None => {
                    let rest = self.buffer.split();
                    return Some(Ok(String::from_utf8_lossy(&rest).into_owned()));
                }
            }
        }
    }
}
