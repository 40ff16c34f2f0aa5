//! Numbers for operators, through the [`metrics`](https://docs.rs/metrics) facade: install
//! any recorder (Prometheus, StatsD, OpenTelemetry, ...) and relink's clients report to it.
//! Behind the `metrics` feature; without a recorder every call is a no-op.
//!
//! Every series sums all the clients of the process (gauges too: each client adds its own
//! share and takes it back when it ends, so install the recorder before building clients:
//! one installed later sees only the changes after it). Names follow the Prometheus
//! conventions: base units in the name, `_total` for counters.
//!
//! An outage that ends with the client (it gave up, its credentials were refused,
//! `disconnect()` during it) is in `relink_outages_total` and not in
//! `relink_outage_duration_seconds`, which only has outages a connection ended.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `relink_connection_attempts_total{class}` | counter | attempts by how they ended: `connected`, `transient` (retried), `unauthorized` (credentials refused), `fatal` (configuration) |
//! | `relink_outages_total` | counter | outages begun: from the first failure (a lost connection or a failed attempt, the very first connection's included) to a connection holding for the stable period |
//! | `relink_outage_duration_seconds` | histogram | outages ended, and how long they lasted |
//! | `relink_reconnect_delay_seconds` | histogram | each wait before a reconnection attempt |
//! | `relink_outbox_packets`, `relink_outbox_bytes` | gauge | emits waiting to be written |
//! | `relink_acks_pending` | gauge | emits written and waiting for the server's ack |
//! | `relink_events_received_total`, `relink_events_sent_total` | counter | Socket.IO events (not acks, pings or handshakes) |
//! | `relink_received_bytes_total`, `relink_sent_bytes_total` | counter | Engine.IO packets' bytes, without WebSocket or HTTP framing |
//! | `relink_events_dropped_total` | counter | events (and notices) dropped because the application did not keep up: only under [`crate::Overflow::Drop`] |

use std::time::Duration;

/// `relink_connection_attempts_total`.
pub const CONNECTION_ATTEMPTS: &str = "relink_connection_attempts_total";
/// `relink_outages_total`.
pub const OUTAGES: &str = "relink_outages_total";
/// `relink_outage_duration_seconds`.
pub const OUTAGE_DURATION: &str = "relink_outage_duration_seconds";
/// `relink_reconnect_delay_seconds`.
pub const RECONNECT_DELAY: &str = "relink_reconnect_delay_seconds";
/// `relink_outbox_packets`.
pub const OUTBOX_PACKETS: &str = "relink_outbox_packets";
/// `relink_outbox_bytes`.
pub const OUTBOX_BYTES: &str = "relink_outbox_bytes";
/// `relink_acks_pending`.
pub const ACKS_PENDING: &str = "relink_acks_pending";
/// `relink_events_received_total`.
pub const EVENTS_RECEIVED: &str = "relink_events_received_total";
/// `relink_events_sent_total`.
pub const EVENTS_SENT: &str = "relink_events_sent_total";
/// `relink_events_dropped_total`.
pub const EVENTS_DROPPED: &str = "relink_events_dropped_total";
/// `relink_received_bytes_total`.
pub const RECEIVED_BYTES: &str = "relink_received_bytes_total";
/// `relink_sent_bytes_total`.
pub const SENT_BYTES: &str = "relink_sent_bytes_total";

/// The histograms, for recorders that need buckets (e.g. Prometheus): waits and outages
/// from a tenth of a second to ten minutes.
pub const HISTOGRAMS: [&str; 2] = [OUTAGE_DURATION, RECONNECT_DELAY];

/// Bucket bounds in seconds for [`HISTOGRAMS`].
pub const SECONDS_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Registers the help text and unit of every series with the installed recorder. Call it
/// once, after installing the recorder.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CONNECTION_ATTEMPTS,
        "Connection attempts by how they ended (connected, transient, unauthorized, fatal)."
    );
    describe_counter!(
        OUTAGES,
        "Outages begun (a lost connection or a failed attempt, until a connection holds)."
    );
    describe_histogram!(
        OUTAGE_DURATION,
        Unit::Seconds,
        "Outages ended: from the first failure to a connection holding."
    );
    describe_histogram!(
        RECONNECT_DELAY,
        Unit::Seconds,
        "Waits before reconnection attempts."
    );
    describe_gauge!(OUTBOX_PACKETS, "Emits waiting to be written.");
    describe_gauge!(
        OUTBOX_BYTES,
        Unit::Bytes,
        "Bytes of emits waiting to be written."
    );
    describe_gauge!(
        ACKS_PENDING,
        "Emits written and waiting for the server's ack."
    );
    describe_counter!(EVENTS_RECEIVED, "Socket.IO events received.");
    describe_counter!(EVENTS_SENT, "Socket.IO events sent.");
    describe_counter!(
        EVENTS_DROPPED,
        "Events dropped because the application did not keep up (Overflow::Drop only)."
    );
    describe_counter!(
        RECEIVED_BYTES,
        Unit::Bytes,
        "Bytes of Engine.IO packets received."
    );
    describe_counter!(SENT_BYTES, Unit::Bytes, "Bytes of Engine.IO packets sent.");
}

/// An attempt ended: `class` is `connected`, `transient`, `unauthorized` or `fatal`.
pub(crate) fn attempt(class: &'static str) {
    ::metrics::counter!(CONNECTION_ATTEMPTS, "class" => class).increment(1);
}

/// An outage began.
pub(crate) fn outage_began() {
    ::metrics::counter!(OUTAGES).increment(1);
}

/// A connection holds again after an outage that lasted `outage`.
pub(crate) fn outage_ended(outage: Duration) {
    ::metrics::histogram!(OUTAGE_DURATION).record(outage.as_secs_f64());
}

/// The client waits `delay` before its next attempt.
pub(crate) fn reconnect_delay(delay: Duration) {
    ::metrics::histogram!(RECONNECT_DELAY).record(delay.as_secs_f64());
}

/// `n` events were dropped for an application that did not keep up (looked up by name:
/// drops are rare, and a recorder installed later still sees them).
pub(crate) fn events_dropped(n: u64) {
    ::metrics::counter!(EVENTS_DROPPED).increment(n);
}

/// The per-frame counters, registered once per client: looking them up by name for every
/// frame would add a map lookup to the hot path.
#[derive(Clone)]
pub(crate) struct Traffic {
    received_bytes: ::metrics::Counter,
    sent_bytes: ::metrics::Counter,
    events_received: ::metrics::Counter,
    events_sent: ::metrics::Counter,
}

impl Traffic {
    pub(crate) fn new() -> Self {
        Traffic {
            received_bytes: ::metrics::counter!(RECEIVED_BYTES),
            sent_bytes: ::metrics::counter!(SENT_BYTES),
            events_received: ::metrics::counter!(EVENTS_RECEIVED),
            events_sent: ::metrics::counter!(EVENTS_SENT),
        }
    }

    /// A frame of `bytes` arrived.
    pub(crate) fn received(&self, bytes: usize) {
        self.received_bytes.increment(bytes as u64);
    }

    /// An event was received.
    pub(crate) fn event_received(&self) {
        self.events_received.increment(1);
    }

    /// `bytes` went out, an event if `event`.
    pub(crate) fn sent(&self, event: bool, bytes: usize) {
        self.sent_bytes.increment(bytes as u64);
        if event {
            self.events_sent.increment(1);
        }
    }
}

/// This client's part of a process-wide gauge: the gauge moves by the difference each time
/// the client's value changes, and the client's part is taken back when it ends.
#[derive(Debug)]
pub(crate) struct Share {
    gauge: &'static str,
    reported: f64,
}

impl Share {
    pub(crate) fn new(gauge: &'static str) -> Self {
        Share {
            gauge,
            reported: 0.0,
        }
    }

    /// This client's value is now `value`.
    pub(crate) fn set(&mut self, value: usize) {
        let value = value as f64;
        if value != self.reported {
            ::metrics::gauge!(self.gauge).increment(value - self.reported);
            self.reported = value;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.set(0);
    }
}
