//! The advertise workload: services advertised through churn, looked up at random times, and
//! watched (issue "quests that last").
//!
//! Each unit is one infohash. A random live node (the *watcher*) starts watching it
//! (`Node::watch`); after a random delay of up to [`WATCH_HEAD_START`] (so the watcher's
//! search schedule has a random phase against the advertiser's start) another random live node
//! (the *advertiser*) starts advertising it with its own port (`Node::advertise`), or, in the
//! control run ([`AdvertiseOptions::quests`] off), announces it once. Then, at
//! [`AdvertiseOptions::lookups_per_advertisement`] random times spread uniformly over
//! [`AdvertiseOptions::hold_secs`], a random live node other than those two runs a get_peers
//! that succeeds when it finds the advertiser.
//!
//! Measured: the share of those lookups that find the advertiser among the lookups begun
//! while the advertiser was alive (by half hour since the advertisement started, to show the
//! control's announce expiring after 30 minutes); datagrams per advertisement per hour of
//! advertising (the rounds' queries and answers, as the node counts them); and watch latency,
//! from the advertiser's start to the watcher's `Found` of it, for units where both were alive
//! then.

use std::time::Duration;

use rand::Rng;
use serde::Serialize;

use kadmos_proto::mainline::QuestEvent;
use kadmos_proto::{Id, InfoHash, Timestamp};

use crate::network::NodeIndex;
use crate::report::{ItemGets, Percentiles};
use crate::simulation::Control;
use crate::workload::{LookupDone, Workload};

/// Most time between a watch's start and its advertiser's: the watch interval (5 minutes),
/// so that the advertiser starts at a uniformly random point of the watcher's schedule.
pub const WATCH_HEAD_START: Duration = Duration::from_secs(300);

/// Half hours in the report's breakdown of lookups by time since the advertisement started.
const HALF_HOUR: f64 = 1800.0;

/// The advertise workload's settings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AdvertiseOptions {
    /// Virtual time over which each advertisement's lookups are spread. Default 7200 s.
    pub hold_secs: f64,
    /// Lookups at random times per advertisement. Default 5.
    pub lookups_per_advertisement: usize,
    /// Advertise and watch with quests (default); off for the control run: one announce,
    /// no renewal, no watch.
    pub quests: bool,
}

impl Default for AdvertiseOptions {
    fn default() -> Self {
        AdvertiseOptions { hold_secs: 7200.0, lookups_per_advertisement: 5, quests: true }
    }
}

/// One advertised infohash.
struct Unit {
    info_hash: InfoHash,
    watcher: NodeIndex,
    advertiser: Option<NodeIndex>,
    started: Option<Timestamp>,
    /// When the watcher reported the advertiser.
    found_at: Option<Timestamp>,
    /// Datagrams of the advertiser's rounds (or its one announce) and of the watcher's searches.
    advertise_messages: u64,
    watch_messages: u64,
}

/// What a wake-up is for.
#[derive(Clone, Copy, Debug)]
enum Wake {
    /// The advertiser of a unit starts.
    Advertise(usize),
    /// A lookup at a random time for a unit.
    Lookup(usize),
}

/// A lookup at a random time.
struct RandomLookup {
    /// Seconds since the advertisement started.
    offset_secs: f64,
    advertiser_alive: bool,
    found: Option<bool>,
}

/// The figures of the advertise workload (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdvertiseReport {
    pub quests: bool,
    pub hold_secs: f64,
    pub advertisements: usize,
    /// Lookups begun while the advertiser was alive, and how many found it.
    pub lookups_advertiser_alive: ItemGets,
    /// The same, by half hour since the advertisement started (0–30 min, 30–60 min, ...).
    pub by_half_hour: Vec<ItemGets>,
    /// Lookups begun after the advertiser had left (churn), and how many still found it.
    pub lookups_advertiser_gone: ItemGets,
    /// Lookups whose node left before they finished.
    pub lookups_abandoned: usize,
    /// Datagrams per advertisement per hour of advertising (until the end or the advertiser
    /// leaving).
    pub messages_per_advertisement_hour: Percentiles,
    /// All advertisements' datagrams over all their hours of advertising (short-lived
    /// advertisers weigh less than in the percentiles above).
    pub messages_per_advertisement_hour_overall: f64,
    /// Datagrams per watch per hour of watching.
    pub messages_per_watch_hour: Percentiles,
    /// Seconds from the advertiser's start to the watcher reporting it.
    pub watch_latency_secs: Percentiles,
    /// Units whose watcher reported the advertiser, of those where it did or where both the
    /// watcher and the advertiser lived to the end.
    pub watches_found: ItemGets,
}

/// See the module documentation.
pub struct AdvertiseWorkload {
    options: AdvertiseOptions,
    units: Vec<Unit>,
    wakes: Vec<Wake>,
    lookups: Vec<RandomLookup>,
    /// When the run's end was seen (the last lookup's end), to bound hours of advertising.
    last_seen: Timestamp,
}

impl AdvertiseWorkload {
    pub fn new(options: AdvertiseOptions) -> Self {
        AdvertiseWorkload {
            options,
            units: Vec::new(),
            wakes: Vec::new(),
            lookups: Vec::new(),
            last_seen: Timestamp::ZERO,
        }
    }

    fn wake(&mut self, ctl: &mut Control<'_>, after: Duration, wake: Wake) {
        ctl.wake_after(after, self.wakes.len() as u64);
        self.wakes.push(wake);
    }

    fn start_advertising(&mut self, ctl: &mut Control<'_>, unit: usize) {
        let watcher = self.units[unit].watcher;
        let Some(advertiser) = ctl.random_live_node(Some(watcher)) else { return };
        let info_hash = self.units[unit].info_hash;
        let started = if self.options.quests {
            ctl.advertise(advertiser, info_hash)
        } else {
            ctl.announce_peer(advertiser, info_hash, None, "announce_once", unit as u64).is_some()
        };
        if !started {
            return;
        }
        let u = &mut self.units[unit];
        u.advertiser = Some(advertiser);
        u.started = Some(ctl.now());
        for _ in 0..self.options.lookups_per_advertisement {
            let offset = ctl.rng().gen::<f64>() * self.options.hold_secs;
            self.wake(ctl, Duration::from_secs_f64(offset), Wake::Lookup(unit));
        }
    }

    fn random_lookup(&mut self, ctl: &mut Control<'_>, unit: usize) {
        let u = &self.units[unit];
        let (Some(advertiser), Some(started)) = (u.advertiser, u.started) else { return };
        let watcher = u.watcher;
        // A node other than the advertiser and the watcher (whose own quests would share the
        // lookup's infohash).
        let mut node = None;
        for _ in 0..16 {
            let candidate = ctl.random_live_node(Some(advertiser));
            if candidate != Some(watcher) {
                node = candidate;
                break;
            }
        }
        let Some(node) = node else { return };
        let index = self.lookups.len() as u64;
        let expect = ctl.addr(advertiser);
        if ctl.get_peers(node, u.info_hash, "get_peers_advertised", index, Some(expect)).is_some() {
            self.lookups.push(RandomLookup {
                offset_secs: ctl.now().saturating_since(started).as_secs_f64(),
                advertiser_alive: ctl.left_at(advertiser).is_none(),
                found: None,
            });
        }
    }

    /// Hours a node spent on a unit's quest: from `from` to the end of the run or the node leaving.
    fn hours(&self, ctl_left: Option<Timestamp>, from: Timestamp) -> f64 {
        let until = ctl_left.unwrap_or(self.last_seen).min(self.last_seen);
        until.saturating_since(from).as_secs_f64() / 3600.0
    }
}

impl Workload for AdvertiseWorkload {
    fn name(&self) -> &'static str {
        "advertise"
    }

    fn begin(&mut self, ctl: &mut Control<'_>) {
        let Some(watcher) = ctl.random_live_node(None) else { return };
        let info_hash = Id::random(ctl.rng());
        if self.options.quests && !ctl.watch(watcher, info_hash) {
            return;
        }
        let unit = self.units.len();
        self.units.push(Unit {
            info_hash,
            watcher,
            advertiser: None,
            started: None,
            found_at: None,
            advertise_messages: 0,
            watch_messages: 0,
        });
        let head_start = ctl.rng().gen::<f64>() * WATCH_HEAD_START.as_secs_f64();
        self.wake(ctl, Duration::from_secs_f64(head_start), Wake::Advertise(unit));
    }

    fn woke(&mut self, ctl: &mut Control<'_>, tag: u64) {
        self.last_seen = self.last_seen.max(ctl.now());
        match self.wakes.get(tag as usize).copied() {
            Some(Wake::Advertise(unit)) => self.start_advertising(ctl, unit),
            Some(Wake::Lookup(unit)) => self.random_lookup(ctl, unit),
            None => {}
        }
    }

    fn finished(&mut self, ctl: &mut Control<'_>, done: &LookupDone) {
        self.last_seen = self.last_seen.max(ctl.now());
        match done.kind {
            "get_peers_advertised" => {
                if let Some(lookup) = self.lookups.get_mut(done.tag as usize) {
                    lookup.found = Some(done.succeeded);
                }
            }
            "announce_once" => {
                if let Some(unit) = self.units.get_mut(done.tag as usize) {
                    unit.advertise_messages += u64::from(done.messages);
                }
            }
            _ => {}
        }
    }

    fn notice(&mut self, ctl: &mut Control<'_>, node: NodeIndex, event: &QuestEvent) {
        let now = ctl.now();
        match event {
            QuestEvent::Advertised { info_hash, messages, .. } => {
                if let Some(u) = self.units.iter_mut().find(|u| u.info_hash == *info_hash && u.advertiser == Some(node))
                {
                    u.advertise_messages += u64::from(*messages);
                }
            }
            QuestEvent::Searched { info_hash, messages, .. } => {
                if let Some(u) = self.units.iter_mut().find(|u| u.info_hash == *info_hash && u.watcher == node) {
                    u.watch_messages += u64::from(*messages);
                }
            }
            QuestEvent::Found { info_hash, peer, .. } => {
                let Some(u) = self.units.iter_mut().find(|u| u.info_hash == *info_hash && u.watcher == node) else {
                    return;
                };
                if u.found_at.is_none() && u.advertiser.is_some_and(|a| ctl.addr(a) == *peer) {
                    u.found_at = Some(now);
                }
            }
            QuestEvent::Gone { .. } => {}
        }
    }

    fn advertise_report(&self, ctl: &Control<'_>) -> Option<AdvertiseReport> {
        let count = |keep: &dyn Fn(&RandomLookup) -> bool| {
            let chosen: Vec<&RandomLookup> = self.lookups.iter().filter(|l| l.found.is_some() && keep(l)).collect();
            ItemGets::new(chosen.len(), chosen.iter().filter(|l| l.found == Some(true)).count())
        };
        let halves = (self.options.hold_secs / HALF_HOUR).ceil().max(1.0) as usize;
        let by_half_hour = (0..halves)
            .map(|h| {
                let (from, to) = (h as f64 * HALF_HOUR, (h + 1) as f64 * HALF_HOUR);
                count(&|l| l.advertiser_alive && l.offset_secs >= from && l.offset_secs < to)
            })
            .collect();
        let mut ad_rates = Vec::new();
        let (mut ad_messages, mut ad_hours) = (0.0, 0.0);
        let mut watch_rates = Vec::new();
        let mut latencies = Vec::new();
        let (mut watches, mut found) = (0, 0);
        for u in &self.units {
            let (Some(advertiser), Some(started)) = (u.advertiser, u.started) else { continue };
            let hours = self.hours(ctl.left_at(advertiser), started);
            if hours > 0.0 {
                ad_rates.push(u.advertise_messages as f64 / hours);
                ad_messages += u.advertise_messages as f64;
                ad_hours += hours;
            }
            if !self.options.quests {
                continue;
            }
            let watch_hours = self.hours(ctl.left_at(u.watcher), started);
            if watch_hours > 0.0 {
                watch_rates.push(u.watch_messages as f64 / watch_hours);
            }
            match u.found_at {
                Some(at) => {
                    watches += 1;
                    found += 1;
                    latencies.push(at.saturating_since(started).as_secs_f64());
                }
                None if ctl.left_at(advertiser).is_none() && ctl.left_at(u.watcher).is_none() => watches += 1,
                None => {}
            }
        }
        Some(AdvertiseReport {
            quests: self.options.quests,
            hold_secs: self.options.hold_secs,
            advertisements: self.units.iter().filter(|u| u.started.is_some()).count(),
            lookups_advertiser_alive: count(&|l| l.advertiser_alive),
            by_half_hour,
            lookups_advertiser_gone: count(&|l| !l.advertiser_alive),
            lookups_abandoned: self.lookups.iter().filter(|l| l.found.is_none()).count(),
            messages_per_advertisement_hour: Percentiles::of(&ad_rates),
            messages_per_advertisement_hour_overall: if ad_hours > 0.0 { ad_messages / ad_hours } else { 0.0 },
            messages_per_watch_hour: Percentiles::of(&watch_rates),
            watch_latency_secs: Percentiles::of(&latencies),
            watches_found: ItemGets::new(watches, found),
        })
    }
}

impl std::fmt::Display for AdvertiseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |g: &ItemGets| format!("{} run, {} found ({:.2}%)", g.run, g.found, g.found_rate * 100.0);
        let p = |pc: &Percentiles| {
            format!("p50 {:.0}  p90 {:.0}  p99 {:.0}  mean {:.0}  max {:.0}", pc.p50, pc.p90, pc.p99, pc.mean, pc.max)
        };
        writeln!(
            f,
            "advertise ({}, lookups over {} s): {} advertisements",
            if self.quests { "quests" } else { "ONE-SHOT announce, control" },
            self.hold_secs,
            self.advertisements
        )?;
        writeln!(f, "  lookups, advertiser alive:  {}", share(&self.lookups_advertiser_alive))?;
        for (h, g) in self.by_half_hour.iter().enumerate() {
            writeln!(f, "    {:>3}-{:<3} min:             {}", h * 30, (h + 1) * 30, share(g))?;
        }
        writeln!(f, "  lookups, advertiser gone:   {}", share(&self.lookups_advertiser_gone))?;
        writeln!(f, "  lookups abandoned:          {}", self.lookups_abandoned)?;
        writeln!(
            f,
            "  messages per advertisement per hour: {} (overall {:.0})",
            p(&self.messages_per_advertisement_hour),
            self.messages_per_advertisement_hour_overall
        )?;
        if self.quests {
            writeln!(f, "  messages per watch per hour:         {}", p(&self.messages_per_watch_hour))?;
            writeln!(f, "  watches that found the advertiser:   {}", share(&self.watches_found))?;
            writeln!(f, "  watch latency s:                     {}", p(&self.watch_latency_secs))?;
        }
        Ok(())
    }
}
