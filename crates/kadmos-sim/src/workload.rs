//! Workloads: what the simulated users ask the network to do.
//!
//! A workload is told to [`Workload::begin`] one unit of work at a time (the simulator spaces
//! units by `lookup_interval_ms` and lets the workloads take turns), and starts lookups
//! through the [`Control`] it is handed. Every lookup started that way is measured, and the
//! workload hears of its end in [`Workload::finished`], where it may start follow-ups (an
//! announce is followed by a get_peers that must find the announcer). A workload may also
//! ask to be woken later ([`Control::wake_after`], [`Workload::woke`]): the item workload
//! gets each item two hours after putting it.

use std::time::Duration;

use rand::Rng;

use kadmos_proto::mainline::{CommandResult, ImmutableItem, Item, ItemQuery, ItemSigner, MutableItem, Node};
use kadmos_proto::{Id, Timestamp};

use crate::advertise_workload::{AdvertiseOptions, AdvertiseReport, AdvertiseWorkload};
use crate::network::NodeIndex;
use crate::options::{ItemOptions, WorkloadKind};
use crate::report::{ItemGets, ItemReport, ListenReport, Percentiles};
use crate::sim_node::SimNode;
use crate::simulation::Control;

/// A lookup a workload started is over.
#[derive(Clone, Debug)]
pub struct LookupDone<N: SimNode = Node> {
    /// The label the workload gave the lookup.
    pub kind: &'static str,
    /// The workload's own tag, as given when the lookup started.
    pub tag: u64,
    /// The node that ran it.
    pub node: NodeIndex,
    pub target: Id,
    /// Whether it succeeded (see [`crate::simulation`] for the definition).
    pub succeeded: bool,
    pub outcome: N::Outcome,
    /// Virtual time from the start to the first result: the first `Peers` event, or for a
    /// `get_item` with an expected item, the `Item` event that brought it.
    pub first_result_us: Option<u64>,
    /// Virtual time from the start to the end.
    pub completion_us: u64,
    /// Datagrams of the lookup (its queries and the replies that reached it).
    pub messages: u32,
    /// `get_item`: the verified items nodes answered with (once per version); OpenDHT `get`:
    /// the values.
    pub items: Vec<N::Item>,
}

/// A source of lookups. See the module documentation.
pub trait Workload<N: SimNode = Node> {
    /// Name shown in reports.
    fn name(&self) -> &'static str;

    /// Starts one unit of work (usually one lookup from a random live node).
    fn begin(&mut self, ctl: &mut Control<'_, N>);

    /// A lookup this workload started is over.
    fn finished(&mut self, _ctl: &mut Control<'_, N>, _done: &LookupDone<N>) {}

    /// A wake-up this workload asked for ([`Control::wake_after`]) has come.
    fn woke(&mut self, _ctl: &mut Control<'_, N>, _tag: u64) {}

    /// The items section of the report, for a workload that puts and gets items.
    fn item_report(&self) -> Option<ItemReport> {
        None
    }

    /// A node reported something outside measured commands: a Mainline advertisement or
    /// watch (started through [`Control::advertise`] and [`Control::watch`]), an OpenDHT
    /// listen. Every workload hears every notice.
    fn notice(&mut self, _ctl: &mut Control<'_, N>, _node: NodeIndex, _notice: &N::Notice) {}

    /// The advertise section of the report, at the end of the run.
    fn advertise_report(&self, _ctl: &Control<'_, N>) -> Option<AdvertiseReport> {
        None
    }

    /// The listen section of the report, at the end of the run (times also in multiples of
    /// `median_rtt_ms`).
    fn listen_report(&self, _median_rtt_ms: f64) -> Option<ListenReport> {
        None
    }
}

/// The built-in Mainline workload of a kind (the item and advertise workloads with default
/// options); `None` for a kind of another network.
pub fn built_in(kind: WorkloadKind) -> Option<Box<dyn Workload>> {
    built_in_with(kind, &ItemOptions::default(), &AdvertiseOptions::default())
}

/// The built-in Mainline workload of a kind, the item and advertise workloads with these
/// options; `None` for a kind of another network.
pub fn built_in_with(
    kind: WorkloadKind,
    items: &ItemOptions,
    advertise: &AdvertiseOptions,
) -> Option<Box<dyn Workload>> {
    Some(match kind {
        WorkloadKind::FindNode => Box::new(FindNodeWorkload),
        WorkloadKind::GetPeers => Box::new(GetPeersWorkload),
        WorkloadKind::Announce => Box::new(AnnounceWorkload),
        WorkloadKind::Put => Box::new(PutWorkload::default()),
        WorkloadKind::Items => Box::new(ItemWorkload::new(items.clone())),
        WorkloadKind::Advertise => Box::new(AdvertiseWorkload::new(advertise.clone())),
        WorkloadKind::Find | WorkloadKind::Get | WorkloadKind::PutGet | WorkloadKind::Listen => return None,
    })
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

/// A random live node puts a fresh immutable item (BEP 44); once that is over, another random
/// live node gets it and must find it. No churn, no keep-alive: the put's own cost, measured
/// as the announce workload measures an announce.
#[derive(Default)]
pub struct PutWorkload {
    /// Items put so far, which makes each value (so each target) new.
    count: u64,
    /// Items being put, by tag, for the get that follows.
    putting: std::collections::BTreeMap<u64, Item>,
}

impl Workload for PutWorkload {
    fn name(&self) -> &'static str {
        "put"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        self.count += 1;
        let nonce: u64 = ctl.rng().gen();
        let value = format!("put {} {nonce:016x}", self.count);
        let item = Item::Immutable(ImmutableItem::from_bytes(value.as_bytes()).expect("a short string is a value"));
        if ctl.put_item(node, item.clone(), "put", self.count).is_some() {
            self.putting.insert(self.count, item);
        }
    }

    fn finished(&mut self, ctl: &mut Control<'_>, done: &LookupDone) {
        if done.kind != "put" {
            return;
        }
        // Only a stored item can be found; a failed put is counted as such already.
        let Some(item) = self.putting.remove(&done.tag).filter(|_| done.succeeded) else { return };
        let Some(other) = ctl.random_live_node(Some(done.node)) else { return };
        ctl.get_item(other, ItemQuery::Immutable(done.target), Some(item), "get_put", 0);
    }
}

/// The three kinds of item the item workload puts, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Immutable,
    Mutable,
    MutableSalted,
}

/// Where an item is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A mutable item's first version (seq 1) is being put.
    PuttingFirst,
    /// The item (for a mutable one, seq 2) is being put.
    Putting,
    /// Its last put reached no node; it is not gotten.
    PutFailed,
    /// Stored; waiting `hold_secs` for its get.
    Held,
    Getting,
    Got,
    /// No live node other than the putter was left to get it from.
    NotGotten,
}

/// What had become of an item's putter when the item was looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PutterFate {
    /// Alive: it kept the item alive the whole time (with keep-alive on).
    Alive,
    /// Left before its first re-put was due: nobody ever refreshed the item.
    LeftBeforeReput,
    /// Left after its first re-put was due (re-put once, then orphaned).
    LeftAfterReput,
}

/// One item of the item workload.
struct HeldItem {
    kind: ItemKind,
    putter: NodeIndex,
    /// The older version of a mutable item, put first so that gets must find the newer one.
    first: Option<Item>,
    /// What must come back.
    item: Item,
    stage: Stage,
    /// When the putter's first keep-alive re-put was due (with keep-alive off, when it would
    /// have been).
    reput_due: Option<Timestamp>,
    /// Set when the get began.
    fate: Option<PutterFate>,
    replicas: usize,
}

/// A finished get.
struct GetRecord {
    kind: ItemKind,
    fate: PutterFate,
    found: bool,
    stale: bool,
    replicas: usize,
    first_item_us: Option<u64>,
    messages: u32,
}

/// BEP 44 items kept alive through churn (the BEP 44 issue: items stay retrievable two hours
/// on with 30% of the nodes replaced per hour).
///
/// Each unit is one item, put from a random live node: immutable, mutable, or mutable with a
/// salt, in turn. A mutable item is put twice, seq 1 then seq 2 with another value, so that
/// gets must come back with the newest version. Once the last put is over and stored on at
/// least one node, the putter keeps the item alive (`Node::keep_alive`, unless
/// [`ItemOptions::keep_alive`] is off) and, `hold_secs` later, a random live node other than
/// the putter gets it: the get succeeds when a node answers with exactly the item put last.
///
/// Churn takes putters too. A putter that left no longer re-puts its item, and keep-alive
/// cannot help there: the report counts gets by what had become of the putter when the get
/// began (alive; left before its first re-put was due; left after it), and the claim is about
/// the items whose putter is alive. Gets from nodes that leave before the get is over are
/// counted apart, as abandoned.
pub struct ItemWorkload {
    options: ItemOptions,
    items: Vec<HeldItem>,
    gets: Vec<GetRecord>,
    stored_at: Vec<f64>,
    put_messages: Vec<f64>,
}

impl ItemWorkload {
    pub fn new(options: ItemOptions) -> Self {
        ItemWorkload { options, items: Vec::new(), gets: Vec::new(), stored_at: Vec::new(), put_messages: Vec::new() }
    }

    fn query(item: &Item) -> ItemQuery {
        match item {
            Item::Immutable(i) => ItemQuery::Immutable(i.target()),
            Item::Mutable(m) => ItemQuery::Mutable { public_key: m.public_key, salt: m.salt.clone(), newer_than: None },
        }
    }
}

/// A bencoded byte string.
fn bencoded(text: &str) -> Vec<u8> {
    ImmutableItem::from_bytes(text.as_bytes()).expect("short values are valid").value
}

impl Workload for ItemWorkload {
    fn name(&self) -> &'static str {
        "items"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(putter) = ctl.random_live_node(None) else { return };
        let index = self.items.len();
        let kind = [ItemKind::Immutable, ItemKind::Mutable, ItemKind::MutableSalted][index % 3];
        let nonce: u64 = ctl.rng().gen();
        let text = format!("kadmos-sim item {index} {nonce:016x}");
        let (first, item) = match kind {
            ItemKind::Immutable => (None, Item::Immutable(ImmutableItem::new(bencoded(&text)).expect("valid"))),
            ItemKind::Mutable | ItemKind::MutableSalted => {
                let signer = ItemSigner::from_seed(ctl.rng().gen());
                let salt: Vec<u8> =
                    if kind == ItemKind::MutableSalted { ctl.rng().gen::<[u8; 8]>().to_vec() } else { Vec::new() };
                let sign = |seq: i64| {
                    let value = bencoded(&format!("{text} v{seq}"));
                    Item::Mutable(MutableItem::sign(&signer, &salt, seq, value).expect("valid"))
                };
                (Some(sign(1)), sign(2))
            }
        };
        let put = first.clone().unwrap_or_else(|| item.clone());
        let stage = if first.is_some() { Stage::PuttingFirst } else { Stage::Putting };
        self.items.push(HeldItem { kind, putter, first, item, stage, reput_due: None, fate: None, replicas: 0 });
        ctl.put_item(putter, put, "put_item", index as u64);
    }

    fn finished(&mut self, ctl: &mut Control<'_>, done: &LookupDone) {
        let tag = done.tag;
        let Some(it) = self.items.get_mut(tag as usize) else { return };
        match (done.kind, it.stage) {
            ("put_item", Stage::PuttingFirst) => {
                self.put_messages.push(f64::from(done.messages));
                // The newer version, from the same node, whether or not the first one stored.
                it.stage = Stage::Putting;
                ctl.put_item(it.putter, it.item.clone(), "put_item", tag);
            }
            ("put_item", Stage::Putting) => {
                self.put_messages.push(f64::from(done.messages));
                let stored = match &done.outcome {
                    CommandResult::PutItem(stored) => stored.stored_at.len(),
                    _ => 0,
                };
                self.stored_at.push(stored as f64);
                if !done.succeeded {
                    it.stage = Stage::PutFailed;
                    return;
                }
                let interval =
                    ctl.node(it.putter).map_or(Duration::from_secs(3600), |n| n.config().keep_alive_interval);
                if self.options.keep_alive {
                    ctl.keep_alive(it.putter, it.item.clone());
                }
                it.reput_due = Some(ctl.now() + interval);
                it.stage = Stage::Held;
                ctl.wake_after(Duration::from_secs_f64(self.options.hold_secs), tag);
            }
            ("get_item", Stage::Getting) => {
                let expected_seq = match &it.item {
                    Item::Mutable(m) => m.seq,
                    Item::Immutable(_) => 0,
                };
                let stale = done.items.iter().any(|i| matches!(i, Item::Mutable(m) if m.seq < expected_seq));
                it.stage = Stage::Got;
                self.gets.push(GetRecord {
                    kind: it.kind,
                    fate: it.fate.expect("set when the get began"),
                    found: done.succeeded,
                    stale,
                    replicas: it.replicas,
                    first_item_us: done.first_result_us,
                    messages: done.messages,
                });
            }
            _ => {}
        }
    }

    fn woke(&mut self, ctl: &mut Control<'_>, tag: u64) {
        let Some(it) = self.items.get_mut(tag as usize) else { return };
        if it.stage != Stage::Held {
            return;
        }
        let now = ctl.now();
        it.fate = Some(match (ctl.left_at(it.putter), it.reput_due) {
            (None, _) => PutterFate::Alive,
            (Some(left), Some(due)) if left < due => PutterFate::LeftBeforeReput,
            _ => PutterFate::LeftAfterReput,
        });
        let target = it.item.target();
        it.replicas = ctl
            .live_nodes()
            .iter()
            .filter(|&&n| ctl.node(n).and_then(|node| node.item_store().get(&target, now)) == Some(&it.item))
            .count();
        let Some(getter) = ctl.random_live_node(Some(it.putter)) else {
            it.stage = Stage::NotGotten;
            return;
        };
        it.stage = Stage::Getting;
        let query = Self::query(&it.item);
        ctl.get_item(getter, query, Some(it.item.clone()), "get_item", tag);
    }

    fn item_report(&self) -> Option<ItemReport> {
        let count = |stages: &[Stage]| self.items.iter().filter(|i| stages.contains(&i.stage)).count();
        let gets = |keep: &dyn Fn(&GetRecord) -> bool| {
            let chosen: Vec<&GetRecord> = self.gets.iter().filter(|g| keep(g)).collect();
            ItemGets::new(chosen.len(), chosen.iter().filter(|g| g.found).count())
        };
        let replicas = |keep: &dyn Fn(&GetRecord) -> bool| {
            Percentiles::of(&self.gets.iter().filter(|g| keep(g)).map(|g| g.replicas as f64).collect::<Vec<_>>())
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Some(ItemReport {
            keep_alive: self.options.keep_alive,
            hold_secs: self.options.hold_secs,
            items: self.items.len(),
            immutable_items: self.items.iter().filter(|i| i.kind == ItemKind::Immutable).count(),
            mutable_items: self.items.iter().filter(|i| i.first.is_some()).count(),
            stored: count(&[Stage::Held, Stage::Getting, Stage::Got, Stage::NotGotten]),
            put_failed: count(&[Stage::PutFailed]),
            put_abandoned: count(&[Stage::PuttingFirst, Stage::Putting]),
            stored_at: Percentiles::of(&self.stored_at),
            gets: gets(&|_| true),
            putter_alive: gets(&|g| g.fate == PutterFate::Alive),
            putter_left_before_reput: gets(&|g| g.fate == PutterFate::LeftBeforeReput),
            putter_left_after_reput: gets(&|g| g.fate == PutterFate::LeftAfterReput),
            immutable: gets(&|g| g.kind == ItemKind::Immutable),
            mutable: gets(&|g| g.kind == ItemKind::Mutable),
            mutable_salted: gets(&|g| g.kind == ItemKind::MutableSalted),
            gets_abandoned: count(&[Stage::Getting]),
            not_gotten: count(&[Stage::NotGotten]),
            stale_answers: self.gets.iter().filter(|g| g.stale).count(),
            replicas_at_get: replicas(&|_| true),
            replicas_at_get_putter_alive: replicas(&|g| g.fate == PutterFate::Alive),
            first_item_ms: Percentiles::of(
                &self.gets.iter().filter_map(|g| g.first_item_us.map(ms)).collect::<Vec<_>>(),
            ),
            messages_per_get: Percentiles::of(&self.gets.iter().map(|g| f64::from(g.messages)).collect::<Vec<_>>()),
            messages_per_put: Percentiles::of(&self.put_messages),
        })
    }
}
