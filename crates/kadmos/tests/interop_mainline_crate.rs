//! Interop with the pubky `mainline` crate 8.0.1 (the DHT under pkarr and Pubky, driven by
//! `interop/mainline_node`), on 127.0.0.1: BEP 44 items both ways, among them mutable items with
//! salt as pkarr publishes them, and a network mixing all four Mainline implementations kadmos
//! is tested against (kadmos, libtorrent, bittorrent-dht, the `mainline` crate) in which each
//! one's lookups find the others. Bootstrap, find_node and get_peers/announce against the crate
//! alone are in `interop_mainline.rs`.
//!
//! The drivers are installed by `bash interop/install.sh`. Without them these tests fail, unless
//! `KADMOS_SKIP_INTEROP=1` is set (then they pass with a printed note).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use kadmos::{Dht, Error, Id, InfoHash, ItemSigner, NodeInfo, Seq, Testnet};
use serde_json::{json, Value};
use support::*;

/// The ed25519 seed both sides sign with (the crate's driver takes a 32-byte seed).
const SEED: [u8; 32] = *b"kadmos and the mainline crate!!!";

/// The driver commands of these tests (the shared ones are in `support`).
impl Driver {
    async fn put_immutable(&mut self, v: &[u8]) -> Value {
        self.call("put_immutable", json!({ "v_hex": hex::encode(v), "timeout": 20 })).await
    }

    async fn get_immutable(&mut self, target: Id) -> Result<Vec<u8>, String> {
        let reply = self.request("get_immutable", json!({ "target": target.to_string(), "timeout": 20 })).await?;
        Ok(hex::decode(reply["v_hex"].as_str().expect("v_hex")).expect("hex"))
    }

    async fn put_mutable(&mut self, salt: &[u8], v: &[u8], seq: i64, cas: Option<i64>) -> Value {
        let mut args = json!({
            "secret_seed": hex::encode(SEED),
            "salt": hex::encode(salt),
            "v_hex": hex::encode(v),
            "seq": seq,
            "timeout": 20,
        });
        if let Some(cas) = cas {
            args["cas"] = json!(cas);
        }
        self.call("put_mutable", args).await
    }

    async fn get_mutable(&mut self, public_key: [u8; 32], salt: &[u8]) -> Result<(Vec<u8>, i64), String> {
        let args = json!({ "public_key": hex::encode(public_key), "salt": hex::encode(salt), "timeout": 20 });
        let reply = self.request("get_mutable", args).await?;
        let v = hex::decode(reply["v_hex"].as_str().expect("v_hex")).expect("hex");
        Ok((v, reply["seq"].as_i64().expect("seq")))
    }

    async fn announce(&mut self, info_hash: InfoHash, port: u16) {
        let reply =
            self.call("announce", json!({ "infohash": info_hash.to_string(), "port": port, "timeout": 25 })).await;
        assert_eq!(reply["errors"], json!([]), "{} got error replies to its announce", self.imp.name());
    }

    async fn get_peers(&mut self, info_hash: InfoHash) -> Vec<SocketAddr> {
        let args = json!({ "infohash": info_hash.to_string(), "timeout": 20, "remote_only": true });
        let reply = self.call("get_peers", args).await;
        reply["peers"].as_array().expect("peers").iter().map(|p| p.as_str().unwrap().parse().unwrap()).collect()
    }
}

/// `bytes` as a bencoded byte string.
fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// The first of `make(0)`, `make(1)`, … whose target has `want` as the closest node of `all`.
fn pick_near(want: NodeInfo, all: &[NodeInfo], make: impl Fn(u32) -> Vec<u8>, target: impl Fn(&[u8]) -> Id) -> Vec<u8> {
    (0..10_000).map(&make).find(|x| closest(target(x), all, 1)[0] == want).expect("a value next to the chosen node")
}

/// How many items `node` stores, once it differs from `before` (a driver's put may return just
/// before its last put query lands); gives up after 10 s.
async fn stored_items_after(node: &Dht, before: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = node.info().await.unwrap().stored_items;
        if now != before || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The newest `(seq, bencoded value)` a kadmos get of the item under `salt` returns.
async fn kadmos_newest(node: &Dht, public_key: [u8; 32], salt: &[u8]) -> Option<(i64, Vec<u8>)> {
    bounded("kadmos get_mutable", 20, async {
        let mut stream = node.get_mutable(public_key, salt, None).await?;
        let mut newest = None;
        while let Some(found) = stream.next().await {
            let m = found.item;
            if newest.as_ref().is_none_or(|(seq, _)| m.seq > *seq) {
                newest = Some((m.seq, m.value));
            }
        }
        Ok::<_, Error>(newest)
    })
    .await
    .unwrap()
}

/// In a network of 8 kadmos and 3 `mainline` crate nodes: immutable items put by kadmos are
/// stored by the crate node closest to the target and got by another crate node, and the
/// reverse; mutable items with and without salt (a pkarr record is one with salt-less
/// `v` signed by the publisher's key) go seq 1 from kadmos, seq 2 from the crate with cas 1,
/// seq 3 from kadmos learning seq 2 from the network, each side reading the other's newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bep44_items_across_kadmos_and_the_mainline_crate() {
    if !drivers_installed(Impl::MainlineCrate) {
        return;
    }
    whole_test(async {
        let (net, mut xs) = mixed_network(Impl::MainlineCrate, 8, 3).await;
        let kadmos = kadmos_infos(&net);
        let mut everyone = kadmos.clone();
        everyone.extend(xs.iter().map(info));

        // Immutable, kadmos → crate.
        let text = pick_near(
            info(&xs[0]),
            &everyone,
            |i| format!("kadmos to mainline #{i}").into_bytes(),
            |t| Id::sha1_of(&bstr(t)),
        );
        let put = bounded("kadmos put_immutable", 20, net.nodes[3].put_immutable(&text)).await.unwrap();
        assert_eq!(put.errors, vec![], "crate nodes refused kadmos's immutable put");
        assert!(put.stored_at.contains(&info(&xs[0])), "the closest crate node did not store it: {:?}", put.stored_at);
        assert_eq!(xs[1].get_immutable(put.target).await, Ok(bstr(&text)), "the crate's get of kadmos's item");

        // Immutable, crate → kadmos.
        let value =
            pick_near(kadmos[5], &everyone, |i| bstr(format!("mainline to kadmos #{i}").as_bytes()), Id::sha1_of);
        let before = net.nodes[5].info().await.unwrap().stored_items;
        let reply = xs[2].put_immutable(&value).await;
        assert_eq!(reply["target"], json!(Id::sha1_of(&value).to_string()));
        assert_eq!(stored_items_after(&net.nodes[5], before).await, before + 1, "the closest kadmos node stored it");
        let got = bounded("kadmos get_immutable", 20, net.nodes[0].get_immutable(Id::sha1_of(&value))).await;
        assert_eq!(got.unwrap(), value, "kadmos's get of the crate's item");

        // Mutable, without and with salt.
        let signer = ItemSigner::from_seed(SEED);
        let key = signer.public_key();
        let target = |salt: &[u8]| {
            let mut buf = key.to_vec();
            buf.extend_from_slice(salt);
            Id::sha1_of(&buf)
        };
        let salt = pick_near(info(&xs[0]), &everyone, |i| format!("_pkarr{i}").into_bytes(), target);
        for salt in [Vec::new(), salt] {
            let shown = String::from_utf8_lossy(&salt).into_owned();
            let v1 = bstr(format!("kadmos v1 {shown}").as_bytes());
            let put = bounded(
                "kadmos put_mutable",
                20,
                net.nodes[1].put_mutable(&signer, &salt, v1.clone(), Seq::Next, None),
            )
            .await
            .unwrap();
            assert_eq!((put.seq, put.errors.clone()), (Some(1), vec![]), "kadmos seq 1 (salt {shown:?})");
            if !salt.is_empty() {
                assert!(put.stored_at.contains(&info(&xs[0])), "the closest crate node stored it: {:?}", put.stored_at);
            }
            assert_eq!(xs[1].get_mutable(key, &salt).await, Ok((v1, 1)), "the crate's get (salt {shown:?})");

            let v2 = bstr(format!("mainline v2 {shown}").as_bytes());
            xs[2].put_mutable(&salt, &v2, 2, Some(1)).await;
            assert_eq!(kadmos_newest(&net.nodes[6], key, &salt).await, Some((2, v2)), "kadmos's get (salt {shown:?})");

            let v3 = bstr(format!("kadmos v3 {shown}").as_bytes());
            let put = bounded(
                "kadmos put_mutable",
                20,
                net.nodes[4].put_mutable(&signer, &salt, v3.clone(), Seq::Next, Some(2)),
            )
            .await
            .unwrap();
            assert_eq!(put.seq, Some(3), "kadmos's Seq::Next after the crate's seq 2 (salt {shown:?})");
            // A node that stored seq 1 but missed seq 2 answers cas 2 with 301; nothing else.
            assert!(put.errors.iter().all(|e| e.code == 301), "refusals: {:?}", put.errors);
            assert_eq!(xs[0].get_mutable(key, &salt).await, Ok((v3, 3)), "the crate's get of seq 3 (salt {shown:?})");
        }
        drop(xs);
        net.shutdown().await;
    })
    .await;
}

/// A network of 6 kadmos nodes and two nodes each of libtorrent, bittorrent-dht and the
/// `mainline` crate, the foreign ones joining through kadmos: kadmos's find_node of each foreign
/// node's ID returns that node first, and when one node of each implementation announces a peer
/// under one infohash, a get_peers from each implementation finds exactly the four peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_find_each_other_across_four_implementations() {
    let foreign = [Impl::Libtorrent, Impl::BittorrentDht, Impl::MainlineCrate];
    if !foreign.iter().all(|imp| drivers_installed(*imp)) {
        return;
    }
    whole_test(async {
        let net = bounded("kadmos testnet", 20, Testnet::new(6)).await.unwrap();
        let boot = net.bootstrap_addrs();
        let mut xs = Vec::new();
        for (i, imp) in foreign.iter().flat_map(|imp| [*imp, *imp]).enumerate() {
            xs.push(Driver::spawn(imp, &[boot[i % 6], boot[(i + 1) % 6]]).await);
        }
        for node in &net.nodes {
            for x in &xs {
                let pong = bounded("ping", 10, node.ping(x.addr)).await.unwrap();
                assert_eq!(pong.id, x.id, "{} answered a kadmos ping with another ID", x.imp.name());
            }
        }
        for x in &mut xs {
            x.wait_nodes(6, 20).await; // libtorrent adds the nodes that contacted it after ~5 s
        }

        // kadmos's lookups reach every foreign node.
        for x in &xs {
            let found = bounded("kadmos find_node", 20, net.nodes[2].find_node(x.id)).await.unwrap();
            assert_eq!(found.first(), Some(&info(x)), "kadmos find_node of a {} node's ID", x.imp.name());
        }

        // One node of each implementation announces a peer of its own under one infohash; then
        // a get_peers from every implementation (the other node of each) finds all four peers.
        // The foreign drivers work at the same time: libtorrent's lookups take several seconds.
        let hash = Id::sha1_of(b"four implementations, one swarm");
        let [lt_a, lt_b, bt_a, bt_b, ml_a, ml_b] = xs.as_mut_slice() else { unreachable!("six drivers") };
        let (kadmos_announce, (), (), ()) = tokio::join!(
            bounded("kadmos announce", 30, net.nodes[0].announce_peer(hash, Some(46_000))),
            lt_a.announce(hash, 46_001),
            bt_a.announce(hash, 46_002),
            ml_a.announce(hash, 46_003),
        );
        kadmos_announce.unwrap();
        let expected: Vec<SocketAddr> = (46_000..46_004).map(|port| SocketAddr::new(LOOPBACK, port)).collect();
        let (kadmos_found, lt_found, bt_found, ml_found) = tokio::join!(
            bounded("kadmos get_peers", 30, async {
                net.nodes[4].get_peers(hash).await.unwrap().collect_peers().await
            }),
            lt_b.get_peers(hash),
            bt_b.get_peers(hash),
            ml_b.get_peers(hash),
        );
        for (who, mut found) in [
            ("kadmos", kadmos_found),
            ("libtorrent", lt_found),
            ("bittorrent-dht", bt_found),
            ("mainline crate", ml_found),
        ] {
            found.sort();
            assert_eq!(found, expected, "{who}'s get_peers finds the peer of every implementation");
        }
        drop(xs);
        net.shutdown().await;
    })
    .await;
}
