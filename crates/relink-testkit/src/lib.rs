//! Support code shared by relink's tests, benchmarks and `relink demo`.
//!
//! - [`node`]: runs the official Node socket.io server from `interop/node/` on a free port.
//! - [`gateway`]: a loopback TCP gateway that forwards to an upstream or injects faults
//!   (HTTP 503/401, blackhole, reset, half-open), the way a real edge proxy fails.

pub mod gateway;
pub mod node;
