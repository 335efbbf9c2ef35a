//! `kadmos-bench wakeups`: what a sans-IO OpenDHT node's `poll_timeout` costs as its timed
//! state grows. A driver asks after every input, so the call must not grow with the number of
//! listens and permanent puts a node holds: each collection keeps its earliest deadline at
//! hand. One lone node per size holds that many listens and as many permanent puts (each with
//! its own timers); the smallest size is the baseline, measured in the same run. It prints
//! figures and never asserts timings.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kadmos_proto::opendht::{Config, Node, Query, Value};
use kadmos_proto::{Id, Timestamp};
use serde_json::json;

/// Listens (and as many permanent puts) per node, the first one being the baseline.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
/// Calls timed in one round.
const CALLS: u32 = 100_000;
/// Rounds per size; the fastest counts (the machine is shared: slower rounds measure the
/// other load).
const ROUNDS: usize = 7;

/// A lone node with `n` listens and `n` permanent puts restored from saved state.
fn node_with(n: usize) -> Result<Node, String> {
    let mut node = Node::new(Config::new(Id::sha1_of(b"wakeups"), 1), Timestamp::ZERO);
    let now = Timestamp::ZERO;
    for i in 0..n {
        let key = Id::sha1_of(format!("key {i}").as_bytes());
        node.listen(now, key, Query::default());
        let value = Value::new(i as u64 + 1, 0, *b"kept");
        node.restore_permanent_put(now, key, value).map_err(|e| format!("restore put {i}: {e}"))?;
    }
    while node.poll_transmit().is_some() {}
    while node.poll_event().is_some() {}
    Ok(node)
}

/// Nanoseconds per `poll_timeout` call, in the fastest of [`ROUNDS`] rounds.
fn ns_per_call(node: &mut Node) -> f64 {
    for _ in 0..1_000 {
        black_box(node.poll_timeout());
    }
    let round = |node: &mut Node| {
        let start = Instant::now();
        for _ in 0..CALLS {
            black_box(node.poll_timeout());
        }
        start.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    (0..ROUNDS).map(|_| round(node)).fold(f64::INFINITY, f64::min)
}

pub(crate) fn run(json_out: bool) -> Result<(), String> {
    let mut rows = Vec::new();
    for n in SIZES {
        let mut node = node_with(n)?;
        let wake = node.poll_timeout().map(|t| t.saturating_since(Timestamp::ZERO));
        rows.push((n, ns_per_call(&mut node), wake.unwrap_or(Duration::ZERO)));
    }
    let baseline = rows[0].1;
    if json_out {
        let sizes: Vec<_> = rows
            .iter()
            .map(|(n, ns, _)| json!({ "listens": n, "permanent_puts": n, "ns_per_call": ns, "vs_baseline": ns / baseline }))
            .collect();
        println!(
            "{}",
            json!({ "benchmark": "opendht poll_timeout", "calls": CALLS, "rounds": ROUNDS, "sizes": sizes })
        );
        return Ok(());
    }
    println!("OpenDHT poll_timeout, fastest of {ROUNDS} rounds of {CALLS} calls (baseline: {} listens)", SIZES[0]);
    println!("{:>8} {:>8} {:>12} {:>12} {:>10}", "listens", "puts", "ns/call", "vs baseline", "wakes at");
    for (n, ns, wake) in rows {
        println!("{n:>8} {n:>8} {ns:>12.1} {:>11.2}x {:>9.1}s", ns / baseline, wake.as_secs_f64());
    }
    Ok(())
}
