//! Write tokens (BEP 5): proof that an `announce_peer` (or BEP 44 `put`) comes from an
//! address that recently did a `get_peers` (or `get`) with us.
//!
//! A token is the first 8 bytes of SHA-1(secret ‖ requester IP). The secret rotates every
//! `rotate_every` (default 5 minutes) and the previous one is still accepted, so a token is
//! valid for between 5 and 10 minutes, as BEP 5 asks ("tokens up to ten minutes old").
//! Nothing is stored per requester, so token state is constant-size whatever the load.

use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;
use sha1::{Digest, Sha1};

use crate::kad::RotatingSecret;
use crate::time::Timestamp;

pub(crate) const TOKEN_LEN: usize = 8;

#[derive(Clone, Debug)]
pub(crate) struct TokenIssuer {
    secret: RotatingSecret<16>,
    rotated_at: Timestamp,
    rotate_every: Duration,
}

impl TokenIssuer {
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R, now: Timestamp, rotate_every: Duration) -> Self {
        TokenIssuer { secret: RotatingSecret::new(rng), rotated_at: now, rotate_every }
    }

    /// Rotates the secret if its time has come. Call on every timer tick.
    pub(crate) fn maybe_rotate<R: Rng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) {
        if now.saturating_since(self.rotated_at) >= self.rotate_every {
            self.secret.rotate(rng);
            self.rotated_at = now;
        }
    }

    fn token_with(secret: &[u8; 16], ip: IpAddr) -> [u8; TOKEN_LEN] {
        let mut hasher = Sha1::new();
        hasher.update(secret);
        match ip {
            IpAddr::V4(v4) => hasher.update(v4.octets()),
            IpAddr::V6(v6) => hasher.update(v6.octets()),
        }
        let digest = hasher.finalize();
        digest[..TOKEN_LEN].try_into().expect("SHA-1 is 20 bytes")
    }

    pub(crate) fn issue(&self, ip: IpAddr) -> [u8; TOKEN_LEN] {
        Self::token_with(self.secret.current(), ip)
    }

    pub(crate) fn is_valid(&self, ip: IpAddr, token: &[u8]) -> bool {
        self.secret.accepts(token, |secret| Self::token_with(secret, ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A token is accepted from the address it was issued to, through one rotation but not two,
    /// and never from another address.
    #[test]
    fn token_lifetime() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let five = Duration::from_secs(300);
        let mut issuer = TokenIssuer::new(&mut rng, Timestamp::ZERO, five);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let token = issuer.issue(ip);
        assert!(issuer.is_valid(ip, &token));
        assert!(!issuer.is_valid("10.0.0.2".parse().unwrap(), &token));
        assert!(!issuer.is_valid(ip, b"forged!!"));
        issuer.maybe_rotate(Timestamp::ZERO + Duration::from_secs(299), &mut rng);
        assert!(issuer.is_valid(ip, &token));
        issuer.maybe_rotate(Timestamp::ZERO + five, &mut rng);
        assert!(issuer.is_valid(ip, &token), "previous secret still accepted");
        issuer.maybe_rotate(Timestamp::ZERO + five * 2, &mut rng);
        assert!(!issuer.is_valid(ip, &token), "expired after two rotations");
    }
}
