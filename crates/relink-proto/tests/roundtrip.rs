//! Property tests: encoders and decoders are inverse, decoders and the session never panic.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use relink_proto::Payload;
use relink_proto::binary::Data;
use relink_proto::engine::{EnginePacket, OpenData};
use relink_proto::packet::{Packet, PacketData, PacketKind};
use relink_proto::session::{Session, SessionConfig, SessionEvent, SessionState, Transmit};
use serde_json::{Map, Value};
use std::time::{Duration, Instant};

const KINDS: [PacketKind; 7] = [
    PacketKind::Connect,
    PacketKind::Disconnect,
    PacketKind::Event,
    PacketKind::Ack,
    PacketKind::ConnectError,
    PacketKind::BinaryEvent,
    PacketKind::BinaryAck,
];

/// Any JSON value, floats included: packets keep arguments as text, so no float is re-parsed.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arb_array_text() -> impl Strategy<Value = String> {
    vec(arb_json(), 0..5).prop_map(|items| Value::Array(items).to_string())
}

fn arb_object_text() -> impl Strategy<Value = String> {
    btree_map(any::<String>(), arb_json(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()).to_string())
}

/// The root namespace, typical names, and anything else without the `,` that ends it.
fn arb_namespace() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("/".to_owned()),
        2 => "/[a-z0-9_-]{1,12}",
        1 => "/[^,]{1,12}",
    ]
}

fn arb_data_for(kind: PacketKind) -> BoxedStrategy<PacketData> {
    match kind {
        PacketKind::Connect => prop_oneof![
            Just(PacketData::None),
            arb_object_text().prop_map(PacketData::Json),
        ]
        .boxed(),
        PacketKind::Disconnect => Just(PacketData::None).boxed(),
        PacketKind::Event | PacketKind::BinaryEvent => (any::<String>(), arb_array_text())
            .prop_map(|(name, args)| PacketData::Event { name, args })
            .boxed(),
        PacketKind::Ack | PacketKind::BinaryAck => arb_array_text()
            .prop_map(|args| PacketData::Ack { args })
            .boxed(),
        // Objects, and the legacy bare string message.
        PacketKind::ConnectError => prop_oneof![
            3 => arb_object_text(),
            1 => any::<String>().prop_map(|s| Value::String(s).to_string()),
        ]
        .prop_map(PacketData::Json)
        .boxed(),
    }
}

/// Any packet the decoder can produce. Ids are allowed on every kind: the wire format has room
/// for one after any header, and the decoder reads it whatever the kind.
fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        proptest::sample::select(KINDS.as_slice()),
        arb_namespace(),
        option::of(any::<u64>()),
        0usize..5,
    )
        .prop_flat_map(|(kind, namespace, id, attachments)| {
            arb_data_for(kind).prop_map(move |data| Packet {
                kind,
                namespace: namespace.clone(),
                attachments: if kind.is_binary() { attachments } else { 0 },
                id,
                data,
            })
        })
}

fn arb_open() -> impl Strategy<Value = OpenData> {
    (
        any::<String>(),
        vec(any::<String>(), 0..3),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(sid, upgrades, interval, timeout, max_payload)| OpenData {
            sid,
            upgrades,
            ping_interval: Duration::from_millis(interval),
            ping_timeout: Duration::from_millis(timeout),
            max_payload,
        })
}

/// Plain JSON for payloads. Floats are multiples of 1/8 so that serde_json's default (not
/// exactly round-tripping) float parser reads back the very same value; keys are short, so
/// none is `_placeholder` (an object shaped like a placeholder *is* a placeholder, by design).
fn arb_payload_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i32..1_000_000).prop_map(|m| Value::from(f64::from(m) / 8.0)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A tree with binary anywhere inside it.
fn arb_data() -> impl Strategy<Value = Data> {
    let leaf = prop_oneof![
        2 => arb_payload_json().prop_map(Data::from),
        1 => vec(any::<u8>(), 0..16).prop_map(|b| Data::Binary(Bytes::from(b))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Data::Array),
            btree_map("\\PC{0,6}", inner, 0..4).prop_map(Data::Object),
        ]
    })
}

#[derive(Debug, Clone)]
enum Arg {
    Json(Value),
    Data(Data),
}

fn binaries(data: &Data) -> usize {
    match data {
        Data::Binary(_) => 1,
        Data::Array(items) => items.iter().map(binaries).sum(),
        Data::Object(map) => map.values().map(binaries).sum(),
        Data::Null | Data::Bool(_) | Data::Number(_) | Data::String(_) => 0,
    }
}

/// Frames a server might send, valid and not.
fn arb_text_frame() -> impl Strategy<Value = String> {
    let open = (0u64..1_000, 0u64..1_000, 0u64..2_000).prop_map(|(i, t, m)| {
        format!(
            r#"0{{"sid":"e1","upgrades":[],"pingInterval":{i},"pingTimeout":{t},"maxPayload":{m}}}"#
        )
    });
    prop_oneof![
        2 => open,
        2 => Just(r#"40{"sid":"s1"}"#.to_owned()),
        1 => Just(r#"40{"sid":"s1","pid":"p1"}"#.to_owned()),
        1 => Just(r#"44{"message":"unauthorized","data":{"reason":"empty token"}}"#.to_owned()),
        1 => Just(r#"451-["bin",{"_placeholder":true,"num":0}]"#.to_owned()),
        1 => Just(r#"461-3[{"_placeholder":true,"num":0}]"#.to_owned()),
        1 => Just(r#"42["tick",7,"o7"]"#.to_owned()),
        1 => proptest::sample::select(vec!["1", "2", "2probe", "3", "5", "6", "41", ""])
            .prop_map(str::to_owned),
        4 => arb_packet().prop_map(|p| format!("4{}", p.to_wire())),
        2 => any::<String>(),
        2 => "[0-6]{1,2}[-0-9/,\\[\\]{}\"a:_]{0,12}",
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Text(String),
    Binary(Vec<u8>),
    Wait(u64),
    Emit(String, bool),
    Disconnect,
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => arb_text_frame().prop_map(Step::Text),
        2 => vec(any::<u8>(), 0..8).prop_map(Step::Binary),
        2 => (0u64..1_500).prop_map(Step::Wait),
        1 => ("[a-z]{0,6}", any::<bool>()).prop_map(|(n, b)| Step::Emit(n, b)),
        1 => Just(Step::Disconnect),
    ]
}

proptest! {
    #[test]
    fn socketio_packets_round_trip(packet in arb_packet()) {
        let wire = packet.to_wire();
        prop_assert_eq!(Packet::decode(&wire), Ok(packet.clone()), "wire {:?}", wire);
        let frame = format!("4{wire}");
        prop_assert_eq!(EnginePacket::decode(&frame), Ok(EnginePacket::Message(&wire)));
    }

    #[test]
    fn engine_packets_round_trip(kind in 0u8..6, data in any::<String>()) {
        let packet = match kind {
            0 => EnginePacket::Close,
            1 => EnginePacket::Ping(&data),
            2 => EnginePacket::Pong(&data),
            3 => EnginePacket::Message(&data),
            4 => EnginePacket::Upgrade,
            _ => EnginePacket::Noop,
        };
        let wire = packet.to_wire();
        prop_assert_eq!(EnginePacket::decode(&wire), Ok(packet), "wire {:?}", wire);
    }

    #[test]
    fn engine_open_round_trips(open in arb_open()) {
        let wire = EnginePacket::Open(open.clone()).to_wire();
        prop_assert_eq!(EnginePacket::decode(&wire), Ok(EnginePacket::Open(open)), "wire {:?}", wire);
    }

    #[test]
    fn payload_trees_round_trip(args in vec(prop_oneof![
        arb_payload_json().prop_map(Arg::Json),
        arb_data().prop_map(Arg::Data),
    ], 0..6)) {
        let mut payload = Payload::new();
        let mut expected = Vec::new();
        for arg in args {
            match arg {
                Arg::Json(value) => {
                    payload.push(&value).unwrap();
                    expected.push(Data::from(value));
                }
                Arg::Data(data) => {
                    payload.push_data(data.clone());
                    expected.push(data);
                }
            }
        }
        prop_assert_eq!(payload.attachments().len(), expected.iter().map(binaries).sum::<usize>());
        prop_assert_eq!(payload.is_empty(), expected.is_empty());
        prop_assert_eq!(payload.to_data(), Ok(expected.clone()));
        prop_assert_eq!(&Payload::from_data(expected.clone()), &payload);
        // Written straight into the text, exactly as a JSON tree with placeholders would be.
        let mut via_tree = Vec::new();
        let values: Vec<Value> = expected
            .iter()
            .cloned()
            .map(|d| relink_proto::binary::split(d, &mut via_tree))
            .collect();
        prop_assert_eq!(payload.as_json(), Value::Array(values).to_string());
        prop_assert_eq!(payload.attachments(), &via_tree[..]);
        // As received: the same text and attachments from the wire.
        let received = Payload::from_json_array(payload.as_json(), payload.attachments().to_vec());
        prop_assert_eq!(received.as_ref(), Ok(&payload));
        prop_assert_eq!(received.unwrap().to_data(), Ok(expected));
    }

    #[test]
    fn frames_are_packets_at_their_exact_length(
        namespace in arb_namespace(),
        name in option::of(any::<String>()),
        data in vec(arb_data(), 0..4),
        id in option::of(any::<u64>()),
    ) {
        let args = Payload::from_data(data);
        // An ack always carries the id it answers.
        let id = if name.is_none() { Some(id.unwrap_or(7)) } else { id };
        let frame = relink_proto::packet::frame(&namespace, name.as_deref(), &args, id);
        prop_assert_eq!(frame.len(), frame.capacity(), "{:?}", frame);
        let binary = !args.attachments().is_empty();
        let packet = Packet {
            kind: match (name.is_some(), binary) {
                (true, false) => PacketKind::Event,
                (true, true) => PacketKind::BinaryEvent,
                (false, false) => PacketKind::Ack,
                (false, true) => PacketKind::BinaryAck,
            },
            namespace: if namespace.is_empty() { "/".into() } else { namespace },
            attachments: args.attachments().len(),
            id,
            data: match name {
                Some(name) => PacketData::Event { name, args: args.as_json().to_owned() },
                None => PacketData::Ack { args: args.as_json().to_owned() },
            },
        };
        prop_assert_eq!(&frame[1..], packet.to_wire());
        prop_assert_eq!(Packet::decode(&frame[1..]), Ok(packet));
    }

    #[test]
    fn decoders_never_panic_on_any_string(text in any::<String>()) {
        check_decoders(&text);
    }

    #[test]
    fn decoders_never_panic_on_wire_like_strings(
        text in "[0-6]{0,3}[-0-9/,\\[\\]{}\":a-z_ ]{0,24}"
    ) {
        check_decoders(&text);
    }
}

/// Decoding never panics; whatever decodes re-encodes to the same thing.
fn check_decoders(text: &str) {
    if let Ok(packet) = Packet::decode(text) {
        assert_eq!(Packet::decode(&packet.to_wire()), Ok(packet), "{text:?}");
    }
    if let Ok(packet) = EnginePacket::decode(text) {
        assert_eq!(
            EnginePacket::decode(&packet.to_wire()),
            Ok(packet),
            "{text:?}"
        );
    }
    if let Ok(payload) = Payload::from_json_array(text, vec![Bytes::from_static(b"x")]) {
        let _ = payload.to_data();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn session_never_panics(steps in vec(arb_step(), 0..40)) {
        let mut now = Instant::now();
        let mut session = Session::new(SessionConfig::default());
        for step in steps {
            now += Duration::from_millis(1);
            let result = match step {
                Step::Text(frame) => session.handle_text(&frame, now),
                Step::Binary(bytes) => session.handle_binary(Bytes::from(bytes), now),
                Step::Wait(ms) => {
                    now += Duration::from_millis(ms);
                    session.handle_timeout(now);
                    Ok(())
                }
                Step::Emit(name, binary) => {
                    let mut args = Payload::json(&name).unwrap();
                    if binary {
                        args.push_binary(name.clone().into_bytes());
                    }
                    let _ = session.emit(&name, &args, binary.then_some(1));
                    Ok(())
                }
                Step::Disconnect => {
                    session.disconnect();
                    Ok(())
                }
            };
            if let Err(e) = result {
                prop_assert_eq!(session.state(), SessionState::Closed, "still open after {}", e);
            }
            if session.state() == SessionState::Closed {
                prop_assert_eq!(session.poll_timeout(), None);
            }
            while let Some(transmit) = session.poll_transmit() {
                if let Transmit::Text(text) = transmit {
                    prop_assert!(EnginePacket::decode(&text).is_ok(), "sent {:?}", text);
                }
            }
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Event { args, .. } | SessionEvent::Ack { args, .. } => {
                        let _ = args.to_data();
                    }
                    SessionEvent::Closed(_) => {
                        prop_assert_eq!(session.state(), SessionState::Closed);
                    }
                    SessionEvent::Opened(_) | SessionEvent::Connected { .. } => {}
                }
            }
        }
    }
}

/// A session past the CONNECT reply; `pid` makes it one with connection state recovery.
fn connected_session(pid: bool, now: Instant) -> Session {
    let mut session = Session::new(SessionConfig::default());
    let open = r#"0{"sid":"e1","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    session.handle_text(open, now).unwrap();
    let reply = if pid {
        r#"40{"sid":"s1","pid":"p1"}"#
    } else {
        r#"40{"sid":"s1"}"#
    };
    session.handle_text(reply, now).unwrap();
    while session.poll_event().is_some() {}
    session
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the decoder hands the application is what the server sent, however the server
    /// spaced it, with the recovery offset taken out exactly when the server adds one.
    #[test]
    fn received_events_keep_their_arguments(
        args in vec(arb_payload_json(), 0..5),
        offset in option::of("\\PC{0,8}"),
        ack in option::of(0u64..1_000),
        pretty in any::<bool>(),
        ack_args in vec(arb_payload_json(), 0..3),
    ) {
        let now = Instant::now();
        let mut session = connected_session(offset.is_some(), now);
        let mut sent: Vec<Value> = vec![Value::from("ev")];
        sent.extend(args.iter().cloned());
        // Servers append the offset only to events without an ack id.
        let appended = offset.filter(|_| ack.is_none());
        if let Some(offset) = &appended {
            sent.push(Value::from(offset.clone()));
        }
        let text = |value: &Value| if pretty {
            serde_json::to_string_pretty(value).unwrap()
        } else {
            serde_json::to_string(value).unwrap()
        };
        let id = ack.map(|id| id.to_string()).unwrap_or_default();
        session.handle_text(&format!("42{id}{}", text(&Value::Array(sent))), now).unwrap();
        session.handle_text(&format!("437{}", text(&Value::Array(ack_args.clone()))), now).unwrap();
        match session.poll_event() {
            Some(SessionEvent::Event { name, args: got, ack_id, offset: got_offset }) => {
                prop_assert_eq!(&*name, "ev");
                prop_assert_eq!(got.deserialize::<Vec<Value>>().unwrap(), args);
                prop_assert_eq!(ack_id, ack);
                prop_assert_eq!(got_offset, appended);
            }
            other => prop_assert!(false, "got {:?}", other),
        }
        match session.poll_event() {
            Some(SessionEvent::Ack { id, args: got }) => {
                prop_assert_eq!(id, 7);
                prop_assert_eq!(got.deserialize::<Vec<Value>>().unwrap(), ack_args);
            }
            other => prop_assert!(false, "got {:?}", other),
        }
    }
}
