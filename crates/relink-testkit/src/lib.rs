//! Support code shared by relink's tests, benchmarks and `relink demo`.
//!
//! - [`node`]: runs the official Node socket.io server from `interop/node/` on a free port.
//! - [`gateway`]: a loopback TCP gateway that forwards to an upstream or injects faults
//!   (HTTP 503/401, blackhole, reset, half-open), the way a real edge proxy fails.
//! - [`peer`]: a scripted in-process Socket.IO/WebSocket server that a test drives frame by frame.

pub mod gateway;
pub mod node;
pub mod peer;
