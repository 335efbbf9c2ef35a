//! A stateful firewall in front of one node on loopback, for tests of what a node does when
//! others cannot reach it unasked.
//!
//! The node never talks to the network directly: every other node appears to it under an
//! alias, a socket of the firewall on an address of its own (127.1.x.y), and the network sees
//! the node at the firewall's public socket. A datagram from the network is handed to the
//! node (from the sender's alias) only when the node sent to that alias within the mapping
//! time, as a NAT or a stateful firewall does; everything else is refused, until the firewall
//! is opened. Node lists in answers (`nodes`) are rewritten to aliases, so the node keeps
//! talking through the firewall as it learns of new nodes.
//!
//! Each alias has its own IP address because a node judges reachability by the IP a query
//! comes from (see `kadmos_proto::mainline::reachability`).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kadmos_proto::mainline::{Body, Message};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct Firewall {
    inner: Arc<Inner>,
}

struct Inner {
    public: UdpSocket,
    public_addr: SocketAddr,
    /// The node behind the firewall (its real socket).
    node: SocketAddr,
    open: AtomicBool,
    /// How long after the node sent to an alias the firewall lets that peer's datagrams in.
    mapping: Duration,
    aliases: Mutex<Aliases>,
    refused: AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Aliases {
    by_outside: HashMap<SocketAddr, Arc<Alias>>,
    count: u32,
}

/// How one outside address appears to the node.
struct Alias {
    socket: UdpSocket,
    addr: SocketAddr,
    outside: SocketAddr,
    /// When the node last sent to this alias.
    node_sent: Mutex<Option<Instant>>,
}

impl Firewall {
    /// Starts a closed firewall in front of `node` (which must not be given any outside
    /// address itself: bootstrap it from [`Firewall::alias_of`]).
    pub async fn start(node: SocketAddr, mapping: Duration) -> io::Result<Firewall> {
        let public = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let public_addr = public.local_addr()?;
        let inner = Arc::new(Inner {
            public,
            public_addr,
            node,
            open: AtomicBool::new(false),
            mapping,
            aliases: Mutex::default(),
            refused: AtomicU64::new(0),
            tasks: Mutex::default(),
        });
        let task = tokio::spawn(Arc::clone(&inner).inbound());
        inner.tasks.lock().unwrap().push(task);
        Ok(Firewall { inner })
    }

    /// Where the network reaches the node.
    pub fn public_addr(&self) -> SocketAddr {
        self.inner.public_addr
    }

    /// The address under which the node reaches `outside`.
    pub fn alias_of(&self, outside: SocketAddr) -> io::Result<SocketAddr> {
        Ok(self.inner.alias(outside)?.addr)
    }

    /// Opened, every datagram from the network reaches the node; closed, only those from
    /// peers it sent to within the mapping time.
    pub fn set_open(&self, open: bool) {
        self.inner.open.store(open, Ordering::SeqCst);
    }

    /// Datagrams from the network kept from the node so far.
    pub fn refused(&self) -> u64 {
        self.inner.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        for task in self.inner.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    /// The alias of `outside`, made on first use (with the task that carries the node's
    /// datagrams to it).
    fn alias(self: &Arc<Self>, outside: SocketAddr) -> io::Result<Arc<Alias>> {
        let mut aliases = self.aliases.lock().unwrap();
        if let Some(alias) = aliases.by_outside.get(&outside) {
            return Ok(Arc::clone(alias));
        }
        aliases.count += 1;
        let n = aliases.count;
        if n >= 1 << 16 {
            return Err(io::Error::other("out of alias addresses"));
        }
        let ip = Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8);
        let socket = std::net::UdpSocket::bind((ip, 0))?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket)?;
        let addr = socket.local_addr()?;
        let alias = Arc::new(Alias { socket, addr, outside, node_sent: Mutex::new(None) });
        aliases.by_outside.insert(outside, Arc::clone(&alias));
        let task = tokio::spawn(Arc::clone(self).outbound(Arc::clone(&alias)));
        self.tasks.lock().unwrap().push(task);
        Ok(alias)
    }

    /// From the network to the node, through the firewall's rule.
    async fn inbound(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = self.public.recv_from(&mut buf).await else { continue };
            let Ok(alias) = self.alias(from) else { continue };
            let invited = alias.node_sent.lock().unwrap().is_some_and(|at| at.elapsed() <= self.mapping);
            if !invited && !self.open.load(Ordering::SeqCst) {
                self.refused.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            let datagram = self.rewrite(&buf[..len]);
            let _ = alias.socket.send_to(&datagram, self.node).await;
        }
    }

    /// From the node to the network: whatever it sends to an alias goes to the peer behind it,
    /// from the public socket, and opens the way back.
    async fn outbound(self: Arc<Self>, alias: Arc<Alias>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = alias.socket.recv_from(&mut buf).await else { continue };
            if from != self.node {
                continue;
            }
            *alias.node_sent.lock().unwrap() = Some(Instant::now());
            let _ = self.public.send_to(&buf[..len], alias.outside).await;
        }
    }

    /// An answer's node list as the node must see it: others under their aliases, the node
    /// itself (listed at the public address) at its own.
    fn rewrite(self: &Arc<Self>, datagram: &[u8]) -> Vec<u8> {
        let Ok(mut message) = Message::decode(datagram) else { return datagram.to_vec() };
        let Body::Response(response) = &mut message.body else { return datagram.to_vec() };
        for (_, addr) in &mut response.nodes {
            *addr = if *addr == self.public_addr {
                self.node
            } else {
                match self.alias(*addr) {
                    Ok(alias) => alias.addr,
                    Err(_) => continue,
                }
            };
        }
        message.to_bytes()
    }
}
