//! Engine.IO v4 packets as they travel in WebSocket text frames.
//!
//! Over WebSocket every text frame is one packet: a type digit followed by its data. Binary
//! frames carry raw Socket.IO attachments and have no type prefix, so they never reach this
//! decoder.

use crate::DecodeError;
use serde::Deserialize;
use std::time::Duration;

/// The `maxPayload` Engine.IO servers announce when they do not say otherwise.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1_000_000;

/// The errors engine.io answers an HTTP request with: status 400 (403 for `Forbidden`) and a
/// JSON body `{"code":N,"message":"..."}`. Over long-polling a client meets them on any
/// request; `SessionIdUnknown` means the session is gone and a new one must start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// 0: the server does not allow this transport.
    TransportUnknown,
    /// 1: no such session (expired, closed, or a second GET of the same session).
    SessionIdUnknown,
    /// 2: a handshake with a method other than GET.
    BadHandshakeMethod,
    /// 3: a malformed request.
    BadRequest,
    /// 4: refused by the server's `allowRequest`.
    Forbidden,
    /// 5: an `EIO` version the server does not speak.
    UnsupportedProtocolVersion,
}

impl EngineError {
    /// The error for engine.io's `code`, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => EngineError::TransportUnknown,
            1 => EngineError::SessionIdUnknown,
            2 => EngineError::BadHandshakeMethod,
            3 => EngineError::BadRequest,
            4 => EngineError::Forbidden,
            5 => EngineError::UnsupportedProtocolVersion,
            _ => return None,
        })
    }

    /// engine.io's code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// engine.io's message for it.
    pub fn message(self) -> &'static str {
        match self {
            EngineError::TransportUnknown => "Transport unknown",
            EngineError::SessionIdUnknown => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

/// One Engine.IO packet, borrowing its data from the frame it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket<'a> {
    /// `0{...}`: the handshake, first frame from the server.
    Open(OpenData),
    /// `1`: the server closes the Engine.IO session.
    Close,
    /// `2`: a heartbeat from the server (v4: the server pings); data is usually empty.
    Ping(&'a str),
    /// `3`: the answer to a ping.
    Pong(&'a str),
    /// `4...`: a message; over Socket.IO, an encoded [`crate::packet::Packet`].
    Message(&'a str),
    /// `5`: transport upgrade (unused on a WebSocket-only client).
    Upgrade,
    /// `6`: no operation.
    Noop,
}

/// The OPEN handshake data, with durations already converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenData {
    /// Engine.IO session id.
    pub sid: String,
    /// Transports the server offers to upgrade to.
    pub upgrades: Vec<String>,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// How long the server waits for a pong (and we wait beyond the interval for a ping).
    pub ping_timeout: Duration,
    /// The largest message the server accepts from us, in bytes.
    pub max_payload: u64,
}

impl OpenData {
    /// How long the link may stay silent before it counts as dead.
    pub fn heartbeat_window(&self) -> Duration {
        self.ping_interval.saturating_add(self.ping_timeout)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenWire {
    sid: String,
    #[serde(default)]
    upgrades: Vec<String>,
    ping_interval: u64,
    ping_timeout: u64,
    #[serde(default)]
    max_payload: Option<u64>,
}

impl<'a> EnginePacket<'a> {
    /// Decodes one text frame.
    pub fn decode(frame: &'a str) -> Result<Self, DecodeError> {
        let mut chars = frame.chars();
        let kind = chars.next().ok_or(DecodeError::Empty)?;
        let data = chars.as_str();
        Ok(match kind {
            '0' => {
                let wire: OpenWire = serde_json::from_str(data)
                    .map_err(|e| DecodeError::Handshake(e.to_string()))?;
                EnginePacket::Open(OpenData {
                    sid: wire.sid,
                    upgrades: wire.upgrades,
                    ping_interval: Duration::from_millis(wire.ping_interval),
                    ping_timeout: Duration::from_millis(wire.ping_timeout),
                    max_payload: wire.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD),
                })
            }
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(data),
            '3' => EnginePacket::Pong(data),
            '4' => EnginePacket::Message(data),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            other => return Err(DecodeError::UnknownEngineType(other)),
        })
    }

    /// Appends the wire form of this packet to `out`.
    pub fn encode(&self, out: &mut String) {
        match self {
            EnginePacket::Open(open) => {
                out.push('0');
                let wire = serde_json::json!({
                    "sid": open.sid,
                    "upgrades": open.upgrades,
                    "pingInterval": open.ping_interval.as_millis() as u64,
                    "pingTimeout": open.ping_timeout.as_millis() as u64,
                    "maxPayload": open.max_payload,
                });
                out.push_str(&wire.to_string());
            }
            EnginePacket::Close => out.push('1'),
            EnginePacket::Ping(data) => {
                out.push('2');
                out.push_str(data);
            }
            EnginePacket::Pong(data) => {
                out.push('3');
                out.push_str(data);
            }
            EnginePacket::Message(data) => {
                out.push('4');
                out.push_str(data);
            }
            EnginePacket::Upgrade => out.push('5'),
            EnginePacket::Noop => out.push('6'),
        }
    }

    /// The wire form of this packet as a new string.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_error_codes_round_trip() {
        for code in 0..=5 {
            let error = EngineError::from_code(code).expect("known code");
            assert_eq!(error.code(), code);
            assert!(!error.message().is_empty());
        }
        assert_eq!(EngineError::from_code(6), None);
        assert_eq!(
            EngineError::SessionIdUnknown.message(),
            "Session ID unknown"
        );
    }

    #[test]
    fn decodes_the_open_frame_node_sends() {
        let frame = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let EnginePacket::Open(open) = EnginePacket::decode(frame).expect("valid open") else {
            panic!("not an open packet");
        };
        assert_eq!(open.sid, "lv_VI97HAXpY6yYWAAAC");
        assert_eq!(open.ping_interval, Duration::from_secs(25));
        assert_eq!(open.ping_timeout, Duration::from_secs(20));
        assert_eq!(open.max_payload, 1_000_000);
        assert_eq!(open.heartbeat_window(), Duration::from_secs(45));
    }

    #[test]
    fn open_without_max_payload_uses_the_default() {
        let frame = r#"0{"sid":"a","upgrades":["websocket"],"pingInterval":1,"pingTimeout":2}"#;
        let EnginePacket::Open(open) = EnginePacket::decode(frame).expect("valid open") else {
            panic!("not an open packet");
        };
        assert_eq!(open.max_payload, DEFAULT_MAX_PAYLOAD);
        assert_eq!(open.upgrades, vec!["websocket".to_string()]);
    }

    #[test]
    fn open_with_missing_fields_is_a_handshake_error() {
        for frame in [
            "0",
            "0{}",
            r#"0{"sid":"a"}"#,
            r#"0{"sid":1,"pingInterval":1,"pingTimeout":1}"#,
        ] {
            assert!(
                matches!(EnginePacket::decode(frame), Err(DecodeError::Handshake(_))),
                "{frame}"
            );
        }
    }

    #[test]
    fn simple_packets_have_exact_wire_strings() {
        let cases = [
            ("1", EnginePacket::Close),
            ("2", EnginePacket::Ping("")),
            ("2probe", EnginePacket::Ping("probe")),
            ("3", EnginePacket::Pong("")),
            ("3probe", EnginePacket::Pong("probe")),
            ("40", EnginePacket::Message("0")),
            ("42[\"a\"]", EnginePacket::Message("2[\"a\"]")),
            ("5", EnginePacket::Upgrade),
            ("6", EnginePacket::Noop),
        ];
        for (wire, packet) in cases {
            assert_eq!(EnginePacket::decode(wire).as_ref(), Ok(&packet), "{wire}");
            assert_eq!(packet.to_wire(), wire);
        }
    }

    #[test]
    fn unknown_types_and_empty_frames_are_errors() {
        assert_eq!(EnginePacket::decode(""), Err(DecodeError::Empty));
        assert_eq!(
            EnginePacket::decode("7"),
            Err(DecodeError::UnknownEngineType('7'))
        );
        assert_eq!(
            EnginePacket::decode("é"),
            Err(DecodeError::UnknownEngineType('é'))
        );
    }

    #[test]
    fn open_round_trips() {
        let open = OpenData {
            sid: "x\"y".into(),
            upgrades: vec![],
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            max_payload: 42,
        };
        let wire = EnginePacket::Open(open.clone()).to_wire();
        assert_eq!(EnginePacket::decode(&wire), Ok(EnginePacket::Open(open)));
    }
}
