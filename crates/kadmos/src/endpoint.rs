//! The UDP sockets of one node (at most one per address family) and how datagrams move
//! through them; both networks' drivers use it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use kadmos_proto::node_io::Transmit;
use tokio::net::UdpSocket;

use crate::batch_io::{send_batch, RecvBatch, BATCH};

pub(crate) struct Endpoint {
    sockets: Vec<Arc<UdpSocket>>,
    /// The IPv4 and IPv6 sockets, looked up per datagram sent.
    by_family: [Option<Arc<UdpSocket>>; 2],
    batch: RecvBatch,
}

/// Waits for a socket of an [`Endpoint`] to become readable. It holds its own handles to the
/// sockets, so waiting does not borrow the driver.
pub(crate) struct Readiness {
    sockets: [Option<Arc<UdpSocket>>; 2],
}

impl Readiness {
    /// The index of a readable socket.
    pub(crate) async fn wait(&self) -> io::Result<usize> {
        tokio::select! {
            ready = readable(self.sockets[0].as_deref()) => ready.map(|()| 0),
            ready = readable(self.sockets[1].as_deref()) => ready.map(|()| 1),
        }
    }
}

/// Waits until an optional socket is readable; a missing socket never is.
async fn readable(socket: Option<&UdpSocket>) -> io::Result<()> {
    match socket {
        Some(s) => s.readable().await,
        None => std::future::pending().await,
    }
}

impl Endpoint {
    pub(crate) fn new(sockets: Vec<Arc<UdpSocket>>) -> Self {
        let find = |v4: bool| sockets.iter().find(|s| s.local_addr().is_ok_and(|a| a.is_ipv4() == v4)).cloned();
        let by_family = [find(true), find(false)];
        Endpoint { sockets, by_family, batch: RecvBatch::new() }
    }

    pub(crate) fn readiness(&self) -> Readiness {
        Readiness { sockets: [self.sockets.first().cloned(), self.sockets.get(1).cloned()] }
    }

    /// Hands every datagram already queued on socket `index` to `deliver` (at most 8 batches,
    /// so that a flood on one socket cannot starve timers and commands).
    pub(crate) fn drain(&mut self, index: usize, mut deliver: impl FnMut(SocketAddr, &[u8])) {
        let Some(socket) = self.sockets.get(index).cloned() else { return };
        for _ in 0..8 {
            let n = match self.batch.recv(&socket) {
                Ok(n) => n,
                Err(e) => {
                    // ICMP errors (port unreachable) surface here on Linux; they are not fatal.
                    tracing::trace!("receive error: {e}");
                    continue;
                }
            };
            for i in 0..n {
                if let Some((from, datagram)) = self.batch.datagram(i) {
                    deliver(from, datagram);
                }
            }
            if n < BATCH {
                break;
            }
        }
    }

    /// Sends datagrams, batched per family; waits for room when a socket buffer is full.
    pub(crate) async fn send(&self, transmits: impl IntoIterator<Item = Transmit>) {
        let mut outgoing: [Vec<Transmit>; 2] = [Vec::new(), Vec::new()];
        for transmit in transmits {
            outgoing[usize::from(transmit.to.is_ipv6())].push(transmit);
        }
        for (family, transmits) in outgoing.iter().enumerate() {
            let Some(socket) = self.by_family[family].as_ref() else { continue };
            let mut done = 0;
            while done < transmits.len() {
                done += send_batch(socket, &transmits[done..]).unwrap_or(0);
                if let Some(next) = transmits.get(done) {
                    // The socket buffer is full: wait for room, sending one datagram.
                    if let Err(e) = socket.send_to(&next.payload, next.to).await {
                        tracing::debug!("send to {} failed: {e}", next.to);
                    }
                    done += 1;
                }
            }
        }
    }
}
