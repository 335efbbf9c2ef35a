//! Our external IP address, by a vote over the `ip` field (BEP 42) of the answers we get.
//!
//! A node behind a NAT does not know the address others see; every answer tells it, and BEP
//! 42 binds the node's ID to that address. One answer must not decide it (a lying node would
//! make us regenerate our ID at will), so votes are gathered in rounds: each round counts one
//! vote per responding IP address, and when `votes_per_round` distinct responders have
//! voted, an address backed by more than half of them wins. Only answers to our own requests
//! vote (their source answered a random transaction ID of ours, so it cannot be forged
//! blindly). The port is kept beside the address for display only: behind some NATs it
//! changes with every destination.

use std::net::{IpAddr, SocketAddr};

/// Distinct responders per round. Default of [`ExternalAddress::new`]'s callers: 10.
pub(crate) const DEFAULT_VOTES_PER_ROUND: usize = 10;

#[derive(Clone, Debug)]
pub(crate) struct ExternalAddress {
    votes_per_round: usize,
    /// The responders of this round and the address each reported.
    round: Vec<(IpAddr, SocketAddr)>,
    /// The winner of the last decided round.
    current: Option<SocketAddr>,
}

impl ExternalAddress {
    pub(crate) fn new(votes_per_round: usize) -> ExternalAddress {
        ExternalAddress { votes_per_round: votes_per_round.max(1), round: Vec::new(), current: None }
    }

    /// Our address as the last decided round found it.
    pub(crate) fn get(&self) -> Option<SocketAddr> {
        self.current
    }

    /// Counts the address `responder` reported for us. Returns the new external IP when this
    /// vote decides a round for an IP other than the current one.
    pub(crate) fn vote(&mut self, responder: IpAddr, reported: SocketAddr) -> Option<IpAddr> {
        if self.round.iter().any(|(voter, _)| *voter == responder) {
            return None;
        }
        self.round.push((responder, reported));
        if self.round.len() < self.votes_per_round {
            return None;
        }
        let round = std::mem::take(&mut self.round);
        let winner = round
            .iter()
            .map(|(_, addr)| addr.ip())
            .find(|ip| round.iter().filter(|(_, addr)| addr.ip() == *ip).count() * 2 > round.len())?;
        let previous = self.current.map(|addr| addr.ip());
        let port = round.iter().rev().find(|(_, addr)| addr.ip() == winner).map_or(0, |(_, addr)| addr.port());
        self.current = Some(SocketAddr::new(winner, port));
        (previous != Some(winner)).then_some(winner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn responder(i: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, i])
    }

    /// A round needs distinct responders (one repeating itself counts once) and a majority;
    /// a decided round reports a new address once, and a later majority for another address
    /// reports that one.
    #[test]
    fn majority_of_distinct_responders() {
        let ours: SocketAddr = "203.0.113.5:6881".parse().unwrap();
        let other: SocketAddr = "192.0.2.1:6881".parse().unwrap();
        let mut vote = ExternalAddress::new(4);
        for _ in 0..10 {
            assert_eq!(vote.vote(responder(1), other), None, "one liar repeating itself");
        }
        assert_eq!(vote.vote(responder(2), ours), None);
        assert_eq!(vote.vote(responder(3), ours), None);
        assert_eq!(vote.vote(responder(4), ours), Some(ours.ip()), "3 of 4 for ours");
        assert_eq!(vote.get(), Some(ours));
        for i in 1..=4 {
            assert_eq!(vote.vote(responder(i), ours), None, "the same address again is no change");
        }
        for i in 1..=2 {
            vote.vote(responder(i), other);
        }
        for i in 3..=4 {
            assert_eq!(vote.vote(responder(i), ours), None, "2 of 4 is no majority");
        }
        assert_eq!(vote.get(), Some(ours));
        for i in 1..=4 {
            vote.vote(responder(i), other);
        }
        assert_eq!(vote.get(), Some(other));
    }
}
