//! Write tokens of an OpenDHT node: proof that a `put`, `listen` or `refresh` comes from the
//! address that recently received one of our answers.
//!
//! Facts from savoirfairelinux/opendht src/dht.cpp (`makeToken`, `tokenMatch`, `rotateSecrets`):
//! a token is a 32-byte hash of a secret, the requester's IP and its port; every answer to
//! `find`, `get` and `listen` carries one; the secret changes after a random 15 to 45 minutes and
//! the previous secret is still accepted. Tokens are opaque to everyone else, so the hash need not
//! be OpenDHT's: kadmos uses SHA-256. Unlike the Mainline token, the port is part of it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::kad::RotatingSecret;
use crate::time::Timestamp;

/// Length of a token on the wire (OpenDHT's `TOKEN_SIZE`).
pub(crate) const TOKEN_LEN: usize = 32;

/// Issues and checks tokens; its state is constant-size whatever the number of requesters.
#[derive(Clone, Debug)]
pub(crate) struct TokenIssuer {
    secret: RotatingSecret<32>,
    next_rotation: Timestamp,
    rotation: (Duration, Duration),
}

impl TokenIssuer {
    /// `rotation` is the range the time between two rotations is drawn from (OpenDHT: 15 to 45
    /// minutes).
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R, now: Timestamp, rotation: (Duration, Duration)) -> Self {
        let mut issuer = TokenIssuer { secret: RotatingSecret::new(rng), next_rotation: now, rotation };
        issuer.schedule(now, rng);
        issuer
    }

    fn schedule<R: Rng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) {
        let (low, high) = self.rotation;
        let spread = high.saturating_sub(low).as_micros() as u64;
        let extra = if spread == 0 { 0 } else { rng.gen_range(0..=spread) };
        self.next_rotation = now + low + Duration::from_micros(extra);
    }

    /// Rotates the secret if its time has come.
    pub(crate) fn maybe_rotate<R: Rng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) {
        if now >= self.next_rotation {
            self.secret.rotate(rng);
            self.schedule(now, rng);
        }
    }

    /// When the next rotation is due.
    #[cfg(test)]
    pub(crate) fn next_rotation(&self) -> Timestamp {
        self.next_rotation
    }

    fn token_with(secret: &[u8; 32], addr: SocketAddr) -> [u8; TOKEN_LEN] {
        let mut hasher = Sha256::new();
        hasher.update(secret);
        match addr.ip() {
            IpAddr::V4(v4) => hasher.update(v4.octets()),
            IpAddr::V6(v6) => hasher.update(v6.octets()),
        }
        hasher.update(addr.port().to_be_bytes());
        hasher.finalize().into()
    }

    /// The token for the requester at `addr`.
    pub(crate) fn issue(&self, addr: SocketAddr) -> [u8; TOKEN_LEN] {
        Self::token_with(self.secret.current(), addr)
    }

    /// Whether `token` was issued to `addr` under the current or the previous secret.
    pub(crate) fn is_valid(&self, addr: SocketAddr, token: &[u8]) -> bool {
        token.len() == TOKEN_LEN && self.secret.accepts(token, |secret| Self::token_with(secret, addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A token is tied to the requester's IP *and* port, survives one rotation but not two, and
    /// rotations come between the two bounds.
    #[test]
    fn token_lifetime_and_binding() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (low, high) = (Duration::from_secs(15 * 60), Duration::from_secs(45 * 60));
        let mut issuer = TokenIssuer::new(&mut rng, Timestamp::ZERO, (low, high));
        let first = issuer.next_rotation();
        assert!(first >= Timestamp::ZERO + low && first <= Timestamp::ZERO + high);
        let addr: SocketAddr = "10.0.0.1:4222".parse().unwrap();
        let token = issuer.issue(addr);
        assert!(issuer.is_valid(addr, &token));
        assert!(!issuer.is_valid("10.0.0.1:4223".parse().unwrap(), &token), "port is bound");
        assert!(!issuer.is_valid("10.0.0.2:4222".parse().unwrap(), &token));
        assert!(!issuer.is_valid(addr, &token[..31]));
        issuer.maybe_rotate(first, &mut rng);
        assert!(issuer.is_valid(addr, &token), "previous secret still accepted");
        let second = issuer.next_rotation();
        issuer.maybe_rotate(second, &mut rng);
        assert!(!issuer.is_valid(addr, &token), "gone after two rotations");
    }
}
