//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use relink::{Client, ConnectionState, Status};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How long any single expectation may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The arguments of the next event named `name`, skipping others; fails the test after
/// [`WAIT`].
pub async fn next_event(events: &mut relink::Events, name: &str) -> relink::Payload {
    next_whole_event(events, name).await.into_args()
}

/// The next event named `name` itself (to answer it), skipping others; fails the test
/// after [`WAIT`].
pub async fn next_whole_event(events: &mut relink::Events, name: &str) -> relink::Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(relink::Incoming::Event(e)) if e.name() == name => return e,
                Some(_) => continue,
                None => panic!("events ended before {name}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {name} event within {WAIT:?}"))
}

/// Waits until the client reaches `status`, failing the test after [`WAIT`].
pub async fn until_status(client: &Client, status: Status) -> ConnectionState {
    until(client, |s| s.status == status).await
}

/// Waits until the state satisfies `pred`, failing the test after [`WAIT`].
pub async fn until(client: &Client, pred: impl Fn(&ConnectionState) -> bool) -> ConnectionState {
    let mut rx = client.watch_state();
    match tokio::time::timeout(WAIT, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(state)) => state.clone(),
        _ => panic!(
            "state not reached within {WAIT:?}; now {:?}",
            client.state()
        ),
    }
}

/// One captured log record.
#[derive(Debug, Clone)]
pub struct Record {
    pub level: Level,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Keep this alive while capturing with a scoped subscriber. tracing caches each callsite's
/// interest globally; while only one dispatcher exists, a callsite first hit on another test's
/// thread (no subscriber there) is cached as "never" and the capturing thread misses it. With a
/// second live dispatcher tracing asks every dispatcher, so the capture sees every record.
pub fn keep_interest_per_dispatcher() -> tracing::Dispatch {
    tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default())
}

/// A tracing layer that keeps every record, for counting levels.
#[derive(Clone, Default)]
pub struct Capture {
    pub records: Arc<Mutex<Vec<Record>>>,
}

impl Capture {
    pub fn count(&self, level: Level) -> usize {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.level == level)
            .count()
    }

    pub fn messages(&self, level: Level) -> Vec<String> {
        self.records
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.level == level)
            .map(|r| r.message.clone())
            .collect()
    }

    pub fn all_text(&self) -> String {
        format!("{:?}", self.records.lock().unwrap())
    }
}

struct Fields<'a>(&'a mut Record);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        } else {
            self.0
                .fields
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("relink") {
            return;
        }
        let mut record = Record {
            level: *event.metadata().level(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut record));
        self.records.lock().unwrap().push(record);
    }
}

/// What a reader saw of a numbered burst (`("burst", i, ...)` then `("burst-done", n)`).
#[derive(Debug, Default)]
pub struct Burst {
    /// The numbers of the `burst` events, in the order read.
    pub got: Vec<u64>,
    /// `recovered` of each `Incoming::Connected` read meanwhile.
    pub connects: Vec<bool>,
    /// The reason of each `Incoming::Disconnected` read meanwhile.
    pub reasons: Vec<relink::Reason>,
}

impl Burst {
    /// Fails unless events 1..=n arrived, each once, in order.
    pub fn assert_whole(&self, n: u64) {
        assert!(
            self.got.iter().copied().eq(1..=n),
            "every event once and in order: {} of {n} arrived, first out of place at {:?}",
            self.got.len(),
            self.got.iter().zip(1..).position(|(g, want)| *g != want)
        );
    }

    /// Reads on for `quiet` after the burst (what came after it: a link the server closed,
    /// the way back), failing on another burst event.
    pub async fn read_after(&mut self, events: &mut relink::Events, quiet: Duration) {
        while let Ok(Some(item)) = tokio::time::timeout(quiet, events.next()).await {
            match item {
                relink::Incoming::Event(e) if e.name() == "burst" => {
                    panic!("a burst event after burst-done")
                }
                relink::Incoming::Connected { recovered, .. } => self.connects.push(recovered),
                relink::Incoming::Disconnected { reason } => self.reasons.push(reason),
                _ => {}
            }
        }
    }
}

/// Reads `events` until `burst-done` (failing after `wait`, or on an `Incoming::Lagged`:
/// nothing is dropped by default), calling `each` with every `burst` event; every `pause`
/// events the reader sleeps 50 ms, slower than the wire.
pub async fn read_burst(
    events: &mut relink::Events,
    wait: Duration,
    pause: Option<u64>,
    mut each: impl FnMut(&relink::Event),
) -> Burst {
    let mut burst = Burst::default();
    let read = async {
        loop {
            match events.next().await {
                Some(relink::Incoming::Event(e)) if e.name() == "burst" => {
                    each(&e);
                    let n = e
                        .args()
                        .first::<u64>()
                        .ok()
                        .flatten()
                        .expect("a numbered burst event");
                    burst.got.push(n);
                    if pause.is_some_and(|every| n % every == 0) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    } else if burst.got.len() % 1000 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                Some(relink::Incoming::Event(e)) if e.name() == "burst-done" => return,
                Some(relink::Incoming::Connected { recovered, .. }) => {
                    burst.connects.push(recovered)
                }
                Some(relink::Incoming::Disconnected { reason }) => burst.reasons.push(reason),
                Some(relink::Incoming::Lagged { missed }) => {
                    panic!("{missed} events dropped by default")
                }
                Some(_) => {}
                None => panic!("events ended before burst-done"),
            }
        }
    };
    if tokio::time::timeout(wait, read).await.is_err() {
        panic!("burst-done not within {wait:?}: {} events", burst.got.len());
    }
    burst
}
