//! Arguments without ceremony: anything `Serialize` becomes an event's arguments.
//!
//! The rule, as a Socket.IO user writes `emit("move", x, y)`: a tuple is the argument list
//! (`(x, y)` is two arguments, `(v,)` one), `()` is none, and any other value is one
//! argument (a `Vec` is one array argument). serde serializes a fixed-size array like a
//! tuple, so `[a, b]` is two arguments too: wrap it, `([a, b],)`, to send one array. [`Payload`] stays for binary attachments and
//! arguments built ahead of time.

use crate::Payload;
use crate::packet::{self, PacketKind};
use crate::session::EncodedEvent;
use serde::Serialize;
use serde::ser::{Impossible, Serializer};

/// What an emit or an ack accepts as its arguments: a [`Payload`], or any `Serialize`
/// value (see the module's rule for tuples).
pub trait IntoArgs {
    /// The arguments as a payload.
    fn into_args(self) -> Result<Payload, serde_json::Error>;

    /// Event `name` for `namespace` with these arguments, encoded as its frame. A
    /// `Serialize` value is written straight into the frame, in one pass; a [`Payload`] is
    /// copied into it.
    fn into_event(self, namespace: &str, name: &str) -> Result<EncodedEvent, serde_json::Error>
    where
        Self: Sized,
    {
        Ok(EncodedEvent::new(namespace, name, &self.into_args()?))
    }

    /// The answer to the server's event `id` in `namespace` with these arguments, encoded
    /// as its frame; like [`IntoArgs::into_event`], in one pass for a `Serialize` value.
    fn into_ack(self, namespace: &str, id: u64) -> Result<EncodedEvent, serde_json::Error>
    where
        Self: Sized,
    {
        Ok(EncodedEvent::ack(namespace, id, &self.into_args()?))
    }
}

impl IntoArgs for Payload {
    fn into_args(self) -> Result<Payload, serde_json::Error> {
        Ok(self)
    }
}

impl<T: Serialize> IntoArgs for T {
    fn into_args(self) -> Result<Payload, serde_json::Error> {
        match shape(&self) {
            Shape::Unit => Ok(Payload::new()),
            // A tuple serializes as the JSON array that is the argument list, compact, as
            // the wire has it: nothing to check or re-join.
            Shape::Tuple => Ok(Payload::from_wire(
                serde_json::to_string(&self)?,
                Vec::new(),
            )),
            Shape::Other => Payload::json(&self),
        }
    }

    fn into_event(self, namespace: &str, name: &str) -> Result<EncodedEvent, serde_json::Error> {
        // Room for a small event's arguments: no regrowth for the common case.
        let mut header = String::with_capacity(128 + namespace.len() + name.len());
        header.push('4');
        packet::encode_header(&mut header, PacketKind::Event, 0, namespace, None);
        header.push('[');
        packet::push_json_string(&mut header, name);
        let mut out = header.into_bytes();
        match shape(&self) {
            Shape::Unit => out.push(b']'),
            Shape::Tuple => {
                // `42["name"` then `[a,b]`: the tuple's opening bracket becomes the comma
                // after the name, its closing one closes the event.
                let at = out.len();
                serde_json::to_writer(&mut out, &self)?;
                if out.len() == at + 2 {
                    out.truncate(at);
                    out.push(b']');
                } else {
                    out[at] = b',';
                }
            }
            Shape::Other => {
                out.push(b',');
                serde_json::to_writer(&mut out, &self)?;
                out.push(b']');
            }
        }
        // serde_json writes UTF-8 only.
        let text = String::from_utf8(out).map_err(serde::ser::Error::custom)?;
        Ok(EncodedEvent::from_text(text))
    }

    fn into_ack(self, namespace: &str, id: u64) -> Result<EncodedEvent, serde_json::Error> {
        let mut header = String::with_capacity(128 + namespace.len());
        header.push('4');
        packet::encode_header(&mut header, PacketKind::Ack, 0, namespace, Some(id));
        let mut out = header.into_bytes();
        match shape(&self) {
            Shape::Unit => out.extend_from_slice(b"[]"),
            // A tuple serializes as the argument list itself.
            Shape::Tuple => serde_json::to_writer(&mut out, &self)?,
            Shape::Other => {
                out.push(b'[');
                serde_json::to_writer(&mut out, &self)?;
                out.push(b']');
            }
        }
        let text = String::from_utf8(out).map_err(serde::ser::Error::custom)?;
        Ok(EncodedEvent::from_text(text))
    }
}

/// How a value serializes at its top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Unit,
    Tuple,
    Other,
}

/// Finds the shape without serializing anything: every method stops at once and says which
/// one was called.
fn shape<T: Serialize + ?Sized>(value: &T) -> Shape {
    match value.serialize(ShapeOf) {
        Err(Found(shape)) => shape,
        Ok(()) => Shape::Other,
    }
}

/// The "error" that carries the answer out of the serializer.
#[derive(Debug)]
struct Found(Shape);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl serde::ser::Error for Found {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Found(Shape::Other)
    }
}

struct ShapeOf;

macro_rules! other {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), Found> {
            Err(Found(Shape::Other))
        })*
    };
}

impl Serializer for ShapeOf {
    type Ok = ();
    type Error = Found;
    type SerializeSeq = Impossible<(), Found>;
    type SerializeTuple = Impossible<(), Found>;
    type SerializeTupleStruct = Impossible<(), Found>;
    type SerializeTupleVariant = Impossible<(), Found>;
    type SerializeMap = Impossible<(), Found>;
    type SerializeStruct = Impossible<(), Found>;
    type SerializeStructVariant = Impossible<(), Found>;

    other! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_unit(self) -> Result<(), Found> {
        Err(Found(Shape::Unit))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        Err(Found(Shape::Tuple))
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Found> {
        Err(Found(Shape::Other))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found(Shape::Other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_written_in_one_pass_is_the_event_encoded_from_its_payload() {
        fn same<T: Serialize + Clone>(value: T) {
            for ns in ["/", "/admin", "/room[1]"] {
                for name in ["move", "with \"quotes\""] {
                    let direct = value.clone().into_event(ns, name).expect("encodes");
                    let via =
                        EncodedEvent::new(ns, name, &value.clone().into_args().expect("args"));
                    assert_eq!(direct.text(), via.text());
                    let args = value.clone().into_args().expect("args");
                    assert_eq!(direct.args().as_json(), args.as_json());
                    let ack = value.clone().into_ack(ns, 12).expect("encodes");
                    assert_eq!(ack.text(), EncodedEvent::ack(ns, 12, &args).text());
                }
            }
        }
        same(());
        same((1, "two", [3, 4]));
        same((7,));
        same([1, 2]);
        same([0u8; 0]);
        same("one");
        same(vec![1, 2, 3]);
        same(serde_json::json!({"a": [1, {"b": null}]}));
        same(Some(5));
    }

    fn json(args: impl IntoArgs) -> String {
        args.into_args().expect("serializable").as_json().to_owned()
    }

    #[test]
    fn a_tuple_is_the_argument_list_anything_else_one_argument() {
        assert_eq!(json((1, "two")), r#"[1,"two"]"#);
        assert_eq!(json((vec![1, 2],)), "[[1,2]]");
        assert_eq!(json(()), "[]");
        assert_eq!(json("hi"), r#"["hi"]"#);
        assert_eq!(json(vec![1, 2]), "[[1,2]]");
        assert_eq!(json(serde_json::json!({"a": 1})), r#"[{"a":1}]"#);
        assert_eq!(json(Option::<u8>::None), "[null]");
        assert_eq!(json([1, 2]), "[1,2]", "serde: an array is a tuple");
        assert_eq!(json(([1, 2],)), "[[1,2]]");
        let payload = Payload::json(&5).expect("json");
        assert_eq!(json(payload), "[5]");
    }
}
