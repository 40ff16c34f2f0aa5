//! What the connection hands to the application: events (with their acks), notices, and
//! the hand-over from the supervisor to [`Events`], bounded by `event_buffer` items and
//! `max_buffered_bytes` bytes. Past the bound items are dropped and counted
//! ([`Incoming::Lagged`]), as a tokio broadcast receiver lags: the connection never waits
//! for the application, so a reader that stops cannot stop the heartbeat.

use crate::core::connection::Delivery;
use crate::lane::Shared;
use crate::outbox::ServerAck;
use relink_proto::{IntoArgs, Payload};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{Semaphore, TryAcquireError, mpsc};

/// Something from the connection, in the order it happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// The namespace connection is up.
    Connected {
        /// The socket id.
        socket_id: String,
        /// Whether the server restored the previous session (missed events follow).
        recovered: bool,
    },
    /// An event from the server.
    Event(Event),
    /// The link went down; the state says whether the client will reconnect.
    Disconnected {
        /// Why (prints as `transport_close`, `ping_timeout`, `server_disconnect`, ...).
        reason: crate::Reason,
    },
    /// The reader fell `event_buffer` items (or `max_buffered_bytes`) behind, and this many
    /// items (events and notices) that came meanwhile were dropped. The connection itself
    /// stayed up: it never waits for the reader.
    Lagged {
        /// How many were dropped.
        missed: u64,
    },
}

impl Incoming {
    /// What the core hands to the user, as the reader sees it; an event's answer goes
    /// through `shared`.
    pub(crate) fn new(delivery: Delivery, shared: &Arc<Shared>) -> Self {
        match delivery {
            Delivery::Connected {
                socket_id,
                recovered,
            } => Incoming::Connected {
                socket_id,
                recovered,
            },
            Delivery::Event { name, args, ack } => Incoming::Event(Event::new(
                name,
                args,
                ack.map(|(generation, id)| (Arc::clone(shared), generation, id)),
            )),
            Delivery::Disconnected { reason } => Incoming::Disconnected { reason },
        }
    }
}

/// An event from the server.
///
/// Its arguments stay JSON text until read ([`Event::args`]); if the server asked for an
/// answer, [`Event::ack`] sends it.
///
/// ```
/// use relink::{Client, Incoming};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, mut events) = Client::builder(url).token("secret").connect()?;
/// // The test server's "ask" sends us the event named first and waits for our answer.
/// client.emit("ask", ("multiply", 6, 7)).await?;
/// while let Some(incoming) = events.next().await {
///     if let Incoming::Event(mut event) = incoming {
///         if event.name() == "multiply" {
///             let (a, b): (i64, i64) = event.args().deserialize()?;
///             assert!(event.wants_ack());
///             event.ack(a * b);
///             break;
///         }
///     }
/// }
/// client.disconnect().await;
/// # server.stop().await;
/// # Ok(()) }
/// ```
pub struct Event {
    /// Shared with other events of the same name (the session keeps recent names).
    name: Arc<str>,
    args: Payload,
    ack: Option<Acker>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("name", &self.name)
            .field("args", &self.args)
            .field("wants_ack", &self.ack.is_some())
            .finish()
    }
}

struct Acker {
    shared: Arc<Shared>,
    generation: u64,
    id: u64,
}

impl Event {
    pub(crate) fn new(name: Arc<str>, args: Payload, ack: Option<(Arc<Shared>, u64, u64)>) -> Self {
        Event {
            name,
            args,
            ack: ack.map(|(shared, generation, id)| Acker {
                shared,
                generation,
                id,
            }),
        }
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments (recovery offset removed).
    pub fn args(&self) -> &Payload {
        &self.args
    }

    /// Takes the arguments.
    pub fn into_args(self) -> Payload {
        self.args
    }

    /// Whether the server asked for an acknowledgement that has not been sent yet.
    pub fn wants_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Answers the server's ack request with `args` (a [`Payload`] or any `Serialize` value:
    /// see [`crate::IntoArgs`]). Returns false when none was asked for, it was already
    /// answered, or the arguments are not JSON (logged at WARN; the request stays
    /// unanswered). An answer to a connection that has since dropped is discarded (the
    /// server forgot the request with that connection).
    pub fn ack(&mut self, args: impl IntoArgs) -> bool {
        if self.ack.is_none() {
            return false;
        }
        let Some(acker) = self.ack.take() else {
            return false;
        };
        // Encoded here, in one pass for a `Serialize` answer: the connection task only
        // writes it.
        let frame = match args.into_ack(&acker.shared.namespace, acker.id) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(event = %self.name, error = %e, "ack not sent: its arguments are not JSON");
                self.ack = Some(acker);
                return false;
            }
        };
        acker.shared.lock().acks_out.push_back(ServerAck {
            generation: acker.generation,
            frame,
        });
        acker.shared.wake.notify_one();
        true
    }
}

/// Most items handed from the supervisor to [`Events`] at once. One hand-over per batch
/// rather than per item: each one may wake the reader's task on another thread.
const EVENT_BATCH: usize = 64;

/// The hand-over's two ends: what the supervisor pushes into, what the application reads;
/// at most `event_buffer` items, and `max_bytes` bytes of them, wait between them.
///
/// `on_room` is called when the reader makes room while drops are still untold, so the
/// supervisor can tell them (a `Lagged` notice) without waiting for the next item.
pub(crate) fn channel(
    event_buffer: usize,
    max_bytes: usize,
    on_room: Arc<dyn Fn() + Send + Sync>,
) -> (Deliveries, Events) {
    let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
    let room = Arc::new(Semaphore::new(event_buffer.min(most)));
    let room_bytes = Arc::new(Semaphore::new(max_bytes.min(most)));
    let (tx, rx) = mpsc::unbounded_channel();
    let untold = Arc::new(AtomicBool::new(false));
    let deliveries = Deliveries {
        tx,
        untold: Arc::clone(&untold),
        room: Arc::clone(&room),
        room_bytes: Arc::clone(&room_bytes),
        pending: Vec::new(),
        pending_bytes: 0,
        batch: event_buffer.clamp(1, EVENT_BATCH),
        missed: 0,
    };
    let events = Events {
        rx,
        room,
        room_bytes,
        buffered: Vec::new().into_iter(),
        untold,
        on_room,
    };
    (deliveries, events)
}

/// What an item weighs against `max_buffered_bytes`: an event's name, arguments and
/// attachments; a notice nothing.
fn weight(item: &Incoming) -> usize {
    match item {
        Incoming::Event(event) => {
            let args = event.args();
            event.name().len()
                + args.as_json().len()
                + args.attachments().iter().map(|a| a.len()).sum::<usize>()
        }
        Incoming::Connected { .. } | Incoming::Disconnected { .. } | Incoming::Lagged { .. } => 0,
    }
}

/// One hand-over: the items (one item permit each) and the byte permits taken for them.
type Batch = (Vec<Incoming>, usize);

/// The stream of [`Incoming`] items. Read it: while nobody does, at most `event_buffer`
/// items (and `max_buffered_bytes` of them) wait; what comes on top is dropped, and
/// [`Incoming::Lagged`] says how much once there is room again. The connection itself
/// never waits for the reader: it keeps answering the server's pings.
///
/// ```
/// use relink::{Client, Incoming};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, mut events) = Client::builder(url).token("secret").connect()?;
/// client.emit("echo", "ping").await?;
/// while let Some(incoming) = events.next().await {
///     match incoming {
///         Incoming::Connected { recovered, .. } => println!("connected (recovered: {recovered})"),
///         Incoming::Event(event) if event.name() == "echo" => {
///             assert_eq!(event.args().as_json(), r#"["ping"]"#);
///             break;
///         }
///         Incoming::Event(event) => println!("{}: {}", event.name(), event.args().as_json()),
///         Incoming::Disconnected { reason } => println!("link down ({reason}): reconnecting"),
///         Incoming::Lagged { missed } => println!("{missed} events dropped: read faster"),
///         _ => {}
///     }
/// }
/// client.disconnect().await;
/// # server.stop().await;
/// # Ok(()) }
/// ```
pub struct Events {
    /// Batches of at most `min(event_buffer, EVENT_BATCH)` items.
    rx: mpsc::UnboundedReceiver<Batch>,
    /// One permit per item that may still be handed over.
    room: Arc<Semaphore>,
    /// One permit per byte that may still be handed over.
    room_bytes: Arc<Semaphore>,
    /// The rest of the batch being read.
    buffered: std::vec::IntoIter<Incoming>,
    /// Items were dropped and the reader has not been told yet.
    untold: Arc<AtomicBool>,
    on_room: Arc<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("available", &self.room.available_permits())
            .finish_non_exhaustive()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // Nobody reads any more: nothing more is kept for a reader.
        self.room.close();
        self.room_bytes.close();
    }
}

impl Events {
    /// The next item; `None` once the client has ended and everything was read.
    pub async fn next(&mut self) -> Option<Incoming> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        loop {
            if let Some(item) = self.buffered.next() {
                return Poll::Ready(Some(item));
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some((batch, bytes)) => {
                    self.room.add_permits(batch.len());
                    self.room_bytes.add_permits(bytes);
                    self.buffered = batch.into_iter();
                    // Ordered after the permits: either the supervisor's second look sees
                    // them, or this sees its flag.
                    std::sync::atomic::fence(Ordering::SeqCst);
                    if self.untold.load(Ordering::SeqCst) {
                        (self.on_room)();
                    }
                }
                None => return Poll::Ready(None),
            }
        }
    }
}

impl futures_util::Stream for Events {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.poll_item(cx)
    }
}

/// The supervisor's side of [`Events`]: items are admitted (or dropped when the reader's
/// buffer is full), collected, and handed over a batch at a time. Never waits.
pub(crate) struct Deliveries {
    tx: mpsc::UnboundedSender<Batch>,
    /// Set while `missed` is not zero, for the reader's side.
    untold: Arc<AtomicBool>,
    room: Arc<Semaphore>,
    room_bytes: Arc<Semaphore>,
    /// Items admitted and not handed over yet, in order, with their bytes.
    pending: Vec<Incoming>,
    pending_bytes: usize,
    batch: usize,
    /// Items dropped since the reader last had room: told by a `Lagged` notice before the
    /// next item admitted.
    missed: u64,
}

impl Deliveries {
    /// How many items make a batch (frames read per round are bounded by it too).
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Admits an item if the reader's buffer has room for it (and for the `Lagged` notice
    /// owed), else drops it and counts it, with one WARN per episode. Returns true when a
    /// batch is full and should be handed over.
    pub(crate) fn push(&mut self, item: Incoming) -> bool {
        let bytes = u32::try_from(weight(&item)).unwrap_or(u32::MAX);
        let owed = u32::from(self.missed > 0);
        match self.take(1 + owed, bytes) {
            Ok(()) => {
                self.tell_missed();
                self.pending.push(item);
                self.pending_bytes += bytes as usize;
            }
            // Room for the notice alone: it goes, counting this item too (a buffer of one
            // would otherwise never have room for both again).
            Err(_) if owed == 1 && self.take(1, 0).is_ok() => {
                self.missed += 1;
                self.tell_missed();
            }
            Err(e) => self.drop_item(&e),
        }
        self.pending.len() >= self.batch
    }

    /// Takes permits for `items` items and `bytes` bytes, both or neither.
    fn take(&self, items: u32, bytes: u32) -> Result<(), TryAcquireError> {
        let for_items = self.room.try_acquire_many(items)?;
        let for_bytes = self.room_bytes.try_acquire_many(bytes)?;
        for_items.forget();
        for_bytes.forget();
        Ok(())
    }

    /// Queues the notice of what was dropped, if anything was.
    fn tell_missed(&mut self) {
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            self.untold.store(false, Ordering::SeqCst);
            self.pending.push(Incoming::Lagged { missed });
        }
    }

    fn drop_item(&mut self, why: &TryAcquireError) {
        // A reader that dropped `Events` is not told anything.
        if matches!(why, TryAcquireError::Closed) {
            return;
        }
        if self.missed == 0 {
            tracing::warn!(
                "events dropped: the application is not reading them fast enough \
                 (Incoming::Lagged will say how many)"
            );
        }
        self.missed += 1;
        self.untold.store(true, Ordering::SeqCst);
        // The reader may have made room between the failed take and the flag: it then
        // read the flag still unset and woke nobody, so look again now.
        if self.take(1, 0).is_ok() {
            self.tell_missed();
        }
    }

    /// Hands what is pending to the reader, with the notice of what was dropped if the
    /// reader has made room for it.
    pub(crate) fn flush(&mut self) {
        if self.missed > 0 && self.take(1, 0).is_ok() {
            self.tell_missed();
        }
        if self.pending.is_empty() {
            return;
        }
        let part = std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch));
        let bytes = std::mem::take(&mut self.pending_bytes);
        let _ = self.tx.send((part, bytes));
    }

    /// The client ends: what is pending goes, with the notice of what was dropped (the
    /// bound gives way for this one item: nothing comes after it).
    pub(crate) fn finish(&mut self) {
        if self.missed > 0 && !self.room.is_closed() {
            let missed = std::mem::take(&mut self.missed);
            // Without a permit: the reader gives one back too many, to a client that ended.
            self.pending.push(Incoming::Lagged { missed });
        }
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item told apart by its name.
    fn notice(name: &str) -> Incoming {
        Incoming::Event(Event::new(Arc::from(name), Payload::new(), None))
    }

    fn reason(item: Option<Incoming>) -> String {
        match item {
            Some(Incoming::Event(event)) => event.name().to_owned(),
            other => panic!("expected an item, got {other:?}"),
        }
    }

    fn quiet() -> Arc<dyn Fn() + Send + Sync> {
        Arc::new(|| {})
    }

    fn lagged(item: Option<Incoming>) -> u64 {
        match item {
            Some(Incoming::Lagged { missed }) => missed,
            other => panic!("expected Lagged, got {other:?}"),
        }
    }

    fn event(name: &str, bytes: usize) -> Incoming {
        let args = Payload::json(&"x".repeat(bytes)).expect("json");
        Incoming::Event(Event::new(Arc::from(name), args, None))
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_loses_what_comes_on_top_and_is_told_how_much() {
        let (mut deliveries, mut events) = channel(2, 1 << 20, quiet());
        for r in ["a", "b", "c", "d", "e"] {
            deliveries.push(notice(r));
        }
        deliveries.flush();
        // Two fit; three were dropped, and nothing waited.
        assert_eq!(reason(events.next().await), "a");
        assert_eq!(reason(events.next().await), "b");
        // Room again: the notice of what was missed comes first, then what is new.
        deliveries.push(notice("f"));
        deliveries.flush();
        assert_eq!(lagged(events.next().await), 3);
        assert_eq!(reason(events.next().await), "f");
        // A buffer of one: the notice alone fits, and counts what it displaced.
        let (mut deliveries, mut events) = channel(1, 1 << 20, quiet());
        for r in ["a", "b"] {
            deliveries.push(notice(r));
        }
        deliveries.flush();
        assert_eq!(reason(events.next().await), "a");
        deliveries.push(notice("c"));
        deliveries.flush();
        assert_eq!(lagged(events.next().await), 2);
        deliveries.push(notice("d"));
        deliveries.flush();
        assert_eq!(reason(events.next().await), "d");
        // The episode is over: the next ones fit without a notice.
        deliveries.push(notice("g"));
        deliveries.flush();
        assert_eq!(reason(events.next().await), "g");
    }

    #[tokio::test]
    async fn the_bytes_bound_drops_too() {
        let (mut deliveries, mut events) = channel(100, 100, quiet());
        deliveries.push(event("big", 80));
        deliveries.push(event("over", 80));
        deliveries.flush();
        assert!(matches!(events.next().await, Some(Incoming::Event(e)) if e.name() == "big"));
        deliveries.push(event("small", 1));
        deliveries.flush();
        assert_eq!(lagged(events.next().await), 1);
        assert!(matches!(events.next().await, Some(Incoming::Event(e)) if e.name() == "small"));
    }

    #[tokio::test]
    async fn at_the_end_the_reader_is_told_what_it_missed_whatever_the_room() {
        let (mut deliveries, mut events) = channel(1, 1 << 20, quiet());
        for r in ["a", "b", "c"] {
            deliveries.push(notice(r));
        }
        deliveries.finish();
        drop(deliveries);
        assert_eq!(reason(events.next().await), "a");
        assert_eq!(lagged(events.next().await), 2);
        assert!(events.next().await.is_none());
    }

    #[tokio::test]
    async fn nobody_reading_is_not_an_error() {
        let (mut deliveries, events) = channel(1, 1 << 20, quiet());
        drop(events);
        for r in ["a", "b", "c"] {
            deliveries.push(notice(r));
        }
        deliveries.finish();
    }
}
