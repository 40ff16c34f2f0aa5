//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<json>]`.
//!
//! Decoding validates the JSON once and keeps it as text: event arguments are only parsed
//! into user types when somebody asks for them (see [`crate::Payload`]).

use crate::{DecodeError, Payload};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The default namespace.
pub const ROOT_NAMESPACE: &str = "/";

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// `0`: connect to a namespace (client: with auth; server: with `sid`).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event `["name", args...]`.
    Event,
    /// `3`: an acknowledgement `[args...]`.
    Ack,
    /// `4`: the namespace refused the connection.
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an acknowledgement with binary attachments.
    BinaryAck,
}

impl PacketKind {
    fn digit(self) -> char {
        match self {
            PacketKind::Connect => '0',
            PacketKind::Disconnect => '1',
            PacketKind::Event => '2',
            PacketKind::Ack => '3',
            PacketKind::ConnectError => '4',
            PacketKind::BinaryEvent => '5',
            PacketKind::BinaryAck => '6',
        }
    }

    fn from_digit(c: char) -> Option<Self> {
        Some(match c {
            '0' => PacketKind::Connect,
            '1' => PacketKind::Disconnect,
            '2' => PacketKind::Event,
            '3' => PacketKind::Ack,
            '4' => PacketKind::ConnectError,
            '5' => PacketKind::BinaryEvent,
            '6' => PacketKind::BinaryAck,
            _ => return None,
        })
    }

    /// Whether packets of this type carry an attachment count.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketKind::BinaryEvent | PacketKind::BinaryAck)
    }

    fn name(self) -> &'static str {
        match self {
            PacketKind::Connect => "CONNECT",
            PacketKind::Disconnect => "DISCONNECT",
            PacketKind::Event => "EVENT",
            PacketKind::Ack => "ACK",
            PacketKind::ConnectError => "CONNECT_ERROR",
            PacketKind::BinaryEvent => "BINARY_EVENT",
            PacketKind::BinaryAck => "BINARY_ACK",
        }
    }
}

/// What a packet carries, already split by shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketData {
    /// Nothing (DISCONNECT, or CONNECT without auth).
    None,
    /// A JSON value kept as text: CONNECT auth or reply, CONNECT_ERROR details.
    Json(String),
    /// An event: its name and its arguments as a JSON array (placeholders included).
    Event {
        /// The event name.
        name: String,
        /// The arguments after the name, as a JSON array.
        args: String,
    },
    /// Acknowledgement arguments as a JSON array.
    Ack {
        /// The arguments, as a JSON array.
        args: String,
    },
}

/// One Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketKind,
    /// The namespace, `/` by default.
    pub namespace: String,
    /// Number of binary attachments that follow (binary types only).
    pub attachments: usize,
    /// The ack id, if the sender wants an acknowledgement (or this is one).
    pub id: Option<u64>,
    /// The payload.
    pub data: PacketData,
}

/// More attachments than this in one packet is treated as malformed.
pub const MAX_ATTACHMENTS_WIRE: usize = 1 << 20;

/// A packet's header, borrowing from the frame: enough to decide whether to decode the rest.
pub(crate) struct Header<'a> {
    pub(crate) kind: PacketKind,
    pub(crate) namespace: &'a str,
    pub(crate) attachments: usize,
    pub(crate) id: Option<u64>,
    /// The JSON data after the header (may be empty).
    pub(crate) rest: &'a str,
}

impl<'a> Header<'a> {
    /// Decodes `<type>[<attachments>-][<namespace>,][<ack id>]` at the start of `text`.
    pub(crate) fn decode(text: &'a str) -> Result<Header<'a>, DecodeError> {
        let mut rest = text;
        let first = rest.chars().next().ok_or(DecodeError::Empty)?;
        let kind = PacketKind::from_digit(first).ok_or(DecodeError::UnknownPacketType(first))?;
        rest = &rest[first.len_utf8()..];

        let mut attachments = 0;
        if kind.is_binary() {
            let dash = rest.find('-').ok_or(DecodeError::Attachments)?;
            let digits = &rest[..dash];
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::Attachments);
            }
            attachments = digits
                .parse::<usize>()
                .map_err(|_| DecodeError::Attachments)?;
            if attachments > MAX_ATTACHMENTS_WIRE {
                return Err(DecodeError::Attachments);
            }
            rest = &rest[dash + 1..];
        }

        let namespace = if rest.starts_with('/') {
            match rest.find(',') {
                Some(comma) => {
                    let ns = &rest[..comma];
                    rest = &rest[comma + 1..];
                    ns
                }
                None => {
                    let ns = rest;
                    rest = "";
                    ns
                }
            }
        } else {
            ROOT_NAMESPACE
        };

        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = if digits > 0 {
            let id = rest[..digits]
                .parse::<u64>()
                .map_err(|_| DecodeError::AckId)?;
            rest = &rest[digits..];
            Some(id)
        } else {
            None
        };
        Ok(Header {
            kind,
            namespace,
            attachments,
            id,
            rest,
        })
    }

    /// Decodes the data after the header.
    pub(crate) fn data(&self) -> Result<PacketData, DecodeError> {
        decode_data(self.kind, self.rest)
    }
}

impl Packet {
    /// Decodes the data of an Engine.IO message (what follows the `4`).
    pub fn decode(text: &str) -> Result<Packet, DecodeError> {
        let header = Header::decode(text)?;
        let data = header.data()?;
        Ok(Packet {
            kind: header.kind,
            namespace: header.namespace.to_owned(),
            attachments: header.attachments,
            id: header.id,
            data,
        })
    }

    /// Appends the wire form (without the Engine.IO `4`) to `out`.
    pub fn encode(&self, out: &mut String) {
        encode_header(out, self.kind, self.attachments, &self.namespace, self.id);
        match &self.data {
            PacketData::None => {}
            PacketData::Json(json) => out.push_str(json),
            PacketData::Event { name, args } => encode_event_body(out, name, args),
            PacketData::Ack { args } => out.push_str(args),
        }
    }

    /// The wire form (without the Engine.IO `4`) as a new string.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }
}

/// Writes `<type>[<n>-][<nsp>,][<id>]`. The reference encoder writes the comma after a custom
/// namespace even when nothing follows; so do we, byte for byte.
pub(crate) fn encode_header(
    out: &mut String,
    kind: PacketKind,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
) {
    // itoa: core::fmt costs more than the rest of a small frame's header.
    let mut digits = itoa::Buffer::new();
    out.push(kind.digit());
    if kind.is_binary() {
        out.push_str(digits.format(attachments));
        out.push('-');
    }
    if namespace != ROOT_NAMESPACE && !namespace.is_empty() {
        out.push_str(namespace);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(digits.format(id));
    }
}

/// The Engine.IO text frame (`4` + packet) of an event or an ack carrying `args`, allocated
/// at its exact length: a frame whose capacity matches its length becomes the WebSocket
/// message's buffer as is, without another allocation.
///
/// `name` is the event name; `None` makes an acknowledgement (then `id` is the id acked).
pub fn frame(namespace: &str, name: Option<&str>, args: &Payload, id: Option<u64>) -> String {
    let attachments = args.attachments().len();
    let kind = match (name.is_some(), attachments == 0) {
        (true, true) => PacketKind::Event,
        (true, false) => PacketKind::BinaryEvent,
        (false, true) => PacketKind::Ack,
        (false, false) => PacketKind::BinaryAck,
    };
    let json = args.as_json();
    let inner = array_inner(json);
    // Escaping is rare in event names; when needed, the quoted name is made first.
    let quoted = name.filter(|n| needs_escape(n)).map(|n| {
        let mut q = String::new();
        push_json_string(&mut q, n);
        q
    });
    let body = match name {
        None => json.len(),
        Some(name) => {
            let name_len = quoted.as_ref().map_or(name.len() + 2, String::len);
            2 + name_len + if inner.is_empty() { 0 } else { 1 + inner.len() }
        }
    };
    let mut len = 2 + body;
    if kind.is_binary() {
        len += decimal_len(attachments as u64) + 1;
    }
    if namespace != ROOT_NAMESPACE && !namespace.is_empty() {
        len += namespace.len() + 1;
    }
    if let Some(id) = id {
        len += decimal_len(id);
    }
    let mut out = String::with_capacity(len);
    out.push('4');
    encode_header(&mut out, kind, attachments, namespace, id);
    match name {
        None => out.push_str(json),
        Some(name) => {
            out.push('[');
            match &quoted {
                Some(quoted) => out.push_str(quoted),
                None => {
                    out.push('"');
                    out.push_str(name);
                    out.push('"');
                }
            }
            push_args_tail(&mut out, inner);
        }
    }
    debug_assert_eq!(out.len(), len, "frame length computed exactly");
    out
}

/// How many decimal digits `n` takes.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// What is between the brackets of a JSON array text, trimmed.
fn array_inner(args: &str) -> &str {
    args.strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or("")
        .trim()
}

/// The arguments after the event name (`inner`: what is between the array's brackets),
/// and the closing `]`.
fn push_args_tail(out: &mut String, inner: &str) {
    if !inner.is_empty() {
        out.push(',');
        out.push_str(inner);
    }
    out.push(']');
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Writes `["name",arg1,...]` given the arguments as a JSON array.
pub(crate) fn encode_event_body(out: &mut String, name: &str, args: &str) {
    out.push('[');
    push_json_string(out, name);
    push_args_tail(out, array_inner(args));
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    if !needs_escape(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json escapes exactly as JSON requires; a &str always serializes.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

fn decode_data(kind: PacketKind, rest: &str) -> Result<PacketData, DecodeError> {
    let shape = |expected| DecodeError::Shape {
        packet: kind.name(),
        expected,
    };
    if rest.is_empty() {
        return match kind {
            PacketKind::Connect | PacketKind::Disconnect => Ok(PacketData::None),
            PacketKind::ConnectError => Err(shape("an object or a string")),
            PacketKind::Event | PacketKind::BinaryEvent => {
                Err(shape("an array starting with the event name"))
            }
            PacketKind::Ack | PacketKind::BinaryAck => Err(shape("an array")),
        };
    }
    match kind {
        PacketKind::Disconnect => Err(shape("empty")),
        PacketKind::Connect | PacketKind::ConnectError => {
            let raw: &RawValue = parse(rest)?;
            let text = raw.get();
            let ok = text.starts_with('{')
                || (kind == PacketKind::ConnectError && text.starts_with('"'));
            if !ok {
                return Err(shape(if kind == PacketKind::Connect {
                    "an object"
                } else {
                    "an object or a string"
                }));
            }
            Ok(PacketData::Json(text.to_owned()))
        }
        PacketKind::Event | PacketKind::BinaryEvent => {
            let (name, args) = decode_event_parts(kind, rest)?;
            Ok(PacketData::Event {
                name: name.into_owned(),
                args: args.to_array(),
            })
        }
        PacketKind::Ack | PacketKind::BinaryAck => Ok(PacketData::Ack {
            args: decode_ack_args(kind, rest)?.to_owned(),
        }),
    }
}

/// An ack's arguments: a JSON array text, validated, as it appears in `rest`.
pub(crate) fn decode_ack_args(kind: PacketKind, rest: &str) -> Result<&str, DecodeError> {
    let shape = || DecodeError::Shape {
        packet: kind.name(),
        expected: "an array",
    };
    let _: ArrayShape = parse(rest).map_err(|_| shape())?;
    // Validated: JSON whitespace, then the array, then whitespace.
    Ok(rest.trim_matches([' ', '\t', '\n', '\r']))
}

/// An event's name (borrowed unless it had escapes) and its arguments as they appear in the
/// frame.
pub(crate) fn decode_event_parts(
    kind: PacketKind,
    rest: &str,
) -> Result<(Cow<'_, str>, EventArgs<'_>), DecodeError> {
    let bad = || DecodeError::Shape {
        packet: kind.name(),
        expected: "an array starting with the event name",
    };
    // One pass: the JSON is validated while the name and where the arguments start and end
    // are noted; nothing is copied here.
    let ArrayShape {
        first: name,
        second: first,
        last,
    } = parse(rest).map_err(|_| bad())?;
    let name = name.ok_or_else(bad)?;
    let name = match name.get() {
        quoted if quoted.len() >= 2 && quoted.starts_with('"') && !quoted.contains('\\') => {
            Cow::Borrowed(&quoted[1..quoted.len() - 1])
        }
        quoted => Cow::Owned(serde_json::from_str::<String>(quoted).map_err(|_| bad())?),
    };
    // The last element is an argument only if there is one after the name.
    Ok((name, EventArgs::new(rest, first, first.and(last))))
}

/// `array` (a JSON array text) without its last element if that is a JSON string, and the
/// string; `None` otherwise.
pub(crate) fn without_trailing_string(array: &str) -> Option<(String, String)> {
    let shape: ArrayShape = parse(array).ok()?;
    let mut args = EventArgs::new(array, shape.first, shape.last);
    let offset = args.take_trailing_string()?;
    Some((offset, args.to_array()))
}

/// Arguments inside a validated text: everything from the first argument to the last,
/// without the brackets around them (`1,{"a":2}` of the event `["name",1,{"a":2}]`, or of
/// the arguments `[1,{"a":2}]`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventArgs<'a> {
    inner: &'a str,
    last: Option<&'a RawValue>,
}

impl<'a> EventArgs<'a> {
    /// `text` was validated as a whole; `first` and `last` borrow from it.
    fn new(text: &'a str, first: Option<&'a RawValue>, last: Option<&'a RawValue>) -> Self {
        let Some(first) = first else {
            return EventArgs {
                inner: "",
                last: None,
            };
        };
        let start = offset_in(text, first.get());
        // From the first argument to the closing bracket, without the space before it.
        let tail = text.get(start..).unwrap_or("").trim_end();
        let inner = tail.strip_suffix(']').unwrap_or(tail).trim_end();
        EventArgs { inner, last }
    }

    /// The arguments without their brackets.
    pub(crate) fn inner(&self) -> &'a str {
        self.inner
    }

    /// The arguments as a JSON array text, copied.
    pub(crate) fn to_array(self) -> String {
        let mut array = String::with_capacity(self.inner.len() + 2);
        array.push('[');
        array.push_str(self.inner);
        array.push(']');
        array
    }

    /// Removes the last argument if it is a JSON string, returning it (the offset that
    /// connection state recovery appends to every event).
    pub(crate) fn take_trailing_string(&mut self) -> Option<String> {
        let last = self.last.filter(|last| last.get().starts_with('"'))?;
        let offset: String = serde_json::from_str(last.get()).ok()?;
        let cut = offset_in(self.inner, last.get());
        let before = self.inner.get(..cut).unwrap_or("").trim_end();
        self.inner = before.strip_suffix(',').unwrap_or(before).trim_end();
        self.last = None;
        Some(offset)
    }
}

/// Where `part`, a slice of `text`, starts in it.
fn offset_in(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize)
}

/// A JSON array validated in one pass, element by element (validating it as one raw value
/// would make serde_json allocate a stack for anything nested two deep, such as `[{...}]`),
/// noting its first, second and last elements as they appear in the text (borrowed).
struct ArrayShape<'a> {
    first: Option<&'a RawValue>,
    second: Option<&'a RawValue>,
    last: Option<&'a RawValue>,
}

impl<'de> serde::Deserialize<'de> for ArrayShape<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ArrayShape<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let first: Option<&'de RawValue> = seq.next_element()?;
                let second: Option<&'de RawValue> = seq.next_element()?;
                let mut last = second.or(first);
                while let Some(next) = seq.next_element::<&'de RawValue>()? {
                    last = Some(next);
                }
                Ok(ArrayShape {
                    first,
                    second,
                    last,
                })
            }
        }
        deserializer.deserialize_seq(Visit)
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))
}

/// Builds a JSON array from already validated elements.
pub(crate) fn join_array(items: &[&RawValue]) -> String {
    let len = items.iter().map(|i| i.get().len() + 1).sum::<usize>() + 2;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.get());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ns: &str, id: Option<u64>, name: &str, args: &str) -> Packet {
        Packet {
            kind: PacketKind::Event,
            namespace: ns.into(),
            attachments: 0,
            id,
            data: PacketData::Event {
                name: name.into(),
                args: args.into(),
            },
        }
    }

    fn check(wire: &str, packet: Packet) {
        assert_eq!(Packet::decode(wire), Ok(packet.clone()), "decode {wire}");
        assert_eq!(packet.to_wire(), wire, "encode");
    }

    #[test]
    fn golden_vectors_from_the_wire() {
        check(
            r#"0{"token":"abc"}"#,
            Packet {
                kind: PacketKind::Connect,
                namespace: "/".into(),
                attachments: 0,
                id: None,
                data: PacketData::Json(r#"{"token":"abc"}"#.into()),
            },
        );
        check(
            "0",
            Packet {
                kind: PacketKind::Connect,
                namespace: "/".into(),
                attachments: 0,
                id: None,
                data: PacketData::None,
            },
        );
        check(
            r#"0/admin,{"token":"abc"}"#,
            Packet {
                kind: PacketKind::Connect,
                namespace: "/admin".into(),
                attachments: 0,
                id: None,
                data: PacketData::Json(r#"{"token":"abc"}"#.into()),
            },
        );
        check(
            r#"0{"sid":"s1","pid":"p1"}"#,
            Packet {
                kind: PacketKind::Connect,
                namespace: "/".into(),
                attachments: 0,
                id: None,
                data: PacketData::Json(r#"{"sid":"s1","pid":"p1"}"#.into()),
            },
        );
        check(
            "1",
            Packet {
                kind: PacketKind::Disconnect,
                namespace: "/".into(),
                attachments: 0,
                id: None,
                data: PacketData::None,
            },
        );
        check(
            "1/admin,",
            Packet {
                kind: PacketKind::Disconnect,
                namespace: "/admin".into(),
                attachments: 0,
                id: None,
                data: PacketData::None,
            },
        );
        check(
            r#"21["echo","plain"]"#,
            event("/", Some(1), "echo", r#"["plain"]"#),
        );
        check(r#"2["hello"]"#, event("/", None, "hello", "[]"));
        check(
            r#"2/admin,7["e",1,{"a":[2]}]"#,
            event("/admin", Some(7), "e", r#"[1,{"a":[2]}]"#),
        );
        check(
            r#"31[{"echoed":"plain"}]"#,
            Packet {
                kind: PacketKind::Ack,
                namespace: "/".into(),
                attachments: 0,
                id: Some(1),
                data: PacketData::Ack {
                    args: r#"[{"echoed":"plain"}]"#.into(),
                },
            },
        );
        check(
            r#"4{"message":"unauthorized","data":{"reason":"empty token"}}"#,
            Packet {
                kind: PacketKind::ConnectError,
                namespace: "/".into(),
                attachments: 0,
                id: None,
                data: PacketData::Json(
                    r#"{"message":"unauthorized","data":{"reason":"empty token"}}"#.into(),
                ),
            },
        );
        check(
            r#"51-["echo",{"_placeholder":true,"num":0}]"#,
            Packet {
                kind: PacketKind::BinaryEvent,
                namespace: "/".into(),
                attachments: 1,
                id: None,
                data: PacketData::Event {
                    name: "echo".into(),
                    args: r#"[{"_placeholder":true,"num":0}]"#.into(),
                },
            },
        );
        check(
            r#"62-/admin,12[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            Packet {
                kind: PacketKind::BinaryAck,
                namespace: "/admin".into(),
                attachments: 2,
                id: Some(12),
                data: PacketData::Ack {
                    args: r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.into(),
                },
            },
        );
    }

    #[test]
    fn namespace_without_trailing_comma_is_accepted() {
        let p = Packet::decode("1/admin").expect("valid");
        assert_eq!(p.namespace, "/admin");
        assert_eq!(p.kind, PacketKind::Disconnect);
    }

    #[test]
    fn arguments_are_kept_as_received() {
        let p = Packet::decode(r#"2[ "a" , 1 , [ 2 ] ]"#).expect("valid");
        assert_eq!(
            p.data,
            PacketData::Event {
                name: "a".into(),
                args: "[1 , [ 2 ]]".into()
            }
        );
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        type Check = fn(&DecodeError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| *e == DecodeError::Empty),
            ("9", |e| *e == DecodeError::UnknownPacketType('9')),
            ("5[\"a\"]", |e| *e == DecodeError::Attachments),
            ("5x-[\"a\"]", |e| *e == DecodeError::Attachments),
            ("599999999999999999999-[\"a\"]", |e| {
                *e == DecodeError::Attachments
            }),
            ("299999999999999999999999[\"a\"]", |e| {
                *e == DecodeError::AckId
            }),
            ("2", |e| matches!(e, DecodeError::Shape { .. })),
            ("2[]", |e| matches!(e, DecodeError::Shape { .. })),
            ("2[1]", |e| matches!(e, DecodeError::Shape { .. })),
            ("2{\"a\":1}", |e| matches!(e, DecodeError::Shape { .. })),
            ("2[\"a\"", |e| matches!(e, DecodeError::Shape { .. })),
            ("3{}", |e| matches!(e, DecodeError::Shape { .. })),
            ("0[1]", |e| matches!(e, DecodeError::Shape { .. })),
            ("0{", |e| matches!(e, DecodeError::Json(_))),
            ("1{}", |e| matches!(e, DecodeError::Shape { .. })),
            ("4", |e| matches!(e, DecodeError::Shape { .. })),
        ];
        for (wire, ok) in cases {
            let err = Packet::decode(wire).expect_err(wire);
            assert!(ok(&err), "{wire}: {err:?}");
        }
    }

    #[test]
    fn legacy_string_connect_error_is_accepted() {
        let p = Packet::decode(r#"4"Invalid namespace""#).expect("valid");
        assert_eq!(p.data, PacketData::Json(r#""Invalid namespace""#.into()));
    }

    #[test]
    fn escapes_event_names() {
        let p = event("/", None, "quo\"te", "[]");
        assert_eq!(p.to_wire(), r#"2["quo\"te"]"#);
        assert_eq!(Packet::decode(&p.to_wire()), Ok(p));
    }
}
