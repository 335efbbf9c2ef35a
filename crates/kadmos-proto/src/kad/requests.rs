//! The requests a node has sent and awaits answers to, by transaction id, with their deadlines.
//! Both nodes keep one; each stores its own record per request (what the request was for).
//!
//! An answer counts only if it comes from the address the request went to (a transaction id
//! alone is easy to guess). Deadlines live in a [`TimerQueue`]; a record whose deadline moved
//! (a resend) leaves a stale entry behind, which is skipped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;

use super::timers::TimerQueue;
use crate::time::Timestamp;

/// What the table needs to know of a node's record of one request.
pub(crate) trait PendingRequest {
    /// Where the request went.
    fn to(&self) -> SocketAddr;
    /// When it times out (or is resent).
    fn deadline(&self) -> Timestamp;
}

#[derive(Clone, Debug)]
pub(crate) struct RequestTable<T: Ord, R> {
    requests: HashMap<T, R>,
    deadlines: TimerQueue<T>,
}

impl<T: Ord, R> Default for RequestTable<T, R> {
    fn default() -> Self {
        RequestTable { requests: HashMap::new(), deadlines: TimerQueue::default() }
    }
}

impl<T: Copy + Eq + Hash + Ord, R: PendingRequest> RequestTable<T, R> {
    pub(crate) fn len(&self) -> usize {
        self.requests.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// A transaction id no pending request uses, drawn from `draw` (random, so that answers
    /// cannot be forged blind).
    pub(crate) fn free_id(&self, mut draw: impl FnMut() -> T) -> T {
        loop {
            let candidate = draw();
            if !self.requests.contains_key(&candidate) {
                return candidate;
            }
        }
    }

    /// Records a request sent under `id` (from [`RequestTable::free_id`]).
    pub(crate) fn insert(&mut self, id: T, request: R) {
        self.deadlines.push(request.deadline(), id);
        self.requests.insert(id, request);
    }

    /// Whether `id` is a request awaiting an answer from `from`.
    pub(crate) fn awaits(&self, id: T, from: SocketAddr) -> bool {
        self.requests.get(&id).is_some_and(|r| r.to() == from)
    }

    /// The request `id` answered by `from`, now over; `None` if there is no such request or it
    /// went elsewhere.
    pub(crate) fn take_answered(&mut self, id: T, from: SocketAddr) -> Option<R> {
        if self.awaits(id, from) {
            self.remove(id)
        } else {
            None
        }
    }

    /// Whether any request to `addr` is pending.
    pub(crate) fn any_to(&self, addr: SocketAddr) -> bool {
        self.requests.values().any(|r| r.to() == addr)
    }

    /// The earliest deadline of a pending request.
    pub(crate) fn next_deadline(&mut self) -> Option<Timestamp> {
        let requests = &self.requests;
        self.deadlines.earliest(|at, id| requests.get(id).is_some_and(|r| r.deadline() == at))
    }

    /// The id of a pending request whose deadline has come at `now`, if any. It stays in the
    /// table: the caller removes it ([`RequestTable::remove`]) or gives it a later deadline
    /// ([`RequestTable::get_mut`] then [`RequestTable::reschedule`]).
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<T> {
        while let Some((at, id)) = self.deadlines.pop_due(now) {
            if self.requests.get(&id).is_some_and(|r| r.deadline() == at) {
                return Some(id);
            }
        }
        None
    }

    pub(crate) fn get_mut(&mut self, id: T) -> Option<&mut R> {
        self.requests.get_mut(&id)
    }

    /// Times request `id` again at its (changed) deadline.
    pub(crate) fn reschedule(&mut self, id: T) {
        if let Some(request) = self.requests.get(&id) {
            self.deadlines.push(request.deadline(), id);
        }
    }

    /// Takes request `id` out. The last one out gives back the table's memory: a node is
    /// mostly idle between bursts of requests (its neighbour checks, a lookup), and an empty
    /// table holding room for the last burst cost 3.2 KB per idle node in the simulator.
    pub(crate) fn remove(&mut self, id: T) -> Option<R> {
        let removed = self.requests.remove(&id);
        if self.requests.is_empty() && self.requests.capacity() > 0 {
            self.requests = HashMap::new();
            self.deadlines = TimerQueue::default();
        }
        removed
    }

    /// Drops stale deadlines and gives back memory a burst of requests left behind.
    pub(crate) fn shrink(&mut self) {
        let requests = &self.requests;
        self.deadlines.retain(|at, id| requests.get(id).is_some_and(|r| r.deadline() == at));
        if self.requests.capacity() > 2 * self.requests.len() + 8 {
            self.requests.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Sent {
        to: SocketAddr,
        deadline: Timestamp,
    }

    impl PendingRequest for Sent {
        fn to(&self) -> SocketAddr {
            self.to
        }
        fn deadline(&self) -> Timestamp {
            self.deadline
        }
    }

    /// Only the addressee's answer takes a request; deadlines come due in order, a rescheduled
    /// request comes due at its new deadline only (not at its stale old one), and ids drawn
    /// are never ones in use.
    #[test]
    fn answers_deadlines_and_ids() {
        let at = |s: u64| Timestamp::ZERO + Duration::from_secs(s);
        let (a, b): (SocketAddr, SocketAddr) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let mut table: RequestTable<u16, Sent> = RequestTable::default();
        table.insert(1, Sent { to: a, deadline: at(5) });
        table.insert(2, Sent { to: b, deadline: at(3) });
        assert!(table.take_answered(1, b).is_none(), "an answer from elsewhere is not taken");
        assert!(table.any_to(a) && table.awaits(1, a));
        assert_eq!(table.next_deadline(), Some(at(3)));
        assert_eq!(table.pop_due(at(2)), None);
        assert_eq!(table.pop_due(at(3)), Some(2));
        table.get_mut(2).unwrap().deadline = at(9);
        table.reschedule(2);
        assert_eq!(table.pop_due(at(5)), Some(1));
        assert!(table.take_answered(1, a).is_some());
        assert_eq!(table.pop_due(at(8)), None, "the resent request's old deadline is stale");
        assert_eq!(table.next_deadline(), Some(at(9)));
        let mut draws = [2u16, 2, 7].into_iter();
        assert_eq!(table.free_id(|| draws.next().unwrap()), 7);
        table.shrink();
        assert_eq!((table.len(), table.remove(2).map(|r| r.to)), (1, Some(b)));
        assert!(table.is_empty());
    }
}
