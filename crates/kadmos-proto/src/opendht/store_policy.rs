//! Type-specific store policies: what a storing node does with a remote put of a built-in type
//! before storing it (OpenDHT's `ValueType::storePolicy`, src/default_types.cpp and
//! include/opendht/default_types.h, facts only):
//!
//! - DhtMessage (type 1): data that reads as a DhtMessage (msgpack `[service, data]`, missing
//!   fields empty) with an empty service is refused; data that does not read as one is stored
//!   as it comes.
//! - IpServiceAnnouncement (type 2): the data must be a msgpack binary holding a socket address
//!   with a non-zero port. The node stores a new plain value of the same id whose address is
//!   the *sender's*, with that port: a node announces "I serve at port P" and everyone learns
//!   the address it was seen from. Anything else is refused.
//! - Every other type is stored as it comes. (OpenDHT's secure layer also checks that a
//!   certificate (type 8) is stored under its key's id; kadmos does not parse X.509.)
//!
//! The socket address inside an announcement is the raw C `sockaddr_in`/`sockaddr_in6` of the
//! writer's platform: the family in host byte order (little-endian everywhere OpenDHT runs;
//! Linux's AF_INET = 2 and AF_INET6 = 10), then the port in network byte order, then the
//! address. kadmos reads and writes the Linux layout.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::msgpack::{self, Writer};
use super::storage::Refusal;
use super::value::{Value, ValueType};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `sizeof(sockaddr_in)` and `sizeof(sockaddr_in6)` on Linux.
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;

/// Applies the store policy of `value`'s type to a put from `from`: the value to store, or why
/// it is refused. Encrypted values carry their type inside the cypher and pass as they come.
pub(crate) fn apply(value: Value, from: SocketAddr) -> Result<Value, Refusal> {
    if value.is_encrypted() {
        return Ok(value);
    }
    match value.value_type {
        t if t == ValueType::DHT_MESSAGE.id => match dht_message_service(&value.data) {
            Some(service) if service.is_empty() => Err(Refusal::StorePolicy),
            _ => Ok(value),
        },
        t if t == ValueType::IP_SERVICE_ANNOUNCEMENT.id => {
            let port = read_ip_service_announcement(&value.data).map(|a| a.port()).unwrap_or(0);
            if port == 0 {
                return Err(Refusal::StorePolicy);
            }
            let seen = SocketAddr::new(from.ip(), port);
            Ok(Value::new(value.id, ValueType::IP_SERVICE_ANNOUNCEMENT.id, ip_service_announcement(seen)))
        }
        _ => Ok(value),
    }
}

/// The service of a DhtMessage's data, if the data reads as one (as msgpack-c would convert
/// it: an array whose first entry, if any, is a string or binary).
fn dht_message_service(data: &[u8]) -> Option<Vec<u8>> {
    let object = msgpack::read(data).ok()?;
    let fields = msgpack::as_array(&object)?;
    match fields.first() {
        None => Some(Vec::new()),
        Some(service) => msgpack::as_raw_text(service).map(<[u8]>::to_vec),
    }
}

/// The data of an IpServiceAnnouncement of `addr` (what a node announcing its port puts; a
/// storing node replaces the address with the one it saw the put come from).
pub fn ip_service_announcement(addr: SocketAddr) -> Vec<u8> {
    let mut raw = Vec::with_capacity(SOCKADDR_IN6_LEN);
    match addr.ip() {
        IpAddr::V4(ip) => {
            raw.extend(AF_INET.to_le_bytes());
            raw.extend(addr.port().to_be_bytes());
            raw.extend(ip.octets());
            raw.resize(SOCKADDR_IN_LEN, 0);
        }
        IpAddr::V6(ip) => {
            raw.extend(AF_INET6.to_le_bytes());
            raw.extend(addr.port().to_be_bytes());
            raw.extend([0; 4]); // flow info
            raw.extend(ip.octets());
            raw.extend([0; 4]); // scope id
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 2);
    Writer::new(&mut out).bin(&raw);
    out
}

/// The socket address in an IpServiceAnnouncement's data; `None` if it is not one (not a
/// msgpack binary, an unknown family, too short).
pub fn read_ip_service_announcement(data: &[u8]) -> Option<SocketAddr> {
    let object = msgpack::read(data).ok()?;
    let rmpv::ValueRef::Binary(raw) = object else { return None };
    let family = u16::from_le_bytes(raw.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?);
    match family {
        AF_INET if raw.len() >= 8 => {
            let ip: [u8; 4] = raw[4..8].try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        AF_INET6 if raw.len() >= 24 => {
            let ip: [u8; 16] = raw[8..24].try_into().ok()?;
            Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(value_type: u16, data: Vec<u8>) -> Value {
        Value::new(9, value_type, data)
    }

    /// An announcement is a msgpack binary of the Linux `sockaddr_in`/`sockaddr_in6` layout,
    /// and reads back.
    #[test]
    fn announcement_layout() {
        let v4: SocketAddr = "10.1.2.3:4222".parse().unwrap();
        let data = ip_service_announcement(v4);
        assert_eq!(data, [&[0xc4, 16, 2, 0, 0x10, 0x7e, 10, 1, 2, 3][..], &[0; 8]].concat());
        assert_eq!(read_ip_service_announcement(&data), Some(v4));
        let v6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        let data = ip_service_announcement(v6);
        assert_eq!((data.len(), &data[..6]), (30, &[0xc4, 28, 10, 0, 0, 80][..]));
        assert_eq!(read_ip_service_announcement(&data), Some(v6));
        assert_eq!(read_ip_service_announcement(b"\xc4\x02\x02\x00"), None, "too short for a port");
        assert_eq!(read_ip_service_announcement(b"\xa3abc"), None, "a string, not a binary");
    }

    /// A storing node replaces an announcement's address with the sender's and keeps the
    /// announced port and the value id; one with port 0 or unreadable data is refused, and
    /// the result is a plain value (no owner: the storing node made it).
    #[test]
    fn announcements_take_the_senders_address() {
        let from: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let announced = value(2, ip_service_announcement("0.0.0.0:4222".parse().unwrap()));
        let mut signed = announced.clone();
        signed.owner = Some(vec![1, 2, 3]);
        signed.signature = vec![4; 8];
        let stored = apply(signed, from).unwrap();
        assert_eq!(read_ip_service_announcement(&stored.data), Some("192.0.2.7:4222".parse().unwrap()));
        assert_eq!((stored.id, stored.value_type, stored.owner.is_some()), (9, 2, false));
        let port_zero = value(2, ip_service_announcement("10.0.0.1:0".parse().unwrap()));
        assert_eq!(apply(port_zero, from), Err(Refusal::StorePolicy));
        assert_eq!(apply(value(2, b"garbage".to_vec()), from), Err(Refusal::StorePolicy));
    }

    /// A DhtMessage with an empty service is refused; one with a service, or data that is not
    /// a DhtMessage at all, is stored as it comes; other types are never looked at.
    #[test]
    fn dht_messages_need_a_service() {
        let from: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let message = |service: &str| {
            let mut data = Vec::new();
            Writer::new(&mut data).array(2).str(service).bin(b"payload");
            value(1, data)
        };
        assert_eq!(apply(message(""), from), Err(Refusal::StorePolicy));
        assert_eq!(apply(value(1, vec![0x90]), from), Err(Refusal::StorePolicy), "[]: the service is empty");
        let ok = message("chat");
        assert_eq!(apply(ok.clone(), from), Ok(ok));
        let not_a_message = value(1, b"plain bytes".to_vec());
        assert_eq!(apply(not_a_message.clone(), from), Ok(not_a_message));
        let user_data = value(0, ip_service_announcement("10.0.0.1:0".parse().unwrap()));
        assert_eq!(apply(user_data.clone(), from), Ok(user_data));
    }
}
