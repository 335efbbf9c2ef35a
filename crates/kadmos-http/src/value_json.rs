//! OpenDHT's JSON form of a [`Value`], as its proxy server and client exchange it: `id` a
//! decimal string (a number is accepted too: JSON numbers cannot hold every 64-bit id, which is
//! why OpenDHT writes strings), `data`, `sig` and `cypher` in standard base64, `owner` a PEM
//! public key (OpenDHT 2.x clients send it with a trailing NUL), `to` 40 hex digits. Fields are
//! written in alphabetical order, as OpenDHT's JSON writer does.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kadmos::opendht::{PublicKey, Value};
use kadmos::Id;
use kadmos_proto::opendht::MAX_VALUE_SIZE;
use serde_json::{Map, Value as Json};

/// Why a JSON object is not a value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueJsonError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("field `{0}` has the wrong type or is out of range")]
    WrongType(&'static str),
    #[error("field `{0}` is not valid base64")]
    Base64(&'static str),
    #[error("field `owner` is not a PEM public key")]
    Owner,
    #[error("field `to` is not 40 hex digits")]
    Recipient,
    #[error("the value is {0} bytes, more than the {MAX_VALUE_SIZE} bytes OpenDHT allows")]
    TooLarge(usize),
}

/// What a POST body carries besides the value: whether to keep it alive (`"permanent"`, `true` or
/// a push object; either way it asks for a permanent put).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedValue {
    pub value: Value,
    pub permanent: bool,
}

/// The value as OpenDHT's JSON object. `expired` adds `"expired": true` (listen streams).
pub fn to_json(value: &Value, expired: bool) -> Json {
    let mut json = Map::new();
    json.insert("id".into(), Json::String(value.id.to_string()));
    if value.is_encrypted() {
        json.insert("cypher".into(), Json::String(BASE64.encode(&value.cypher)));
    } else {
        if value.is_signed() {
            json.insert("sig".into(), Json::String(BASE64.encode(&value.signature)));
        }
        if let Some(owner) = &value.owner {
            json.insert("seq".into(), value.seq.into());
            // A key that does not parse is written as base64 DER: the client sees the value
            // rather than losing it, and cannot verify it (neither could anyone).
            let pem = PublicKey::from_der(owner).map(|k| k.to_pem()).unwrap_or_else(|_| BASE64.encode(owner));
            json.insert("owner".into(), Json::String(pem));
            if let Some(to) = &value.recipient {
                json.insert("to".into(), Json::String(to.to_string()));
            }
        }
        json.insert("type".into(), value.value_type.into());
        json.insert("data".into(), Json::String(BASE64.encode(&value.data)));
        if !value.user_type.is_empty() {
            json.insert("utype".into(), Json::String(value.user_type.clone()));
        }
    }
    if value.priority != 0 {
        json.insert("prio".into(), value.priority.into());
    }
    if !value.push_type.is_empty() {
        json.insert("pt".into(), Json::String(value.push_type.clone()));
    }
    if expired {
        json.insert("expired".into(), Json::Bool(true));
    }
    Json::Object(json)
}

/// The value as one line of a stream: its JSON and `\n`.
pub fn to_line(value: &Value, expired: bool) -> String {
    let mut line = to_json(value, expired).to_string();
    line.push('\n');
    line
}

/// Reads a value from OpenDHT's JSON (a POST body). Absent fields take their defaults (id 0:
/// the gateway picks one).
pub fn from_json(json: &Json) -> Result<PostedValue, ValueJsonError> {
    let object = json.as_object().ok_or(ValueJsonError::NotAnObject)?;
    let mut value = Value::new(0, 0, Vec::new());
    if let Some(id) = object.get("id") {
        value.id = match id {
            Json::String(s) => s.trim().parse().map_err(|_| ValueJsonError::WrongType("id"))?,
            Json::Number(n) => n.as_u64().ok_or(ValueJsonError::WrongType("id"))?,
            Json::Null => 0,
            _ => return Err(ValueJsonError::WrongType("id")),
        };
    }
    value.value_type = small_uint(object, "type")?.unwrap_or(0);
    value.seq = small_uint(object, "seq")?.unwrap_or(0);
    value.priority = small_uint(object, "prio")?.unwrap_or(0);
    value.data = base64_field(object, "data")?;
    value.signature = base64_field(object, "sig")?;
    value.cypher = base64_field(object, "cypher")?;
    value.user_type = string_field(object, "utype")?.unwrap_or_default().to_string();
    value.push_type = string_field(object, "pt")?.unwrap_or_default().to_string();
    if let Some(pem) = string_field(object, "owner")? {
        // OpenDHT 2.x counts GnuTLS's terminating NUL as part of the PEM text.
        let key = PublicKey::from_pem(pem.trim_end_matches('\0')).map_err(|_| ValueJsonError::Owner)?;
        value.owner = Some(key.to_der().to_vec());
    }
    if let Some(to) = string_field(object, "to")? {
        if to.len() != 40 {
            return Err(ValueJsonError::Recipient);
        }
        value.recipient = Some(to.parse::<Id>().map_err(|_| ValueJsonError::Recipient)?);
    }
    let size = value.data.len().max(value.cypher.len());
    if size > MAX_VALUE_SIZE {
        return Err(ValueJsonError::TooLarge(size));
    }
    let permanent = match object.get("permanent") {
        None | Some(Json::Null) | Some(Json::Bool(false)) => false,
        Some(Json::Bool(true)) | Some(Json::Object(_)) => true,
        Some(_) => return Err(ValueJsonError::WrongType("permanent")),
    };
    Ok(PostedValue { value, permanent })
}

fn small_uint<T: TryFrom<u64>>(object: &Map<String, Json>, field: &'static str) -> Result<Option<T>, ValueJsonError> {
    match object.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => {
            n.as_u64().and_then(|n| T::try_from(n).ok()).map(Some).ok_or(ValueJsonError::WrongType(field))
        }
        Some(_) => Err(ValueJsonError::WrongType(field)),
    }
}

fn string_field<'a>(object: &'a Map<String, Json>, field: &'static str) -> Result<Option<&'a str>, ValueJsonError> {
    match object.get(field) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValueJsonError::WrongType(field)),
    }
}

fn base64_field(object: &Map<String, Json>, field: &'static str) -> Result<Vec<u8>, ValueJsonError> {
    match string_field(object, field)? {
        None => Ok(Vec::new()),
        Some(text) => BASE64.decode(text.trim()).map_err(|_| ValueJsonError::Base64(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kadmos::opendht::{crypto, OwnerKey};
    use serde_json::json;

    /// A value captured from OpenDHT's proxy client reads as what it says, and writes back to
    /// the same JSON (field for field, id as a decimal string).
    #[test]
    fn captured_value_round_trips() {
        let captured =
            json!({"data":"aGVsbG8tZnJvbS1wcm94eS1jbGllbnQ=","id":"5699001094933931150","type":0,"utype":"text/plain"});
        let posted = from_json(&captured).unwrap();
        assert_eq!(posted.value.id, 5699001094933931150);
        assert_eq!(posted.value.data, b"hello-from-proxy-client");
        assert_eq!(posted.value.user_type, "text/plain");
        assert!(!posted.permanent);
        assert_eq!(to_json(&posted.value, false), captured);
        assert_eq!(to_json(&posted.value, true)["expired"], json!(true));
    }

    /// Numeric ids, `"permanent": true` or a push object, and absent fields are accepted.
    #[test]
    fn lenient_forms_are_accepted() {
        let posted = from_json(&json!({"id": 42, "data": "eA==", "permanent": true})).unwrap();
        assert_eq!((posted.value.id, posted.permanent, posted.value.data.as_slice()), (42, true, &b"x"[..]));
        let posted = from_json(&json!({"data": "", "permanent": {"key": "tok", "client_id": "c"}})).unwrap();
        assert_eq!((posted.value.id, posted.permanent), (0, true));
    }

    /// A signed value survives the trip through JSON, including an owner PEM with OpenDHT 2.x's
    /// trailing NUL, and its signature still verifies.
    #[test]
    fn signed_value_with_nul_terminated_owner_verifies() {
        let key = OwnerKey::generate(&mut rand::thread_rng(), 1024).unwrap();
        let mut value = Value::new(7, 0, b"signed".to_vec());
        value.user_type = "text/plain".into();
        crypto::sign_value(&key, &mut value).unwrap();
        let mut json = to_json(&value, false);
        let pem = json["owner"].as_str().unwrap().to_string() + "\0";
        json["owner"] = Json::String(pem);
        let back = from_json(&json).unwrap().value;
        assert_eq!(back, value);
        crypto::verify_value(&back).unwrap();
    }

    /// Malformed fields are refused with the field's name, never accepted as something else.
    #[test]
    fn malformed_fields_are_refused() {
        assert_eq!(from_json(&json!([1])), Err(ValueJsonError::NotAnObject));
        assert_eq!(from_json(&json!({"id": "x"})), Err(ValueJsonError::WrongType("id")));
        assert_eq!(from_json(&json!({"id": -1})), Err(ValueJsonError::WrongType("id")));
        assert_eq!(from_json(&json!({"type": 70000})), Err(ValueJsonError::WrongType("type")));
        assert_eq!(from_json(&json!({"data": "%%"})), Err(ValueJsonError::Base64("data")));
        assert_eq!(from_json(&json!({"owner": "nope"})), Err(ValueJsonError::Owner));
        assert_eq!(from_json(&json!({"to": "12"})), Err(ValueJsonError::Recipient));
        assert_eq!(from_json(&json!({"permanent": 3})), Err(ValueJsonError::WrongType("permanent")));
        let big = BASE64.encode(vec![0u8; MAX_VALUE_SIZE + 1]);
        assert_eq!(from_json(&json!({"data": big})), Err(ValueJsonError::TooLarge(MAX_VALUE_SIZE + 1)));
    }
}
