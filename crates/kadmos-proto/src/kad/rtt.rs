//! Round-trip time estimation, to stall silent lookup requests early (see `lookup`).
//!
//! The estimator is TCP's (RFC 6298): a smoothed RTT and its mean deviation. The timeout is
//! `srtt + n × rttvar` (TCP uses n = 4), clamped between a floor (so that jitter on fast links
//! does not stall live nodes) and the hard request timeout.

use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl RttEstimator {
    pub(crate) fn observe(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// `srtt + deviations × rttvar` within `[floor, ceiling]`; `ceiling` before any sample.
    pub(crate) fn timeout(&self, deviations: u32, floor: Duration, ceiling: Duration) -> Duration {
        match self.srtt {
            None => ceiling,
            Some(srtt) => (srtt + self.rttvar * deviations).clamp(floor, ceiling.max(floor)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeout follows the measured round trips, within its bounds.
    #[test]
    fn timeout_tracks_samples() {
        let mut rtt = RttEstimator::default();
        let (floor, ceiling) = (Duration::from_millis(200), Duration::from_secs(1));
        assert_eq!(rtt.timeout(4, floor, ceiling), ceiling, "no sample yet");
        for _ in 0..50 {
            rtt.observe(Duration::from_millis(80));
        }
        let t = rtt.timeout(4, floor, ceiling);
        assert_eq!(t, floor, "steady 80 ms: srtt + 4 rttvar is under the floor");
        for ms in [80u64, 300, 60, 250, 90, 400].iter().cycle().take(60) {
            rtt.observe(Duration::from_millis(*ms));
        }
        let t = rtt.timeout(4, floor, ceiling);
        assert!(t > Duration::from_millis(300) && t <= ceiling, "{t:?}");
        let mut slow = RttEstimator::default();
        slow.observe(Duration::from_secs(5));
        assert_eq!(slow.timeout(4, floor, ceiling), ceiling);
    }
}
