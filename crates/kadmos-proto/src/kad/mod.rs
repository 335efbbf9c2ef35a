//! The Kademlia pieces both networks share: identifiers and distance, the routing table (one
//! per address family), the lookup state machine and the store round at a store's end.
//! Nothing here knows about a wire format.

pub mod family_tables;
pub mod id;
pub mod lookup;
pub mod requests;
pub mod routing_table;
pub mod rtt;
pub mod search;
pub mod store_round;
pub mod subnet;
pub mod timers;

pub use family_tables::FamilyTables;
pub use id::{Distance, Id, InfoHash, NodeId, ParseIdError, ID_LEN};
pub use lookup::{Candidate, CandidateState, Lookup, LookupAction, LookupConfig, LookupStats};
pub use requests::{PendingRequest, RequestTable};
pub use routing_table::{Bucket, Contact, ContactStatus, InsertOutcome, RoutingTable, RoutingTableConfig};
pub use rtt::RttEstimator;
pub use search::{FamilyLookup, Parallelism, Search};
pub use store_round::StoreRound;
pub use subnet::Subnet;
pub use timers::TimerQueue;
