//! kadmos-sim: the production `kadmos-proto` state machines, unchanged, many in one process,
//! on virtual time, with a seeded network model, pluggable workloads, invariant checks and
//! a report.
//!
//! It depends on the sans-IO core only: a run is a pure function of its [`SimOptions`], so a
//! failure replays from its seed (the report and every [`Violation`] print the command line).
//!
//! ```no_run
//! use kadmos_sim::{SimOptions, Simulation};
//! let report = Simulation::new(SimOptions::new(500, 100, 7)).unwrap().run().unwrap();
//! println!("{report}");
//! ```
//!
//! # Layout
//!
//! - [`options`]: [`SimOptions`], the one struct holding the seed, sizes, workload and every
//!   fault probability ([`NetworkOptions`]).
//! - [`event_queue`]: events ordered by (virtual time, sequence number).
//! - [`network`]: link RTTs, loss, duplication, reordering, NAT, partitions.
//! - [`oracle`]: the true k closest live nodes, to measure lookup accuracy against.
//! - [`workload`]: the [`Workload`] trait and the built-in find_node, get_peers,
//!   announce-then-get_peers and items (BEP 44 put, keep-alive, get two hours later) workloads.
//! - [`advertise_workload`]: advertisements and watches through churn, looked up at random
//!   times (and its one-shot control).
//! - [`simulation`]: the run itself: driving nodes, measuring lookups, checking invariants.
//! - [`report`]: the figures, as text or JSON.

pub mod advertise_workload;
pub mod event_queue;
pub mod network;
pub mod options;
pub mod oracle;
pub mod report;
pub mod simulation;
pub mod workload;

pub use advertise_workload::{AdvertiseOptions, AdvertiseReport, AdvertiseWorkload};
pub use network::{NodeIndex, Traffic};
pub use options::{ItemOptions, NetworkOptions, Partition, RttModel, SimOptions, WorkloadKind};
pub use oracle::Oracle;
pub use report::{ItemGets, ItemReport, LookupReport, Percentiles, Report};
pub use simulation::{addr_of, Control, Simulation, Violation};
pub use workload::{ItemWorkload, LookupDone, Workload};
