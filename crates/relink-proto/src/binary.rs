//! Binary attachments: `{"_placeholder":true,"num":N}` in the JSON, the bytes in frames of
//! their own after the packet.

use crate::DecodeError;
use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A JSON-like value that may also hold binary data anywhere inside it.
///
/// Use it to send or read arguments with attachments; plain JSON arguments are better served
/// by [`crate::Payload::push`] and [`crate::Payload::deserialize`].
///
/// ```
/// use relink_proto::{Payload, binary::Data};
/// use std::collections::BTreeMap;
///
/// let mut file = BTreeMap::new();
/// file.insert("name".to_owned(), Data::from("logo.png"));
/// file.insert("bytes".to_owned(), Data::from(vec![0x89, b'P', b'N', b'G']));
/// let args = Payload::from(Data::Object(file));
/// // On the wire: a placeholder in the JSON, the bytes in a frame of their own.
/// assert_eq!(
///     args.as_json(),
///     r#"[{"bytes":{"_placeholder":true,"num":0},"name":"logo.png"}]"#
/// );
/// assert_eq!(args.attachments().len(), 1);
/// // Reading them back puts the bytes in place again.
/// let Ok([Data::Object(back)]) = <[Data; 1]>::try_from(args.to_data().expect("valid")) else {
///     panic!("one object");
/// };
/// assert_eq!(back["bytes"], Data::from(vec![0x89, b'P', b'N', b'G']));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// JSON `null`.
    Null,
    /// JSON boolean.
    Bool(bool),
    /// JSON number.
    Number(serde_json::Number),
    /// JSON string.
    String(String),
    /// Binary data, sent as an attachment.
    Binary(Bytes),
    /// JSON array.
    Array(Vec<Data>),
    /// JSON object.
    Object(BTreeMap<String, Data>),
}

impl From<Value> for Data {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Data::Null,
            Value::Bool(b) => Data::Bool(b),
            Value::Number(n) => Data::Number(n),
            Value::String(s) => Data::String(s),
            Value::Array(items) => Data::Array(items.into_iter().map(Data::from).collect()),
            Value::Object(map) => {
                Data::Object(map.into_iter().map(|(k, v)| (k, Data::from(v))).collect())
            }
        }
    }
}

impl From<Bytes> for Data {
    fn from(bytes: Bytes) -> Self {
        Data::Binary(bytes)
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Self {
        Data::Binary(bytes.into())
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Data::String(s.to_owned())
    }
}

impl Data {
    /// The binary data, if this is binary.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Data::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// Converts to JSON, failing if any binary is inside.
    pub fn into_json(self) -> Option<Value> {
        Some(match self {
            Data::Null => Value::Null,
            Data::Bool(b) => Value::Bool(b),
            Data::Number(n) => Value::Number(n),
            Data::String(s) => Value::String(s),
            Data::Binary(_) => return None,
            Data::Array(items) => Value::Array(
                items
                    .into_iter()
                    .map(Data::into_json)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Data::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| v.into_json().map(|v| (k, v)))
                    .collect::<Option<Map<_, _>>>()?,
            ),
        })
    }
}

/// Replaces every binary in `data` with a placeholder numbered after those already in
/// `attachments`, moving the bytes there.
pub fn split(data: Data, attachments: &mut Vec<Bytes>) -> Value {
    match data {
        Data::Null => Value::Null,
        Data::Bool(b) => Value::Bool(b),
        Data::Number(n) => Value::Number(n),
        Data::String(s) => Value::String(s),
        Data::Binary(bytes) => {
            let num = attachments.len();
            attachments.push(bytes);
            placeholder(num)
        }
        Data::Array(items) => {
            Value::Array(items.into_iter().map(|d| split(d, attachments)).collect())
        }
        Data::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, split(v, attachments)))
                .collect(),
        ),
    }
}

/// Serializes `data` as JSON with placeholders in place of binary, numbered after those
/// already in `attachments` (walk order, as [`split`]), the bytes appended there. Writes
/// straight into the output: no intermediate JSON tree.
pub(crate) struct WithPlaceholders<'a> {
    pub(crate) data: &'a Data,
    pub(crate) attachments: &'a RefCell<Vec<Bytes>>,
}

impl Serialize for WithPlaceholders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let nested = |data| WithPlaceholders {
            data,
            attachments: self.attachments,
        };
        match self.data {
            Data::Null => serializer.serialize_unit(),
            Data::Bool(b) => serializer.serialize_bool(*b),
            Data::Number(n) => n.serialize(serializer),
            Data::String(s) => serializer.serialize_str(s),
            Data::Binary(bytes) => {
                let num = {
                    let mut attachments = self.attachments.borrow_mut();
                    attachments.push(bytes.clone());
                    attachments.len() - 1
                };
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("_placeholder", &true)?;
                map.serialize_entry("num", &num)?;
                map.end()
            }
            Data::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&nested(item))?;
                }
                seq.end()
            }
            Data::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(key, &nested(value))?;
                }
                out.end()
            }
        }
    }
}

fn placeholder(num: usize) -> Value {
    let mut map = Map::new();
    map.insert("_placeholder".into(), Value::Bool(true));
    map.insert("num".into(), Value::from(num));
    Value::Object(map)
}

/// Replaces every placeholder in `value` with the attachment it names.
pub fn reassemble(value: Value, attachments: &[Bytes]) -> Result<Data, DecodeError> {
    Ok(match value {
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                let num = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| DecodeError::Placeholder("missing num".into()))?;
                let bytes = usize::try_from(num)
                    .ok()
                    .and_then(|n| attachments.get(n))
                    .ok_or_else(|| {
                        DecodeError::Placeholder(format!(
                            "num {num} but {} attachments",
                            attachments.len()
                        ))
                    })?;
                Data::Binary(bytes.clone())
            } else {
                Data::Object(
                    map.into_iter()
                        .map(|(k, v)| reassemble(v, attachments).map(|d| (k, d)))
                        .collect::<Result<_, _>>()?,
                )
            }
        }
        Value::Array(items) => Data::Array(
            items
                .into_iter()
                .map(|v| reassemble(v, attachments))
                .collect::<Result<_, _>>()?,
        ),
        other => Data::from(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn split_numbers_placeholders_in_walk_order() {
        let data = Data::from(json!({"a": 1}));
        let Data::Object(mut map) = data else {
            panic!("object")
        };
        map.insert("bin".into(), Data::Binary(Bytes::from_static(b"x")));
        map.insert(
            "list".into(),
            Data::Array(vec![Data::Binary(Bytes::from_static(b"y"))]),
        );
        let mut attachments = vec![Bytes::from_static(b"before")];
        let value = split(Data::Object(map), &mut attachments);
        assert_eq!(
            value,
            json!({"a": 1, "bin": {"_placeholder": true, "num": 1}, "list": [{"_placeholder": true, "num": 2}]})
        );
        assert_eq!(attachments.len(), 3);
        let back = reassemble(value, &attachments).expect("valid");
        assert_eq!(
            back.into_json(),
            None,
            "binary does not convert to plain JSON"
        );
    }

    #[test]
    fn reassemble_rejects_out_of_range_and_malformed_placeholders() {
        let atts = [Bytes::from_static(b"a")];
        assert!(reassemble(json!([{"_placeholder": true, "num": 1}]), &atts).is_err());
        assert!(reassemble(json!([{"_placeholder": true}]), &atts).is_err());
        assert!(reassemble(json!([{"_placeholder": true, "num": -1}]), &atts).is_err());
        assert_eq!(
            reassemble(json!({"_placeholder": false, "num": 0}), &atts).expect("plain object"),
            Data::from(json!({"_placeholder": false, "num": 0}))
        );
    }
}
