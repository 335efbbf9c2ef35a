//! Which UDP ports to try: one number, a list (`6881,6882`) or a range (`6881-6889`).

use std::fmt;
use std::str::FromStr;

/// Ports tried in turn when binding; if none is free the node falls back to port 0 (any).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PortSpec {
    ports: Vec<u16>,
}

impl PortSpec {
    /// Any free port (the OS picks).
    pub fn any() -> Self {
        PortSpec { ports: vec![0] }
    }

    pub fn single(port: u16) -> Self {
        PortSpec { ports: vec![port] }
    }

    pub fn list(ports: impl IntoIterator<Item = u16>) -> Self {
        PortSpec { ports: ports.into_iter().collect() }
    }

    pub fn range(first: u16, last: u16) -> Self {
        PortSpec { ports: (first..=last).collect() }
    }

    /// The ports to try, in order, ending with 0 as the fallback.
    pub fn candidates(&self) -> Vec<u16> {
        let mut out = self.ports.clone();
        if out.last() != Some(&0) {
            out.push(0);
        }
        out
    }
}

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

    /// Numbers, lists and ranges parse; 0 is always the last resort; nonsense is an error.
    #[test]
    fn parse_forms() {
        assert_eq!("6881".parse::<PortSpec>().unwrap().candidates(), vec![6881, 0]);
        assert_eq!("6881,6882".parse::<PortSpec>().unwrap().candidates(), vec![6881, 6882, 0]);
        assert_eq!("6881-6883".parse::<PortSpec>().unwrap().candidates(), vec![6881, 6882, 6883, 0]);
        assert_eq!("0".parse::<PortSpec>().unwrap().candidates(), vec![0]);
        for bad in ["", "x", "6889-6881", "70000", "1,,2"] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }
}
