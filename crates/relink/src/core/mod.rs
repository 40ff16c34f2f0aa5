//! The client's decisions, sans IO: no tokio, no sockets, no clock reads, no randomness of
//! its own. Time comes in as `now`, random samples as arguments, and what the driver must do
//! (wait, stop, log) comes out as data, so tests and simulations run it in virtual time.
//!
//! Today this holds the reconnect decisions ([`reconnect`]); the session, acks in flight
//! and the outbox still live with the supervisor and the handle.
//!
//! Public only so that the benchmarks' fleet simulation drives the real code; not part of
//! the supported API.

pub(crate) mod connection;
pub mod reconnect;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_client;
