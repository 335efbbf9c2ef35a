//! The simulator's promises, on networks small enough for a debug build: runs replay from
//! their seed, a fault-free network finds the true k closest (nearly always all of them),
//! faults keep lookups working,
//! BEP 44 items outlive their two hours through churn thanks to keep-alive (and only thanks
//! to it), and a broken invariant stops the run with the seed to replay it.

use kadmos_sim::{Partition, Report, SimOptions, Simulation, WorkloadKind};

fn run(options: SimOptions) -> Report {
    let replay = options.command_line();
    match Simulation::new(options).expect("valid options").run() {
        Ok(report) => report,
        Err(violation) => panic!("{violation}\n(options: {replay})"),
    }
}

/// A small network with every fault switched on, so that every random draw of the network
/// model, the churn and the workloads is exercised.
fn faulty(seed: u64) -> SimOptions {
    let mut o = SimOptions::new(200, 60, seed);
    o.settle_secs = 30.0;
    o.lookup_interval_ms = 200.0;
    let n = &mut o.network;
    n.loss = 0.05;
    n.duplicate = 0.02;
    n.reorder = 0.05;
    n.nat = 0.1;
    n.dead = 0.1;
    n.churn_per_min = 0.5;
    n.partition = Some(Partition { start_secs: 2.0, duration_secs: 4.0, share: 0.3 });
    o
}

/// The same seed and options give the same report, figure for figure (wall-clock and memory
/// figures aside), with every fault on; another seed gives another report.
#[test]
fn same_seed_same_report() {
    let first = run(faulty(11));
    let second = run(faulty(11));
    assert_eq!(first.deterministic(), second.deterministic());
    let t = &first.traffic;
    assert!(t.lost > 0 && t.duplicated > 0 && t.reordered > 0, "{t:?}");
    assert!(t.nat_blocked > 0 && t.partitioned > 0 && t.to_dead > 0, "{t:?}");
    assert!(first.nodes.churn_left > 0 && first.nodes.churn_joined > 0, "{:?}", first.nodes);
    let other = run(faulty(12));
    assert_ne!(first.deterministic(), other.deterministic());
}

/// On a fault-free 500-node network (lognormal round trips, default settle), find_node,
/// get_peers and announce find the true k closest live nodes (all of them in at least 95% of
/// lookups, 99% of them in all: a slow node that no close neighbour vouched for is not waited
/// for), and every get_peers after an announce finds the announcer. The reach figures agree:
/// all of the k closest were within reach of every lookup, and the time by which they all could
/// have answered is never later than the lookup's end (each lookup's, so each percentile's).
#[test]
fn fault_free_network_finds_true_closest() {
    let mut o = SimOptions::new(500, 90, 3);
    o.lookup_interval_ms = 100.0;
    let report = run(o);
    let all = report.lookup("all").expect("several kinds ran");
    assert_eq!(all.run, 120, "90 units, a third of them announces followed by a get_peers");
    assert_eq!(all.succeeded, all.run);
    assert_eq!(all.accuracy.count, all.run);
    assert!(all.exact_share >= 0.95 && all.accuracy.mean >= 0.99, "{all:?}");
    assert_eq!((all.within_reach.count, all.within_reach.mean), (all.run, 1.0), "{all:?}");
    let (reach, completion) = (&all.all_within_reach_rtts, &all.completion_rtts);
    assert_eq!(reach.count, all.run);
    assert!(reach.p50 <= completion.p50 && reach.p99 <= completion.p99 && reach.max <= completion.max, "{all:?}");
    assert!(reach.p50 > 0.0, "answers take a round trip: {reach:?}");
}

/// The put workload: on a fault-free network BEP 44 puts are acknowledged by the true k
/// closest live nodes (98% of them in all), and every get of it from another node finds the
/// item.
#[test]
fn fault_free_puts_store_at_the_true_closest() {
    let mut o = SimOptions::new(300, 30, 4);
    o.lookup_interval_ms = 100.0;
    o.workloads = vec![WorkloadKind::Put];
    let report = run(o);
    let put = report.lookup("put").expect("puts ran");
    let get = report.lookup("get_put").expect("gets ran");
    assert_eq!((put.run, put.succeeded, get.run, get.succeeded), (30, 30, 30, 30));
    assert!(put.accuracy.mean >= 0.98, "{put:?}");
}

/// With 20% of the nodes dead (their entries still in routing tables) and 5% datagram loss,
/// at least 95% of lookups of every kind succeed, including finding an announced peer, and
/// their results miss some of the true closest that were within reach.
#[test]
fn dead_contacts_and_loss_keep_lookups_succeeding() {
    let mut o = SimOptions::new(500, 90, 5);
    o.settle_secs = 60.0;
    o.lookup_interval_ms = 100.0;
    o.network.dead = 0.2;
    o.network.loss = 0.05;
    let report = run(o);
    assert_eq!(report.nodes.killed, 100);
    for kind in &report.lookups {
        assert!(kind.run > 0, "{kind:?}");
        assert!(kind.success_rate >= 0.95, "{}: {} of {} succeeded", kind.kind, kind.succeeded, kind.run);
    }
    // Lost datagrams and dead nodes cost accuracy that was within reach (a run stops if one
    // lookup's result holds more of the true closest than were: see `Simulation`).
    let all = report.lookup("all").expect("several kinds ran");
    assert!(all.within_reach.mean > all.accuracy.mean, "{all:?}");
}

/// A broken invariant stops the run and names the seed and the command line that replays it
/// (here the liveness invariant, with a lookup time limit no lookup can meet).
#[test]
fn violation_stops_the_run_with_its_seed() {
    let mut o = SimOptions::new(50, 10, 77);
    o.settle_secs = 5.0;
    o.max_lookup_secs = 0.001;
    o.check_every_secs = 0.01;
    let violation = Simulation::new(o).unwrap().run().expect_err("no lookup finishes within 1 ms");
    assert_eq!(violation.seed, 77);
    assert!(violation.what.contains("still running"), "{}", violation.what);
    assert!(violation.replay.contains("--seed 77"), "{}", violation.replay);
    assert!(violation.to_string().contains("replay with"), "{violation}");
}

/// Options out of range are refused with the option's name.
#[test]
fn bad_options_are_refused() {
    let mut o = SimOptions::new(10, 1, 1);
    o.network.loss = 1.5;
    let error = Simulation::new(o).err().expect("loss above 1");
    assert!(error.contains("loss"), "{error}");
}

/// The items workload of the BEP 44 issue, small enough for a debug build: 300 nodes, 30
/// items (immutable, mutable, mutable salted, in turn; mutable ones put at seq 1 then seq 2),
/// each got `hold_secs` after its put from a random live node other than its putter, under
/// churn of 0.006 of the nodes per minute: of the nodes present at any moment, 1 - e^-0.36 =
/// 30% are gone an hour later.
fn items(seed: u64, keep_alive: bool) -> SimOptions {
    let mut o = SimOptions::new(300, 30, seed);
    o.workloads = vec![WorkloadKind::Items];
    o.network.churn_per_min = 0.006;
    o.items.keep_alive = keep_alive;
    o
}

/// Keep-alive keeps items retrievable through churn. Two hours after each put, when every
/// copy that put made has expired, and with 30% of the nodes replaced per hour, at least 99%
/// of the gets of items whose putter is still alive (so still re-putting them every hour)
/// find the item, in its newest version for mutable ones. Churn took putters too: their
/// items, never re-put, are gone (keep-alive cannot help them; they are reported apart).
/// The get comes just before the second re-put, so the copies found are an hour old: the
/// worst moment of the keep-alive cycle.
#[test]
fn keep_alive_keeps_items_through_churn() {
    let report = run(items(21, true));
    let it = report.items.expect("the items workload ran");
    assert_eq!((it.items, it.stored, it.immutable_items, it.mutable_items), (30, 30, 10, 20), "{it:?}");
    assert_eq!(it.gets.run + it.gets_abandoned + it.not_gotten, 30, "{it:?}");
    let alive = &it.putter_alive;
    assert!(alive.run >= 10, "too few putters survived to measure: {alive:?}");
    assert!(alive.found_rate >= 0.99, "kept-alive items found by {} of {} gets", alive.found, alive.run);
    assert_eq!(it.stale_answers, 0, "{it:?}");
    assert!(it.replicas_at_get_putter_alive.p50 >= 4.0, "{:?}", it.replicas_at_get_putter_alive);
    let orphaned = &it.putter_left_before_reput;
    assert!(orphaned.run > 0, "churn took no putter before its first re-put: {it:?}");
    assert_eq!(orphaned.found, 0, "an item nobody re-put outlived its two hours: {it:?}");
    assert!(report.nodes.churn_left >= 200, "{:?}", report.nodes);
}

/// The control: the same run without keep-alive finds none of the items two hours after
/// their put (every copy has expired), whether or not the putter is alive; keep-alive is what
/// keeps them. The replay command line names the control switch.
#[test]
fn without_keep_alive_items_are_gone_after_two_hours() {
    let report = run(items(21, false));
    let it = report.items.expect("the items workload ran");
    assert_eq!(it.stored, 30, "{it:?}");
    assert!(it.putter_alive.run >= 10, "{it:?}");
    assert_eq!(it.gets.found, 0, "{it:?}");
    assert_eq!(it.replicas_at_get.max, 0.0, "{it:?}");
    assert!(
        report.replay.contains("--workload items") && report.replay.contains("--no-keep-alive"),
        "{}",
        report.replay
    );
}

/// Item runs replay from their seed like the others, faults and churn on (the item report,
/// put, get and keep-alive timing included); a short hold, so the items are still there.
#[test]
fn item_runs_replay_from_their_seed() {
    let options = || {
        let mut o = items(4, true);
        o.nodes = 120;
        o.lookups = 9;
        o.settle_secs = 30.0;
        o.items.hold_secs = 300.0;
        o.network.loss = 0.02;
        o.network.churn_per_min = 0.05;
        o
    };
    let first = run(options());
    let second = run(options());
    assert_eq!(first.deterministic(), second.deterministic());
    let it = first.items.as_ref().expect("the items workload ran");
    assert!(it.gets.run >= 8 && it.gets.found_rate >= 0.85, "{it:?}");
    assert!(first.lookup("get_item").is_some() && first.lookup("put_item").is_some());
}
