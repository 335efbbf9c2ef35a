//! Messages counted by kind and error code, for operators (`kadmos node`'s metrics): which
//! messages a node answers and sends, what each kind costs in bytes, and which errors pass.
//!
//! Both networks count the same way; each names its own kinds and error codes in a
//! [`MessageCatalog`] (KRPC methods and BEP 5/44 codes on Mainline; OpenDHT's message types
//! and its codes). The counters are fixed arrays indexed by kind and code: counting is on the
//! path of every datagram, so it must not allocate.

use std::fmt;
use std::marker::PhantomData;

/// The kinds and error codes a network counts, in the order of its counters.
pub trait MessageCatalog {
    /// The names of the kinds, as operators read them in metrics.
    const KINDS: &'static [&'static str];
    /// The error codes counted one by one; any other code is counted last, as "other".
    const ERROR_CODES: &'static [i64];
}

/// Messages and bytes of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KindCount {
    /// Messages.
    pub messages: u64,
    /// Their bytes, as sent or received.
    pub bytes: u64,
}

impl KindCount {
    fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }
}

/// Messages by kind and errors by code, in both directions, for the network `C`.
///
/// `KINDS` is the number of kinds of `C` and `CODES` the number of its error codes plus one
/// (the "other" counter): array lengths must be constants, so each network names them in its
/// type alias, and building counts whose lengths disagree with the catalog fails to compile.
pub struct MessageCounts<C, const KINDS: usize, const CODES: usize> {
    /// Messages received, by kind ([`MessageCatalog::KINDS`] order).
    pub received: [KindCount; KINDS],
    /// Messages sent, by kind.
    pub sent: [KindCount; KINDS],
    /// Error answers received, by code ([`MessageCatalog::ERROR_CODES`] order, then other
    /// codes).
    pub errors_received: [u64; CODES],
    /// Error answers sent, by code.
    pub errors_sent: [u64; CODES],
    catalog: PhantomData<C>,
}

/// One kind's traffic both ways, as [`MessageCounts::by_kind`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindTally {
    /// The kind's name in the catalog.
    pub kind: &'static str,
    /// Received from others.
    pub received: KindCount,
    /// Sent by us.
    pub sent: KindCount,
}

/// One error code's answers both ways, as [`MessageCounts::by_code`] lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CodeTally {
    /// The code; 0 stands for every code outside the catalog.
    pub code: i64,
    /// Error answers received with it.
    pub received: u64,
    /// Error answers sent with it.
    pub sent: u64,
}

impl<C: MessageCatalog, const KINDS: usize, const CODES: usize> MessageCounts<C, KINDS, CODES> {
    /// Checked when counts are built: the arrays match the catalog.
    const MATCHES_CATALOG: () = assert!(
        KINDS == C::KINDS.len() && CODES == C::ERROR_CODES.len() + 1,
        "counter lengths must match the catalog: its kinds, and its error codes plus one"
    );

    /// The counter index of the kind named `name`, if the catalog has it.
    pub(crate) fn kind_index(name: &str) -> Option<usize> {
        C::KINDS.iter().position(|k| *k == name)
    }

    fn code_index(code: i64) -> usize {
        C::ERROR_CODES.iter().position(|c| *c == code).unwrap_or(C::ERROR_CODES.len())
    }

    /// A message of kind `kind` (a counter index) and `bytes` bytes, received.
    pub(crate) fn received(&mut self, kind: usize, bytes: usize) {
        self.received[kind].add(bytes);
    }

    /// A message of ours of kind `kind` and `bytes` bytes.
    pub(crate) fn sent(&mut self, kind: usize, bytes: usize) {
        self.sent[kind].add(bytes);
    }

    /// An error answer with `code`, received.
    pub(crate) fn error_received(&mut self, code: i64) {
        self.errors_received[Self::code_index(code)] += 1;
    }

    /// An error answer of ours with `code`.
    pub(crate) fn error_sent(&mut self, code: i64) {
        self.errors_sent[Self::code_index(code)] += 1;
    }

    /// Every kind, zeros included, in catalog order.
    pub fn by_kind(&self) -> impl Iterator<Item = KindTally> + '_ {
        C::KINDS.iter().enumerate().map(|(i, kind)| KindTally { kind, received: self.received[i], sent: self.sent[i] })
    }

    /// Every code of the catalog, zeros included, then the other codes under 0.
    pub fn by_code(&self) -> impl Iterator<Item = CodeTally> + '_ {
        C::ERROR_CODES.iter().chain([&0]).enumerate().map(|(i, code)| CodeTally {
            code: *code,
            received: self.errors_received[i],
            sent: self.errors_sent[i],
        })
    }
}

impl<C: MessageCatalog, const KINDS: usize, const CODES: usize> Default for MessageCounts<C, KINDS, CODES> {
    fn default() -> Self {
        let () = Self::MATCHES_CATALOG;
        MessageCounts {
            received: [KindCount::default(); KINDS],
            sent: [KindCount::default(); KINDS],
            errors_received: [0; CODES],
            errors_sent: [0; CODES],
            catalog: PhantomData,
        }
    }
}

// By hand rather than derived: a derive would ask the catalog (a marker type) for the same
// traits.
impl<C, const KINDS: usize, const CODES: usize> Clone for MessageCounts<C, KINDS, CODES> {
    fn clone(&self) -> Self {
        MessageCounts {
            received: self.received,
            sent: self.sent,
            errors_received: self.errors_received,
            errors_sent: self.errors_sent,
            catalog: PhantomData,
        }
    }
}

impl<C, const KINDS: usize, const CODES: usize> PartialEq for MessageCounts<C, KINDS, CODES> {
    fn eq(&self, other: &Self) -> bool {
        self.received == other.received
            && self.sent == other.sent
            && self.errors_received == other.errors_received
            && self.errors_sent == other.errors_sent
    }
}

impl<C, const KINDS: usize, const CODES: usize> Eq for MessageCounts<C, KINDS, CODES> {}

impl<C, const KINDS: usize, const CODES: usize> fmt::Debug for MessageCounts<C, KINDS, CODES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageCounts")
            .field("received", &self.received)
            .field("sent", &self.sent)
            .field("errors_received", &self.errors_received)
            .field("errors_sent", &self.errors_sent)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;

    impl MessageCatalog for Sample {
        const KINDS: &'static [&'static str] = &["ping", "find", "store"];
        const ERROR_CODES: &'static [i64] = &[201, 404];
    }

    type Counts = MessageCounts<Sample, 3, 3>;

    /// Each kind and code lands in its own counter with its bytes, unknown codes in "other";
    /// the listings name every kind and code, zeros included, other codes as 0.
    #[test]
    fn counts_by_kind_and_code() {
        let mut counts = Counts::default();
        let find = Counts::kind_index("find").unwrap();
        counts.received(find, 100);
        counts.received(find, 50);
        counts.sent(Counts::kind_index("store").unwrap(), 300);
        counts.error_received(404);
        counts.error_sent(999);
        assert_eq!(Counts::kind_index("announce"), None);
        assert_eq!(counts.received[1], KindCount { messages: 2, bytes: 150 });
        assert_eq!(counts.sent[2], KindCount { messages: 1, bytes: 300 });
        assert_eq!(counts.errors_received, [0, 1, 0]);
        assert_eq!(counts.errors_sent, [0, 0, 1]);
        let kinds: Vec<KindTally> = counts.by_kind().collect();
        assert_eq!(kinds.iter().map(|k| k.kind).collect::<Vec<_>>(), ["ping", "find", "store"]);
        assert_eq!(kinds[0], KindTally { kind: "ping", received: KindCount::default(), sent: KindCount::default() });
        assert_eq!(kinds[2].sent, KindCount { messages: 1, bytes: 300 });
        let codes: Vec<CodeTally> = counts.by_code().collect();
        assert_eq!(
            codes,
            [
                CodeTally { code: 201, received: 0, sent: 0 },
                CodeTally { code: 404, received: 1, sent: 0 },
                CodeTally { code: 0, received: 0, sent: 1 },
            ]
        );
    }
}
