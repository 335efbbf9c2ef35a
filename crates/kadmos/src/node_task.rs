//! The task that runs one sans-IO node under tokio, the same for both networks.
//!
//! One task per node, no locks: API handles talk to it over a channel. It owns the node's
//! sockets ([`Endpoint`]) and its command queue and maps tokio time to the node's
//! [`Timestamp`]s. After every input (a command, datagrams, a timer) it sends everything the
//! node wants sent and hands the node's events to whoever waits for them, then sleeps until
//! the next datagram, command or the node's next deadline. What a command or an event means
//! is the network's driver's business ([`NodeDriver`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kadmos_proto::node_io::{QueryId, SansIoNode, Transmit};
use kadmos_proto::{NodeId, Timestamp};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::endpoint::Endpoint;

/// Node time starts here rather than at zero, so that data restored from saved state can
/// carry times from before the node started (a BEP 44 item's last put, for one).
pub(crate) const EPOCH_OFFSET: Duration = Duration::from_secs(6 * 60 * 60);

/// Tokio time as node time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    start: Instant,
}

impl Clock {
    pub(crate) fn starting_at(start: Instant) -> Clock {
        Clock { start }
    }

    /// The node time of the start (what a node is created with).
    pub(crate) fn start_timestamp() -> Timestamp {
        Timestamp::from_duration(EPOCH_OFFSET)
    }

    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.start.elapsed() + EPOCH_OFFSET)
    }

    pub(crate) fn instant(&self, at: Timestamp) -> Instant {
        self.start + at.as_duration().saturating_sub(EPOCH_OFFSET)
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.start.elapsed()
    }
}

/// One network's side of the task: its node, and what its commands and events mean.
pub(crate) trait NodeDriver: Send + 'static {
    type Node: SansIoNode;
    type Command: Send + 'static;

    fn node(&mut self) -> &mut Self::Node;
    /// Carries out a command from a handle; `false` once the node is to stop.
    fn handle_command(&mut self, command: Self::Command) -> bool;
    /// Hands the node's pending events to their waiters.
    fn deliver_events(&mut self);
    /// The node's timers; a driver with timers of its own adds them here.
    fn handle_timeout(&mut self, now: Timestamp) {
        self.node().handle_timeout(now);
    }
}

/// Starts a join: through saved `contacts` if there are any (the `routers` are then kept as
/// the fallback), otherwise through the routers. `None` when there is nobody to ask.
pub(crate) fn start_join(
    node: &mut impl SansIoNode,
    now: Timestamp,
    routers: Vec<SocketAddr>,
    contacts: &[(NodeId, SocketAddr)],
) -> Option<(QueryId, Vec<SocketAddr>)> {
    let (first, fallback) = if contacts.is_empty() { (routers, Vec::new()) } else { (Vec::new(), routers) };
    if first.is_empty() && contacts.is_empty() {
        return None;
    }
    Some((node.bootstrap(now, &first, contacts), fallback))
}

/// Whether a join that has ended should be tried again through its `fallback` routers: the
/// saved contacts it went through left the tables empty.
pub(crate) fn join_needs_fallback(node: &impl SansIoNode, fallback: &[SocketAddr]) -> bool {
    node.has_no_contacts() && !fallback.is_empty()
}

/// Before a join that `bootstrap()` asks for: a node with no contacts marks itself as not yet
/// joined, so that an operation issued right after `bootstrap()` waits for this join (as it
/// waits for the first one) instead of failing at once with "no contacts". A node that has
/// contacts keeps serving operations while it rejoins.
pub(crate) fn hold_operations_until_joined(node: &impl SansIoNode, bootstrapped: &watch::Sender<bool>) {
    if node.has_no_contacts() {
        bootstrapped.send_replace(false);
    }
}

/// Starts the task of `driver` on the current runtime.
pub(crate) fn spawn<D: NodeDriver>(
    driver: D,
    sockets: Vec<Arc<UdpSocket>>,
    commands: mpsc::Receiver<D::Command>,
    clock: Clock,
) {
    tokio::spawn(run(driver, Endpoint::new(sockets), commands, clock));
}

async fn run<D: NodeDriver>(
    mut driver: D,
    mut endpoint: Endpoint,
    mut commands: mpsc::Receiver<D::Command>,
    clock: Clock,
) {
    let readiness = endpoint.readiness();
    flush(&mut driver, &endpoint).await;
    loop {
        let deadline = driver.node().poll_timeout().map(|t| clock.instant(t));
        let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { break };
                if !driver.handle_command(command) {
                    break;
                }
            },
            ready = readiness.wait() => if let Ok(index) = ready {
                let now = clock.now();
                let node = driver.node();
                endpoint.drain(index, |from, datagram| node.handle_datagram(now, from, datagram));
            },
            () = sleep => driver.handle_timeout(clock.now()),
        }
        flush(&mut driver, &endpoint).await;
    }
}

async fn flush<D: NodeDriver>(driver: &mut D, endpoint: &Endpoint) {
    let node = driver.node();
    let transmits: Vec<Transmit> = std::iter::from_fn(|| node.poll_transmit()).collect();
    endpoint.send(transmits).await;
    driver.deliver_events();
}
