//! Support code shared by relink's tests, benchmarks and `relink demo`.
//!
//! - [`node`]: runs the official Node socket.io server from `interop/node/` on a free port.
//! - [`gateway`]: a loopback TCP gateway that forwards to an upstream or injects faults
//!   (HTTP 503/401, blackhole, reset, half-open), the way a real edge proxy fails.
//! - [`proxy`]: a loopback HTTP CONNECT proxy, with or without Basic credentials.
//! - [`socks`]: a loopback SOCKS5 proxy, with or without username/password.
//! - [`tls`]: a TLS front whose certificate comes from a private CA.
//! - [`peer`]: a scripted in-process Socket.IO/WebSocket server that a test drives frame by frame.

mod accept;
pub mod gateway;
pub mod node;
pub mod peer;
pub mod proxy;
pub mod socks;
pub mod tls;
