//! Which UDP ports to try: one number, a list (`6881,6882`) or a range (`6881-6889`).
//!
//! The list is honoured exactly: a node given `6881` listens on 6881 or fails to start, because
//! other nodes remember where it listens, and a port silently different on each restart loses
//! them. A list that ends with 0 (`6881-6889,0`) accepts any free port as the last resort, as
//! Net::BitTorrent::DHT's `port => [1337 .. 1340, 0]` does.

use std::fmt;
use std::str::FromStr;

/// Ports tried in turn when binding; 0 (only meaningful last) means any free port.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PortSpec {
    ports: Vec<u16>,
}

impl PortSpec {
    /// Any free port (the OS picks).
    pub fn any() -> Self {
        PortSpec { ports: vec![0] }
    }

    /// Exactly this port.
    pub fn single(port: u16) -> Self {
        PortSpec { ports: vec![port] }
    }

    /// These ports, in this order.
    pub fn list(ports: impl IntoIterator<Item = u16>) -> Self {
        PortSpec { ports: ports.into_iter().collect() }
    }

    /// Every port from `first` to `last`, in order.
    pub fn range(first: u16, last: u16) -> Self {
        PortSpec { ports: (first..=last).collect() }
    }

    /// A Mainline daemon's ports: 6881 (BitTorrent's DHT port), then 6882–6889, then any.
    pub fn mainline_daemon() -> Self {
        PortSpec { ports: (6881..=6889).chain([0]).collect() }
    }

    /// An OpenDHT node's ports: 4222 (OpenDHT's port), then any.
    pub fn opendht_daemon() -> Self {
        PortSpec { ports: vec![4222, 0] }
    }

    /// The ports to try, in order; binding fails if none of them can be bound. An empty
    /// list (the `Default`) is any free port.
    pub fn candidates(&self) -> Vec<u16> {
        if self.ports.is_empty() {
            return vec![0];
        }
        self.ports.clone()
    }

    /// Whether the list ends with 0, so that any free port will do when the others are taken.
    pub fn accepts_any(&self) -> bool {
        self.ports.last() == Some(&0)
    }

    /// The same list with `port` tried first (a restarted node's previous port). Only a list
    /// that accepts any port is changed: a strict list is what its user asked for.
    pub fn preferring(&self, port: u16) -> PortSpec {
        if !self.accepts_any() || port == 0 {
            return self.clone();
        }
        let rest = self.ports.iter().copied().filter(|p| *p != port);
        PortSpec { ports: std::iter::once(port).chain(rest).collect() }
    }
}

/// A port specification that is not a port, a list or a range; holds the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port specification {0:?}: expected a port (6881), a list (6881,6882) or a range (6881-6889)")]
pub struct ParsePortSpecError(pub String);

impl FromStr for PortSpec {
    type Err = ParsePortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePortSpecError(s.to_string());
        let mut ports = Vec::new();
        for part in s.split(',').map(str::trim) {
            if let Some((a, b)) = part.split_once('-') {
                let (a, b): (u16, u16) = (a.trim().parse().map_err(|_| err())?, b.trim().parse().map_err(|_| err())?);
                if a > b {
                    return Err(err());
                }
                ports.extend(a..=b);
            } else {
                ports.push(part.parse().map_err(|_| err())?);
            }
        }
        if ports.is_empty() {
            return Err(err());
        }
        Ok(PortSpec { ports })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers, lists and ranges parse and are kept exactly (no implicit 0); nonsense is an
    /// error.
    #[test]
    fn parse_forms() {
        assert_eq!("6881".parse::<PortSpec>().unwrap().candidates(), vec![6881]);
        assert_eq!("6881,6882".parse::<PortSpec>().unwrap().candidates(), vec![6881, 6882]);
        assert_eq!("6881-6883,0".parse::<PortSpec>().unwrap().candidates(), vec![6881, 6882, 6883, 0]);
        assert_eq!("0".parse::<PortSpec>().unwrap().candidates(), vec![0]);
        for bad in ["", "x", "6889-6881", "70000", "1,,2"] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }

    /// A previous port goes first only in a list that accepts any port, and is not repeated.
    #[test]
    fn preferring_a_saved_port() {
        let daemon = PortSpec::mainline_daemon();
        assert!(daemon.accepts_any());
        let restarted = daemon.preferring(6885).candidates();
        assert_eq!(restarted[..3], [6885, 6881, 6882]);
        assert_eq!(restarted.iter().filter(|p| **p == 6885).count(), 1);
        assert_eq!(restarted.last(), Some(&0));
        assert_eq!(PortSpec::mainline_daemon().preferring(40000).candidates()[..2], [40000, 6881]);
        let strict = PortSpec::single(17601);
        assert_eq!(strict.preferring(40000), strict);
        assert_eq!(daemon.preferring(0), daemon);
    }
}
