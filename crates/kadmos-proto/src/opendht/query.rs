use std::fmt;

use rmpv::ValueRef;

use super::msgpack::{self, Writer};
use super::value::Value;
use crate::kad::Id;

/// A value field a query selects or filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// 1: the value id.
    Id,
    /// 2: the value type.
    ValueType,
    /// 3: the owner's key id (SHA-1 of the owner's public key).
    OwnerPk,
    /// 4: the sequence number. See [`Query`] before sending it in a WHERE.
    SeqNum,
    /// 5: the user type.
    UserType,
}

impl Field {
    /// Every field, in wire order.
    pub const ALL: [Field; 5] = [Field::Id, Field::ValueType, Field::OwnerPk, Field::SeqNum, Field::UserType];

    /// The number that stands for the field on the wire.
    pub fn wire(self) -> u8 {
        match self {
            Field::Id => 1,
            Field::ValueType => 2,
            Field::OwnerPk => 3,
            Field::SeqNum => 4,
            Field::UserType => 5,
        }
    }

    /// The field a wire number stands for, if any.
    pub fn from_wire(n: u64) -> Option<Field> {
        Field::ALL.into_iter().find(|f| u64::from(f.wire()) == n)
    }

    /// The name in OpenDHT's text syntax.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::ValueType => "value_type",
            Field::OwnerPk => "owner_pk",
            Field::SeqNum => "seq",
            Field::UserType => "user_type",
        }
    }
}

/// One field's value: a WHERE condition, or one cell of a `fileds` row.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FieldValue {
    /// The value id.
    Id(u64),
    /// The value type.
    ValueType(u64),
    /// The owner's key id; values without owner have none and never match.
    OwnerPk(Id),
    /// The sequence number.
    SeqNum(u64),
    /// The user type.
    UserType(Vec<u8>),
}

impl FieldValue {
    /// The field this is a value of.
    pub fn field(&self) -> Field {
        match self {
            FieldValue::Id(_) => Field::Id,
            FieldValue::ValueType(_) => Field::ValueType,
            FieldValue::OwnerPk(_) => Field::OwnerPk,
            FieldValue::SeqNum(_) => Field::SeqNum,
            FieldValue::UserType(_) => Field::UserType,
        }
    }

    /// Whether `value` satisfies this condition (OpenDHT's `getLocalFilter`).
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            FieldValue::Id(id) => value.id == *id,
            FieldValue::ValueType(t) => u64::from(value.value_type) == *t,
            FieldValue::OwnerPk(owner) => value.owner_id() == Some(*owner),
            FieldValue::SeqNum(seq) => u64::from(value.seq) == *seq,
            FieldValue::UserType(t) => value.user_type.as_bytes() == t.as_slice(),
        }
    }

    /// This field of `value`, as a `fileds` row holds it (a value without owner has the zero id).
    pub fn of(value: &Value, field: Field) -> FieldValue {
        match field {
            Field::Id => FieldValue::Id(value.id),
            Field::ValueType => FieldValue::ValueType(u64::from(value.value_type)),
            Field::OwnerPk => FieldValue::OwnerPk(value.owner_id().unwrap_or(Id::ZERO)),
            Field::SeqNum => FieldValue::SeqNum(u64::from(value.seq)),
            Field::UserType => FieldValue::UserType(value.user_type.as_bytes().to_vec()),
        }
    }

    /// WHERE form: `{f, v}` with the user type as binary.
    fn write_condition(&self, w: &mut Writer<'_>) {
        w.map(2).key("f").uint(u64::from(self.field().wire())).key("v");
        match self {
            FieldValue::Id(n) | FieldValue::ValueType(n) | FieldValue::SeqNum(n) => w.uint(*n),
            FieldValue::OwnerPk(id) => w.bin(id.as_bytes()),
            FieldValue::UserType(t) => w.bin(t),
        };
    }

    fn read_condition(v: &ValueRef<'_>) -> Result<FieldValue, String> {
        let map = msgpack::as_map(v).ok_or("a WHERE condition is not a map")?;
        let field = msgpack::get(map, "f")
            .and_then(msgpack::as_uint)
            .and_then(Field::from_wire)
            .ok_or("a WHERE condition has no known field f")?;
        let value = msgpack::get(map, "v").ok_or("a WHERE condition has no value v")?;
        FieldValue::read_cell(field, value).ok_or_else(|| format!("bad value for WHERE {}", field.name()))
    }

    /// `fileds` row form: integers, the owner key id as binary, the user type as a string
    /// (binary when it is not UTF-8).
    fn write_cell(&self, w: &mut Writer<'_>) {
        match self {
            FieldValue::Id(n) | FieldValue::ValueType(n) | FieldValue::SeqNum(n) => w.uint(*n),
            FieldValue::OwnerPk(id) => w.bin(id.as_bytes()),
            FieldValue::UserType(t) => match std::str::from_utf8(t) {
                Ok(s) => w.str(s),
                Err(_) => w.bin(t),
            },
        };
    }

    fn read_cell(field: Field, v: &ValueRef<'_>) -> Option<FieldValue> {
        Some(match field {
            Field::Id => FieldValue::Id(msgpack::as_uint(v)?),
            Field::ValueType => FieldValue::ValueType(msgpack::as_uint(v)?),
            Field::SeqNum => FieldValue::SeqNum(msgpack::as_uint(v)?),
            Field::OwnerPk => FieldValue::OwnerPk(match msgpack::as_hash(v) {
                Some(id) => id,
                // OpenDHT packs the whole key here (see [`Query`]).
                None => Id::sha1_of(&msgpack::as_blob(v).filter(|k| k.len() > 20)?),
            }),
            Field::UserType => FieldValue::UserType(msgpack::as_blob(v)?),
        })
    }
}

/// A query on a key's values: which fields to return (none: whole values) and which values
/// to return (all conditions must hold).
///
/// Value queries: `SELECT <fields> WHERE <field>=<value>,...`, sent with `get` and `listen`
/// as `q`, and the field-only answers (`fileds`) a node sends back for a `SELECT`.
///
/// Wire forms (savoirfairelinux/opendht include/opendht/value.h, src/value.cpp,
/// src/network_engine.cpp `sendNodesValues`, src/parsed_message.h):
///
/// - query: `{s: [field, ...], w: [{f: field, v: value}, ...]}`; both keys are required.
///   A field is a small integer: 1 id, 2 value type, 3 owner key id, 4 seq, 5 user type.
/// - a WHERE value: an integer for id and value type, the 20-byte owner key id as binary, the
///   user type as binary.
/// - a `fileds` answer: `{f: [fields, ascending, no repeats], v: [row1 field1, row1 field2, ...,
///   row2 field1, ...]}`, flattened; `f` must not be empty.
///
/// Two OpenDHT quirks, kept in mind rather than copied:
///
/// - OpenDHT can neither pack nor unpack a `seq` filter in a WHERE (its `FieldValue` only
///   knows id, value type, owner and user type on the wire), so a datagram carrying one is
///   dropped by OpenDHT. kadmos reads one, but never send it to an OpenDHT node.
/// - For `owner_pk` in a `fileds` row, OpenDHT's sender packs the owner's whole public key,
///   while its reader expects the 20-byte key id and skips the row otherwise. kadmos sends the
///   key id, and on reading turns a whole key into its id (see [`Value::owner_id`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// SELECT: fields to answer with, in the order given; empty selects whole values.
    pub select: Vec<Field>,
    /// WHERE: conditions that all hold for every value answered.
    pub filters: Vec<FieldValue>,
}

impl Query {
    /// `SELECT` these fields of every value.
    pub fn select(fields: impl IntoIterator<Item = Field>) -> Query {
        let mut q = Query::default();
        for f in fields {
            if !q.select.contains(&f) {
                q.select.push(f);
            }
        }
        q
    }

    /// Adds a WHERE condition (repeats are dropped, as OpenDHT's builder does).
    pub fn and_where(mut self, condition: FieldValue) -> Query {
        if !self.filters.contains(&condition) {
            self.filters.push(condition);
        }
        self
    }

    /// Whether the query selects and filters nothing (it matches every value, whole).
    pub fn is_empty(&self) -> bool {
        self.select.is_empty() && self.filters.is_empty()
    }

    /// Whether `value` passes every WHERE condition.
    pub fn matches(&self, value: &Value) -> bool {
        self.filters.iter().all(|c| c.matches(value))
    }

    /// The selected fields as a reply carries them: ascending, without repeats.
    pub fn selection(&self) -> Vec<Field> {
        let mut fields = self.select.clone();
        fields.sort();
        fields.dedup();
        fields
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.map(2).key("s").array(self.select.len());
        for f in &self.select {
            w.uint(u64::from(f.wire()));
        }
        w.key("w").array(self.filters.len());
        for c in &self.filters {
            c.write_condition(w);
        }
    }

    pub(crate) fn read(v: &ValueRef<'_>) -> Result<Query, String> {
        let map = msgpack::as_map(v).ok_or("q is not a map")?;
        let filters = msgpack::get(map, "w").ok_or("q has no w")?;
        let select = msgpack::get(map, "s").ok_or("q has no s")?;
        let filters = msgpack::as_array(filters)
            .ok_or("q.w is not an array")?
            .iter()
            .map(FieldValue::read_condition)
            .collect::<Result<Vec<_>, _>>()?;
        let select = msgpack::as_array(select)
            .ok_or("q.s is not an array")?
            .iter()
            .map(|f| msgpack::as_uint(f).and_then(Field::from_wire).ok_or("q.s holds an unknown field"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Query { select, filters })
    }
}

impl fmt::Display for Query {
    /// OpenDHT's text syntax, e.g. `SELECT id,seq WHERE value_type=3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT ")?;
        if self.select.is_empty() {
            f.write_str("*")?;
        }
        for (i, field) in self.select.iter().enumerate() {
            write!(f, "{}{}", if i > 0 { "," } else { "" }, field.name())?;
        }
        for (i, c) in self.filters.iter().enumerate() {
            write!(f, "{}{}=", if i > 0 { "," } else { " WHERE " }, c.field().name())?;
            match c {
                FieldValue::Id(n) | FieldValue::ValueType(n) | FieldValue::SeqNum(n) => write!(f, "{n}")?,
                FieldValue::OwnerPk(id) => write!(f, "{id}")?,
                FieldValue::UserType(t) => write!(f, "{}", String::from_utf8_lossy(t))?,
            }
        }
        Ok(())
    }
}

/// A `fileds` answer: the selected fields of each matching value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldValues {
    /// Fields of every row, ascending, without repeats, never empty.
    pub fields: Vec<Field>,
    /// One row per value, one cell per field in `fields` order.
    pub rows: Vec<Vec<FieldValue>>,
}

impl FieldValues {
    /// The answer to `query` (which must select something) for these values.
    pub fn of<'v>(query: &Query, values: impl IntoIterator<Item = &'v Value>) -> FieldValues {
        let fields = query.selection();
        let rows = values.into_iter().map(|v| fields.iter().map(|f| FieldValue::of(v, *f)).collect()).collect();
        FieldValues { fields, rows }
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.map(2).key("f").array(self.fields.len());
        for f in &self.fields {
            w.uint(u64::from(f.wire()));
        }
        w.key("v").array(self.rows.iter().map(Vec::len).sum());
        for cell in self.rows.iter().flatten() {
            cell.write_cell(w);
        }
    }

    /// Reads a `fileds` map. Like OpenDHT, a row with an unreadable cell is skipped; unlike
    /// it, a field number we do not know makes every row unreadable rather than the message.
    pub(crate) fn read(v: &ValueRef<'_>) -> Result<FieldValues, String> {
        let map = msgpack::as_map(v).ok_or("fileds is not a map")?;
        let numbers = msgpack::get(map, "f").and_then(msgpack::as_array).ok_or("fileds has no f array")?;
        let mut unknown = false;
        let mut fields = Vec::with_capacity(numbers.len());
        for n in numbers {
            match Field::from_wire(msgpack::as_uint(n).ok_or("fileds.f holds a non-integer")?) {
                Some(f) => fields.push(f),
                None => unknown = true,
            }
        }
        fields.sort();
        fields.dedup();
        if fields.is_empty() {
            return Err("fileds selects no known field".into());
        }
        let mut rows = Vec::new();
        if let Some(cells) = msgpack::get(map, "v") {
            let cells = msgpack::as_array(cells).ok_or("fileds.v is not an array")?;
            if !unknown {
                rows = cells
                    .chunks_exact(fields.len())
                    .filter_map(|row| fields.iter().zip(row).map(|(f, c)| FieldValue::read_cell(*f, c)).collect())
                    .collect();
            }
        }
        Ok(FieldValues { fields, rows })
    }
}
