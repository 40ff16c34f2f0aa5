use thiserror::Error;

/// Why a frame from the peer could not be decoded.
///
/// Decoders never panic: anything a peer sends either decodes or yields one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame was empty.
    #[error("empty packet")]
    Empty,
    /// The first character is not an Engine.IO packet type (`0`..=`6`).
    #[error("unknown Engine.IO packet type {0:?}")]
    UnknownEngineType(char),
    /// The first character is not a Socket.IO packet type (`0`..=`6`).
    #[error("unknown Socket.IO packet type {0:?}")]
    UnknownPacketType(char),
    /// The Engine.IO OPEN packet's JSON is missing fields or malformed.
    #[error("invalid OPEN handshake: {0}")]
    Handshake(String),
    /// The attachment count of a binary packet is missing or out of range.
    #[error("invalid attachment count")]
    Attachments,
    /// The ack id is not a number that fits in 64 bits.
    #[error("invalid ack id")]
    AckId,
    /// The payload is not valid JSON.
    #[error("invalid JSON payload: {0}")]
    Json(String),
    /// The payload is valid JSON of the wrong shape for this packet type.
    #[error("{packet} payload must be {expected}")]
    Shape {
        /// The packet type.
        packet: &'static str,
        /// What the payload must look like.
        expected: &'static str,
    },
    /// A binary packet of a polling payload is not valid base64.
    #[error("invalid base64 in a binary packet: {0}")]
    Base64(String),
    /// A text packet of a polling payload is not valid UTF-8.
    #[error("a text packet is not valid UTF-8")]
    Utf8,
    /// A binary attachment placeholder does not match the attachments received.
    #[error("invalid binary attachment placeholder: {0}")]
    Placeholder(String),
}
