//! The load generator: one thread, many connected UDP sockets bound to
//! distinct 127.A.B.C source addresses, each keeping a bounded window of
//! queries in flight (closed loop). Sockets are driven by epoll and batched
//! with recvmmsg/sendmmsg so the generator costs less per packet than the
//! server it measures.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::krpc::{self, Query, Template, ID_LEN};
use crate::procs;

/// What a valid answer looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// A KRPC response: a dict with `y` = `r` and our `t`.
    Krpc,
    /// Our own query sent back: a dict with `y` = `q` and our `t`.
    Echo,
}

impl Expect {
    fn y(self) -> &'static [u8] {
        match self {
            Expect::Krpc => b"r",
            Expect::Echo => b"q",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub target: SocketAddr,
    pub sources: usize,
    pub window: usize,
    pub timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub expect: Expect,
    pub seed: u64,
}

/// Figures from the measured window only (warm-up excluded).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub measured: Duration,
    /// Queries sent.
    pub sent: u64,
    /// Valid answers to an outstanding query.
    pub replies: u64,
    /// Queries given up after the timeout.
    pub lost: u64,
    /// KRPC errors (`y` = `e`) answering an outstanding query.
    pub errors: u64,
    /// Well-formed answers whose `t` matched nothing outstanding (late
    /// replies to queries already counted lost, or duplicates).
    pub late: u64,
    /// Anything else received (not a dict, wrong `y`, no `t`).
    pub invalid: u64,
    /// Queries (`y` = `q`) the server sent to our sources itself, e.g. to
    /// ping the nodes that queried it (only counted when expecting KRPC).
    pub queries_in: u64,
    /// Socket errors on receive (e.g. ECONNREFUSED once the server died).
    pub socket_errors: u64,
    /// Reply latencies in µs, sorted.
    pub latencies_us: Vec<u32>,
    /// CPU time of the generator thread during the window, in seconds.
    pub gen_cpu_s: f64,
}

impl Outcome {
    pub fn replies_per_sec(&self) -> f64 {
        self.replies as f64 / self.measured.as_secs_f64().max(1e-9)
    }

    pub fn loss_pct(&self) -> f64 {
        let settled = self.replies + self.lost + self.errors;
        if settled == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / settled as f64
        }
    }

    pub fn percentile_us(&self, p: f64) -> Option<u32> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let n = self.latencies_us.len();
        let i = ((p / 100.0) * (n as f64 - 1.0)).round() as usize;
        Some(self.latencies_us[i.min(n - 1)])
    }
}

/// When the measured window starts and ends, so the caller can sample the
/// server's /proc figures at the same moments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    MeasureStart,
    MeasureEnd,
}

/// A small fast PRNG (xorshift64*); quality is irrelevant here.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn fill(&mut self, out: &mut [u8; ID_LEN]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The i-th source address: 127.A.B.C with A, B, C in 1..=254.
pub fn source_addr(i: usize) -> Ipv4Addr {
    let c = 1 + (i % 254) as u8;
    let b = 1 + ((i / 254) % 254) as u8;
    let a = 1 + ((i / (254 * 254)) % 254) as u8;
    Ipv4Addr::new(127, a, b, c)
}

struct Slot {
    tid: u16,
    sent_ns: u64,
}

struct Source {
    sock: UdpSocket,
    /// This source's node ID, used to answer the server's own queries.
    id: [u8; ID_LEN],
    next_tid: u16,
    inflight: Vec<Slot>,
    find_node: Template,
    get_peers: Template,
    flip: bool,
}

const PKT_MAX: usize = 2048;

/// Scratch buffers for one recvmmsg / sendmmsg call. The iovecs point into
/// `bufs` and the headers into `iovs`; none of the three vectors is ever
/// resized, so the pointers stay valid when the struct moves.
struct Batch {
    bufs: Vec<Vec<u8>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    fn new(n: usize) -> Self {
        let mut bufs: Vec<Vec<u8>> = (0..n).map(|_| vec![0u8; PKT_MAX]).collect();
        let mut iovs: Vec<libc::iovec> =
            bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: PKT_MAX }).collect();
        let hdrs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain data; all-zero is a valid value.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Batch { bufs, iovs, hdrs }
    }

    fn len(&self) -> usize {
        self.bufs.len()
    }

    /// Receives up to `len()` datagrams; returns how many (0 on EAGAIN).
    fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for (iov, h) in self.iovs.iter_mut().zip(self.hdrs.iter_mut()) {
            iov.iov_len = PKT_MAX;
            h.msg_len = 0;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: hdrs/iovs/bufs are valid for len() entries (see above).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as _,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(n as usize)
    }

    /// The i-th received datagram (None if truncated).
    fn received(&self, i: usize) -> Option<&[u8]> {
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        Some(&self.bufs[i][..(h.msg_len as usize).min(PKT_MAX)])
    }

    /// Sends the first `n` buffers, the i-th `lens[i]` bytes long; returns
    /// how many left (0 on EAGAIN).
    fn send(&mut self, fd: i32, lens: &[usize]) -> io::Result<usize> {
        let n = lens.len().min(self.len());
        for (iov, &len) in self.iovs.iter_mut().zip(&lens[..n]) {
            iov.iov_len = len;
        }
        // SAFETY: as in recv; the first n iovecs describe initialised bytes.
        let r = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as _, libc::MSG_DONTWAIT) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        Ok(r as usize)
    }
}

struct Gen {
    cfg: Config,
    sources: Vec<Source>,
    rng: Rng,
    base: Instant,
    timeout_ns: u64,
    /// Queries in flight allowed per source now: ramps from 1 to
    /// `cfg.window` over the warm-up so the start is not one big burst.
    window: usize,
    measuring: bool,
    out: Outcome,
    rx: Batch,
    tx: Batch,
    lens: Vec<usize>,
}

impl Gen {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Tops source `i` up to the window.
    fn refill(&mut self, i: usize) {
        let free = self.window.saturating_sub(self.sources[i].inflight.len());
        if free == 0 {
            return;
        }
        let n = free.min(self.tx.len());
        let first_tid = self.sources[i].next_tid;
        self.lens.clear();
        for k in 0..n {
            let mut arg = [0u8; ID_LEN];
            self.rng.fill(&mut arg);
            let src = &mut self.sources[i];
            let tid = first_tid.wrapping_add(k as u16);
            src.flip = !src.flip;
            let pkt = if src.flip { src.find_node.fill(&arg, tid) } else { src.get_peers.fill(&arg, tid) };
            self.tx.bufs[k][..pkt.len()].copy_from_slice(pkt);
            self.lens.push(pkt.len());
        }
        let fd = self.sources[i].sock.as_raw_fd();
        let sent = self.tx.send(fd, &self.lens).unwrap_or(0);
        let now = self.now_ns();
        let src = &mut self.sources[i];
        for k in 0..sent {
            src.inflight.push(Slot { tid: first_tid.wrapping_add(k as u16), sent_ns: now });
        }
        // Only the tids actually sent are consumed; unsent queries are
        // rebuilt next time (their flip is not undone: harmless).
        src.next_tid = first_tid.wrapping_add(sent as u16);
        if self.measuring {
            self.out.sent += sent as u64;
        }
    }

    /// Drains source `i` and refills it.
    fn readable(&mut self, i: usize) {
        let fd = self.sources[i].sock.as_raw_fd();
        loop {
            let n = match self.rx.recv(fd) {
                Ok(n) => n,
                Err(_) => {
                    if self.measuring {
                        self.out.socket_errors += 1;
                    }
                    0
                }
            };
            if n == 0 {
                break;
            }
            let now = self.now_ns();
            for k in 0..n {
                self.answer(i, k, now);
            }
            if n < self.rx.len() {
                break;
            }
        }
        self.refill(i);
    }

    fn answer(&mut self, i: usize, k: usize, now: u64) {
        let measuring = self.measuring;
        let expect = self.cfg.expect;
        let Some(head) = self.rx.received(k).and_then(krpc::head) else {
            if measuring {
                self.out.invalid += 1;
            }
            return;
        };
        if expect == Expect::Krpc && head.y == Some(&b"q"[..]) {
            if measuring {
                self.out.queries_in += 1;
            }
            // Answer the node's own queries (the pings with which it verifies a querier before
            // adding it to its routing table) so that its table fills as in a real network, and
            // its find_node/get_peers answers carry nodes.
            if let Some(t) = head.t {
                let src = &self.sources[i];
                let reply = krpc::ping_reply(&src.id, t);
                let _ = src.sock.send(&reply);
            }
            return;
        }
        let tid = match head.t {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => {
                if measuring {
                    self.out.invalid += 1;
                }
                return;
            }
        };
        let is_error = head.y == Some(&b"e"[..]);
        if !is_error && head.y != Some(expect.y()) {
            if measuring {
                self.out.invalid += 1;
            }
            return;
        }
        let src = &mut self.sources[i];
        let Some(pos) = src.inflight.iter().position(|s| s.tid == tid) else {
            if measuring {
                self.out.late += 1;
            }
            return;
        };
        let slot = src.inflight.swap_remove(pos);
        if !measuring {
            return;
        }
        if is_error {
            self.out.errors += 1;
        } else {
            self.out.replies += 1;
            let us = now.saturating_sub(slot.sent_ns) / 1000;
            self.out.latencies_us.push(us.min(u32::MAX as u64) as u32);
        }
    }

    /// Gives up on queries older than the timeout and refills.
    fn expire(&mut self) {
        let now = self.now_ns();
        let timeout = self.timeout_ns;
        for i in 0..self.sources.len() {
            let before = self.sources[i].inflight.len();
            self.sources[i].inflight.retain(|s| now.saturating_sub(s.sent_ns) < timeout);
            let expired = before - self.sources[i].inflight.len();
            if expired > 0 {
                if self.measuring {
                    self.out.lost += expired as u64;
                }
                self.refill(i);
            }
        }
    }
}

/// Runs the closed loop on the calling thread (pin it first) and returns
/// the figures of the measured window. `on_phase` is called at the start
/// and end of that window.
pub fn run(cfg: &Config, on_phase: &mut dyn FnMut(Phase)) -> io::Result<Outcome> {
    assert!(cfg.window > 0 && cfg.sources > 0);
    let mut rng = Rng::new(cfg.seed);
    let mut sources = Vec::with_capacity(cfg.sources);
    for i in 0..cfg.sources {
        let local = SocketAddr::from((source_addr(i), 0));
        let sock = UdpSocket::bind(local).map_err(|e| io::Error::new(e.kind(), format!("bind {local}: {e}")))?;
        sock.connect(cfg.target)?;
        sock.set_nonblocking(true)?;
        let mut id = [0u8; ID_LEN];
        rng.fill(&mut id);
        sources.push(Source {
            sock,
            id,
            next_tid: rng.next_u64() as u16,
            inflight: Vec::with_capacity(cfg.window),
            find_node: Template::new(Query::FindNode, &id),
            get_peers: Template::new(Query::GetPeers, &id),
            flip: i % 2 == 1,
        });
    }

    // SAFETY: epoll_create1 has no preconditions.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    let _close_ep = CloseFd(ep);
    for (i, s) in sources.iter().enumerate() {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: ep and the socket fd are open; ev is a valid event.
        if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.sock.as_raw_fd(), &mut ev) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }

    let batch = cfg.window.clamp(16, 64);
    let mut g = Gen {
        cfg: cfg.clone(),
        sources,
        rng,
        base: Instant::now(),
        timeout_ns: cfg.timeout.as_nanos() as u64,
        window: 1,
        measuring: false,
        out: Outcome::default(),
        rx: Batch::new(batch),
        tx: Batch::new(cfg.window.min(64)),
        lens: Vec::with_capacity(64),
    };
    g.out.latencies_us.reserve(1 << 20);

    let start = Instant::now();
    let measure_at = start + cfg.warmup;
    let end_at = measure_at + cfg.duration;
    let mut measure_started: Option<(Instant, f64)> = None;
    let mut last_expire = start;
    let mut events: Vec<libc::epoll_event> = vec![libc::epoll_event { events: 0, u64: 0 }; 512];

    for i in 0..g.sources.len() {
        g.refill(i);
    }
    loop {
        let now = Instant::now();
        if measure_started.is_none() && now >= measure_at {
            on_phase(Phase::MeasureStart);
            g.measuring = true;
            measure_started = Some((Instant::now(), procs::thread_cpu_seconds().unwrap_or(0.0)));
        }
        if now >= end_at {
            break;
        }
        if g.window < cfg.window {
            let ramp = now.duration_since(start).as_secs_f64() / cfg.warmup.as_secs_f64();
            let w =
                if ramp.is_finite() && ramp < 1.0 { 1 + ((cfg.window - 1) as f64 * ramp) as usize } else { cfg.window };
            if w > g.window {
                g.window = w;
                for i in 0..g.sources.len() {
                    g.refill(i);
                }
            }
        }
        if now.duration_since(last_expire) >= Duration::from_millis(5) {
            g.expire();
            last_expire = now;
        }
        // SAFETY: events is a valid buffer of events.len() entries.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            g.readable(ev.u64 as usize);
        }
    }
    g.measuring = false;
    let t_end = Instant::now();
    let cpu_end = procs::thread_cpu_seconds().unwrap_or(0.0);
    on_phase(Phase::MeasureEnd);
    let (t0, cpu0) = measure_started.unwrap_or((start, 0.0));
    let mut out = std::mem::take(&mut g.out);
    out.measured = t_end.duration_since(t0);
    out.gen_cpu_s = cpu_end - cpu0;
    out.latencies_us.sort_unstable();
    Ok(out)
}

struct CloseFd(i32);

impl Drop for CloseFd {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// Sends `count` find_node queries from 127.0.0.1 and waits until they
/// are all answered or `timeout` passes. Returns how many were answered;
/// an error if none was.
pub fn probe(target: SocketAddr, expect: Expect, count: u16, timeout: Duration) -> Result<u16, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.connect(target).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
    let mut rng = Rng::new(0x5eed ^ target.port() as u64);
    let mut id = [0u8; ID_LEN];
    rng.fill(&mut id);
    let mut answered = vec![false; count as usize];
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; PKT_MAX];
    let mut last_err = String::from("no answer");
    while Instant::now() < deadline {
        for (tid, done) in answered.iter().enumerate() {
            if !*done {
                let mut target_id = [0u8; ID_LEN];
                rng.fill(&mut target_id);
                let q = krpc::encode(Query::FindNode, &id, &target_id, tid as u16);
                let _ = sock.send(&q);
            }
        }
        let round_end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < round_end {
            match sock.recv(&mut buf) {
                Ok(n) => match krpc::head(&buf[..n]) {
                    Some(h) if h.y == Some(expect.y()) => {
                        if let Some(&[a, b]) = h.t {
                            let t = u16::from_be_bytes([a, b]) as usize;
                            if t < answered.len() {
                                answered[t] = true;
                            }
                        }
                    }
                    Some(h) => last_err = format!("unexpected reply y={:?}", h.y.map(String::from_utf8_lossy)),
                    None => last_err = "undecodable reply".to_string(),
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) => {
                    last_err = e.to_string();
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if answered.iter().all(|&d| d) {
                return Ok(count);
            }
        }
    }
    let n = answered.iter().filter(|&&d| d).count() as u16;
    if n == 0 {
        Err(format!("{target} answered none of {count} find_node queries within {timeout:?} ({last_err})"))
    } else {
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addrs_are_distinct_loopback() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..70_000 {
            let a = source_addr(i);
            assert!(a.is_loopback());
            assert!(seen.insert(a));
        }
    }

    #[test]
    fn closed_loop_against_inline_echo() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        echo.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        });
        assert_eq!(probe(target, Expect::Echo, 4, Duration::from_secs(5)), Ok(4));
        let cfg = Config {
            target,
            sources: 8,
            window: 4,
            timeout: Duration::from_millis(500),
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            expect: Expect::Echo,
            seed: 7,
        };
        let mut phases = Vec::new();
        let out = run(&cfg, &mut |p| phases.push(p)).unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        t.join().unwrap();
        assert_eq!(phases, vec![Phase::MeasureStart, Phase::MeasureEnd]);
        assert!(out.replies > 0, "{out:?}");
        assert_eq!(out.invalid, 0);
        assert!(out.percentile_us(50.0).is_some());
    }
}
