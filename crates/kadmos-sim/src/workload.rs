//! Workloads: what the simulated users ask the network to do.
//!
//! A workload is told to [`Workload::begin`] one unit of work at a time (the simulator spaces
//! units by `lookup_interval_ms` and lets the workloads take turns), and starts lookups
//! through the [`Control`] it is handed. Every lookup started that way is measured, and the
//! workload hears of its end in [`Workload::finished`], where it may start follow-ups (an
//! announce is followed by a get_peers that must find the announcer). Later issues add item
//! and value workloads behind the same trait.

use kadmos_proto::mainline::Outcome;
use kadmos_proto::Id;

use crate::network::NodeIndex;
use crate::options::WorkloadKind;
use crate::simulation::Control;

/// A lookup a workload started is over.
#[derive(Clone, Debug)]
pub struct LookupDone {
    /// The label the workload gave the lookup.
    pub kind: &'static str,
    /// The workload's own tag, as given when the lookup started.
    pub tag: u64,
    /// The node that ran it.
    pub node: NodeIndex,
    pub target: Id,
    /// Whether it succeeded (see [`crate::simulation`] for the definition).
    pub succeeded: bool,
    pub outcome: Outcome,
}

/// A source of lookups. See the module documentation.
pub trait Workload {
    /// Name shown in reports.
    fn name(&self) -> &'static str;

    /// Starts one unit of work (usually one lookup from a random live node).
    fn begin(&mut self, ctl: &mut Control<'_>);

    /// A lookup this workload started is over.
    fn finished(&mut self, _ctl: &mut Control<'_>, _done: &LookupDone) {}
}

/// The built-in workload of a kind.
pub fn built_in(kind: WorkloadKind) -> Box<dyn Workload> {
    match kind {
        WorkloadKind::FindNode => Box::new(FindNodeWorkload),
        WorkloadKind::GetPeers => Box::new(GetPeersWorkload),
        WorkloadKind::Announce => Box::new(AnnounceWorkload),
    }
}

/// `find_node` of a random target from a random live node.
pub struct FindNodeWorkload;

impl Workload for FindNodeWorkload {
    fn name(&self) -> &'static str {
        "find_node"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let target = Id::random(ctl.rng());
        ctl.find_node(node, target, "find_node", 0);
    }
}

/// `get_peers` of a random infohash (nobody announced it) from a random live node.
pub struct GetPeersWorkload;

impl Workload for GetPeersWorkload {
    fn name(&self) -> &'static str {
        "get_peers"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let info_hash = Id::random(ctl.rng());
        ctl.get_peers(node, info_hash, "get_peers", 0, None);
    }
}

/// A random live node announces a random infohash (`implied_port`, so its own address);
/// once that is over, another random live node looks the infohash up and must find it.
pub struct AnnounceWorkload;

impl Workload for AnnounceWorkload {
    fn name(&self) -> &'static str {
        "announce"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let info_hash = Id::random(ctl.rng());
        ctl.announce_peer(node, info_hash, None, "announce", 0);
    }

    fn finished(&mut self, ctl: &mut Control<'_>, done: &LookupDone) {
        // Only a stored announce can be found; a failed one is counted as such already.
        if done.kind != "announce" || !done.succeeded {
            return;
        }
        let Some(other) = ctl.random_live_node(Some(done.node)) else { return };
        let announcer = ctl.addr(done.node);
        ctl.get_peers(other, done.target, "get_peers_announced", 0, Some(announcer));
    }
}
