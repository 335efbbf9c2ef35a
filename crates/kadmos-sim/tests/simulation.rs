//! The simulator's promises, on networks small enough for a debug build: runs replay from
//! their seed, a fault-free network finds the true k closest, faults keep lookups working,
//! and a broken invariant stops the run with the seed to replay it.

use kadmos_sim::{Partition, Report, SimOptions, Simulation};

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

/// On a fault-free 500-node network (lognormal round trips, default settle), every
/// find_node, get_peers and announce finds exactly the true k closest live nodes, and every
/// get_peers after an announce finds the announcer.
#[test]
fn fault_free_network_finds_true_closest() {
    let mut o = SimOptions::new(500, 90, 3);
    o.lookup_interval_ms = 100.0;
    let report = run(o);
    let all = report.lookup("all").expect("several kinds ran");
    assert_eq!(all.run, 120, "90 units, a third of them announces followed by a get_peers");
    assert_eq!(all.succeeded, all.run);
    assert_eq!(all.accuracy.count, all.run);
    assert_eq!(all.exact_share, 1.0, "{all:?}");
}

/// With 20% of the nodes dead (their entries still in routing tables) and 5% datagram loss,
/// at least 95% of lookups of every kind succeed, including finding an announced peer.
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
