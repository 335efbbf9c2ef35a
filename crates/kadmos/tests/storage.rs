//! BEP 44 storage through the public API, on a loopback network of kadmos nodes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use kadmos::{Dht, Error, ItemSigner, Seq, Testnet};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f).await.unwrap_or_else(|_| panic!("{what} took over 60 s"))
}

/// Immutable put on one node, get on another: the value comes back verified against its
/// target (the BEP 44 test vector's target for "Hello World!"); an unknown target is
/// `NotFound`, not a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_put_and_get() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let put = bounded("put", net.nodes[1].put_immutable(b"Hello World!")).await.unwrap();
    assert_eq!(put.target.to_string(), "e5f96f6f38320f0f33959cb4d3d656452117aadb");
    assert!(put.stored_at.len() >= 8);
    let value = bounded("get", net.nodes[8].get_immutable(put.target)).await.unwrap();
    assert_eq!(value, b"12:Hello World!");
    let missing = bounded("get missing", net.nodes[8].get_immutable(kadmos::Id::sha1_of(b"nothing"))).await;
    assert!(matches!(missing, Err(Error::NotFound)), "{missing:?}");
    net.shutdown().await;
}

/// Mutable items: `Seq::Next` learns the current seq, an update is seen by another node with
/// and without salt, and a stale seq or a wrong CAS reaches the caller as `SeqTooLow` /
/// `CasMismatch`, leaving the newest version in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutable_updates_and_typed_errors() {
    let net = bounded("testnet", Testnet::new(12)).await.unwrap();
    let signer = ItemSigner::from_seed([42; 32]);
    for salt in [&b""[..], b"profile"] {
        let first = bounded("put 1", net.nodes[2].put_mutable(&signer, salt, b"5:first".to_vec(), Seq::Next, None))
            .await
            .unwrap();
        assert_eq!(first.seq, Some(1));
        let second =
            bounded("put 2", net.nodes[3].put_mutable(&signer, salt, b"6:second".to_vec(), Seq::Next, Some(1)))
                .await
                .unwrap();
        assert_eq!(second.seq, Some(2));
        let latest = bounded("get", async {
            net.nodes[9].get_mutable(signer.public_key(), salt, None).await.unwrap().most_recent().await
        })
        .await
        .expect("found");
        assert_eq!((latest.seq, latest.value.as_slice()), (2, &b"6:second"[..]));
        let stale =
            bounded("stale", net.nodes[4].put_mutable(&signer, salt, b"5:stale".to_vec(), Seq::Exact(1), None)).await;
        assert!(matches!(stale, Err(Error::SeqTooLow(_))), "{stale:?}");
        let newer = bounded("newer_than", async {
            net.nodes[9].get_mutable(signer.public_key(), salt, Some(2)).await.unwrap().most_recent().await
        })
        .await;
        assert!(newer.is_none(), "nodes omit values not newer than seq 2");
        let cas =
            bounded("cas", net.nodes[4].put_mutable(&signer, salt, b"3:cas".to_vec(), Seq::Exact(3), Some(1))).await;
        assert!(matches!(cas, Err(Error::CasMismatch(_))), "{cas:?}");
    }
    net.shutdown().await;
}

/// Items stored on a node survive its restart from saved state, with their age; items its
/// user put are still kept alive after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_and_kept_items_survive_restart() {
    let first = Dht::builder().bind(LOOPBACK).no_bootstrap().build().await.unwrap();
    let second =
        Dht::builder().bind(LOOPBACK).bootstrap([first.local_addr_v4().unwrap().to_string()]).build().await.unwrap();
    bounded("join", second.bootstrapped()).await.unwrap();
    let put = bounded("put", second.put_immutable(b"survivor")).await.unwrap();
    assert_eq!(put.stored_at.len(), 1, "stored at the only other node");
    let state = first.shutdown().await.unwrap();
    assert_eq!(state.items.len(), 1);
    let kept = second.save_state().await.unwrap();
    assert_eq!(kept.kept_items.len(), 1);

    let restarted = Dht::builder().bind(LOOPBACK).no_bootstrap().state(state).build().await.unwrap();
    assert_eq!(restarted.info().await.unwrap().stored_items, 1);
    // A fresh node asking the restarted one finds the item.
    let asker = Dht::builder()
        .bind(LOOPBACK)
        .bootstrap([restarted.local_addr_v4().unwrap().to_string()])
        .build()
        .await
        .unwrap();
    bounded("join asker", asker.bootstrapped()).await.unwrap();
    assert_eq!(bounded("get", asker.get_immutable(put.target)).await.unwrap(), b"8:survivor");

    let second_again = Dht::builder().bind(LOOPBACK).no_bootstrap().state(kept).build().await.unwrap();
    assert_eq!(second_again.info().await.unwrap().kept_items, 1);
    assert!(second_again.cancel_keep_alive(put.target).await.unwrap());
    assert_eq!(second_again.info().await.unwrap().kept_items, 0);
}
