//! A node's routing tables: one per address family it has a socket for (BEP 32 and OpenDHT
//! both keep IPv4 and IPv6 contacts apart, since a node can only reach the family it has).

use std::net::SocketAddr;
use std::time::Duration;

use super::id::{Id, NodeId};
use super::routing_table::{RoutingTable, RoutingTableConfig};
use crate::node_io::{Families, Family};
use crate::time::Timestamp;

/// Contacts as answers carry them.
pub(crate) type Contacts = Vec<(NodeId, SocketAddr)>;

#[derive(Clone, Debug)]
pub(crate) struct FamilyTables {
    tables: [Option<RoutingTable>; 2],
}

impl FamilyTables {
    /// Empty tables for the `families` enabled, centred on `own_id`.
    pub(crate) fn new(own_id: NodeId, families: Families, config: &RoutingTableConfig, now: Timestamp) -> FamilyTables {
        let table = |enabled: bool| enabled.then(|| RoutingTable::new(own_id, config.clone(), now));
        FamilyTables { tables: [table(families.v4), table(families.v6)] }
    }

    /// Whether the node has a table (a socket) for `family`.
    pub(crate) fn has(&self, family: Family) -> bool {
        self.tables[family.index()].is_some()
    }

    /// Whether the node can reach `addr` (has a table of its family).
    pub(crate) fn reaches(&self, addr: &SocketAddr) -> bool {
        self.has(Family::of(addr))
    }

    pub(crate) fn get(&self, family: Family) -> Option<&RoutingTable> {
        self.tables[family.index()].as_ref()
    }

    pub(crate) fn get_mut(&mut self, family: Family) -> Option<&mut RoutingTable> {
        self.tables[family.index()].as_mut()
    }

    /// The families with a table, IPv4 first.
    pub(crate) fn enabled(&self) -> Vec<Family> {
        Family::ALL.into_iter().filter(|f| self.has(*f)).collect()
    }

    /// Both families enabled: requests then ask for nodes of both (`want`).
    pub(crate) fn dual_stack(&self) -> bool {
        self.has(Family::V4) && self.has(Family::V6)
    }

    /// The `n` contacts of `family` closest to `target` (none without a table of that family).
    pub(crate) fn closest_nodes(&self, family: Family, target: &Id, n: usize) -> Vec<(NodeId, SocketAddr)> {
        self.get(family).map_or_else(Vec::new, |t| t.closest_nodes(target, n))
    }

    /// A request to node `id` was answered after `rtt`: the contact of that ID smooths it into
    /// its round trip ([`Contact::round_trip`](super::Contact::round_trip)), in every table
    /// that holds it (a dual-stack node may be a contact of both), replacement caches
    /// included.
    pub(crate) fn note_round_trip(&mut self, id: &NodeId, rtt: Duration) {
        for table in self.tables.iter_mut().flatten() {
            table.note_round_trip(id, rtt);
        }
    }

    /// The `k` contacts of each family closest to `target` that a querier asked for (`want`:
    /// IPv4, IPv6), IPv4 then IPv6; a querier that asked for neither family gets the family it
    /// asked over (BEP 32, and OpenDHT alike). A family not asked for gets no contacts.
    pub(crate) fn closest_wanted(
        &self,
        target: &Id,
        want: Option<(bool, bool)>,
        asked_over: Family,
        k: usize,
    ) -> (Contacts, Contacts) {
        let (v4, v6) =
            want.filter(|(v4, v6)| *v4 || *v6).unwrap_or((asked_over == Family::V4, asked_over == Family::V6));
        let closest = |wanted: bool, family: Family| {
            if wanted {
                self.closest_nodes(family, target, k)
            } else {
                Vec::new()
            }
        };
        (closest(v4, Family::V4), closest(v6, Family::V6))
    }

    /// Whether no table holds a contact.
    pub(crate) fn is_empty(&self) -> bool {
        self.tables.iter().flatten().all(RoutingTable::is_empty)
    }

    /// Every contact of both families, for saving state.
    pub(crate) fn contacts(&self) -> Vec<(NodeId, SocketAddr)> {
        self.tables.iter().flatten().flat_map(|t| t.contacts().map(|c| (c.id, c.addr()))).collect()
    }

    /// Moves every table to a new own ID (BEP 42 gave us another): contacts are offered again
    /// to tables centred on `own_id` (as just heard from: they answered us before, and keep
    /// their round trips), and replacement caches are dropped.
    pub(crate) fn recentre(&mut self, own_id: NodeId, now: Timestamp) {
        for slot in self.tables.iter_mut() {
            let Some(old) = slot.take() else { continue };
            let mut table = RoutingTable::new(own_id, old.config().clone(), now);
            for contact in old.contacts() {
                if let Some(rtt) = contact.round_trip() {
                    table.note_round_trip(&contact.id, rtt);
                }
                table.insert_responded(contact.id, contact.addr(), now);
            }
            *slot = Some(table);
        }
    }

    /// The targets of the bucket refreshes due in every non-empty table
    /// ([`RoutingTable::take_refresh_targets`]).
    pub(crate) fn take_refresh_targets<R: rand::Rng + ?Sized>(&mut self, now: Timestamp, rng: &mut R) -> Vec<Id> {
        let mut targets = Vec::new();
        for table in self.tables.iter_mut().flatten().filter(|t| !t.is_empty()) {
            targets.extend(table.take_refresh_targets(now, rng));
        }
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// An IPv4-only node has no IPv6 table: it does not reach IPv6 addresses, has no IPv6
    /// contacts to give, and asks for one family only; contacts and refresh targets come from
    /// the tables that exist and hold contacts; a querier that wants no family in particular
    /// gets the one it asked over, one that wants only the other family gets nothing.
    #[test]
    fn only_enabled_families_have_tables() {
        let own = Id::sha1_of(b"own");
        let now = Timestamp::ZERO;
        let config = RoutingTableConfig::default();
        let mut tables = FamilyTables::new(own, Families { v4: true, v6: false }, &config, now);
        assert_eq!(tables.enabled(), [Family::V4]);
        assert!(!tables.dual_stack());
        assert!(tables.reaches(&"10.0.0.1:1".parse().unwrap()));
        assert!(!tables.reaches(&"[::1]:1".parse().unwrap()));
        assert!(tables.get_mut(Family::V6).is_none());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        assert!(tables.take_refresh_targets(now, &mut rng).is_empty(), "an empty table has nothing to refresh");
        assert!(tables.is_empty());

        let (id, addr) = (Id::sha1_of(b"peer"), "10.0.0.2:6881".parse().unwrap());
        tables.get_mut(Family::V4).unwrap().insert_responded(id, addr, now);
        assert_eq!(tables.contacts(), [(id, addr)]);
        assert!(!tables.is_empty());
        assert_eq!(tables.closest_nodes(Family::V4, &own, 8), [(id, addr)]);
        assert!(tables.closest_nodes(Family::V6, &own, 8).is_empty());
        let none = Vec::new();
        assert_eq!(tables.closest_wanted(&own, None, Family::V4, 8), (vec![(id, addr)], none.clone()));
        assert_eq!(tables.closest_wanted(&own, Some((false, false)), Family::V4, 8), (vec![(id, addr)], none.clone()));
        assert_eq!(tables.closest_wanted(&own, Some((false, true)), Family::V4, 8), (none.clone(), none));

        let both = FamilyTables::new(own, Families { v4: true, v6: true }, &config, now);
        assert_eq!((both.enabled(), both.dual_stack()), (vec![Family::V4, Family::V6], true));
    }

    /// A round trip reaches the contact of that ID in every table holding it (a dual-stack
    /// node is a contact of both), and contacts keep their round trips when the tables move
    /// to a new own ID.
    #[test]
    fn round_trips_reach_both_tables_and_survive_recentring() {
        let now = Timestamp::ZERO;
        let mut tables = FamilyTables::new(
            Id::sha1_of(b"own"),
            Families { v4: true, v6: true },
            &RoutingTableConfig::default(),
            now,
        );
        let (peer, other) = (Id::sha1_of(b"peer"), Id::sha1_of(b"other"));
        tables.get_mut(Family::V4).unwrap().insert_responded(peer, "10.0.0.2:6881".parse().unwrap(), now);
        tables.get_mut(Family::V6).unwrap().insert_responded(peer, "[2001:db8::2]:6881".parse().unwrap(), now);
        tables.get_mut(Family::V4).unwrap().insert_responded(other, "10.0.1.2:6881".parse().unwrap(), now);
        tables.note_round_trip(&peer, Duration::from_millis(20));
        let rtt = |tables: &FamilyTables, family: Family, id: &NodeId| {
            tables.get(family).unwrap().get(id).unwrap().round_trip().map(|d| d.as_micros())
        };
        let measured = rtt(&tables, Family::V4, &peer);
        assert!(measured.is_some_and(|us| us.abs_diff(20_000) <= 700), "{measured:?}");
        assert_eq!(rtt(&tables, Family::V6, &peer), measured);
        assert_eq!(rtt(&tables, Family::V4, &other), None);

        tables.recentre(Id::sha1_of(b"new own"), now);
        assert_eq!((rtt(&tables, Family::V4, &peer), rtt(&tables, Family::V6, &peer)), (measured, measured));
        assert_eq!(rtt(&tables, Family::V4, &other), None, "no other contact's round trip");
    }
}
