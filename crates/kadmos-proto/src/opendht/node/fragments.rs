//! Messages whose values come in fragments: admitting them (a reply only to a request of ours,
//! a request within the rate limit), reassembling them within bounds, then dispatching them.

use super::*;

impl Node {
    pub(super) fn on_fragmented(&mut self, now: Timestamp, from: SocketAddr, message: Message) {
        let key = (from, message.tid);
        let is_reply = matches!(message.body, Body::Reply(_) | Body::ListenerPush(_));
        // Like OpenDHT: fragments of a reply only for a request we made; of a request only
        // within the rate limit.
        let expected = if is_reply {
            self.engine.awaits(message.tid, from)
        } else {
            self.partials.get(&key).is_some_and(|p| p.header.is_none()) || self.allow_request(now, from)
        };
        let existing_header = self.partials.get(&key).is_some_and(|p| p.header.is_some());
        if !expected || existing_header || (!self.partials.contains_key(&key) && self.partials_full()) {
            self.out.counters.traffic.dropped += 1;
            return;
        }
        let slots = message.value_slots().unwrap_or(&[]);
        let Ok(mut reassembly) = Reassembly::new(slots, self.config.reassembly) else {
            self.out.counters.traffic.dropped += 1;
            self.partials.remove(&key);
            return;
        };
        let mut partial = self.partials.remove(&key).unwrap_or(Partial {
            header: None,
            early: Vec::new(),
            early_bytes: 0,
            started: now,
            last: now,
        });
        for parts in partial.early.drain(..) {
            let _ = reassembly.add(&parts);
        }
        partial.early_bytes = 0;
        partial.last = now;
        if reassembly.is_complete() {
            self.complete(now, from, message, reassembly);
        } else {
            partial.header = Some((message, reassembly));
            self.partials.insert(key, partial);
        }
    }

    pub(super) fn partials_full(&self) -> bool {
        self.partials.len() >= self.config.max_partial_messages
    }

    pub(super) fn on_parts(&mut self, now: Timestamp, from: SocketAddr, tid: u32, parts: ValueParts) {
        let key = (from, tid);
        if parts.fragments.is_empty() || parts.fragments.values().any(|f| f.data.is_empty()) {
            self.out.counters.traffic.dropped += 1;
            return;
        }
        if !self.partials.contains_key(&key) {
            if self.partials_full() || !self.allow_request(now, from) {
                self.out.counters.traffic.dropped += 1;
                return;
            }
            let fresh = Partial { header: None, early: Vec::new(), early_bytes: 0, started: now, last: now };
            self.partials.insert(key, fresh);
        }
        // What became of the set: (fragments refused, the set is complete or given up).
        let added = self.partials.update(&key, |partial| {
            partial.last = now;
            match &mut partial.header {
                Some((_, reassembly)) => (reassembly.add(&parts).is_err(), reassembly.is_complete()),
                None => {
                    let bytes: usize = parts.fragments.values().map(|f| f.data.len()).sum();
                    if partial.early.len() >= RX_MAX_EARLY_PARTS || partial.early_bytes + bytes > RX_MAX_EARLY_BYTES {
                        return (true, true);
                    }
                    partial.early_bytes += bytes;
                    partial.early.push(parts);
                    (false, false)
                }
            }
        });
        let (refused, over) = added.expect("present");
        if refused {
            self.out.counters.traffic.dropped += 1;
        }
        if over {
            // Complete if it has its message, else over the bounds on early fragments.
            if let Some((message, reassembly)) = self.partials.remove(&key).and_then(|p| p.header) {
                self.complete(now, from, message, reassembly);
            }
        }
    }

    pub(super) fn complete(&mut self, now: Timestamp, from: SocketAddr, mut message: Message, reassembly: Reassembly) {
        let values: Vec<ValueSlot> =
            reassembly.into_values().unwrap_or_default().into_iter().map(ValueSlot::Value).collect();
        match &mut message.body {
            Body::Request { request: Request::Put(p), .. } => p.values = values,
            Body::Request { request: Request::Update(u), .. } => u.values = values,
            Body::Reply(r) | Body::ListenerPush(r) => r.values = values,
            _ => {}
        }
        self.dispatch_checked(now, from, message);
    }

    pub(super) fn allow_request(&mut self, now: Timestamp, from: SocketAddr) -> bool {
        let allowed = self.limiter.allow(now, from.ip());
        if !allowed {
            self.out.counters.rate_limited += 1;
        }
        allowed
    }
}
