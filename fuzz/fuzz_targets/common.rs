//! Bodies of the relink-proto fuzz targets.
//!
//! Shared by the cargo-fuzz binaries next to this file (`#[path = "common.rs"] mod common;`)
//! and by the stable test `crates/relink-proto/tests/fuzz_seeds.rs`, which replays every file
//! of `fuzz/corpus/<target>/` through the same function. Each function takes raw fuzzer input
//! and panics only when relink-proto breaks a promise: decoders never panic, a decoded packet
//! re-encodes to the same packet, what the session sends decodes, a session that returned an
//! error is closed.

// Each fuzz binary uses one of these functions; the seed test uses all of them.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use relink_proto::binary::Data;
use relink_proto::engine::EnginePacket;
use relink_proto::packet::{Packet, PacketData, PacketKind};
use relink_proto::payload::Payload;
use relink_proto::session::{Session, SessionConfig, SessionEvent, SessionState, Transmit};
use std::time::{Duration, Instant};

/// Separates frames in `session` inputs (compact JSON never holds a raw newline).
pub const FRAME_SEPARATOR: u8 = b'\n';
/// Separates the JSON text from each attachment in `payload` inputs.
pub const ATTACHMENT_SEPARATOR: u8 = 0;

/// `EnginePacket::decode` on the input as lossy UTF-8; what decodes re-encodes to the same
/// packet, and a MESSAGE's data goes through [`socketio_packet`].
pub fn engine_packet(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(packet) = EnginePacket::decode(&text) else {
        return;
    };
    let wire = packet.to_wire();
    assert_eq!(
        EnginePacket::decode(&wire).as_ref(),
        Ok(&packet),
        "{text:?} decoded, re-encoded as {wire:?}"
    );
    if let EnginePacket::Message(message) = packet {
        socketio_packet(message.as_bytes());
    }
}

/// `Packet::decode` on the input as lossy UTF-8; what decodes re-encodes to the same packet,
/// and its arguments are a valid payload.
pub fn socketio_packet(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(packet) = Packet::decode(&text) else {
        return;
    };
    let wire = packet.to_wire();
    assert_eq!(
        Packet::decode(&wire).as_ref(),
        Ok(&packet),
        "{text:?} decoded, re-encoded as {wire:?}"
    );
    assert!(
        packet.kind.is_binary() || packet.attachments == 0,
        "{text:?}: attachments on a non-binary packet"
    );
    let args = match &packet.data {
        PacketData::Event { args, .. } | PacketData::Ack { args } => args,
        PacketData::None | PacketData::Json(_) => return,
    };
    let attachments = vec![Bytes::from_static(b"\x00\x01"); packet.attachments.min(8)];
    match Payload::from_json_array(args, attachments) {
        // Placeholders may name missing attachments: an error, never a panic.
        Ok(payload) => drop(payload.to_data()),
        Err(e) => panic!("{text:?}: decoded args {args:?} are not an array: {e}"),
    }
}

/// A session fed frames split on [`FRAME_SEPARATOR`], with a synthetic clock that advances
/// 1 ms per frame.
///
/// A frame starting with `0x00` is a binary frame (the rest of it). `0x01` followed by ASCII
/// digits advances the clock by that many milliseconds. `0x02` emits an event named by the rest
/// of the frame (with a binary argument if the name is odd-length, an ack id if even). `0x03`
/// disconnects. Anything else is a text frame (lossy UTF-8). Empty frames are skipped.
pub fn session(data: &[u8]) {
    let mut now = Instant::now();
    let mut session = Session::new(SessionConfig::default());
    let mut closed_events = 0;
    for frame in data.split(|&b| b == FRAME_SEPARATOR) {
        let Some((&first, rest)) = frame.split_first() else {
            continue;
        };
        now += Duration::from_millis(1);
        let result = match first {
            0x00 => session.handle_binary(Bytes::copy_from_slice(rest), now),
            0x01 => {
                let ms = rest
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .take(9)
                    .fold(0u64, |ms, &d| ms * 10 + u64::from(d - b'0'));
                now += Duration::from_millis(ms);
                session.handle_timeout(now);
                Ok(())
            }
            0x02 => {
                emit(&mut session, &String::from_utf8_lossy(rest));
                Ok(())
            }
            0x03 => {
                session.disconnect();
                Ok(())
            }
            _ => session.handle_text(&String::from_utf8_lossy(frame), now),
        };
        if let Err(e) = &result {
            assert_eq!(session.state(), SessionState::Closed, "open after {e}");
        }
        if session
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            session.handle_timeout(now);
            assert_eq!(session.state(), SessionState::Closed, "past the deadline");
        }
        drain_transmits(&mut session);
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Closed(_) => {
                    closed_events += 1;
                    assert_eq!(session.state(), SessionState::Closed);
                }
                SessionEvent::Event { args, .. } | SessionEvent::Ack { args, .. } => {
                    drop(args.to_data());
                }
                SessionEvent::Opened(_) | SessionEvent::Connected { .. } => {}
            }
        }
        assert!(closed_events <= 1, "closed twice");
        if session.state() == SessionState::Closed {
            assert_eq!(
                session.poll_timeout(),
                None,
                "a closed session has no deadline"
            );
        }
    }
}

fn emit(session: &mut Session, name: &str) {
    let Ok(mut args) = Payload::json(name) else {
        return;
    };
    if !name.len().is_multiple_of(2) {
        args.push_binary(name.as_bytes().to_vec());
    }
    let ack_id = name.len().is_multiple_of(2).then_some(name.len() as u64);
    if session.emit(name, &args, ack_id).is_err() {
        return;
    }
    let sent: Vec<Transmit> = std::iter::from_fn(|| session.poll_transmit()).collect();
    let Some((Transmit::Text(header), binaries)) = sent.split_first() else {
        panic!("emit queued {sent:?}");
    };
    let Ok(EnginePacket::Message(message)) = EnginePacket::decode(header) else {
        panic!("emit sent {header:?}");
    };
    let packet = match Packet::decode(message) {
        Ok(packet) => packet,
        Err(e) => panic!("emit sent {header:?}, which does not decode: {e}"),
    };
    let kind = if args.attachments().is_empty() {
        PacketKind::Event
    } else {
        PacketKind::BinaryEvent
    };
    assert_eq!(packet.kind, kind, "{header:?}");
    assert_eq!(packet.namespace, session.namespace(), "{header:?}");
    assert_eq!(packet.id, ack_id, "{header:?}");
    assert_eq!(packet.attachments, binaries.len(), "{header:?}");
    assert!(binaries.iter().all(|t| matches!(t, Transmit::Binary(_))));
    let PacketData::Event {
        name: sent_name, ..
    } = &packet.data
    else {
        panic!("emit sent {header:?}");
    };
    assert_eq!(sent_name, name, "{header:?}");
}

/// Everything the session sends must be something relink-proto itself decodes.
fn drain_transmits(session: &mut Session) {
    while let Some(transmit) = session.poll_transmit() {
        let Transmit::Text(text) = transmit else {
            continue;
        };
        match EnginePacket::decode(&text) {
            Ok(EnginePacket::Message(message)) => {
                if let Err(e) = Packet::decode(message) {
                    panic!("session sent {text:?}, which does not decode: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => panic!("session sent {text:?}, which does not decode: {e}"),
        }
    }
}

/// The input is a JSON array text, then attachments, separated by [`ATTACHMENT_SEPARATOR`].
/// `Payload::from_json_array` then `to_data`; what reassembles goes back through
/// `Payload::from_data` to the same trees.
pub fn payload(data: &[u8]) {
    let mut parts = data.split(|&b| b == ATTACHMENT_SEPARATOR);
    let json = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let attachments: Vec<Bytes> = parts.map(Bytes::copy_from_slice).collect();
    let Ok(payload) = Payload::from_json_array(&json, attachments.clone()) else {
        return;
    };
    // The normalised text is a fixed point.
    match Payload::from_json_array(payload.as_json(), attachments) {
        Ok(again) => assert_eq!(again, payload, "{json:?}"),
        Err(e) => panic!(
            "{json:?} normalised to {:?}, invalid: {e}",
            payload.as_json()
        ),
    }
    let Ok(items) = payload.to_data() else {
        return;
    };
    assert_eq!(items.is_empty(), payload.is_empty(), "{json:?}");
    let rebuilt = Payload::from_data(items.clone());
    match rebuilt.to_data() {
        Ok(back) => assert!(
            same_list(&items, &back),
            "{json:?}: {items:?} came back as {back:?}"
        ),
        Err(e) => panic!("{json:?}: rebuilt as {:?}, invalid: {e}", rebuilt.as_json()),
    }
}

fn same_list(a: &[Data], b: &[Data]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
}

/// Equality, except that floats may differ in the last bit: serde_json's default float
/// parser is not exact for every shortest representation it prints.
fn same(a: &Data, b: &Data) -> bool {
    match (a, b) {
        (Data::Number(x), Data::Number(y)) => {
            x == y
                || match (x.as_f64(), y.as_f64()) {
                    (Some(x), Some(y)) => {
                        (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
                    }
                    _ => false,
                }
        }
        (Data::Array(x), Data::Array(y)) => same_list(x, y),
        (Data::Object(x), Data::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k, v), (l, w))| k == l && same(v, w))
        }
        _ => a == b,
    }
}
