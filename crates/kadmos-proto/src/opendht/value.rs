use std::time::Duration;

use rmpv::ValueRef;

use super::msgpack::{self, MsgpackError, Writer};
use crate::kad::Id;

/// A value's id, unique under its key.
pub type ValueId = u64;

/// The id OpenDHT treats as "none": a `put` of a value with this id is refused (203).
pub(crate) const INVALID_VALUE_ID: ValueId = 0;

/// Largest value a node stores, counted by [`Value::size`] (OpenDHT's `MAX_VALUE_SIZE`).
pub const MAX_VALUE_SIZE: usize = 64 * 1024;

/// How long a value of a type nobody registered lives: 10 minutes.
pub(crate) const DEFAULT_EXPIRATION: Duration = Duration::from_secs(10 * 60);

/// A built-in value type: its numeric id and how long a stored value of that type lives
/// unless refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueType {
    /// The type id (`type` on the wire).
    pub id: u16,
    /// OpenDHT's name for the type.
    pub name: &'static str,
    /// How long a stored value of this type lives unless refreshed.
    pub expiration: Duration,
}

const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * MINUTE;

impl ValueType {
    /// Generic data; also what any unregistered type id is treated as.
    pub const USER_DATA: ValueType = ValueType { id: 0, name: "user data", expiration: DEFAULT_EXPIRATION };
    /// A message to a service (its store policy wants a non-empty service name).
    pub const DHT_MESSAGE: ValueType =
        ValueType { id: 1, name: "DHT message", expiration: Duration::from_secs(5 * MINUTE) };
    /// "I serve at this port": the storing node replaces the address with the sender's.
    pub const IP_SERVICE_ANNOUNCEMENT: ValueType =
        ValueType { id: 2, name: "IP service announcement", expiration: Duration::from_secs(15 * MINUTE) };
    /// An instant message.
    pub const IM_MESSAGE: ValueType =
        ValueType { id: 3, name: "instant message", expiration: Duration::from_secs(5 * MINUTE) };
    /// A request to trust a certificate.
    pub const TRUST_REQUEST: ValueType =
        ValueType { id: 4, name: "certificate trust request", expiration: Duration::from_secs(7 * DAY) };
    /// ICE candidates, for connecting peers through NAT.
    pub const ICE_CANDIDATES: ValueType =
        ValueType { id: 5, name: "ICE candidates", expiration: Duration::from_secs(MINUTE) };
    /// An X.509 certificate, stored only at its public key's id (registered by OpenDHT's
    /// secure layer, not the plain DHT).
    pub const CERTIFICATE: ValueType =
        ValueType { id: 8, name: "certificate", expiration: Duration::from_secs(7 * DAY) };

    /// Every type OpenDHT's secure DHT (what `DhtRunner` runs) registers at start.
    pub const BUILT_IN: [ValueType; 7] = [
        ValueType::USER_DATA,
        ValueType::DHT_MESSAGE,
        ValueType::IP_SERVICE_ANNOUNCEMENT,
        ValueType::IM_MESSAGE,
        ValueType::TRUST_REQUEST,
        ValueType::ICE_CANDIDATES,
        ValueType::CERTIFICATE,
    ];

    /// The built-in type with this id, if any.
    pub fn built_in(id: u16) -> Option<ValueType> {
        ValueType::BUILT_IN.into_iter().find(|t| t.id == id)
    }

    /// How long a value of type `id` lives: its built-in type's expiration, else
    /// USER_DATA's (OpenDHT's type store falls back to USER_DATA for unknown ids).
    pub fn expiration_of(id: u16) -> Duration {
        ValueType::built_in(id).map_or(DEFAULT_EXPIRATION, |t| t.expiration)
    }
}

/// One value stored under a key.
///
/// The fields mirror OpenDHT's `dht::Value`. A value is one of three kinds, told apart by its
/// fields: *encrypted* when `cypher` is non-empty (then only `id`, `priority` and `push_type`
/// travel with it; the rest is inside the cypher), *signed* when `owner` is set and
/// `signature` non-empty, otherwise *plain*.
///
/// OpenDHT values: what one key holds many of, and their msgpack form.
///
/// A value packs as a map `{id, dat, p?, pt?}`:
///
/// - `id`: 64-bit value id, unique under its key (0 means "no id" and is refused by `put`).
/// - `dat`: either the binary `cypher` (an encrypted value: nothing else is visible), or a map
///   `{body, sig?}` where `body` is `{seq?, owner?, to?, type, data, utype?}`. `seq`, `owner`
///   and `to` appear only in signed values (`to` only when it names a recipient), `sig` only
///   when signed, `utype` only when non-empty.
/// - `p`: push priority, only when non-zero; `pt`: push type, only when non-empty.
///
/// `body` is also exactly what a signature covers ([`Value::to_sign`]), and `{body, sig}` is
/// what encryption covers ([`Value::to_encrypt`]). Receivers do not keep the bytes they were
/// sent: they verify by packing the parsed body again. So our packing has to reproduce
/// msgpack-c's byte for byte (smallest encodings, OpenDHT's key order), and it does.
///
/// Facts from savoirfairelinux/opendht: include/opendht/value.h (`msgpack_pack`,
/// `msgpack_pack_to_sign`, `msgpack_pack_to_encrypt`, field types), src/value.cpp
/// (`msgpack_unpack`, `msgpack_unpack_body`, `size`), src/default_types.cpp and
/// include/opendht/securedht.h (built-in types), src/crypto.cpp (owner keys are packed as a DER
/// SubjectPublicKeyInfo; signatures are RSA with SHA-512).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Value {
    /// `id`: unique under the key; 0 is refused by `put`.
    pub id: ValueId,
    /// `type`: a [`ValueType`] id (or any other number an application registered).
    pub value_type: u16,
    /// `data`: the payload.
    pub data: Vec<u8>,
    /// `utype`: an application's own type tag, e.g. "text/plain"; empty when not sent.
    pub user_type: String,
    /// `seq`: sequence number of a signed value; only a higher one may replace it.
    pub seq: u16,
    /// `owner`: the signer's public key, as on the wire (DER SubjectPublicKeyInfo of an RSA
    /// key). Only sent for signed values.
    pub owner: Option<Vec<u8>>,
    /// `to`: the recipient's public key id, for values encrypted to (or signed for) someone.
    /// Only sent with an owner.
    pub recipient: Option<Id>,
    /// `sig`: RSA PKCS#1 v1.5 SHA-512 signature over [`Value::to_sign`].
    pub signature: Vec<u8>,
    /// `dat` as binary: the encrypted `{body, sig}` of a value encrypted to `recipient`.
    pub cypher: Vec<u8>,
    /// `p`: push notification priority (0 = high); only sent when non-zero.
    pub priority: u32,
    /// `pt`: push notification type, e.g. "audioCall"; only sent when non-empty.
    pub push_type: String,
}

/// Why bytes are not a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The bytes are not acceptable msgpack.
    #[error(transparent)]
    Msgpack(#[from] MsgpackError),
    /// The msgpack does not have a value's shape: what is wrong.
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

fn invalid(reason: &'static str) -> ValueError {
    ValueError::Invalid(reason)
}

impl Value {
    /// A plain value.
    pub fn new(id: ValueId, value_type: u16, data: impl Into<Vec<u8>>) -> Value {
        Value { id, value_type, data: data.into(), ..Value::default() }
    }

    /// Whether the value is encrypted (it has a `cypher`).
    pub fn is_encrypted(&self) -> bool {
        !self.cypher.is_empty()
    }

    /// Whether the value has an owner and a signature (not whether the signature verifies).
    pub fn is_signed(&self) -> bool {
        self.owner.is_some() && !self.signature.is_empty()
    }

    /// The size OpenDHT counts against [`MAX_VALUE_SIZE`] and storage quotas: the variable-length
    /// fields' bytes.
    pub fn size(&self) -> usize {
        self.cypher.len() + self.data.len() + self.signature.len() + self.user_type.len() + self.push_type.len()
    }

    /// The owner's key id, which `WHERE owner_pk=` and `SELECT owner_pk` compare: OpenDHT takes
    /// GnuTLS's key id, the SHA-1 of the DER SubjectPublicKeyInfo, which is what `owner` holds.
    pub fn owner_id(&self) -> Option<Id> {
        self.owner.as_deref().map(Id::sha1_of)
    }

    /// How long this value lives when stored (by its type).
    pub fn expiration(&self) -> Duration {
        ValueType::expiration_of(self.value_type)
    }

    /// Whether two values hold the same content, ignoring their ids (OpenDHT's
    /// `contentEquals`: a `put` of an existing id with equal content only refreshes it).
    pub fn content_equals(&self, other: &Value) -> bool {
        if self.is_encrypted() {
            return self.cypher == other.cypher;
        }
        self.owner == other.owner
            && self.value_type == other.value_type
            && self.data == other.data
            && self.user_type == other.user_type
            && self.signature == other.signature
    }

    /// The packed `body`: exactly the bytes an owner signs and a verifier checks.
    pub fn to_sign(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 32);
        self.write_body(&mut Writer::new(&mut out));
        out
    }

    /// The packed `dat`: for a signed (or plain) value `{body, sig?}`, which is what gets
    /// encrypted to a recipient; for an encrypted value its cypher as a binary.
    pub fn to_encrypt(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 64);
        self.write_dat(&mut Writer::new(&mut out));
        out
    }

    /// Appends the packed value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write(&mut Writer::new(out));
    }

    /// The packed value (OpenDHT's `getPacked`); what `p` fragments carry.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 64);
        self.encode(&mut out);
        out
    }

    /// Reads one packed value.
    pub fn decode(bytes: &[u8]) -> Result<Value, ValueError> {
        Value::from_msgpack(&msgpack::read(bytes)?)
    }

    /// Reads the plaintext of a decrypted cypher (a packed `{body, sig}`) as the value with
    /// this id. The caller still checks that `recipient` is its own key id and the signature.
    pub fn from_decrypted(id: ValueId, plaintext: &[u8]) -> Result<Value, ValueError> {
        let mut value = Value { id, ..Value::default() };
        value.read_dat(&msgpack::read(plaintext)?)?;
        if value.is_encrypted() {
            return Err(invalid("decrypted data is itself encrypted"));
        }
        Ok(value)
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        let extra = usize::from(self.priority != 0) + usize::from(!self.push_type.is_empty());
        w.map(2 + extra);
        w.key("id").uint(self.id);
        w.key("dat");
        self.write_dat(w);
        if self.priority != 0 {
            w.key("p").uint(u64::from(self.priority));
        }
        if !self.push_type.is_empty() {
            w.key("pt").str(&self.push_type);
        }
    }

    fn write_dat(&self, w: &mut Writer<'_>) {
        if self.is_encrypted() {
            w.bin(&self.cypher);
            return;
        }
        let signed = self.is_signed();
        w.map(1 + usize::from(signed));
        w.key("body");
        self.write_body(w);
        if signed {
            w.key("sig").bin(&self.signature);
        }
    }

    fn write_body(&self, w: &mut Writer<'_>) {
        let recipient = self.recipient.filter(|r| *r != Id::ZERO);
        let owned = match &self.owner {
            Some(_) if recipient.is_some() => 5,
            Some(_) => 4,
            None => 2,
        };
        w.map(owned + usize::from(!self.user_type.is_empty()));
        if let Some(owner) = &self.owner {
            w.key("seq").uint(u64::from(self.seq));
            w.key("owner").bin(owner);
            if let Some(to) = recipient {
                w.key("to").bin(to.as_bytes());
            }
        }
        w.key("type").uint(u64::from(self.value_type));
        w.key("data").bin(&self.data);
        if !self.user_type.is_empty() {
            w.key("utype").str(&self.user_type);
        }
    }

    /// Reads a value object the way OpenDHT does: `id` and `dat` required, `p` and `pt`
    /// optional, anything else ignored.
    pub(crate) fn from_msgpack(v: &ValueRef<'_>) -> Result<Value, ValueError> {
        let map = msgpack::as_map(v).ok_or(invalid("not a map"))?;
        if map.len() < 2 {
            return Err(invalid("fewer than two fields"));
        }
        let id = msgpack::get(map, "id").ok_or(invalid("no id"))?;
        let mut value = Value { id: msgpack::as_uint(id).ok_or(invalid("id is not a u64"))?, ..Value::default() };
        value.read_dat(msgpack::get(map, "dat").ok_or(invalid("no dat"))?)?;
        if let Some(p) = msgpack::get(map, "p") {
            value.priority = msgpack::as_u32(p).ok_or(invalid("p is not a u32"))?;
        }
        if let Some(pt) = msgpack::get(map, "pt") {
            value.push_type = msgpack::as_text(pt).ok_or(invalid("pt is not text"))?;
        }
        Ok(value)
    }

    fn read_dat(&mut self, dat: &ValueRef<'_>) -> Result<(), ValueError> {
        if let ValueRef::Binary(cypher) = dat {
            self.cypher = cypher.to_vec();
            return Ok(());
        }
        let dat = msgpack::as_map(dat).ok_or(invalid("dat is neither binary nor map"))?;
        let body = msgpack::get(dat, "body").and_then(msgpack::as_map).ok_or(invalid("no body map"))?;
        self.data = msgpack::get(body, "data").and_then(msgpack::as_blob).ok_or(invalid("no data bytes"))?;
        self.value_type = msgpack::get(body, "type").and_then(msgpack::as_u16).ok_or(invalid("no u16 type"))?;
        if let Some(utype) = msgpack::get(body, "utype") {
            self.user_type = msgpack::as_text(utype).ok_or(invalid("utype is not text"))?;
        }
        // seq, to and sig only mean something for an owned value; OpenDHT ignores them otherwise.
        if let Some(owner) = msgpack::get(body, "owner") {
            self.seq = msgpack::get(body, "seq").and_then(msgpack::as_u16).ok_or(invalid("owner without u16 seq"))?;
            let owner = msgpack::as_blob(owner).filter(|o| !o.is_empty()).ok_or(invalid("owner is not a key"))?;
            self.owner = Some(owner);
            if let Some(to) = msgpack::get(body, "to") {
                let to = msgpack::as_hash(to).ok_or(invalid("to is not a 20-byte hash"))?;
                self.recipient = Some(to).filter(|t| *t != Id::ZERO);
            }
            // OpenDHT would take an empty signature and then treat the value as unsigned but
            // owned, which lets anyone claim an owner; we refuse such a value.
            self.signature = msgpack::get(dat, "sig")
                .and_then(msgpack::as_blob)
                .filter(|s| !s.is_empty())
                .ok_or(invalid("owner without signature"))?;
        }
        Ok(())
    }
}
