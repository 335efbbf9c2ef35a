//! Just enough KRPC for the load generator: two query encoders written by
//! hand (keys in sorted order, as bencoding requires) and a minimal reader
//! that pulls `t` and `y` out of the top-level dictionary of a reply.

/// Length of node ids, targets and info-hashes.
pub const ID_LEN: usize = 20;

/// Which query a packet carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    FindNode,
    GetPeers,
}

/// A query packet laid out once, whose variable parts are patched in place.
#[derive(Clone, Debug)]
pub struct Template {
    buf: Vec<u8>,
    arg_at: usize,
    tid_at: usize,
}

impl Template {
    /// `d1:ad2:id20:<id>6:target20:<target>e1:q9:find_node1:t2:<tt>1:y1:qe`
    /// or `d1:ad2:id20:<id>9:info_hash20:<hash>e1:q9:get_peers1:t2:<tt>1:y1:qe`.
    pub fn new(query: Query, id: &[u8; ID_LEN]) -> Self {
        let (arg_key, name): (&[u8], &[u8]) = match query {
            Query::FindNode => (b"6:target20:", b"9:find_node"),
            Query::GetPeers => (b"9:info_hash20:", b"9:get_peers"),
        };
        let mut buf = Vec::with_capacity(100);
        buf.extend_from_slice(b"d1:ad2:id20:");
        buf.extend_from_slice(id);
        buf.extend_from_slice(arg_key);
        let arg_at = buf.len();
        buf.extend_from_slice(&[0u8; ID_LEN]);
        buf.extend_from_slice(b"e1:q");
        buf.extend_from_slice(name);
        buf.extend_from_slice(b"1:t2:");
        let tid_at = buf.len();
        buf.extend_from_slice(&[0u8; 2]);
        buf.extend_from_slice(b"1:y1:qe");
        Template { buf, arg_at, tid_at }
    }

    /// Sets the target / info_hash and the transaction id; returns the packet.
    pub fn fill(&mut self, arg: &[u8; ID_LEN], tid: u16) -> &[u8] {
        self.buf[self.arg_at..self.arg_at + ID_LEN].copy_from_slice(arg);
        self.buf[self.tid_at..self.tid_at + 2].copy_from_slice(&tid.to_be_bytes());
        &self.buf
    }
}

/// Encodes one query (used by the readiness probe and the tests).
pub fn encode(query: Query, id: &[u8; ID_LEN], arg: &[u8; ID_LEN], tid: u16) -> Vec<u8> {
    Template::new(query, id).fill(arg, tid).to_vec()
}

/// The two top-level fields the generator looks at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub t: Option<&'a [u8]>,
    pub y: Option<&'a [u8]>,
}

/// An answer to any query: `{"r": {"id": id}, "t": t, "y": "r"}`.
pub fn ping_reply(id: &[u8; ID_LEN], t: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"d1:rd2:id20:");
    out.extend_from_slice(id);
    out.extend_from_slice(format!("e1:t{}:", t.len()).as_bytes());
    out.extend_from_slice(t);
    out.extend_from_slice(b"1:y1:re");
    out
}

/// Reads `t` and `y` from a packet that must be one well-formed bencoded
/// dictionary with nothing after it. Returns `None` for anything else.
pub fn head(pkt: &[u8]) -> Option<Head<'_>> {
    if pkt.first() != Some(&b'd') {
        return None;
    }
    let mut pos = 1;
    let mut out = Head::default();
    loop {
        match pkt.get(pos)? {
            b'e' => {
                return (pos + 1 == pkt.len()).then_some(out);
            }
            _ => {
                let (key, next) = string(pkt, pos)?;
                let value_end = skip(pkt, next, 0)?;
                match key {
                    b"t" => out.t = Some(string(pkt, next)?.0),
                    b"y" => out.y = Some(string(pkt, next)?.0),
                    _ => {}
                }
                pos = value_end;
            }
        }
    }
}

/// A byte string at `pos`: returns its contents and the position after it.
fn string(pkt: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let colon = pos + pkt.get(pos..)?.iter().position(|&b| b == b':')?;
    let digits = &pkt[pos..colon];
    if digits.is_empty() || digits.len() > 7 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let start = colon + 1;
    let end = start.checked_add(len)?;
    Some((pkt.get(start..end)?, end))
}

/// Skips any bencoded value at `pos`; returns the position after it.
fn skip(pkt: &[u8], pos: usize, depth: usize) -> Option<usize> {
    if depth > 32 {
        return None;
    }
    match *pkt.get(pos)? {
        b'i' => {
            let end = pos + pkt.get(pos..)?.iter().position(|&b| b == b'e')?;
            (end > pos + 1).then_some(end + 1)
        }
        b'l' | b'd' => {
            let mut p = pos + 1;
            while *pkt.get(p)? != b'e' {
                p = skip(pkt, p, depth + 1)?;
            }
            Some(p + 1)
        }
        b'0'..=b'9' => string(pkt, pos).map(|(_, end)| end),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_node_bytes() {
        let id = [b'a'; 20];
        let target = [b'b'; 20];
        let pkt = encode(Query::FindNode, &id, &target, 0x6161);
        let want = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa6:target20:bbbbbbbbbbbbbbbbbbbbe1:q9:find_node1:t2:aa1:y1:qe";
        assert_eq!(pkt, want.to_vec());
    }

    #[test]
    fn get_peers_bytes() {
        let id = [b'a'; 20];
        let hash = [b'c'; 20];
        let pkt = encode(Query::GetPeers, &id, &hash, 0x7a7a);
        let want = b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaa9:info_hash20:cccccccccccccccccccce1:q9:get_peers1:t2:zz1:y1:qe";
        assert_eq!(pkt, want.to_vec());
    }

    #[test]
    fn head_of_query_and_reply() {
        let pkt = encode(Query::GetPeers, &[1; 20], &[2; 20], 0x0102);
        let h = head(&pkt).unwrap();
        assert_eq!(h.t, Some(&[1u8, 2][..]));
        assert_eq!(h.y, Some(&b"q"[..]));

        let reply = b"d1:rd2:id20:aaaaaaaaaaaaaaaaaaaa5:nodesl6:xxxxxxi3eee1:t2:zz1:v4:KD011:y1:re";
        let h = head(reply).unwrap();
        assert_eq!(h.t, Some(&b"zz"[..]));
        assert_eq!(h.y, Some(&b"r"[..]));
    }

    #[test]
    fn head_rejects_junk() {
        assert_eq!(head(b""), None);
        assert_eq!(head(b"l1:ae"), None);
        assert_eq!(head(b"d1:t2:zz"), None);
        assert_eq!(head(b"d1:t2:zze trailing"), None);
        assert_eq!(head(b"d1:t9:zze"), None);
        assert_eq!(head(b"d1:ti-e1:y1:re"), None);
    }
}
