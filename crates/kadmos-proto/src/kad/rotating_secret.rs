//! The secret write tokens are made from, the same on both networks: a token hashes the
//! requester's address with a secret only this node knows, the secret is replaced now and then,
//! and a token made with the one before is still accepted, so a token stays valid for at least
//! one rotation period. Nothing is kept per requester. Each network hashes its tokens its own
//! way (BEP 5's and OpenDHT's) and rotates on its own schedule.

use rand::Rng;

/// The current and the previous secret, `N` bytes each.
#[derive(Clone, Debug)]
pub(crate) struct RotatingSecret<const N: usize> {
    current: [u8; N],
    previous: [u8; N],
}

impl<const N: usize> RotatingSecret<N> {
    /// Two fresh random secrets.
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = RotatingSecret { current: [0; N], previous: [0; N] };
        rng.fill(&mut secret.current[..]);
        rng.fill(&mut secret.previous[..]);
        secret
    }

    /// The current secret becomes the previous one, and a fresh one the current.
    pub(crate) fn rotate<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        self.previous = self.current;
        rng.fill(&mut self.current[..]);
    }

    /// The secret new tokens are made with.
    pub(crate) fn current(&self) -> &[u8; N] {
        &self.current
    }

    /// Whether `token` is what `make` gives for the current or the previous secret.
    pub(crate) fn accepts<T: AsRef<[u8]>>(&self, token: &[u8], make: impl Fn(&[u8; N]) -> T) -> bool {
        token == make(&self.current).as_ref() || token == make(&self.previous).as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A token made with a secret is accepted through one rotation but not two, and a token of
    /// another secret never is.
    #[test]
    fn accepted_through_one_rotation() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut secret = RotatingSecret::<16>::new(&mut rng);
        let make = |s: &[u8; 16]| s.map(|b| b ^ 0x5a);
        let token = make(secret.current());
        assert!(secret.accepts(&token, make));
        assert!(!secret.accepts(&[0; 16], make));
        secret.rotate(&mut rng);
        assert!(secret.accepts(&token, make), "the previous secret is still accepted");
        secret.rotate(&mut rng);
        assert!(!secret.accepts(&token, make), "gone after two rotations");
    }
}
