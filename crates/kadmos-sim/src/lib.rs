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
//! The same on an OpenDHT network, with its find, get, put-get and listen workloads:
//!
//! ```no_run
//! use kadmos_proto::opendht::Node;
//! use kadmos_sim::{Dht, SimOptions, Simulation};
//! let options = SimOptions::for_dht(Dht::OpenDht, 500, 100, 7);
//! let report = Simulation::<Node>::of(options).unwrap().run().unwrap();
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
//! - [`sim_node`]: [`SimNode`], what the simulation needs from a node of either network, and
//!   [`Dht`], which network a run simulates.
//! - [`mainline_node`]: the Mainline node behind [`SimNode`], and the Mainline commands a
//!   workload starts.
//! - [`opendht_node`]: the OpenDHT node behind [`SimNode`] (the one module that reads its
//!   events and results), and the OpenDHT commands a workload starts.
//! - [`opendht_workload`]: the OpenDHT workloads (find, get, put then get, listen).
//! - [`simulation`]: the run itself: driving nodes, measuring lookups, checking invariants.
//! - [`report`]: the figures, as text or JSON.

pub mod advertise_workload;
pub mod event_queue;
pub mod mainline_node;
pub mod network;
pub mod opendht_node;
pub mod opendht_workload;
pub mod options;
pub mod oracle;
pub mod report;
pub mod sim_node;
pub mod simulation;
pub mod workload;

pub use advertise_workload::{AdvertiseOptions, AdvertiseReport, AdvertiseWorkload};
pub use network::{NodeIndex, Traffic};
pub use opendht_node::ListenValue;
pub use options::{ItemOptions, NetworkOptions, Partition, RttModel, SimOptions, WorkloadKind};
pub use oracle::Oracle;
pub use report::{ItemGets, ItemReport, ListenReport, LookupReport, Percentiles, Report};
pub use sim_node::{Dht, SimNode};
pub use simulation::{addr_of, Control, Simulation, Violation};
pub use workload::{ItemWorkload, LookupDone, Workload};
