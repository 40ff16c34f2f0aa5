//! Event and ack arguments: a JSON array kept as text, plus binary attachments.

use crate::DecodeError;
use crate::binary::{self, Data};
use bytes::Bytes;
use bytes_utils::Str;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;

/// Bytes reserved for the argument text of a new payload.
const INITIAL_CAPACITY: usize = 128;

/// The arguments of an event or an acknowledgement.
///
/// ```
/// use relink_proto::Payload;
///
/// # fn main() -> Result<(), serde_json::Error> {
/// let args = Payload::json("ada")?.with(&36)?;
/// assert_eq!(args.as_json(), r#"["ada",36]"#);
/// let (name, age): (String, u8) = args.deserialize()?;
/// assert_eq!((name.as_str(), age), ("ada", 36));
/// assert_eq!(args.first::<String>()?.as_deref(), Some("ada"));
/// # Ok(()) }
/// ```
///
/// Arguments stay raw JSON text until somebody asks for them: an event nobody reads is never
/// parsed into values. Binary attachments travel beside the JSON, referenced from it by
/// `{"_placeholder":true,"num":N}` objects, exactly as on the wire.
///
/// The arguments of a received event share memory with the events decoded around it (a
/// chunk of 8 KiB at most, see `arena.rs`): cloning a received payload costs a reference
/// count, and a payload kept for long keeps its chunk. Arguments over 1 KiB have memory of
/// their own.
#[derive(Clone)]
pub struct Payload {
    json: Json,
    attachments: Vec<Bytes>,
}

/// The argument array's text: built here, or a slice of received memory.
#[derive(Clone)]
enum Json {
    Owned(String),
    Shared(Str),
}

impl Json {
    fn as_str(&self) -> &str {
        match self {
            Json::Owned(text) => text,
            Json::Shared(text) => text,
        }
    }

    fn into_string(self) -> String {
        match self {
            Json::Owned(text) => text,
            Json::Shared(text) => text.to_string(),
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json() && self.attachments == other.attachments
    }
}

impl Eq for Payload {}

impl Default for Payload {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payload")
            .field("json", &self.as_json())
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

impl Payload {
    /// No arguments.
    pub fn new() -> Self {
        // Room for typical arguments, so pushing them does not reallocate step by step.
        let mut json = String::with_capacity(INITIAL_CAPACITY);
        json.push_str("[]");
        Payload {
            json: Json::Owned(json),
            attachments: Vec::new(),
        }
    }

    /// One JSON argument.
    pub fn json<T: Serialize + ?Sized>(arg: &T) -> Result<Self, serde_json::Error> {
        // A one-element array, serialized in one allocation.
        Ok(Payload {
            json: Json::Owned(serde_json::to_string(&[arg])?),
            attachments: Vec::new(),
        })
    }

    /// Arguments from a tree that may hold binary anywhere (see [`Data`]).
    pub fn from_data(args: impl IntoIterator<Item = Data>) -> Self {
        let mut payload = Payload::new();
        for arg in args {
            payload.push_data(arg);
        }
        payload
    }

    /// Wraps a JSON array text and its attachments received from the wire.
    ///
    /// The caller guarantees `json` is a valid JSON array (the packet decoder checked it).
    pub(crate) fn from_wire(json: String, attachments: Vec<Bytes>) -> Self {
        Payload {
            json: Json::Owned(json),
            attachments,
        }
    }

    /// Wraps a JSON array text received from the wire, kept where it was decoded to.
    ///
    /// The caller guarantees `json` is a valid JSON array (the packet decoder checked it).
    pub(crate) fn from_shared(json: Str, attachments: Vec<Bytes>) -> Self {
        Payload {
            json: Json::Shared(json),
            attachments,
        }
    }

    /// Parses a JSON array text, checking it, with its attachments.
    pub fn from_json_array(json: &str, attachments: Vec<Bytes>) -> Result<Self, DecodeError> {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(json).map_err(|e| DecodeError::Json(e.to_string()))?;
        Ok(Payload {
            json: Json::Owned(crate::packet::join_array(&items)),
            attachments,
        })
    }

    /// Appends one JSON argument.
    pub fn push<T: Serialize + ?Sized>(&mut self, arg: &T) -> Result<(), serde_json::Error> {
        // Serialized straight into the array text, in place of its closing bracket.
        let json = std::mem::replace(&mut self.json, Json::Owned(String::new()));
        let mut buf = json.into_string().into_bytes();
        // serde_json grows the buffer a few bytes at a time; start with room.
        buf.reserve(INITIAL_CAPACITY / 2);
        buf.pop();
        let before = buf.len();
        if before > 1 {
            buf.push(b',');
        }
        let result = serde_json::to_writer(&mut buf, arg);
        if result.is_err() {
            // A failed serialization may have written part of its output.
            buf.truncate(before);
        }
        buf.push(b']');
        self.json = Json::Owned(match String::from_utf8(buf) {
            Ok(json) => json,
            // serde_json only writes UTF-8; were it ever not to, keep the text valid anyway.
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        });
        result
    }

    /// Appends one JSON argument, builder style.
    pub fn with<T: Serialize + ?Sized>(mut self, arg: &T) -> Result<Self, serde_json::Error> {
        self.push(arg)?;
        Ok(self)
    }

    /// Appends a binary argument.
    pub fn push_binary(&mut self, bytes: impl Into<Bytes>) {
        self.push_data(Data::Binary(bytes.into()));
    }

    /// Appends an argument that may hold binary anywhere inside it.
    pub fn push_data(&mut self, arg: Data) {
        let before = self.attachments.len();
        let attachments = RefCell::new(std::mem::take(&mut self.attachments));
        let placeheld = binary::WithPlaceholders {
            data: &arg,
            attachments: &attachments,
        };
        // Data holds only strings, numbers and string-keyed maps, so this cannot fail; if it
        // did, the argument would be left out whole, attachments included.
        let result = self.push(&placeheld);
        self.attachments = attachments.into_inner();
        if result.is_err() {
            self.attachments.truncate(before);
        }
    }

    /// The arguments as a JSON array text (binary as placeholders).
    pub fn as_json(&self) -> &str {
        self.json.as_str()
    }

    /// The binary attachments, in placeholder order.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.as_json() == "[]"
    }

    /// Deserializes the whole argument array, e.g. into `(String, u32)` or `Vec<Value>`.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.as_json())
    }

    /// Deserializes the first argument (the common single-argument case).
    pub fn first<T: DeserializeOwned>(&self) -> Result<Option<T>, serde_json::Error> {
        let mut items: Vec<&serde_json::value::RawValue> = serde_json::from_str(self.as_json())?;
        if items.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(items.swap_remove(0).get()).map(Some)
    }

    /// The arguments as trees with binary reassembled in place of placeholders.
    pub fn to_data(&self) -> Result<Vec<Data>, DecodeError> {
        let value: serde_json::Value =
            serde_json::from_str(self.as_json()).map_err(|e| DecodeError::Json(e.to_string()))?;
        match binary::reassemble(value, &self.attachments)? {
            Data::Array(items) => Ok(items),
            _ => Err(DecodeError::Shape {
                packet: "payload",
                expected: "an array",
            }),
        }
    }

    /// Splits into the JSON array text and the attachments.
    pub fn into_parts(self) -> (String, Vec<Bytes>) {
        (self.json.into_string(), self.attachments)
    }

    /// Removes the last argument if it is a JSON string, returning it.
    ///
    /// Connection state recovery appends the server's offset this way; relink takes it out so
    /// user code sees the arguments the server's code emitted.
    pub(crate) fn pop_trailing_string(&mut self) -> Option<String> {
        let (offset, json) = crate::packet::without_trailing_string(self.as_json())?;
        self.json = Json::Owned(json);
        Some(offset)
    }
}

impl From<Data> for Payload {
    fn from(arg: Data) -> Self {
        Payload::from_data([arg])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_json_arrays_without_intermediate_values() {
        let p = Payload::new()
            .with("a")
            .and_then(|p| p.with(&1))
            .and_then(|p| p.with(&json!({"k": [true]})))
            .expect("serializable");
        assert_eq!(p.as_json(), r#"["a",1,{"k":[true]}]"#);
        assert!(!p.is_empty());
        assert!(Payload::new().is_empty());
    }

    #[test]
    fn deserializes_tuples_and_first() {
        let p = Payload::json("x").and_then(|p| p.with(&5)).expect("ok");
        let (s, n): (String, u32) = p.deserialize().expect("tuple");
        assert_eq!((s.as_str(), n), ("x", 5));
        assert_eq!(p.first::<String>().expect("ok"), Some("x".to_string()));
        assert_eq!(Payload::new().first::<String>().expect("ok"), None);
    }

    #[test]
    fn binary_arguments_become_placeholders() {
        let mut p = Payload::json("name").expect("ok");
        p.push_binary(vec![1u8, 2]);
        p.push_data(Data::Array(vec![
            Data::Binary(Bytes::from_static(b"z")),
            Data::Null,
        ]));
        assert_eq!(
            p.as_json(),
            r#"["name",{"_placeholder":true,"num":0},[{"_placeholder":true,"num":1},null]]"#
        );
        assert_eq!(p.attachments().len(), 2);
        let data = p.to_data().expect("reassembles");
        assert_eq!(data[1], Data::Binary(Bytes::from_static(&[1, 2])));
        assert_eq!(
            data[2],
            Data::Array(vec![Data::Binary(Bytes::from_static(b"z")), Data::Null])
        );
    }

    #[test]
    fn pops_a_trailing_offset_only_when_it_is_a_string() {
        let mut p = Payload::from_json_array(r#"[1,"off-1"]"#, vec![]).expect("ok");
        assert_eq!(p.pop_trailing_string().as_deref(), Some("off-1"));
        assert_eq!(p.as_json(), "[1]");
        assert_eq!(p.pop_trailing_string(), None);
        assert_eq!(p.as_json(), "[1]");
    }

    #[test]
    fn from_json_array_rejects_non_arrays() {
        assert!(Payload::from_json_array("{}", vec![]).is_err());
        assert!(Payload::from_json_array("[1,", vec![]).is_err());
    }
}
