use std::collections::BTreeMap;
use std::time::Duration;

use super::message::{Fragment, Message, ValueParts, ValueSlot};
use super::value::{Value, MAX_VALUE_SIZE};

/// Bytes of a packed value per `p` fragment (OpenDHT calls it MTU).
pub const PART_SIZE: usize = 1280;
/// Values go inline only when there are fewer than this many...
pub(crate) const INLINE_MAX_VALUES: usize = 50;
/// ...and they total fewer than this many packed bytes.
pub(crate) const INLINE_MAX_BYTES: usize = 600;
/// Value bytes (by [`Value::size`]) after which a listener update starts a new message.
pub(crate) const MAX_MESSAGE_VALUE_SIZE: usize = 56 * 1024;
/// Largest announced packed value accepted: MAX_VALUE_SIZE plus room for the fields around it.
pub const MAX_ANNOUNCED_SIZE: u64 = MAX_VALUE_SIZE as u64 + 32;
/// A fragmented message must be complete this long after its first datagram...
pub(crate) const RX_MAX_PACKET_TIME: Duration = Duration::from_secs(10);
/// ...and no fragment may be more than this late after the previous one.
pub(crate) const RX_TIMEOUT: Duration = Duration::from_secs(3);
/// Fragment bytes kept for a message that has not arrived yet.
pub(crate) const RX_MAX_EARLY_BYTES: usize = MAX_MESSAGE_VALUE_SIZE + MAX_VALUE_SIZE + 32;
/// Fragment datagrams kept for a message that has not arrived yet.
pub(crate) const RX_MAX_EARLY_PARTS: usize = RX_MAX_EARLY_BYTES / PART_SIZE + 2;

/// Values packed for one message: what its `values` array holds, and the packed values to send
/// as fragments after it (empty when everything is inline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedValues {
    /// The message's `values` array: values inline, or the packed size of each value sent in
    /// fragments.
    pub slots: Vec<ValueSlot>,
    /// Packed values by slot index, to send with [`PackedValues::part_messages`].
    pub parts: Vec<Vec<u8>>,
}

impl PackedValues {
    /// Whether the values follow in fragments.
    pub fn is_split(&self) -> bool {
        !self.parts.is_empty()
    }

    /// The `p` datagrams for a message with transaction id `tid`, one fragment each, in
    /// order. The caller sets their `network` and `is_client` like the message's.
    pub fn part_messages(&self, tid: u32) -> Vec<Message> {
        let mut out = Vec::new();
        for (index, packed) in (0u32..).zip(&self.parts) {
            for (offset, chunk) in (0u64..).step_by(PART_SIZE).zip(packed.chunks(PART_SIZE)) {
                let fragment = Fragment { offset, data: chunk.to_vec() };
                out.push(Message::value_parts(tid, ValueParts { fragments: BTreeMap::from([(index, fragment)]) }));
            }
        }
        out
    }
}

/// Packs values for one message the way OpenDHT does: inline when few and small, else
/// announced by size and sent as fragments.
pub fn pack_values(values: &[Value]) -> PackedValues {
    let packed: Vec<Vec<u8>> = values.iter().map(Value::to_bytes).collect();
    let total: usize = packed.iter().map(Vec::len).sum();
    if values.len() < INLINE_MAX_VALUES && total < INLINE_MAX_BYTES {
        PackedValues { slots: values.iter().cloned().map(ValueSlot::Value).collect(), parts: Vec::new() }
    } else {
        let slots = packed.iter().map(|p| ValueSlot::Announced(p.len() as u64)).collect();
        PackedValues { slots, parts: packed }
    }
}

/// Splits a listener's new values into the batches OpenDHT sends as separate `update`s: a
/// batch ends once its values reach 56 KiB (by [`Value::size`]).
pub fn update_batches(values: Vec<Value>) -> Vec<Vec<Value>> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut total = 0;
    for value in values {
        if total >= MAX_MESSAGE_VALUE_SIZE {
            batches.push(std::mem::take(&mut batch));
            total = 0;
        }
        total += value.size();
        batch.push(value);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

/// Bounds on one message being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReassemblyLimits {
    /// Announced values larger than this are skipped, as OpenDHT does. Default
    /// [`MAX_ANNOUNCED_SIZE`].
    pub max_value_len: u64,
    /// A message announcing more bytes than this in total is refused. Default 1 MiB (OpenDHT
    /// itself sets no such bound; a `get` answer holds all the values of a key).
    pub max_total_len: u64,
    /// Most fragments kept for one message (a legitimate 1 MiB needs 820). Default 2048.
    pub max_fragments: usize,
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        ReassemblyLimits { max_value_len: MAX_ANNOUNCED_SIZE, max_total_len: 1 << 20, max_fragments: 2048 }
    }
}

/// Why a fragment (or a whole message) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The values announced add up to more than the limit.
    #[error("message announces {total} bytes of values, more than {limit}")]
    TooLarge {
        /// Bytes announced.
        total: u64,
        /// Bytes accepted.
        limit: u64,
    },
    /// A fragment for a value index the message does not announce.
    #[error("fragment for value {0}, which is not awaited")]
    UnknownIndex(u32),
    /// A fragment for a value already complete.
    #[error("fragment for value {0}, which is already complete")]
    AlreadyComplete(u32),
    /// A fragment with no data.
    #[error("empty fragment for value {0}")]
    Empty(u32),
    /// A fragment that runs past the end of its value.
    #[error("fragment of {len} bytes at {offset} does not fit value {index} of {size} bytes")]
    OutOfBounds {
        /// The value's index in the message.
        index: u32,
        /// Where the fragment starts.
        offset: u64,
        /// Its length.
        len: usize,
        /// The value's announced size.
        size: usize,
    },
    /// A fragment that overlaps data already received.
    #[error("fragment at {offset} overlaps data already received for value {index}")]
    Overlap {
        /// The value's index in the message.
        index: u32,
        /// Where the fragment starts.
        offset: u64,
    },
    /// More fragments than the limit allows: the limit.
    #[error("more than {0} fragments")]
    TooManyFragments(usize),
}

#[derive(Clone, Debug)]
enum Slot {
    /// Inline, reassembled, or skipped (`None`: not a value, oversized, or did not unpack).
    Done(Option<Value>),
    Pending(Partial),
}

#[derive(Clone, Debug)]
struct Partial {
    size: usize,
    received: usize,
    /// Fragments by offset; they never overlap.
    fragments: BTreeMap<usize, Vec<u8>>,
}

impl Partial {
    fn overlaps(&self, offset: usize, len: usize) -> bool {
        let next_starts_inside = self.fragments.range(offset..).next().is_some_and(|(start, _)| start - offset < len);
        let previous_reaches_in =
            self.fragments.range(..offset).next_back().is_some_and(|(start, d)| start + d.len() > offset);
        next_starts_inside || previous_reaches_in
    }

    fn assemble(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.size);
        for data in self.fragments.values() {
            bytes.extend_from_slice(data);
        }
        bytes
    }
}

/// One message's values coming together from its `values` slots and `p` fragments.
///
/// Values too big for one datagram: splitting them on the sending side, putting them back
/// together on the receiving side.
///
/// How OpenDHT does it (savoirfairelinux/opendht src/network_engine.cpp `packValueHeader`,
/// `sendValueParts`, `processMessage`; src/parsed_message.h `append`, `complete`;
/// include/opendht/network_engine.h for the constants):
///
/// - A message carrying values (`put`, `update`, a `get` answer) packs every value first. When
///   there are fewer than 50 and they total fewer than 600
///   packed bytes, they go inline in `values`. Otherwise `values` holds each one's packed size
///   instead, and every packed value follows in `p` datagrams of at most [`PART_SIZE`] bytes of
///   it each, `{y: "p", t, p: {index: {o: offset, d: bytes}}}`, with the same `t` as the
///   message. A requester sends the parts again after each retry of the request.
/// - The receiver keys the unfinished message by (sender, `t`), ignores announced sizes over
///   [`MAX_ANNOUNCED_SIZE`], and accepts a fragment only if it is non-empty, lies inside its
///   value, and overlaps no fragment it already has. When every announced value is complete it
///   unpacks them. It gives up 3 s after the last fragment or
///   10 s after the first, and keeps at most 122,912 bytes in
///   98 fragments that arrive before their message.
/// - A listener's `update`s are cut into batches of about 56 KiB of values.
///
/// [`Reassembly`] is that receiver logic without clock or addresses (the node keys and expires
/// them), and with one more bound: the whole message, not just each value, has a size limit.
#[derive(Clone, Debug)]
pub struct Reassembly {
    slots: Vec<Slot>,
    fragments: usize,
    limits: ReassemblyLimits,
}

impl Reassembly {
    /// Starts from the `values` of a message (see [`Message::value_slots`]).
    pub fn new(slots: &[ValueSlot], limits: ReassemblyLimits) -> Result<Reassembly, FragmentError> {
        let mut total: u64 = 0;
        let slots = slots
            .iter()
            .map(|slot| match slot {
                ValueSlot::Value(v) => Slot::Done(Some(v.clone())),
                ValueSlot::Unreadable => Slot::Done(None),
                // OpenDHT skips oversized announcements; an empty one could never complete.
                ValueSlot::Announced(size) if *size == 0 || *size > limits.max_value_len => Slot::Done(None),
                ValueSlot::Announced(size) => {
                    total = total.saturating_add(*size);
                    let size = usize::try_from(*size).unwrap_or(usize::MAX);
                    Slot::Pending(Partial { size, received: 0, fragments: BTreeMap::new() })
                }
            })
            .collect();
        if total > limits.max_total_len {
            return Err(FragmentError::TooLarge { total, limit: limits.max_total_len });
        }
        Ok(Reassembly { slots, fragments: 0, limits })
    }

    /// Adds one fragment of value `index`.
    pub fn add_fragment(&mut self, index: u32, fragment: &Fragment) -> Result<(), FragmentError> {
        let slot = self.slots.get_mut(index as usize).ok_or(FragmentError::UnknownIndex(index))?;
        let partial = match slot {
            Slot::Pending(p) => p,
            Slot::Done(Some(_)) => return Err(FragmentError::AlreadyComplete(index)),
            Slot::Done(None) => return Err(FragmentError::UnknownIndex(index)),
        };
        let len = fragment.data.len();
        if len == 0 {
            return Err(FragmentError::Empty(index));
        }
        let out_of_bounds = FragmentError::OutOfBounds { index, offset: fragment.offset, len, size: partial.size };
        let offset = usize::try_from(fragment.offset).map_err(|_| out_of_bounds.clone())?;
        if offset > partial.size || len > partial.size - offset {
            return Err(out_of_bounds);
        }
        if partial.overlaps(offset, len) {
            return Err(FragmentError::Overlap { index, offset: fragment.offset });
        }
        if self.fragments >= self.limits.max_fragments {
            return Err(FragmentError::TooManyFragments(self.limits.max_fragments));
        }
        self.fragments += 1;
        partial.fragments.insert(offset, fragment.data.clone());
        partial.received += len;
        if partial.received == partial.size {
            let value = Value::decode(&partial.assemble()).ok();
            self.fragments -= partial.fragments.len();
            *slot = Slot::Done(value);
        }
        Ok(())
    }

    /// Adds every fragment of a `p` datagram. Returns how many were accepted, or the first
    /// refusal; accepted fragments are kept either way.
    pub fn add(&mut self, parts: &ValueParts) -> Result<usize, FragmentError> {
        let mut accepted = 0;
        let mut first_error = None;
        for (index, fragment) in &parts.fragments {
            match self.add_fragment(*index, fragment) {
                Ok(()) => accepted += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(accepted), Err)
    }

    /// Whether every announced value has arrived.
    pub fn is_complete(&self) -> bool {
        self.slots.iter().all(|s| matches!(s, Slot::Done(_)))
    }

    /// Bytes still missing.
    pub fn missing_bytes(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Pending(p) => p.size - p.received,
                Slot::Done(_) => 0,
            })
            .sum()
    }

    /// The values in slot order, skipping entries that were not values, once complete.
    pub fn into_values(self) -> Option<Vec<Value>> {
        if !self.is_complete() {
            return None;
        }
        Some(
            self.slots
                .into_iter()
                .filter_map(|s| match s {
                    Slot::Done(v) => v,
                    Slot::Pending(_) => None,
                })
                .collect(),
        )
    }
}
