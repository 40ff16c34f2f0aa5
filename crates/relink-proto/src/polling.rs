//! Engine.IO v4 long-polling payloads: the body of a poll response or a POST.
//!
//! A payload is packets joined by the record separator `\x1e`. Text packets travel as they
//! would in a WebSocket text frame; a binary packet (a Socket.IO attachment) is `b` followed
//! by the base64 of its bytes. JSON escapes every control character, so the separator never
//! appears inside a packet.

use crate::DecodeError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;

/// The record separator between packets.
pub const SEPARATOR: u8 = 0x1e;

/// One packet of a payload, as a WebSocket frame would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An Engine.IO packet (`4...`, `2`, ...).
    Text(String),
    /// A binary attachment.
    Binary(Bytes),
}

/// Splits a payload into its packets. Never panics: anything a peer sends either decodes or
/// yields an error.
pub fn decode(body: &[u8]) -> Result<Vec<Frame>, DecodeError> {
    body.split(|b| *b == SEPARATOR)
        .map(|packet| match packet.split_first() {
            None => Err(DecodeError::Empty),
            Some((b'b', base64)) => STANDARD
                .decode(base64)
                .map(|bytes| Frame::Binary(Bytes::from(bytes)))
                .map_err(|e| DecodeError::Base64(e.to_string())),
            Some(_) => std::str::from_utf8(packet)
                .map(|text| Frame::Text(text.to_owned()))
                .map_err(|_| DecodeError::Utf8),
        })
        .collect()
}

/// Appends one packet to a payload being built in `out`.
pub fn push_text(out: &mut Vec<u8>, packet: &str) {
    separate(out);
    out.extend_from_slice(packet.as_bytes());
}

/// Appends one binary packet to a payload being built in `out`.
pub fn push_binary(out: &mut Vec<u8>, bytes: &[u8]) {
    separate(out);
    out.push(b'b');
    let start = out.len();
    out.resize(
        start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
        0,
    );
    let written = STANDARD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or_default();
    out.truncate(start + written);
}

/// How many bytes a text packet adds to a payload (separator included).
pub fn text_len(packet: &str) -> usize {
    packet.len() + 1
}

/// How many bytes a binary packet adds to a payload (separator and `b` included).
pub fn binary_len(bytes: &[u8]) -> usize {
    base64::encoded_len(bytes.len(), true).unwrap_or(usize::MAX - 2) + 2
}

fn separate(out: &mut Vec<u8>) {
    if !out.is_empty() {
        out.push(SEPARATOR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_what_engine_io_sends() {
        let body = b"0{\"sid\":\"a\"}\x1e42[\"hi\"]\x1ebAQID\x1e2";
        assert_eq!(
            decode(body),
            Ok(vec![
                Frame::Text("0{\"sid\":\"a\"}".into()),
                Frame::Text("42[\"hi\"]".into()),
                Frame::Binary(Bytes::from_static(&[1, 2, 3])),
                Frame::Text("2".into()),
            ])
        );
    }

    #[test]
    fn encodes_as_engine_io_reads() {
        let mut out = Vec::new();
        push_text(&mut out, "40");
        push_binary(&mut out, &[1, 2, 3]);
        push_text(&mut out, "3");
        assert_eq!(out, b"40\x1ebAQID\x1e3");
        assert_eq!(
            text_len("40") + binary_len(&[1, 2, 3]) + text_len("3") - 1,
            out.len()
        );
    }

    #[test]
    fn refuses_what_is_not_a_payload() {
        assert_eq!(decode(b""), Err(DecodeError::Empty));
        assert_eq!(decode(b"4x\x1e\x1e2"), Err(DecodeError::Empty));
        assert!(matches!(decode(b"b!!"), Err(DecodeError::Base64(_))));
        assert_eq!(decode(b"4\xff"), Err(DecodeError::Utf8));
    }

    proptest! {
        #[test]
        fn what_is_encoded_decodes_back(
            packets in proptest::collection::vec(
                prop_oneof![
                    "[0-6][ -~]{0,20}".prop_map(Frame::Text),
                    proptest::collection::vec(any::<u8>(), 0..40)
                        .prop_map(|b| Frame::Binary(Bytes::from(b))),
                ],
                1..8,
            )
        ) {
            let mut out = Vec::new();
            for packet in &packets {
                match packet {
                    Frame::Text(text) => push_text(&mut out, text),
                    Frame::Binary(bytes) => push_binary(&mut out, bytes),
                }
            }
            prop_assert_eq!(decode(&out), Ok(packets));
        }

        #[test]
        fn any_body_decodes_or_errs(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&body);
        }
    }
}
