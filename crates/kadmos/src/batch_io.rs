//! Batched UDP I/O: `recvmmsg`/`sendmmsg` on Linux, one datagram per call elsewhere.
//!
//! Why: under load a node spends more time entering the kernel than running the protocol
//! (measured with `kadmos-bench`: one `recvfrom` and one `sendto` per query cost more than
//! decoding, answering and encoding it). Moving up to [`BATCH`] datagrams per system call
//! removes most of that.

use std::io;
use std::net::SocketAddr;

use kadmos_proto::mainline::Transmit;
use tokio::net::UdpSocket;

/// Datagrams moved per system call.
pub(crate) const BATCH: usize = 32;
/// Receive buffer per datagram. Anything longer is truncated by the kernel and dropped here:
/// no KRPC message kadmos accepts comes near it.
const DATAGRAM_MAX: usize = 4096;

#[cfg(target_os = "linux")]
pub(crate) use linux::RecvBatch;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use socket2::SockAddr;
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    /// Buffers for one `recvmmsg`. The iovecs and headers point into the heap storage of
    /// the vectors, which are never resized, so moving the struct keeps them valid.
    pub(crate) struct RecvBatch {
        bufs: Vec<u8>,
        iovs: Vec<libc::iovec>,
        names: Vec<libc::sockaddr_storage>,
        hdrs: Vec<libc::mmsghdr>,
    }

    // SAFETY: the raw pointers only point into the struct's own heap buffers; through a
    // shared reference they are only read (`datagram`), writes need `&mut self` (`recv`).
    unsafe impl Send for RecvBatch {}
    unsafe impl Sync for RecvBatch {}

    impl RecvBatch {
        pub(crate) fn new() -> Self {
            let mut bufs = vec![0u8; BATCH * DATAGRAM_MAX];
            let mut iovs: Vec<libc::iovec> = bufs
                .chunks_exact_mut(DATAGRAM_MAX)
                .map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: DATAGRAM_MAX })
                .collect();
            // SAFETY: sockaddr_storage and mmsghdr are plain data; zero is a valid value.
            let mut names: Vec<libc::sockaddr_storage> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
            let hdrs = iovs
                .iter_mut()
                .zip(names.iter_mut())
                .map(|(iov, name)| {
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_iov = iov;
                    h.msg_hdr.msg_iovlen = 1;
                    h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                    h
                })
                .collect();
            RecvBatch { bufs, iovs, names, hdrs }
        }

        /// Receives what is queued (up to [`BATCH`] datagrams) without waiting; 0 if nothing.
        pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            for h in &mut self.hdrs {
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            let fd = socket.as_raw_fd();
            let hdrs = self.hdrs.as_mut_ptr();
            let result = socket.try_io(Interest::READABLE, || {
                // SAFETY: hdrs describes BATCH valid buffers and address slots (see `new`).
                let n = unsafe { libc::recvmmsg(fd, hdrs, BATCH as _, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }

        /// The `i`-th datagram of the last `recv` and its sender; `None` if it was truncated
        /// (too long to be KRPC) or its address is not IP.
        pub(crate) fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
            let h = &self.hdrs[i];
            if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                return None;
            }
            // SAFETY: the kernel filled names[i] with msg_namelen bytes.
            let addr = unsafe { SockAddr::new(self.names[i], h.msg_hdr.msg_namelen) }.as_socket()?;
            let _ = &self.iovs;
            let start = i * DATAGRAM_MAX;
            Some((addr, &self.bufs[start..start + (h.msg_len as usize).min(DATAGRAM_MAX)]))
        }
    }

    /// Sends datagrams with as few `sendmmsg` calls as possible; returns how many left. Stops
    /// at the first one the kernel would block on (the caller waits and sends the rest).
    pub(crate) fn send_batch(socket: &UdpSocket, transmits: &[Transmit]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < transmits.len() {
            let chunk = &transmits[sent..(sent + BATCH).min(transmits.len())];
            let names: Vec<SockAddr> = chunk.iter().map(|t| SockAddr::from(t.to)).collect();
            let mut iovs: Vec<libc::iovec> = chunk
                .iter()
                .map(|t| libc::iovec { iov_base: t.payload.as_ptr() as *mut _, iov_len: t.payload.len() })
                .collect();
            let mut hdrs: Vec<libc::mmsghdr> = iovs
                .iter_mut()
                .zip(&names)
                .map(|(iov, name)| {
                    // SAFETY: plain data; zero is valid.
                    let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    h.msg_hdr.msg_iov = iov;
                    h.msg_hdr.msg_iovlen = 1;
                    h.msg_hdr.msg_name = name.as_ptr() as *mut _;
                    h.msg_hdr.msg_namelen = name.len();
                    h
                })
                .collect();
            let fd = socket.as_raw_fd();
            let result = socket.try_io(Interest::WRITABLE, || {
                // SAFETY: every header points at a live payload and address for this call.
                let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as _, libc::MSG_DONTWAIT) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match result {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // One bad destination (say, unreachable) must not block the others: skip it.
                Err(_) => sent += 1,
            }
        }
        Ok(sent)
    }
}

#[cfg(target_os = "linux")]
pub(crate) use linux::send_batch;

#[cfg(not(target_os = "linux"))]
pub use portable::{send_batch, RecvBatch};

#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;

    /// One datagram per call, for systems without `recvmmsg`.
    pub struct RecvBatch {
        bufs: Vec<(SocketAddr, Vec<u8>)>,
        scratch: Vec<u8>,
    }

    impl RecvBatch {
        pub fn new() -> Self {
            RecvBatch { bufs: Vec::new(), scratch: vec![0u8; 65536] }
        }

        pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            self.bufs.clear();
            while self.bufs.len() < BATCH {
                match socket.try_recv_from(&mut self.scratch) {
                    Ok((len, from)) if len <= DATAGRAM_MAX => self.bufs.push((from, self.scratch[..len].to_vec())),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if self.bufs.is_empty() => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(self.bufs.len())
        }

        pub fn datagram(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
            self.bufs.get(i).map(|(a, b)| (*a, b.as_slice()))
        }
    }

    pub fn send_batch(socket: &UdpSocket, transmits: &[Transmit]) -> io::Result<usize> {
        let mut sent = 0;
        for t in transmits {
            match socket.try_send_to(&t.payload, t.to) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => sent += 1,
            }
        }
        Ok(sent)
    }
}
