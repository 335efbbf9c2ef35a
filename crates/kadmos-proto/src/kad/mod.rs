//! The Kademlia pieces both networks share: identifiers and distance, the routing table (one
//! per address family), the lookup state machine, the store round at a store's end, and the
//! engine both nodes run (`engine`: operations, requests, stall evidence, wake-ups, joining,
//! refreshes, verification), which a network plugs into through a small trait. Nothing here
//! knows about a wire format.

pub mod command_result;
pub(crate) mod engine;
pub mod family_tables;
pub mod id;
pub mod lookup;
pub(crate) mod operation_driver;
pub mod query_error;
pub mod requests;
pub mod routing_table;
pub mod rtt;
pub mod search;
pub(crate) mod sent_request;
pub(crate) mod stall_evidence;
pub mod store_round;
pub mod subnet;
pub mod timers;
pub mod traffic_counters;

pub use command_result::{Closest, Pong};
pub use family_tables::FamilyTables;
pub use id::{Distance, Id, InfoHash, NodeId, ParseIdError, ID_LEN};
pub use lookup::{Candidate, CandidateState, Lookup, LookupAction, LookupConfig, LookupStats};
pub use query_error::QueryError;
pub use requests::{PendingRequest, RequestTable};
pub use routing_table::{Bucket, Contact, ContactStatus, InsertOutcome, RoutingTable, RoutingTableConfig};
pub use rtt::RttEstimator;
pub use search::{FamilyLookup, Parallelism, Search};
pub use store_round::StoreRound;
pub use subnet::Subnet;
pub use timers::TimerQueue;
pub use traffic_counters::TrafficCounters;
