//! What the connection hands to the application: events (with their acks), notices, and
//! the hand-over from the supervisor to [`Events`], bounded by `event_buffer` items.

use crate::lane::{ServerAck, Shared};
use relink_proto::Payload;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

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
        /// A stable name for why (`transport_close`, `ping_timeout`, `server_disconnect`, ...).
        reason: &'static str,
    },
}

/// An event from the server.
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

    /// Answers the server's ack request. Returns false when none was asked for or it was
    /// already answered. An answer to a connection that has since dropped is discarded (the
    /// server forgot the request with that connection).
    pub fn ack(&mut self, args: Payload) -> bool {
        let Some(acker) = self.ack.take() else {
            return false;
        };
        acker.shared.lock().acks_out.push_back(ServerAck {
            generation: acker.generation,
            id: acker.id,
            args,
        });
        acker.shared.wake.notify_one();
        true
    }
}

/// Most items handed from the supervisor to [`Events`] at once. One hand-over per batch
/// rather than per item: each one may wake the reader's task on another thread.
const EVENT_BATCH: usize = 64;

/// The hand-over's two ends: what the supervisor pushes into, what the application reads;
/// at most `event_buffer` items wait between them.
pub(crate) fn channel(event_buffer: usize) -> (Deliveries, Events) {
    let batch = event_buffer.min(EVENT_BATCH);
    let room = Arc::new(Semaphore::new(event_buffer.min(Semaphore::MAX_PERMITS)));
    let (tx, rx) = mpsc::unbounded_channel();
    let deliveries = Deliveries::new(
        tx,
        Arc::clone(&room),
        batch,
        event_buffer.min(Semaphore::MAX_PERMITS),
    );
    let events = Events {
        rx,
        room,
        buffered: Vec::new().into_iter(),
    };
    (deliveries, events)
}

/// The stream of [`Incoming`] items. Read it: while nobody does, the client stops reading the
/// socket once `event_buffer` items wait (backpressure, not unbounded memory).
#[derive(Debug)]
pub struct Events {
    /// Batches of at most `min(event_buffer, EVENT_BATCH)` items.
    rx: mpsc::UnboundedReceiver<Vec<Incoming>>,
    /// One permit per item that may still be sent: at most `event_buffer` items wait in the
    /// channel (plus the batch being read here).
    room: Arc<Semaphore>,
    /// The rest of the batch being read.
    buffered: std::vec::IntoIter<Incoming>,
}

impl Drop for Events {
    fn drop(&mut self) {
        // Nobody reads any more: the client must not wait for room that never comes.
        self.room.close();
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
                Some(batch) => {
                    self.room.add_permits(batch.len());
                    self.buffered = batch.into_iter();
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

/// The supervisor's side of [`Events`]: items are collected and handed over a batch at a
/// time.
pub(crate) struct Deliveries {
    tx: mpsc::UnboundedSender<Vec<Incoming>>,
    room: Arc<Semaphore>,
    /// Items collected and not handed over yet, in order. Kept across a lost link: what
    /// was received is the reader's, and so is the notice that the link went down.
    pending: Vec<Incoming>,
    batch: usize,
    /// The most items that may wait for the reader (`event_buffer`): the most one
    /// hand-over may take.
    capacity: usize,
}

impl Deliveries {
    fn new(
        tx: mpsc::UnboundedSender<Vec<Incoming>>,
        room: Arc<Semaphore>,
        batch: usize,
        capacity: usize,
    ) -> Self {
        Deliveries {
            tx,
            room,
            pending: Vec::new(),
            batch,
            capacity,
        }
    }

    /// Whether items wait to be handed over.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// How many items make a batch (frames read per round are bounded by it too).
    pub(crate) fn batch(&self) -> usize {
        self.batch
    }

    /// Adds an item; returns true when a batch is full and should be handed over.
    pub(crate) fn push(&mut self, item: Incoming) -> bool {
        self.pending.push(item);
        self.pending.len() >= self.batch
    }

    /// Hands the pending items over if the reader's buffer has room for them now; false
    /// when they must wait (see [`Deliveries::flush`]).
    pub(crate) fn try_flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let n = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        match self.room.try_acquire_many(n) {
            Ok(permits) => permits.forget(),
            Err(TryAcquireError::NoPermits) => return false,
            // A reader that dropped `Events` does not stop the client.
            Err(TryAcquireError::Closed) => {
                self.pending.clear();
                return true;
            }
        }
        self.send_pending();
        true
    }

    /// Sends what is pending; the permits for it were taken.
    fn send_pending(&mut self) {
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch));
        let _ = self.tx.send(batch);
    }

    /// Waits until the reader's buffer has room for the next pending items, at most
    /// `event_buffer` of them (see [`Deliveries::hand_over`]). Borrows nothing, so the
    /// supervisor can do other work while it waits.
    pub(crate) fn room(
        &self,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + 'static {
        // Never more than the semaphore's total, or this could never succeed.
        let n = self.pending.len().min(self.capacity).max(1);
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Arc::clone(&self.room).acquire_many_owned(n)
    }

    /// Hands over as many pending items as [`Deliveries::room`] made room for; true when
    /// none is left. Drops them if the reader is gone (a reader that dropped `Events` does
    /// not stop the client).
    pub(crate) fn hand_over(&mut self, room: Result<OwnedSemaphorePermit, AcquireError>) -> bool {
        let n = match room {
            Ok(permits) => {
                let n = permits.num_permits();
                permits.forget();
                n
            }
            Err(_) => {
                self.pending.clear();
                return true;
            }
        };
        if n >= self.pending.len() {
            self.send_pending();
        } else {
            let _ = self.tx.send(self.pending.drain(..n).collect());
        }
        self.pending.is_empty()
    }

    /// Hands one item over now, after what is pending, if there is room; otherwise it waits
    /// with them for the next hand-over (nothing is dropped: the reader learns, late, what
    /// happened while it was not reading).
    pub(crate) fn send_or_keep(&mut self, item: Incoming) {
        self.pending.push(item);
        self.try_flush();
    }

    /// Hands over whatever is pending, room or not: the supervisor is ending, and nothing
    /// will be pushed after this, so the bound can give way for these few items.
    pub(crate) fn hand_over_all(&mut self) {
        if !self.pending.is_empty() {
            self.send_pending();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(reason: &'static str) -> Incoming {
        Incoming::Disconnected { reason }
    }

    fn reason(item: Option<Incoming>) -> &'static str {
        match item {
            Some(Incoming::Disconnected { reason }) => reason,
            other => panic!("expected a notice, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn more_than_the_buffer_waits_and_goes_over_in_parts_in_order() {
        let (mut deliveries, mut events) = channel(2);
        for r in ["a", "b", "c", "d", "e"] {
            deliveries.send_or_keep(notice(r));
        }
        // "a" and "b" went at once; the rest waits for room, nothing dropped.
        assert!(deliveries.has_pending());
        assert_eq!(reason(events.next().await), "a");
        assert_eq!(reason(events.next().await), "b");
        let mut order = Vec::new();
        while deliveries.has_pending() {
            let granted = deliveries.room().await;
            deliveries.hand_over(granted);
            while let Ok(Some(item)) =
                tokio::time::timeout(std::time::Duration::from_millis(10), events.next()).await
            {
                order.push(reason(Some(item)));
            }
        }
        assert_eq!(order, ["c", "d", "e"]);
    }

    #[tokio::test]
    async fn at_the_end_what_waits_is_handed_over_whatever_the_room() {
        let (mut deliveries, mut events) = channel(1);
        for r in ["a", "b", "c"] {
            deliveries.send_or_keep(notice(r));
        }
        deliveries.hand_over_all();
        drop(deliveries);
        let mut all = Vec::new();
        while let Some(item) = events.next().await {
            all.push(reason(Some(item)));
        }
        assert_eq!(all, ["a", "b", "c"]);
    }
}
