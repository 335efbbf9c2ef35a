//! What a node's stalled lookup requests turned out to be, to decide whether lookups wait for
//! stalled nodes (see `kad::lookup`).

/// Stalled lookup requests that were answered late, and those never answered, with older
/// outcomes decayed (each new one weighs 1, every earlier one 5% less than before).
#[derive(Clone, Debug, Default)]
pub(crate) struct StallEvidence {
    late: f32,
    dead: f32,
}

impl StallEvidence {
    /// Records how a stalled request ended: answered after its stall, or never.
    pub(crate) fn note(&mut self, answered_late: bool) {
        self.late *= 0.95;
        self.dead *= 0.95;
        if answered_late {
            self.late += 1.0;
        } else {
            self.dead += 1.0;
        }
    }

    /// Whether lookups wait for their stalled nodes: yes while at least four in five stalled
    /// requests were answered late rather than not at all. Waiting for a node that never
    /// answers costs a few stall timeouts, so the bar is high; without evidence either way (a
    /// node that has just joined) lookups wait, as a result that misses the slow among the
    /// closest nodes is worse than a slower one (measured in the simulator: the fault-free
    /// lookups that missed one of the k closest were those of nodes with no late answer on
    /// record yet).
    pub(crate) fn waits_for_stalled(&self) -> bool {
        self.late >= 4.0 * self.dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh node waits; deaths outweighing late answers four to one stop the waiting, and
    /// enough late answers afterwards bring it back.
    #[test]
    fn waits_while_stalled_nodes_mostly_answer() {
        let mut evidence = StallEvidence::default();
        assert!(evidence.waits_for_stalled(), "no evidence: wait");
        evidence.note(true);
        evidence.note(false);
        assert!(!evidence.waits_for_stalled(), "one late, one dead: below four in five");
        for _ in 0..40 {
            evidence.note(true);
        }
        assert!(evidence.waits_for_stalled());
    }
}
