//! The `metrics` feature is off: the same calls as `metrics.rs`, doing nothing.

use std::time::Duration;

pub(crate) fn attempt(_class: &'static str) {}
pub(crate) fn outage_began() {}
pub(crate) fn outage_ended(_outage: Duration) {}
pub(crate) fn reconnect_delay(_delay: Duration) {}
pub(crate) fn events_dropped(_n: u64) {}

#[derive(Clone)]
pub(crate) struct Traffic;

impl Traffic {
    pub(crate) fn new() -> Self {
        Traffic
    }

    pub(crate) fn received(&self, _bytes: usize) {}

    pub(crate) fn event_received(&self) {}

    pub(crate) fn sent(&self, _event: bool, _bytes: usize) {}
}

#[derive(Debug)]
pub(crate) struct Share;

impl Share {
    pub(crate) fn new(_gauge: &'static str) -> Self {
        Share
    }

    pub(crate) fn set(&mut self, _value: usize) {}
}

pub(crate) const OUTBOX_PACKETS: &str = "";
pub(crate) const OUTBOX_BYTES: &str = "";
pub(crate) const ACKS_PENDING: &str = "";
