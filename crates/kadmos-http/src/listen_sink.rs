//! A listen stream's socket as the listen hub writes to it. When an event arrives, the hub
//! writes its chunk, encoded once for every stream of the key, straight to each stream's socket
//! in one loop (a non-blocking write each), instead of waking one task per stream to encode and
//! write it: with thousands of streams on a key, the wake-ups, per-stream copies and timers
//! cost more than the writes. Only a socket whose send buffer is full gets a queue, which the
//! stream's own task flushes when the socket is writable again; while that queue holds
//! anything, new chunks go behind it, so the order never changes.

use std::collections::VecDeque;
use std::io;
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, Bytes};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::framing::Framing;

/// Chunks a stream may have queued before it is ended (a client that reads nothing must not
/// hold the gateway's memory; it can resume from the journal).
pub const MAX_QUEUED: usize = 1024;

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

struct Queue {
    chunks: VecDeque<Bytes>,
    /// No more events: what is queued is flushed, then the last chunk.
    ended: bool,
    /// The socket failed (the client is gone) or the stream is over: nothing more is written.
    broken: bool,
    /// When a chunk last went out (or was queued), for heartbeats.
    last_sent: Instant,
}

/// One listen stream's socket, shared by the hub (which writes events) and the stream's task
/// (which flushes what could not be written at once, sends heartbeats and notices the client
/// leaving).
pub struct ListenSink {
    socket: TcpStream,
    framing: Framing,
    queue: Mutex<Queue>,
    /// Told when the queue gets something the task must flush, or the stream ends.
    flush: Notify,
}

impl ListenSink {
    /// A sink whose first bytes are `head` (the answer's head, then the first events): queued,
    /// so that the hub's events go behind them until the task has flushed them.
    pub fn new(socket: TcpStream, framing: Framing, head: Bytes) -> ListenSink {
        let queue = Queue { chunks: VecDeque::from([head]), ended: false, broken: false, last_sent: Instant::now() };
        ListenSink { socket, framing, queue: Mutex::new(queue), flush: Notify::new() }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `chunk` now if the socket takes it and nothing is queued before it, else queues it
    /// for the task. Whether the stream still takes events (`false`: ended or gone).
    pub fn send(&self, chunk: &Bytes, now: Instant) -> bool {
        let mut queue = self.lock();
        if queue.ended || queue.broken {
            return false;
        }
        queue.last_sent = now;
        if queue.chunks.is_empty() {
            match self.socket.try_write(chunk) {
                Ok(n) if n == chunk.len() => return true,
                Ok(n) => queue.chunks.push_back(chunk.slice(n..)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => queue.chunks.push_back(chunk.clone()),
                Err(_) => {
                    queue.broken = true;
                    self.flush.notify_one();
                    return false;
                }
            }
            self.flush.notify_one();
            return true;
        }
        if queue.chunks.len() >= MAX_QUEUED {
            // Too far behind: end the stream after what is queued (the client may resume).
            queue.ended = true;
        } else {
            queue.chunks.push_back(chunk.clone());
        }
        self.flush.notify_one();
        !queue.ended
    }

    /// Queues `chunks` (a new stream's first events) behind what is queued.
    pub fn queue(&self, chunks: impl IntoIterator<Item = Bytes>) {
        let mut queue = self.lock();
        queue.chunks.extend(chunks);
        self.flush.notify_one();
    }

    /// No more events: the stream ends once what is queued is flushed.
    pub fn end(&self) {
        self.lock().ended = true;
        self.flush.notify_one();
    }

    /// When a chunk last went out.
    pub fn last_sent(&self) -> Instant {
        self.lock().last_sent
    }

    /// Waits until there is something to flush.
    pub async fn flush_wanted(&self) {
        self.flush.notified().await
    }

    /// Writes what is queued, waiting for the socket as needed. `Ok(true)` while the stream
    /// goes on, `Ok(false)` once it has ended (the last chunk written).
    pub async fn flush(&self) -> io::Result<bool> {
        loop {
            {
                let mut queue = self.lock();
                if queue.broken {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                while let Some(front) = queue.chunks.front_mut() {
                    match self.socket.try_write(front) {
                        Ok(n) if n == front.len() => {
                            queue.chunks.pop_front();
                        }
                        Ok(n) => front.advance(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            queue.broken = true;
                            return Err(e);
                        }
                    }
                }
                if queue.chunks.is_empty() {
                    if !queue.ended {
                        // A burst may have grown the queue: give the memory back.
                        queue.chunks.shrink_to(4);
                        return Ok(true);
                    }
                    // Everything flushed: the last chunk if the socket takes it at once (a
                    // client too slow for five bytes is cut off without it), then nothing more.
                    queue.broken = true;
                    let _ = self.socket.try_write(LAST_CHUNK);
                    return Ok(false);
                }
            }
            self.socket.writable().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    async fn read_exactly(stream: &TcpStream, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < len {
            stream.readable().await.unwrap();
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    /// Events sent before the head is flushed wait behind it; once the queue is empty they go
    /// straight to the socket; ending the stream flushes and writes the last chunk.
    #[tokio::test]
    async fn order_is_kept_across_queue_and_direct_writes() {
        let (server, client) = pair().await;
        let sink = ListenSink::new(server, Framing::Ndjson, Bytes::from_static(b"HEAD|"));
        assert!(sink.send(&Bytes::from_static(b"one|"), Instant::now()));
        sink.queue([Bytes::from_static(b"two|")]);
        assert!(sink.flush().await.unwrap());
        assert!(sink.send(&Bytes::from_static(b"three|"), Instant::now()));
        sink.end();
        assert!(!sink.send(&Bytes::from_static(b"late|"), Instant::now()), "an ended stream takes nothing");
        assert!(!sink.flush().await.unwrap());
        let expected = b"HEAD|one|two|three|0\r\n\r\n";
        assert_eq!(read_exactly(&client, expected.len()).await, expected);
    }

    /// A client that reads nothing fills its socket; the sink queues behind it and, past
    /// [`MAX_QUEUED`] chunks, ends the stream instead of growing.
    #[tokio::test]
    async fn a_client_that_reads_nothing_is_bounded() {
        let (server, _client) = pair().await;
        let sink = ListenSink::new(server, Framing::Ndjson, Bytes::new());
        let _ = sink.flush().await.unwrap();
        let big = Bytes::from(vec![b'x'; 64 * 1024]);
        let mut sent = 0;
        while sink.send(&big, Instant::now()) {
            sent += 1;
            assert!(sent < 100_000, "the stream never ended");
        }
        assert!(sink.lock().chunks.len() <= MAX_QUEUED);
        assert!(sink.lock().ended);
    }
}
