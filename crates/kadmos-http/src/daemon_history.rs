//! The last hour of a daemon, for the dashboard's charts: traffic, contacts, stores and lookup
//! totals sampled every 10 seconds. Kept on the server so that a page opened now draws the
//! hour before it (360 samples of a few dozen bytes each).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kadmos::opendht::OpenDhtInfo;
use kadmos::{ContactCounts, Info};
use serde::Serialize;

/// One network's figures at one moment (counters are totals since the node started; the page
/// draws their differences).
#[derive(Clone, Debug, Serialize)]
pub struct NetworkSample {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub contacts_good: usize,
    pub contacts_dubious: usize,
    /// Peers (Mainline) or values (OpenDHT) stored.
    pub stored: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub unix_secs: u64,
    pub mainline: Option<NetworkSample>,
    pub opendht: Option<NetworkSample>,
    /// Lookups run through the daemon's routes so far, and their summed duration.
    pub lookups: u64,
    pub lookup_secs: f64,
}

#[derive(Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl NetworkSample {
    /// `traffic`: datagrams received and sent, bytes received and sent.
    fn new(traffic: [u64; 4], counts: [Option<ContactCounts>; 2], stored: usize) -> NetworkSample {
        let [datagrams_received, datagrams_sent, bytes_received, bytes_sent] = traffic;
        let (contacts_good, contacts_dubious) =
            counts.iter().flatten().fold((0, 0), |(g, d), c| (g + c.good, d + c.dubious));
        NetworkSample {
            datagrams_received,
            datagrams_sent,
            bytes_received,
            bytes_sent,
            contacts_good,
            contacts_dubious,
            stored,
        }
    }
}

impl History {
    pub const EVERY: Duration = Duration::from_secs(10);
    /// One hour of samples.
    const KEEP: usize = 360;

    pub fn record(&self, mainline: Option<&Info>, opendht: Option<&OpenDhtInfo>, (lookups, lookup_secs): (u64, f64)) {
        let mainline = mainline.map(|i| {
            let t = &i.traffic;
            let traffic = [t.datagrams_received, t.datagrams_sent, t.bytes_received, t.bytes_sent];
            NetworkSample::new(traffic, [i.contacts_ipv4, i.contacts_ipv6], i.stored_peers)
        });
        let opendht = opendht.map(|i| {
            let t = &i.traffic;
            let traffic = [t.datagrams_received, t.datagrams_sent, t.bytes_received, t.bytes_sent];
            NetworkSample::new(traffic, [i.contacts_ipv4, i.contacts_ipv6], i.stored_values)
        });
        let unix_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() == Self::KEEP {
            samples.pop_front();
        }
        samples.push_back(Sample { unix_secs, mainline, opendht, lookups, lookup_secs });
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}
