//! The advertise workload on networks small enough for a debug build: advertisements stay
//! findable through two hours of churn while one-shot announces vanish after their 30
//! minutes, watches report advertisers within about one re-search interval, and runs replay
//! from their seed.

use kadmos_sim::{AdvertiseReport, Report, SimOptions, Simulation, WorkloadKind};

fn run(options: SimOptions) -> Report {
    Simulation::new(options).expect("valid options").run().unwrap_or_else(|violation| panic!("{violation}"))
}

/// 250 nodes, 20 advertisements, 5 lookups each at random times over two hours, with 30% of
/// the nodes replaced per hour (`churn_per_min` 0.006) and 2% loss.
fn advertising(seed: u64, quests: bool) -> SimOptions {
    let mut o = SimOptions::new(250, 20, seed);
    o.workloads = vec![WorkloadKind::Advertise];
    o.network.churn_per_min = 0.006;
    o.network.loss = 0.02;
    o.advertise.quests = quests;
    o
}

fn advertise_report(report: &Report) -> &AdvertiseReport {
    report.advertise.as_ref().expect("the advertise workload ran")
}

/// With quests, at least 99% of the lookups begun while the advertiser was alive find it, in
/// every half hour of the two (an announce lives 30 minutes; renewals every 13.5–15 keep it
/// on the nodes closest at the time); each watcher whose advertiser and itself lived reports
/// the advertiser, with a median latency under the 5-minute re-search interval; renewals cost
/// datagrams every hour.
#[test]
fn advertisements_stay_findable_through_churn() {
    let report = run(advertising(3, true));
    let ad = advertise_report(&report);
    assert_eq!(ad.advertisements, 20, "{ad:?}");
    let alive = &ad.lookups_advertiser_alive;
    assert!(alive.run >= 50, "too few lookups with a live advertiser: {ad:?}");
    assert!(alive.found_rate >= 0.99, "{ad:?}");
    assert_eq!(ad.by_half_hour.len(), 4);
    assert!(ad.by_half_hour.iter().all(|h| h.run > 0 && h.found_rate >= 0.95), "{ad:?}");
    assert!(ad.watches_found.run >= 10 && ad.watches_found.found == ad.watches_found.run, "{ad:?}");
    assert!(ad.watch_latency_secs.p50 <= 300.0, "{:?}", ad.watch_latency_secs);
    assert!(ad.messages_per_advertisement_hour.p50 > 0.0, "{ad:?}");
    assert!(report.nodes.churn_left >= 150, "{:?}", report.nodes);
}

/// The control: one announce per infohash. Lookups in the first half hour find the
/// advertiser; after it, the announce has expired everywhere and none do, though the
/// advertiser is alive. The replay line names the switch.
#[test]
fn one_shot_announces_are_gone_after_half_an_hour() {
    let report = run(advertising(3, false));
    let ad = advertise_report(&report);
    let first = &ad.by_half_hour[0];
    assert!(first.run >= 5 && first.found_rate >= 0.9, "{ad:?}");
    let later: Vec<_> = ad.by_half_hour[1..].iter().collect();
    assert!(later.iter().map(|h| h.run).sum::<usize>() >= 20, "{ad:?}");
    assert!(later.iter().all(|h| h.found == 0), "{ad:?}");
    assert!(
        report.replay.contains("--workload advertise") && report.replay.contains("--one-shot"),
        "{}",
        report.replay
    );
}

/// Advertise runs replay from their seed: quest rounds draw their jitter from each node's
/// seeded generator, so the same options give the same report.
#[test]
fn advertise_runs_replay_from_their_seed() {
    let options = || {
        let mut o = advertising(5, true);
        o.nodes = 120;
        o.lookups = 6;
        o.settle_secs = 30.0;
        o.advertise.hold_secs = 900.0;
        o.network.churn_per_min = 0.05;
        o
    };
    let first = run(options());
    let second = run(options());
    assert_eq!(first.deterministic(), second.deterministic());
    assert!(advertise_report(&first).lookups_advertiser_alive.run > 0);
}
