//! The store round at the end of a store operation: a value (an announce, a put) sent to the
//! closest nodes that gave a token, and when the round is over.
//!
//! A round is over once every storing node has answered, refused, or *stalled*: stayed silent
//! past the stall timeout the node measures for its lookups. Waiting for the request timeout
//! instead let one lost datagram or one node that died since it gave its token hold the whole
//! round for that timeout (measured in the simulator with 20% dead contacts and 2% loss: an
//! announce took 29 median round trips at the 90th percentile, against about 6 for its
//! lookup). A stalled node that answers while others still hold the round up is recorded as
//! having stored; one that answers after the round is over is not (the result is out).
//!
//! Where the node's evidence says silent nodes usually answer late rather than never (see
//! [`crate::kad::lookup`]), a stalled node is waited for one more stall timeout
//! (`STORE_HOLD`).
//!
//! The round never touches the network nor reads a clock: the driver reports what it sent
//! and what came back, and steps it at [`StoreRound::next_deadline`].

use std::net::SocketAddr;
use std::time::Duration;

use super::id::NodeId;
use crate::time::Timestamp;

/// How many more stall timeouts a store round waits for a stalled storing node when the
/// node's evidence says stalled nodes answer late. One: in the simulator's fault-free runs,
/// announces and puts were acknowledged by all of their storing nodes as often with one as
/// with six (the figure lookups used before). With 20% dead contacts and 2% loss the evidence
/// says "wait" now and then, and there a lost request held its round for all of them: six made
/// announces 0.25 round trips slower at the 90th percentile than one (3,000 nodes).
const STORE_HOLD: u32 = 1;

/// Where one storing node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Storing {
    /// Asked; holds the round up until `stall_at`.
    Waiting {
        stall_at: Timestamp,
    },
    /// Silent past its stall time; no longer holds the round up, but an answer still counts
    /// while the round runs.
    Stalled,
    Stored,
    /// Answered with an error, or its request failed.
    Refused,
}

/// One store round (see the module notes).
#[derive(Clone, Debug, Default)]
pub(crate) struct StoreRound {
    started: bool,
    nodes: Vec<(NodeId, SocketAddr, Storing)>,
    stalls: u32,
}

impl StoreRound {
    /// Whether any store request was sent (the round has begun).
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Marks the round begun, even if no request could be sent (then it is over at once).
    pub(crate) fn start(&mut self) {
        self.started = true;
    }

    /// A store request went to `id` at `addr` at `now`. It stalls after `stall_timeout`, or
    /// with `wait_for_stalled` (the node's evidence says silent nodes answer late) after
    /// `STORE_HOLD` more, and never after `request_timeout`.
    pub(crate) fn sent(
        &mut self,
        now: Timestamp,
        id: NodeId,
        addr: SocketAddr,
        stall_timeout: Duration,
        wait_for_stalled: bool,
        request_timeout: Duration,
    ) {
        self.started = true;
        let hold = if wait_for_stalled { stall_timeout * (1 + STORE_HOLD) } else { stall_timeout };
        let stall_at = now + hold.min(request_timeout);
        self.nodes.push((id, addr, Storing::Waiting { stall_at }));
    }

    /// The node at `addr` acknowledged the store. Ignored once the round is over.
    pub(crate) fn on_stored(&mut self, addr: SocketAddr, id: NodeId) {
        if self.is_over() {
            return;
        }
        if let Some(node) = self.nodes.iter_mut().find(|(_, a, s)| *a == addr && *s != Storing::Stored) {
            node.0 = id;
            node.2 = Storing::Stored;
        }
    }

    /// The node at `addr` refused the store, or its request failed.
    pub(crate) fn on_refused(&mut self, addr: SocketAddr) {
        if let Some(node) = self
            .nodes
            .iter_mut()
            .find(|(_, a, s)| *a == addr && matches!(s, Storing::Waiting { .. } | Storing::Stalled))
        {
            node.2 = Storing::Refused;
        }
    }

    /// Stalls the requests silent past their stall time.
    pub(crate) fn step(&mut self, now: Timestamp) {
        for node in &mut self.nodes {
            if let Storing::Waiting { stall_at } = node.2 {
                if now >= stall_at {
                    node.2 = Storing::Stalled;
                    self.stalls += 1;
                }
            }
        }
    }

    /// Whether the round is over: begun, and no storing node holds it up any more.
    pub(crate) fn is_over(&self) -> bool {
        self.started && !self.nodes.iter().any(|(_, _, s)| matches!(s, Storing::Waiting { .. }))
    }

    /// When the round should be stepped again if nothing comes: the earliest stall.
    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.nodes
            .iter()
            .filter_map(|(_, _, s)| match s {
                Storing::Waiting { stall_at } => Some(*stall_at),
                _ => None,
            })
            .min()
    }

    /// The nodes that acknowledged the store, in the order their requests went out.
    pub(crate) fn stored_at(&self) -> Vec<(NodeId, SocketAddr)> {
        self.nodes.iter().filter(|(_, _, s)| *s == Storing::Stored).map(|(id, addr, _)| (*id, *addr)).collect()
    }

    /// Store requests sent.
    pub(crate) fn sent_count(&self) -> usize {
        self.nodes.len()
    }

    /// Store requests that stalled (some were answered later, within the round).
    #[cfg(test)]
    pub(crate) fn stalls(&self) -> u32 {
        self.stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u8) -> (NodeId, SocketAddr) {
        (NodeId::from_bytes(&[i; 20]).unwrap(), SocketAddr::from(([10, 0, 0, i], 6881)))
    }

    const STALL: Duration = Duration::from_millis(150);
    const TIMEOUT: Duration = Duration::from_secs(2);

    /// A round is over as soon as every storing node has answered: nothing waits for a timer.
    #[test]
    fn over_when_everyone_answered() {
        let mut round = StoreRound::default();
        assert!(!round.is_over(), "not begun");
        let t0 = Timestamp::ZERO;
        for i in 1..=3 {
            let (id, addr) = node(i);
            round.sent(t0, id, addr, STALL, false, TIMEOUT);
        }
        round.on_stored(node(1).1, node(1).0);
        round.on_refused(node(2).1);
        assert!(!round.is_over());
        round.on_stored(node(3).1, node(3).0);
        assert!(round.is_over());
        assert_eq!(round.stored_at(), vec![node(1), node(3)]);
        assert_eq!(round.stalls(), 0);
    }

    /// A silent storing node (dead, or its datagram lost) holds the round up only until it
    /// stalls, not for the request timeout; a stalled node that answers while another still
    /// holds the round up is recorded, one that answers after the round is over is not.
    #[test]
    fn a_silent_node_holds_the_round_only_until_it_stalls() {
        let mut round = StoreRound::default();
        let t0 = Timestamp::ZERO;
        let (a, b, c) = (node(1), node(2), node(3));
        round.sent(t0, a.0, a.1, STALL, false, TIMEOUT);
        round.sent(t0, b.0, b.1, STALL, false, TIMEOUT);
        let later = t0 + Duration::from_millis(100);
        round.sent(later, c.0, c.1, STALL, false, TIMEOUT);
        assert_eq!(round.next_deadline(), Some(t0 + STALL));
        round.step(t0 + STALL);
        assert_eq!(round.stalls(), 2);
        assert!(!round.is_over(), "c is still within its stall timeout");
        // a answers late, while c still holds the round: it counts.
        round.on_stored(a.1, a.0);
        round.step(later + STALL);
        assert!(round.is_over());
        assert_eq!(round.next_deadline(), None);
        // b answers after the round is over: the result is out, it does not count.
        round.on_stored(b.1, b.0);
        assert_eq!(round.stored_at(), vec![a]);
        assert_eq!(round.stalls(), 3);
    }

    /// When the node's evidence says silent nodes answer late, a storing node is waited for
    /// `STORE_HOLD` more stall timeouts, but never past the request timeout.
    #[test]
    fn waits_longer_on_evidence_but_not_past_the_timeout() {
        let mut round = StoreRound::default();
        let t0 = Timestamp::ZERO;
        let (a, b) = (node(1), node(2));
        round.sent(t0, a.0, a.1, STALL, true, TIMEOUT);
        assert_eq!(round.next_deadline(), Some(t0 + STALL * (1 + STORE_HOLD)));
        round.sent(t0, b.0, b.1, Duration::from_secs(1), true, TIMEOUT);
        round.step(t0 + STALL * (1 + STORE_HOLD));
        assert!(!round.is_over());
        assert_eq!(round.next_deadline(), Some(t0 + TIMEOUT));
    }

    /// A round that could send nothing is over as soon as it begins.
    #[test]
    fn a_round_with_nobody_to_ask_is_over_at_once() {
        let mut round = StoreRound::default();
        round.start();
        assert!(round.is_over());
        assert!(round.stored_at().is_empty());
    }
}
