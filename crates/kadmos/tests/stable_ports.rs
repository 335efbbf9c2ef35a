//! A node's port is what it was asked for, never silently different: a strict port list that
//! cannot be bound fails with an error naming the port, a list ending with 0 falls back to any
//! free port, and a restored state's port is tried first. Both networks' builders.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use kadmos::opendht::{OpenDht, OpenDhtState};
use kadmos::{Dht, Error, PortSpec, SavedState};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A UDP port held by this test (so that a node cannot bind it) for as long as the socket lives.
fn taken_port() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// A port that was free a moment ago (the OS hands out ports in turn, so it stays free for the
/// few milliseconds the test needs).
fn free_port() -> u16 {
    taken_port().1
}

/// A taken port given alone is an error that names the port; the same port with 0 after it
/// binds some other port instead. Both networks.
#[tokio::test]
async fn a_taken_port_fails_unless_the_list_ends_with_zero() {
    let (_held, port) = taken_port();
    let strict = Dht::builder().bind(LOOPBACK).port(port).no_bootstrap().build().await;
    match strict {
        Err(e @ Error::Bind { .. }) => assert!(e.to_string().contains(&format!(":{port}")), "{e}"),
        Err(e) => panic!("expected a bind error, got {e}"),
        Ok(_) => panic!("bound port {port}, which is taken"),
    }
    let strict = OpenDht::builder().bind(LOOPBACK).port(port).no_bootstrap().build().await;
    assert!(matches!(strict, Err(Error::Bind { .. })), "OpenDHT bound a taken port");

    let lenient = Dht::builder().bind(LOOPBACK).ports(PortSpec::list([port, 0])).no_bootstrap().build().await.unwrap();
    assert_ne!(lenient.local_addrs()[0].port(), port);
    assert_ne!(lenient.local_addrs()[0].port(), 0);
    lenient.shutdown().await.unwrap();
}

/// A node's saved state records its port, and a node restored from that state listens there
/// again (its port list ends with 0, so the saved port goes first); an explicit strict list
/// wins over the saved port.
#[tokio::test]
async fn a_restored_node_listens_on_its_saved_port() {
    let first = Dht::builder().bind(LOOPBACK).ports(PortSpec::any()).no_bootstrap().build().await.unwrap();
    let state = first.save_state().await.unwrap();
    assert_eq!(state.port, Some(first.local_addrs()[0].port()));
    first.shutdown().await.unwrap();

    let port = free_port();
    let saved = SavedState { port: Some(port), ..state.clone() };
    let again = Dht::builder().bind(LOOPBACK).ports(PortSpec::any()).state(saved.clone()).no_bootstrap();
    let again = again.build().await.unwrap();
    assert_eq!(again.local_addrs()[0].port(), port);
    again.shutdown().await.unwrap();

    let other = free_port();
    let strict = Dht::builder().bind(LOOPBACK).port(other).state(saved).no_bootstrap().build().await.unwrap();
    assert_eq!(strict.local_addrs()[0].port(), other);
    strict.shutdown().await.unwrap();

    let node = OpenDht::builder().bind(LOOPBACK).ports(PortSpec::any()).no_bootstrap().build().await.unwrap();
    let state = node.save_state().await.unwrap();
    assert_eq!(state.port, Some(node.local_addrs()[0].port()));
    node.shutdown().await.unwrap();
    let port = free_port();
    let saved = OpenDhtState { port: Some(port), ..state };
    let again = OpenDht::builder().bind(LOOPBACK).state(saved).no_bootstrap().build().await.unwrap();
    assert_eq!(again.local_addrs()[0].port(), port);
    again.shutdown().await.unwrap();
}
