//! How a stream of results is written: OpenDHT's newline-delimited JSON in HTTP/1.1 chunks (the
//! default, what OpenDHT's proxy client reads), or Server-Sent Events when the client asks for
//! `text/event-stream` (what a browser's `EventSource` reads). Each result is sent as soon as it
//! is known; long-lived streams carry heartbeats so that dead connections are noticed.

use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// One result of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEvent {
    /// The SSE event name (`value`, `expired`, `peer`); NDJSON carries it inside the JSON.
    pub kind: &'static str,
    /// The SSE `id:` field (a value's id), which a reconnecting `EventSource` sends back as
    /// `Last-Event-ID`.
    pub id: Option<String>,
    /// One JSON document, without a newline.
    pub json: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document and `\n` per result.
    Ndjson,
    /// `event:`, `id:`, `data:` blocks; heartbeats are comments.
    Sse,
}

impl Framing {
    /// SSE when the `Accept` header asks for `text/event-stream`, NDJSON otherwise.
    pub fn negotiate(headers: &HeaderMap) -> Framing {
        let wants_sse = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("text/event-stream"));
        if wants_sse {
            Framing::Sse
        } else {
            Framing::Ndjson
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            // OpenDHT's proxy answers streams as application/json; its client does not check.
            Framing::Ndjson => "application/json",
            Framing::Sse => "text/event-stream",
        }
    }

    pub(crate) fn encode(self, event: &StreamEvent) -> Bytes {
        match self {
            Framing::Ndjson => Bytes::from(format!("{}\n", event.json)),
            Framing::Sse => {
                let id = event.id.as_ref().map(|id| format!("id: {id}\n")).unwrap_or_default();
                Bytes::from(format!("event: {}\n{id}data: {}\n\n", event.kind, event.json))
            }
        }
    }

    /// What keeps a quiet stream alive: an SSE comment, or `{}` on its own line, which
    /// OpenDHT's client skips in listen streams (and only there: never send it in a GET).
    pub(crate) fn heartbeat(self) -> Bytes {
        match self {
            Framing::Ndjson => Bytes::from_static(b"{}\n"),
            Framing::Sse => Bytes::from_static(b": keep-alive\n\n"),
        }
    }
}

/// One HTTP/1.1 chunk holding `data`, for streams written straight on their socket.
pub(crate) fn http_chunk(data: &[u8]) -> Bytes {
    let mut chunk = Vec::with_capacity(data.len() + 12);
    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\r\n");
    Bytes::from(chunk)
}

type EventStream = Pin<Box<dyn Stream<Item = StreamEvent> + Send>>;

/// A 200 answer streaming `events` as they come, with a heartbeat after each `heartbeat` of
/// silence (none for `None`). `guard` lives as long as the answer is being sent: dropping it
/// tells the caller the client went away (it holds, say, a count of open streams).
pub fn stream_response<G: Send + 'static>(
    framing: Framing,
    events: impl Stream<Item = StreamEvent> + Send + 'static,
    heartbeat: Option<Duration>,
    guard: G,
) -> Response {
    let events: EventStream = Box::pin(events);
    let state = (events, heartbeat, guard);
    let body = futures_util::stream::unfold(state, move |(mut events, heartbeat, guard)| async move {
        let next = match heartbeat {
            None => events.next().await.map(|e| framing.encode(&e)),
            Some(every) => match tokio::time::timeout(every, events.next()).await {
                Ok(event) => event.map(|e| framing.encode(&e)),
                Err(_) => Some(framing.heartbeat()),
            },
        };
        next.map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), (events, heartbeat, guard)))
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(framing.content_type()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NDJSON is the JSON and a newline; SSE names the event and carries the id.
    #[test]
    fn encodings() {
        let event = StreamEvent { kind: "value", id: Some("42".into()), json: "{\"id\":\"42\"}".into() };
        assert_eq!(Framing::Ndjson.encode(&event), "{\"id\":\"42\"}\n");
        assert_eq!(Framing::Sse.encode(&event), "event: value\nid: 42\ndata: {\"id\":\"42\"}\n\n");
        let mut headers = HeaderMap::new();
        assert_eq!(Framing::negotiate(&headers), Framing::Ndjson);
        assert_eq!(http_chunk(b"{}\n"), &b"3\r\n{}\n\r\n"[..], "a chunk is its length in hex, the data, CRLFs");
        assert_eq!(http_chunk(&[b'x'; 26])[..4], *b"1a\r\n");
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        assert_eq!(Framing::negotiate(&headers), Framing::Sse);
    }
}
