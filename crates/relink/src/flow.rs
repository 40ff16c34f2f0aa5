//! Inbound flow control: what happens when the application reads slower than the server
//! sends, and the one byte budget that `Events` and every handler's queue share.

/// What the connection does when the events waiting for the application (in
/// [`crate::Events`] and in every handler's queue together) reach
/// [`crate::ClientBuilder::max_buffered_bytes`] (or [`crate::ClientBuilder::event_buffer`]
/// items, when one is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Nothing is dropped (the default): the connection stops reading the socket until the
    /// application makes room, so TCP pushes back on the server, as the official client
    /// does while its handlers run. Emits still go out meanwhile.
    #[default]
    Backpressure,
    /// The connection keeps reading, and what does not fit is dropped, counted and told
    /// ([`crate::Incoming::Lagged`], a WARN per episode, the `relink_events_dropped_total`
    /// metric): for applications that want the freshest data (live cursors, telemetry)
    /// rather than all of it.
    Drop,
}
