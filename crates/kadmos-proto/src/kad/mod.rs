//! The Kademlia pieces both networks share: node IDs and XOR distance ([`Id`], [`Distance`]),
//! the [`RoutingTable`] of one address family with its [`Contact`]s, the tuning of lookups
//! ([`LookupConfig`]), one [`QueryError`] for every command that fails and one set of
//! [`TrafficCounters`]. Both nodes run the same engine inside (operations, requests, stall
//! evidence, wake-ups, joining, refreshes, verification), which a network plugs into through
//! a small trait, and both are [`KademliaNode`]s: joining, ping, find_node and the views of
//! their routing tables and work in flight are written once, there. Nothing here knows about a wire format.

pub(crate) mod command_result;
pub(crate) mod deadline_map;
pub(crate) mod engine;
mod family_tables;
mod id;
mod kademlia_node;
mod lookup;
mod message_counts;
pub(crate) mod operation_driver;
mod query_error;
mod requests;
mod rotating_secret;
mod routing_table;
mod rtt;
mod search;
pub(crate) mod sent_request;
pub(crate) mod stall_evidence;
mod store_round;
pub(crate) mod subnet;
mod timers;
mod traffic_counters;

pub use command_result::{Closest, Pong};
pub(crate) use deadline_map::{DeadlineMap, Scheduled};
pub use id::{Distance, Id, InfoHash, NodeId, ParseIdError, ID_LEN};
pub use kademlia_node::KademliaNode;
pub use lookup::{LookupConfig, LookupStats};
pub use message_counts::{CodeTally, KindCount, KindTally, MessageCatalog, MessageCounts};
pub use query_error::QueryError;
pub use routing_table::{Bucket, Contact, ContactStatus, InsertOutcome, RoutingTable, RoutingTableConfig};
pub use search::Parallelism;
pub use traffic_counters::TrafficCounters;

pub(crate) use family_tables::FamilyTables;
pub(crate) use rotating_secret::RotatingSecret;
pub(crate) use store_round::StoreRound;
