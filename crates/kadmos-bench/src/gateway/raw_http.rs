//! HTTP/1.1 written and read by hand over a tokio socket, for the listen scenarios: thousands
//! of streams must cost the generator as little as possible (a small buffer per connection, no
//! per-connection task besides the reader), and a listen stream is read chunk by chunk as it
//! arrives.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};
use tokio::net::TcpStream;

/// Bytes reserved per read; a listen stream's events are a few hundred bytes.
const READ_CHUNK: usize = 2048;
/// A head longer than this is not an answer from a proxy.
const MAX_HEAD: usize = 16 * 1024;

/// An answer's status line and the headers that frame its body.
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    pub content_length: Option<usize>,
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: BytesMut::new() })
    }

    /// Writes one request (with a `Content-Length` when there is a body).
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) -> io::Result<()> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        // Readiness and non-blocking writes: what tokio's net feature offers without io-util.
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut read = [0u8; READ_CHUNK];
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut read) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection")),
                Ok(n) => {
                    self.buf.extend_from_slice(&read[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads an answer's head.
    pub async fn read_head(&mut self) -> io::Result<Head> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("an answer head longer than 16 KiB"));
            }
            self.fill().await?;
        };
        let head = self.buf.split_to(end + 4);
        let text = std::str::from_utf8(&head).map_err(|_| invalid("an answer head that is not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("not an HTTP status line: {status_line:?}")))?;
        let (mut chunked, mut content_length) = (false, None);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name == "content-length" {
                content_length = value.parse().ok();
            }
        }
        Ok(Head { status, chunked, content_length })
    }

    /// Reads a body of `len` bytes.
    pub async fn read_sized(&mut self, len: usize) -> io::Result<Bytes> {
        while self.buf.len() < len {
            self.fill().await?;
        }
        Ok(self.buf.split_to(len).freeze())
    }

    /// The next chunk of a chunked body; `None` after the last one.
    pub async fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let size_text = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| invalid("a bad chunk size"))?;
                let size_text = size_text.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(size_text, 16)
                    .map_err(|_| invalid(format!("a bad chunk size: {size_text:?}")))?;
                if self.buf.len() >= line_end + 2 + size + 2 {
                    self.buf.advance(line_end + 2);
                    let chunk = self.buf.split_to(size).freeze();
                    self.buf.advance(2);
                    // The last chunk may carry trailers; none of these servers sends any.
                    return Ok((size > 0).then_some(chunk));
                }
            }
            self.fill().await?;
        }
    }

    /// Reads a whole answer: its status and body (sized or chunked).
    pub async fn read_answer(&mut self) -> io::Result<(u16, Bytes)> {
        let head = self.read_head().await?;
        if head.chunked {
            let mut body = BytesMut::new();
            while let Some(chunk) = self.next_chunk().await? {
                body.extend_from_slice(&chunk);
            }
            return Ok((head.status, body.freeze()));
        }
        let body = self.read_sized(head.content_length.unwrap_or(0)).await?;
        Ok((head.status, body))
    }
}

/// Reads a listen stream's values as newline-delimited JSON, whatever the chunking.
pub struct ListenReader {
    conn: Conn,
    partial: Vec<u8>,
}

impl ListenReader {
    /// Opens `GET /key/{key}/listen` and reads the answer's head (200 and chunked, or an error).
    pub async fn open(addr: SocketAddr, key: &str) -> io::Result<ListenReader> {
        let mut conn = Conn::connect(addr).await?;
        conn.send("GET", &format!("/key/{key}/listen"), b"").await?;
        let head = conn.read_head().await?;
        if head.status != 200 || !head.chunked {
            return Err(invalid(format!("the listen answered {} (chunked: {})", head.status, head.chunked)));
        }
        Ok(ListenReader { conn, partial: Vec::new() })
    }

    /// Reads until a value with id `id` arrives (skipping others and keep-alive lines).
    pub async fn wait_for(&mut self, id: u64) -> io::Result<()> {
        let wanted = id.to_string();
        loop {
            let chunk = self.conn.next_chunk().await?.ok_or_else(|| invalid("the listen stream ended"))?;
            self.partial.extend_from_slice(&chunk);
            while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(&line) else { continue };
                // OpenDHT writes ids as decimal strings; accept numbers too.
                let seen = match &value["id"] {
                    serde_json::Value::String(s) => s == &wanted,
                    serde_json::Value::Number(n) => n.as_u64() == Some(id),
                    _ => false,
                };
                if seen && value["expired"] != serde_json::Value::Bool(true) {
                    return Ok(());
                }
            }
        }
    }
}
