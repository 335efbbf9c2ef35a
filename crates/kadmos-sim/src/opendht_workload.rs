//! OpenDHT workloads: find, get, put then get, and listen.
//!
//! Each is the OpenDHT counterpart of a Mainline workload, measured the same way: every
//! command started through [`Control`] is a measured lookup (completion, messages, hops,
//! accuracy against the oracle), under its kind:
//!
//! - `find`: find_node of a random target.
//! - `get`: get of a random key nobody put.
//! - `put`, then `get_after_put`: a random node puts a fresh value at a random key; once the
//!   put is over and stored somewhere, another random node gets the key and must find it.
//! - `listen`: see [`ListenWorkload`]; its puts are measured as `put` too.

use std::time::Duration;

use rand::Rng;

use kadmos_proto::node_io::QueryId;
use kadmos_proto::opendht::{Node, Value, ValueType};
use kadmos_proto::{Id, Timestamp};

use crate::network::NodeIndex;
use crate::opendht_node::ListenValue;
use crate::options::WorkloadKind;
use crate::report::{ListenReport, Percentiles};
use crate::simulation::Control;
use crate::workload::{LookupDone, Workload};

/// Time from a listen's start to the put it waits for: long enough for the listen's search
/// (a few seconds at worst under faults) and its subscriptions to be over, so that the
/// notification measures the push, not the listen's own search finding the value.
pub const LISTEN_HEAD_START: Duration = Duration::from_secs(10);

/// Time from the put's start after which a listener that was not told counts as missed.
/// A put is over within seconds; a storing node pushes as soon as it stores.
pub const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// The built-in OpenDHT workload of a kind; `None` for a kind of another network.
pub fn built_in(kind: WorkloadKind) -> Option<Box<dyn Workload<Node>>> {
    Some(match kind {
        WorkloadKind::Find => Box::new(FindWorkload),
        WorkloadKind::Get => Box::new(GetWorkload),
        WorkloadKind::PutGet => Box::new(PutGetWorkload::default()),
        WorkloadKind::Listen => Box::new(ListenWorkload::default()),
        _ => return None,
    })
}

/// A fresh user-data value with a random non-zero id, so that it is known before the put.
fn fresh_value(ctl: &mut Control<'_, Node>, label: &str) -> Value {
    let id = ctl.rng().gen_range(1..=u64::MAX);
    Value::new(id, ValueType::USER_DATA.id, format!("kadmos-sim {label} {id:016x}").into_bytes())
}

/// `find_node` of a random target from a random live node.
pub struct FindWorkload;

impl Workload<Node> for FindWorkload {
    fn name(&self) -> &'static str {
        "find"
    }

    fn begin(&mut self, ctl: &mut Control<'_, Node>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let target = Id::random(ctl.rng());
        ctl.find(node, target, "find", 0);
    }
}

/// `get` of a random key (nobody put anything there) from a random live node.
pub struct GetWorkload;

impl Workload<Node> for GetWorkload {
    fn name(&self) -> &'static str {
        "get"
    }

    fn begin(&mut self, ctl: &mut Control<'_, Node>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let key = Id::random(ctl.rng());
        ctl.get(node, key, None, "get", 0);
    }
}

/// A random live node puts a fresh value at a random key; once that is over and stored, another
/// random live node gets the key and must find the value.
#[derive(Default)]
pub struct PutGetWorkload {
    /// The value of each unit (its tag), until its get starts.
    values: Vec<Option<Value>>,
}

impl Workload<Node> for PutGetWorkload {
    fn name(&self) -> &'static str {
        "put-get"
    }

    fn begin(&mut self, ctl: &mut Control<'_, Node>) {
        let Some(node) = ctl.random_live_node(None) else { return };
        let key = Id::random(ctl.rng());
        let value = fresh_value(ctl, "put-get");
        let tag = self.values.len() as u64;
        self.values.push(Some(value.clone()));
        ctl.put(node, key, value, "put", tag);
    }

    fn finished(&mut self, ctl: &mut Control<'_, Node>, done: &LookupDone<Node>) {
        // Only a stored value can be found; a failed put is counted as such already.
        if done.kind != "put" || !done.succeeded {
            return;
        }
        let Some(value) = self.values.get_mut(done.tag as usize).and_then(Option::take) else { return };
        let Some(other) = ctl.random_live_node(Some(done.node)) else { return };
        ctl.get(other, done.target, Some(value), "get_after_put", 0);
    }
}

/// Where a listen unit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Listening; the put comes [`LISTEN_HEAD_START`] after the listen began.
    Listening,
    /// The put began; waiting [`LISTEN_WAIT`] for the notification.
    Put,
    /// Over.
    Closed,
}

/// One listen of the listen workload.
struct ListenUnit {
    key: Id,
    listener: NodeIndex,
    listen: Option<QueryId>,
    stage: Stage,
    value: Option<Value>,
    putter: Option<NodeIndex>,
    put_started: Option<Timestamp>,
    stored: bool,
    notified_at: Option<Timestamp>,
    measured: bool,
}

/// A random live node listens to a random key; [`LISTEN_HEAD_START`] later, another random
/// live node puts a fresh value there. Measured: the time from the put's start to the
/// listener's notification of that value, and the share of listeners notified within
/// [`LISTEN_WAIT`], over the listens whose put stored the value and whose listener and putter
/// were alive to the end of the wait. The listen is cancelled at the end of the wait.
#[derive(Default)]
pub struct ListenWorkload {
    units: Vec<ListenUnit>,
}

impl ListenWorkload {
    /// Wake-up tags: two per unit, the put and the end of the wait.
    fn tag(unit: usize, closing: bool) -> u64 {
        2 * unit as u64 + u64::from(closing)
    }
}

impl Workload<Node> for ListenWorkload {
    fn name(&self) -> &'static str {
        "listen"
    }

    fn begin(&mut self, ctl: &mut Control<'_, Node>) {
        let Some(listener) = ctl.random_live_node(None) else { return };
        let key = Id::random(ctl.rng());
        let listen = ctl.listen(listener, key);
        let unit = self.units.len();
        self.units.push(ListenUnit {
            key,
            listener,
            listen,
            stage: Stage::Listening,
            value: None,
            putter: None,
            put_started: None,
            stored: false,
            notified_at: None,
            measured: false,
        });
        ctl.wake_after(LISTEN_HEAD_START, Self::tag(unit, false));
    }

    fn woke(&mut self, ctl: &mut Control<'_, Node>, tag: u64) {
        let index = (tag / 2) as usize;
        let Some(unit) = self.units.get_mut(index) else { return };
        match unit.stage {
            Stage::Listening => {
                unit.stage = Stage::Put;
                let value = fresh_value(ctl, "listen");
                let putter = ctl.random_live_node(Some(unit.listener));
                if let Some(putter) = putter {
                    unit.put_started = Some(ctl.now());
                    unit.putter = Some(putter);
                    unit.value = Some(value.clone());
                    ctl.put(putter, unit.key, value, "put", index as u64);
                }
                ctl.wake_after(LISTEN_WAIT, Self::tag(index, true));
            }
            Stage::Put => {
                unit.stage = Stage::Closed;
                let alive = |n: Option<NodeIndex>| n.is_some_and(|n| ctl.left_at(n).is_none());
                unit.measured = unit.stored && alive(Some(unit.listener)) && alive(unit.putter);
                if let Some(listen) = unit.listen {
                    ctl.cancel_listen(unit.listener, listen);
                }
            }
            Stage::Closed => {}
        }
    }

    fn finished(&mut self, _ctl: &mut Control<'_, Node>, done: &LookupDone<Node>) {
        if let Some(unit) = self.units.get_mut(done.tag as usize) {
            if done.kind == "put" && unit.putter == Some(done.node) {
                unit.stored = done.succeeded;
            }
        }
    }

    fn notice(&mut self, ctl: &mut Control<'_, Node>, node: NodeIndex, notice: &ListenValue) {
        if notice.expired {
            return;
        }
        let now = ctl.now();
        let heard = |u: &ListenUnit| {
            u.listener == node
                && u.listen == Some(notice.listen)
                && u.stage == Stage::Put
                && u.notified_at.is_none()
                && u.value.as_ref().is_some_and(|v| v.id == notice.value.id && v.content_equals(&notice.value))
        };
        if let Some(unit) = self.units.iter_mut().find(|u| heard(u)) {
            unit.notified_at = Some(now);
        }
    }

    fn listen_report(&self, median_rtt_ms: f64) -> Option<ListenReport> {
        let measured: Vec<&ListenUnit> = self.units.iter().filter(|u| u.measured).collect();
        let latencies: Vec<f64> = measured
            .iter()
            .filter_map(|u| {
                let (put, told) = (u.put_started?, u.notified_at?);
                Some((told.as_micros() - put.as_micros()) as f64 / 1000.0)
            })
            .collect();
        let notified = latencies.len();
        let latency_ms = Percentiles::of(&latencies);
        Some(ListenReport {
            listens: self.units.len(),
            measured: measured.len(),
            notified,
            notified_rate: if measured.is_empty() { 0.0 } else { notified as f64 / measured.len() as f64 },
            not_measured: self.units.len() - measured.len(),
            latency_rtts: latency_ms.scaled(median_rtt_ms),
            latency_ms,
        })
    }
}
