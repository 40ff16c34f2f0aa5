//! relink: a Socket.IO v4 client that stays connected through outages and stays quiet
//! about them.
//!
//! - Reconnects with capped exponential backoff and full jitter after the cap, resets only
//!   after a stable connection, honours `Retry-After`.
//! - Tells a rejected credential (stop after one refresh) from a dead server (retry) from a
//!   bad configuration (fail at once).
//! - Logs WARN per failed attempt, one ERROR per outage, INFO when it recovers.
//! - Keeps emits made while disconnected in a bounded outbox; acks, retries and connection
//!   state recovery so nothing promised is lost.
//!
//! Start with [`Client::builder`]:
//!
//! ```
//! use relink::Client;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
//! let url = "http://127.0.0.1:3000";
//! # let url = server.url();
//! // `_`: this client reads no events. (`Events` kept and never read would hold the
//! // connection once the events waiting in it reach their budget: nothing is dropped.)
//! let (client, _) = Client::builder(url).token("secret").connect()?;
//! // Waits for the connection (emits made before it are queued and sent once connected).
//! let reply = client
//!     .emit_with_ack("echo", ("hello", 1), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(reply.as_json(), r#"["hello",1]"#);
//! client.disconnect().await;
//! # server.stop().await;
//! # Ok(()) }
//! ```
//!
//! The examples in `crates/relink/examples/` run against the Node server of the interop
//! tests: a chat client, a token read from a file before every attempt, Sentry with one
//! event per outage.

#![forbid(unsafe_code)]

mod client;
mod config;
#[doc(hidden)]
pub mod core;
mod error;
mod events;
mod flow;
mod handlers;
mod lane;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "metrics_off.rs"]
mod metrics;
mod net;
mod outbox;
/// The backoff, classification and escalation rules; public only for the benchmarks'
/// fleet simulation, like [`core`]: not a supported API.
#[doc(hidden)]
pub mod policy;
mod records;
mod state;
mod supervisor;
mod token;
mod transport;

pub use client::{Client, WeakClient};
pub use config::ClientBuilder;
pub use error::{AckError, BuildError, EmitError, LinkError, ReconnectError};
pub use events::{Event, Events, Incoming};
pub use flow::Overflow;
pub use relink_proto::binary::Data;
pub use relink_proto::engine::EngineError;
pub use relink_proto::{IntoArgs, Payload};
pub use state::{ConnectionState, EndReason, Reason, Status, Transport};
pub use token::Token;

/// The README's examples compile as doctests, so they cannot drift from the API.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
