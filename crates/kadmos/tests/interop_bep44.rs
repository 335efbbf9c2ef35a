//! BEP 44 interop with real third-party Mainline DHT nodes on 127.0.0.1, in both directions:
//! libtorrent 2.1.1 (PyPI, driven by `interop/lt_node.py`) and bittorrent-dht 11.0.12 (npm,
//! driven by `interop/js/bt_node.js`). The drivers speak JSON lines (see `interop/README.md`).
//!
//! Immutable items, mutable items with and without salt, sequence updates seen by the other
//! side, and the BEP 44 refusals (301 CAS mismatch, 302 sequence number less than current)
//! reaching the caller, whichever side the caller is on. Mutable items are signed with the BEP 44
//! test-vector key (the 64-byte expanded form), which all three implementations can sign with.
//!
//! The drivers are installed by `bash interop/install.sh`. Without them these tests fail, unless
//! `KADMOS_SKIP_INTEROP=1` is set (then they pass with a printed note). `KADMOS_INTEROP_LOG=1`
//! makes the drivers log every DHT packet to stderr.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kadmos::{Dht, Error, FoundMutableItem, Id, ItemSigner, NodeId, NodeInfo, Seq, Testnet};
use serde_json::{json, Value};
use support::*;

/// The BEP 44 test-vector key: the 64-byte expanded secret (clamped scalar ‖ prefix), the form
/// libtorrent and the bittorrent-dht driver sign with, and its public key.
const VECTOR_SECRET: &str = "e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74d\
                             b7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d";
const VECTOR_PUBLIC: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";

// ------------------------------------------------------------------ test support

/// The BEP 44 refusal texts of each implementation.
impl Impl {
    /// The text this implementation puts in its 302 refusal.
    fn seq_too_low_text(self) -> &'static str {
        match self {
            Impl::Libtorrent => "old sequence number",
            Impl::BittorrentDht => "sequence number less than current",
            Impl::OpenDht => unreachable!("OpenDHT does not speak BEP 44"),
            Impl::MainlineCrate => unreachable!("the mainline crate's BEP 44 is tested in interop_mainline_crate.rs"),
        }
    }

    /// The text this implementation puts in its 301 refusal.
    fn cas_mismatch_text(self) -> &'static str {
        match self {
            Impl::Libtorrent => "CAS mismatch",
            Impl::BittorrentDht => "CAS mismatch, re-read and try again",
            Impl::OpenDht => unreachable!("OpenDHT does not speak BEP 44"),
            Impl::MainlineCrate => unreachable!("the mainline crate's BEP 44 is tested in interop_mainline_crate.rs"),
        }
    }
}

/// The BEP 44 driver commands (the shared ones are in `support`).
impl Driver {
    /// Its own immutable put of the bencoded value `v`; checks that no node refused it.
    async fn put_immutable(&mut self, v: &[u8]) -> Value {
        let reply = self.call("put_immutable", json!({ "v_hex": hex::encode(v), "timeout": 20 })).await;
        assert_eq!(reply["target"], json!(Id::sha1_of(v).to_string()), "{} put_immutable target", self.imp.name());
        assert_eq!(reply["errors"], json!([]), "{} got error replies to its immutable put", self.imp.name());
        reply
    }

    /// Its own immutable get (a lookup; bittorrent-dht's local store is skipped): the bencoded
    /// value, or the driver's error (`not found`).
    async fn get_immutable(&mut self, target: Id) -> Result<Vec<u8>, String> {
        let reply = self
            .request("get_immutable", json!({ "target": target.to_string(), "cache": false, "timeout": 20 }))
            .await?;
        Ok(hex::decode(reply["v_hex"].as_str().expect("v_hex")).expect("v_hex is hex"))
    }

    /// A mutable put signed with the test-vector key: its own lookup and put to the closest
    /// nodes, or (bittorrent-dht only) a get and a put to the one node at `addr`. libtorrent
    /// ignores `seq` (it signs with the highest seq found + 1) and refuses `cas`.
    async fn put_mutable(
        &mut self,
        salt: &[u8],
        v: &[u8],
        seq: i64,
        cas: Option<i64>,
        addr: Option<SocketAddr>,
    ) -> Result<Value, String> {
        let mut args = json!({
            "secret_key": VECTOR_SECRET,
            "public_key": VECTOR_PUBLIC,
            "salt": hex::encode(salt),
            "v_hex": hex::encode(v),
            "seq": seq,
            "timeout": 20,
        });
        if let Some(cas) = cas {
            args["cas"] = json!(cas);
        }
        if let Some(addr) = addr {
            args["addr"] = json!(addr.to_string());
        }
        self.request("put_mutable", args).await
    }

    /// A mutable get of the test-vector key's item under `salt`: its own lookup (bittorrent-dht's
    /// local store skipped), or (bittorrent-dht only) one get to the node at `addr`. Returns the
    /// bencoded value and the seq, or the driver's error (`not found`).
    async fn get_mutable(&mut self, salt: &[u8], addr: Option<SocketAddr>) -> Result<(Vec<u8>, i64), String> {
        let mut args = json!({ "public_key": VECTOR_PUBLIC, "salt": hex::encode(salt), "cache": false, "timeout": 20 });
        if let Some(addr) = addr {
            args["addr"] = json!(addr.to_string());
        }
        let reply = self.request("get_mutable", args).await?;
        let v = hex::decode(reply["v_hex"].as_str().unwrap_or_else(|| panic!("v_hex in {reply}"))).expect("hex");
        Ok((v, reply["seq"].as_i64().unwrap_or_else(|| panic!("seq in {reply}"))))
    }
}

/// `bytes` as a bencoded byte string.
fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// The first of `make(0)`, `make(1)`, … whose `target` has `want` as the closest node of `all`
/// (a value or salt that puts an item next to a chosen node).
fn pick_near(want: NodeId, all: &[NodeInfo], make: impl Fn(u32) -> Vec<u8>, target: impl Fn(&[u8]) -> Id) -> Vec<u8> {
    (0..10_000)
        .map(&make)
        .find(|x| closest(target(x), all, 1)[0].id == want)
        .expect("a value next to the chosen node within 10000 tries")
}

fn vector_signer() -> ItemSigner {
    let signer = ItemSigner::from_secret(&hex::decode(VECTOR_SECRET).unwrap()).expect("64-byte expanded key");
    assert_eq!(hex::encode(signer.public_key()), VECTOR_PUBLIC, "the test vector's public key");
    signer
}

/// SHA-1(public key ‖ salt): where the test-vector key's item under `salt` lives.
fn mutable_target(salt: &[u8]) -> Id {
    let mut buf = hex::decode(VECTOR_PUBLIC).unwrap();
    buf.extend_from_slice(salt);
    Id::sha1_of(&buf)
}

/// Every verified version a kadmos get of the test-vector key's item under `salt` returns.
async fn kadmos_get_all(node: &Dht, salt: &[u8]) -> Vec<FoundMutableItem> {
    bounded("kadmos get_mutable", 20, async {
        let mut stream = node.get_mutable(hex::decode(VECTOR_PUBLIC).unwrap().try_into().unwrap(), salt, None).await?;
        let mut found = Vec::new();
        while let Some(item) = stream.next().await {
            found.push(item);
        }
        Ok::<_, Error>(found)
    })
    .await
    .unwrap()
}

/// `(seq, value)` of a found mutable item.
fn seq_value(found: &FoundMutableItem) -> (i64, &[u8]) {
    (found.item.seq, &found.item.value)
}

/// Polls `node`'s count of stored items until it differs from `before` (a driver's put may
/// return just before its last put query lands); returns the last count seen.
async fn stored_items_after(node: &Dht, before: usize) -> usize {
    let mut now = before;
    for _ in 0..50 {
        now = node.info().await.unwrap().stored_items;
        if now != before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    now
}

/// How many kadmos nodes store the test-vector key's item under `salt` at `seq` with `value`
/// (read from their saved state); waits up to 3 s for at least 5 (a driver's put may return
/// just before its last put query lands).
async fn kadmos_holding(net: &Testnet, salt: &[u8], seq: i64, value: &[u8]) -> usize {
    let mut holders = 0;
    for _ in 0..30 {
        holders = 0;
        for node in &net.nodes {
            let state = node.save_state().await.unwrap();
            holders += state
                .items
                .iter()
                .filter(|i| {
                    i.public_key.as_deref() == Some(VECTOR_PUBLIC)
                        && i.salt.as_deref() == Some(&hex::encode(salt))
                        && i.seq == Some(seq)
                        && i.value == hex::encode(value)
                })
                .count();
        }
        if holders >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    holders
}

// ------------------------------------------------------------------ scenarios

/// Immutable items both ways in a network of 8 kadmos and 3 `imp` nodes.
async fn immutable_both_ways(imp: Impl) {
    let (net, mut xs) = mixed_network(imp, 8, 3).await;
    let kadmos = kadmos_infos(&net);
    let mut everyone = kadmos.clone();
    everyone.extend(xs.iter().map(info));

    // kadmos → imp: a byte string (put_immutable) and a list (put_immutable_bencoded), each
    // next to a foreign node's ID so that node must have accepted kadmos's put; another foreign
    // node's get (a lookup, never its own store) returns the value byte for byte.
    let text = pick_near(
        xs[0].id,
        &everyone,
        |i| format!("kadmos to {} #{i}", imp.name()).into_bytes(),
        |t| Id::sha1_of(&bstr(t)),
    );
    let put = bounded("kadmos put_immutable", 20, net.nodes[3].put_immutable(&text)).await.unwrap();
    assert_eq!(put.target, Id::sha1_of(&bstr(&text)));
    let list = pick_near(xs[2].id, &everyone, |i| format!("l6:kadmosi{i}ed1:ai1e1:b2:bbee").into_bytes(), Id::sha1_of);
    let put_list =
        bounded("kadmos put_immutable_bencoded", 20, net.nodes[3].put_immutable_bencoded(list.clone())).await.unwrap();
    assert_eq!(put_list.target, Id::sha1_of(&list));
    for (put, value, holder, getter) in [(put, bstr(&text), 0, 1), (put_list, list, 2, 0)] {
        assert_eq!(put.errors, vec![], "nodes refused kadmos's immutable put");
        assert!(
            put.stored_at.contains(&info(&xs[holder])),
            "the {} node closest to the target did not store kadmos's immutable put: stored at {:?}",
            imp.name(),
            put.stored_at
        );
        let got = xs[getter].get_immutable(put.target).await;
        assert_eq!(got, Ok(value), "{} get_immutable of kadmos's item", imp.name());
    }

    // imp → kadmos: a byte string and a dict, each next to a kadmos node's ID, so that node
    // must have stored the foreign put; another kadmos node's get returns the verified value.
    let text =
        pick_near(kadmos[5].id, &everyone, |i| bstr(format!("{} to kadmos #{i}", imp.name()).as_bytes()), Id::sha1_of);
    let dict = pick_near(kadmos[6].id, &everyone, |i| format!("d4:fromi{i}e2:toi6ee").into_bytes(), Id::sha1_of);
    for (value, holder, putter) in [(text, 5, 1), (dict, 6, 2)] {
        let target = Id::sha1_of(&value);
        let before = net.nodes[holder].info().await.unwrap().stored_items;
        xs[putter].put_immutable(&value).await;
        assert_eq!(
            stored_items_after(&net.nodes[holder], before).await,
            before + 1,
            "the kadmos node closest to the target did not store {}'s immutable put",
            imp.name()
        );
        let got = bounded("kadmos get_immutable", 20, net.nodes[0].get_immutable(target)).await;
        assert_eq!(got.unwrap(), value, "kadmos get_immutable of {}'s item", imp.name());
    }
    drop(xs);
    net.shutdown().await;
}

/// Mutable items (test-vector key, without and with salt) both ways, with seq updates, in a
/// network of 8 kadmos and 3 `imp` nodes.
async fn mutable_both_ways(imp: Impl) {
    let (net, mut xs) = mixed_network(imp, 8, 3).await;
    let kadmos = kadmos_infos(&net);
    let mut everyone = kadmos.clone();
    everyone.extend(xs.iter().map(info));
    let signer = vector_signer();
    // The salted item lives next to a foreign node's ID: that node must store kadmos's puts.
    let salt = pick_near(xs[0].id, &everyone, |i| format!("salt{i}").into_bytes(), mutable_target);

    for salt in [Vec::new(), salt] {
        let shown = String::from_utf8_lossy(&salt).into_owned();
        // 1. kadmos puts seq 1 (Seq::Next on an empty network); imp's get sees it.
        let v1 = bstr(format!("kadmos v1 {shown}").as_bytes());
        let put =
            bounded("kadmos put_mutable", 20, net.nodes[1].put_mutable(&signer, &salt, v1.clone(), Seq::Next, None))
                .await
                .unwrap();
        assert_eq!(put.target, mutable_target(&salt));
        assert_eq!(put.seq, Some(1));
        assert_eq!(put.errors, vec![], "nodes refused kadmos's first mutable put (salt {shown:?})");
        if !salt.is_empty() {
            assert!(
                put.stored_at.contains(&info(&xs[0])),
                "the {} node closest to the target did not store kadmos's mutable put: stored at {:?}",
                imp.name(),
                put.stored_at
            );
        }
        let got = xs[1].get_mutable(&salt, None).await;
        assert_eq!(got, Ok((v1, 1)), "{} get_mutable of kadmos's item (salt {shown:?})", imp.name());

        // 2. imp updates to seq 2 (libtorrent picks seq 2 itself: found 1, + 1); kadmos's get
        // returns it, verified, and at least 5 kadmos nodes stored it (any 8 of these 11 nodes
        // include at least 5 kadmos nodes).
        let v2 = bstr(format!("{} v2 {shown}", imp.name()).as_bytes());
        let reply = xs[2].put_mutable(&salt, &v2, 2, None, None).await.unwrap_or_else(|e| {
            panic!("{} put_mutable seq 2 (salt {shown:?}) failed: {e}{}", imp.name(), xs[2].stderr())
        });
        assert_eq!(reply["seq"], json!(2), "{} put_mutable: {reply}", imp.name());
        assert_eq!(reply["errors"], json!([]), "nodes refused {}'s mutable put (salt {shown:?})", imp.name());
        let found = kadmos_get_all(&net.nodes[6], &salt).await;
        let newest = found.iter().map(seq_value).max_by_key(|(seq, _)| *seq);
        assert_eq!(newest, Some((2, &v2[..])), "kadmos get_mutable of {}'s update (salt {shown:?})", imp.name());
        let holders = kadmos_holding(&net, &salt, 2, &v2).await;
        assert!(holders >= 5, "only {holders} kadmos nodes stored {}'s seq 2 (salt {shown:?})", imp.name());
        let m = &found[0].item;
        assert_eq!((m.public_key, &m.salt), (signer.public_key(), &salt));

        // 3. kadmos updates to seq 3 (Seq::Next learns seq 2 from the network; cas 2);
        // imp's get sees the new value and seq.
        let v3 = bstr(format!("kadmos v3 {shown}").as_bytes());
        let put =
            bounded("kadmos put_mutable", 20, net.nodes[4].put_mutable(&signer, &salt, v3.clone(), Seq::Next, Some(2)))
                .await
                .unwrap();
        assert_eq!(put.seq, Some(3), "kadmos's Seq::Next after {}'s seq 2", imp.name());
        // A node that got seq 1 but not seq 2 (imp put seq 2 to its own 8 closest, which need
        // not be kadmos's; bittorrent-dht does not keep its own puts) answers cas 2 with 301.
        // No other refusal is allowed.
        assert!(put.errors.iter().all(|e| e.code == 301), "refusals of kadmos's seq 3 with cas 2: {:?}", put.errors);
        let got = xs[0].get_mutable(&salt, None).await;
        assert_eq!(got, Ok((v3, 3)), "{} get_mutable of kadmos's update (salt {shown:?})", imp.name());
    }
    drop(xs);
    net.shutdown().await;
}

/// Stale seq and CAS mismatch refusals reach the caller, in a network of 1 kadmos node and 3
/// `imp` nodes (so a kadmos put is refused by foreign nodes only).
async fn refusals_reach_the_caller(imp: Impl) {
    let (net, mut xs) = mixed_network(imp, 1, 3).await;
    let node = &net.nodes[0];
    let signer = vector_signer();
    let salt = b"refusals".to_vec();
    let foreign: Vec<NodeInfo> = xs.iter().map(info).collect();

    // kadmos puts seq 10 at all three foreign nodes; imp updates to seq 11 (libtorrent picks
    // it itself: found 10, + 1), and kadmos sees the update.
    let put = bounded("kadmos put_mutable", 20, node.put_mutable(&signer, &salt, bstr(b"ten"), Seq::Exact(10), None))
        .await
        .unwrap();
    let mut stored = put.stored_at.clone();
    stored.sort_by_key(|n| n.addr);
    let mut expected = foreign.clone();
    expected.sort_by_key(|n| n.addr);
    assert_eq!(stored, expected, "kadmos's seq 10 is stored at every {} node", imp.name());
    let reply = xs[0].put_mutable(&salt, &bstr(b"eleven"), 11, None, None).await.unwrap();
    assert_eq!(reply["seq"], json!(11), "{} put_mutable: {reply}", imp.name());
    let newest = bounded("kadmos get_mutable", 20, async {
        node.get_mutable(signer.public_key(), &salt, None).await.unwrap().most_recent().await
    })
    .await
    .expect("found");
    assert_eq!((newest.seq, newest.value), (11, bstr(b"eleven")), "kadmos sees {}'s seq 11", imp.name());

    // (a) kadmos is the caller: every foreign node holds seq 10 or 11 and refuses seq 5 with 302,
    // and cas 7 with 301; kadmos's put fails with the typed error and the foreign node's text.
    let stale =
        bounded("kadmos stale put", 20, node.put_mutable(&signer, &salt, bstr(b"five"), Seq::Exact(5), None)).await;
    match &stale {
        Err(Error::SeqTooLow(text)) => assert_eq!(text, imp.seq_too_low_text(), "the 302 came from {}", imp.name()),
        other => panic!("kadmos put of seq 5 over {}'s seq 11: expected SeqTooLow, got {other:?}", imp.name()),
    }
    let cas =
        bounded("kadmos cas put", 20, node.put_mutable(&signer, &salt, bstr(b"twelve"), Seq::Exact(12), Some(7))).await;
    match &cas {
        Err(Error::CasMismatch(text)) => assert_eq!(text, imp.cas_mismatch_text(), "the 301 came from {}", imp.name()),
        other => panic!("kadmos put with cas 7 over {}'s seq 11: expected CasMismatch, got {other:?}", imp.name()),
    }
    // The refused puts changed nothing: a foreign get still returns seq 11.
    let got = xs[1].get_mutable(&salt, None).await;
    assert_eq!(got, Ok((bstr(b"eleven"), 11)), "{} get_mutable after the refused puts", imp.name());
    // Nor are they kept alive: the hourly keep-alive re-put (sent without cas) of the refused
    // seq 12 would otherwise overwrite imp's seq 11 an hour later, undoing the CAS refusal.
    let kept: Vec<Option<i64>> = node
        .save_state()
        .await
        .unwrap()
        .kept_items
        .iter()
        .filter(|k| k.public_key.as_deref() == Some(VECTOR_PUBLIC) && k.salt.as_deref() == Some(&hex::encode(&salt)))
        .map(|k| k.seq)
        .collect();
    assert!(
        kept.iter().all(|&seq| seq == Some(10)),
        "kadmos keeps alive a put that {} nodes refused: kept seqs {kept:?} (only seq 10 was accepted)",
        imp.name()
    );

    // (b) imp is the caller, at the kadmos node (which holds seq 11): libtorrent's bindings can
    // neither choose the seq nor send cas nor address one node, so only bittorrent-dht does this.
    if imp == Impl::BittorrentDht {
        let kadmos_addr = node.local_addr_v4().unwrap();
        assert_eq!(xs[2].get_mutable(&salt, Some(kadmos_addr)).await, Ok((bstr(b"eleven"), 11)));
        let stale = xs[2].put_mutable(&salt, &bstr(b"six"), 6, None, Some(kadmos_addr)).await;
        let err = stale.expect_err("kadmos accepted bittorrent-dht's seq 6 over seq 11");
        assert!(err.contains("remote error 302 "), "bittorrent-dht's stale put to kadmos: {err}");
        let cas = xs[2].put_mutable(&salt, &bstr(b"twelve"), 12, Some(7), Some(kadmos_addr)).await;
        let err = cas.expect_err("kadmos accepted bittorrent-dht's put with cas 7 over seq 11");
        assert!(err.contains("remote error 301 "), "bittorrent-dht's cas put to kadmos: {err}");
        // Refused: the kadmos node still holds seq 11; a right cas is accepted.
        assert_eq!(xs[2].get_mutable(&salt, Some(kadmos_addr)).await, Ok((bstr(b"eleven"), 11)));
        let ok = xs[2].put_mutable(&salt, &bstr(b"twelve"), 12, Some(11), Some(kadmos_addr)).await;
        assert!(ok.is_ok(), "kadmos refused bittorrent-dht's put with the right cas: {ok:?}");
        assert_eq!(xs[2].get_mutable(&salt, Some(kadmos_addr)).await, Ok((bstr(b"twelve"), 12)));
    }
    drop(xs);
    net.shutdown().await;
}

// ------------------------------------------------------------------ tests

/// In a network of 8 kadmos and 3 libtorrent nodes: kadmos's immutable puts (a byte string and a
/// bencoded list) are stored by the libtorrent node closest to the target, and another
/// libtorrent node's get returns them byte for byte; libtorrent's immutable puts (a byte string
/// and a dict) are stored by the kadmos node closest to the target without errors, and kadmos's
/// get returns them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_across_kadmos_and_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(immutable_both_ways(Impl::Libtorrent)).await;
    }
}

/// In a network of 8 kadmos and 3 bittorrent-dht nodes: kadmos's immutable puts (a byte string
/// and a bencoded list) are stored by the bittorrent-dht node closest to the target, and another
/// bittorrent-dht node's get (not from its cache) returns them byte for byte; bittorrent-dht's
/// immutable puts (a byte string and a dict) are stored by the kadmos node closest to the target
/// without errors, and kadmos's get returns them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_across_kadmos_and_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(immutable_both_ways(Impl::BittorrentDht)).await;
    }
}

/// In a network of 8 kadmos and 3 libtorrent nodes, for the BEP 44 test-vector key without and
/// with a salt: kadmos's seq 1 is read by libtorrent; libtorrent's update (it signs seq 2 with
/// the 64-byte expanded key) is stored by kadmos nodes without errors and kadmos's get returns
/// it verified; kadmos's `Seq::Next` update (seq 3, cas 2) is read by libtorrent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_across_kadmos_and_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(mutable_both_ways(Impl::Libtorrent)).await;
    }
}

/// In a network of 8 kadmos and 3 bittorrent-dht nodes, for the BEP 44 test-vector key without
/// and with a salt: kadmos's seq 1 is read by bittorrent-dht; bittorrent-dht's seq 2 is stored by
/// kadmos nodes without errors and kadmos's get returns it verified; kadmos's `Seq::Next` update
/// (seq 3, cas 2) is read by bittorrent-dht.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_across_kadmos_and_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(mutable_both_ways(Impl::BittorrentDht)).await;
    }
}

/// With 1 kadmos node and 3 libtorrent nodes holding seq 10/11 of an item: a kadmos put of a
/// lower seq fails with `Error::SeqTooLow` and a put with a wrong cas with `Error::CasMismatch`,
/// each carrying libtorrent's own refusal text (302, 301); the item is left unchanged and the
/// refused versions are not kept alive.
/// (libtorrent as the caller against kadmos is not tested: its bindings choose the seq
/// themselves and cannot send cas.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_between_kadmos_and_libtorrent() {
    if drivers_installed(Impl::Libtorrent) {
        whole_test(refusals_reach_the_caller(Impl::Libtorrent)).await;
    }
}

/// With 1 kadmos node and 3 bittorrent-dht nodes holding seq 10/11 of an item: a kadmos put of a
/// lower seq fails with `Error::SeqTooLow` and a put with a wrong cas with `Error::CasMismatch`,
/// each carrying bittorrent-dht's own refusal text (the item is left unchanged and the refused
/// versions are not kept alive); and bittorrent-dht's puts to the kadmos node
/// (which holds seq 11) of seq 6, and of seq 12 with cas 7, are refused with 302 and 301, while
/// seq 12 with cas 11 is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_between_kadmos_and_bittorrent_dht() {
    if drivers_installed(Impl::BittorrentDht) {
        whole_test(refusals_reach_the_caller(Impl::BittorrentDht)).await;
    }
}
