//! Sans-IO protocol core of relink: Engine.IO v4 and Socket.IO v5.
//!
//! Nothing here opens a socket, spawns a task or reads a clock. Frames and the current time go
//! in, frames to send, events and the next deadline come out, so every rule of the protocol
//! can be tested by stepping through time by hand (the quinn-proto model).
//!
//! - [`engine`]: Engine.IO packets (`0` open, `2` ping, `4` message, ...) and the OPEN data.
//! - [`packet`]: Socket.IO packets inside an Engine.IO message.
//! - [`payload`]: event arguments kept as raw JSON, plus binary attachments.
//! - [`polling`]: long-polling payloads (packets joined by `\x1e`, binary as `b` + base64).
//! - [`binary`]: attachment placeholders, split on send and reassembled on receive.
//! - [`session`]: one connection's state machine: handshake, heartbeat, namespace.
//! - [`acks`]: ack-id allocation and the pending table with deadlines.

pub mod acks;
mod arena;
pub mod args;
pub mod binary;
pub mod engine;
mod error;
pub mod packet;
pub mod payload;
pub mod polling;
pub mod session;

pub use args::IntoArgs;
pub use error::DecodeError;
pub use payload::Payload;
