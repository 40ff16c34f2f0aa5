//! What the connection hands to the application: events (with their acks), notices, and
//! the hand-over from the supervisor to [`Events`], bounded by `event_buffer` items.

use crate::core::connection::Delivery;
use crate::lane::Shared;
use crate::outbox::ServerAck;
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
/// at most `event_buffer` items, and `max_bytes` bytes of them, wait between them.
pub(crate) fn channel(event_buffer: usize, max_bytes: usize) -> (Deliveries, Events) {
    // A hand-over takes its permits in one call, which counts in u32.
    let most = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
    let capacity = event_buffer.min(most);
    let capacity_bytes = max_bytes.min(most);
    let room = Arc::new(Semaphore::new(capacity));
    let room_bytes = Arc::new(Semaphore::new(capacity_bytes));
    let (tx, rx) = mpsc::unbounded_channel();
    let deliveries = Deliveries {
        tx,
        room: Arc::clone(&room),
        room_bytes: Arc::clone(&room_bytes),
        pending: Vec::new(),
        batch: event_buffer.min(EVENT_BATCH),
        capacity,
        capacity_bytes,
    };
    let events = Events {
        rx,
        room,
        room_bytes,
        buffered: Vec::new().into_iter(),
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
        Incoming::Connected { .. } | Incoming::Disconnected { .. } => 0,
    }
}

/// One hand-over: the items and the byte permits taken for them.
type Batch = (Vec<Incoming>, usize);

/// The stream of [`Incoming`] items. Read it: while nobody does, the client stops reading the
/// socket once `event_buffer` items (or `max_buffered_bytes` of them) wait (backpressure,
/// not unbounded memory).
#[derive(Debug)]
pub struct Events {
    /// Batches of at most `min(event_buffer, EVENT_BATCH)` items.
    rx: mpsc::UnboundedReceiver<Batch>,
    /// One permit per item that may still be sent: at most `event_buffer` items wait in the
    /// channel (plus the batch being read here).
    room: Arc<Semaphore>,
    /// One permit per byte that may still be sent.
    room_bytes: Arc<Semaphore>,
    /// The rest of the batch being read.
    buffered: std::vec::IntoIter<Incoming>,
}

impl Drop for Events {
    fn drop(&mut self) {
        // Nobody reads any more: the client must not wait for room that never comes.
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
    tx: mpsc::UnboundedSender<Batch>,
    room: Arc<Semaphore>,
    room_bytes: Arc<Semaphore>,
    /// Items collected and not handed over yet, in order. Kept across a lost link: what
    /// was received is the reader's, and so is the notice that the link went down.
    pending: Vec<Incoming>,
    batch: usize,
    /// The most items that may wait for the reader (`event_buffer`): the most one
    /// hand-over may take.
    capacity: usize,
    /// The most bytes that may wait for the reader.
    capacity_bytes: usize,
}

/// The permits one hand-over took: items, then bytes.
pub(crate) type Room = (OwnedSemaphorePermit, OwnedSemaphorePermit);

impl Deliveries {
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

    /// The first pending items one hand-over may take (at most `event_buffer` items and
    /// `max_buffered_bytes` bytes, and at least one item), and their bytes.
    fn next_part(&self) -> (usize, usize) {
        let mut bytes = 0usize;
        let mut items = 0;
        for item in self.pending.iter().take(self.capacity) {
            let weight = weight(item);
            if items > 0 && bytes.saturating_add(weight) > self.capacity_bytes {
                break;
            }
            bytes = bytes.saturating_add(weight);
            items += 1;
        }
        // One event never weighs more than the bound (a packet is bounded by
        // max_message_size, and the bound is at least that); the clamp keeps a wait that
        // could never end out of reach anyway.
        (items, bytes.min(self.capacity_bytes))
    }

    /// Hands the pending items over if the reader's buffer has room for all of them now;
    /// false when they must wait (see [`Deliveries::room`]).
    pub(crate) fn try_flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let (items, bytes) = self.next_part();
        if items < self.pending.len() {
            return false;
        }
        let count = u32::try_from(items).unwrap_or(u32::MAX);
        let weight = u32::try_from(bytes).unwrap_or(u32::MAX);
        let taken = match self.room.try_acquire_many(count) {
            Ok(for_items) => match self.room_bytes.try_acquire_many(weight) {
                Ok(for_bytes) => {
                    for_items.forget();
                    for_bytes.forget();
                    Ok(())
                }
                // The item permits go back when dropped here.
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match taken {
            Ok(()) => {
                self.send_part(items, bytes);
                true
            }
            Err(TryAcquireError::NoPermits) => false,
            // A reader that dropped `Events` does not stop the client.
            Err(TryAcquireError::Closed) => {
                self.pending.clear();
                true
            }
        }
    }

    /// Sends the first `items` pending items, for which `bytes` byte permits were taken.
    fn send_part(&mut self, items: usize, bytes: usize) {
        let part = if items >= self.pending.len() {
            std::mem::replace(&mut self.pending, Vec::with_capacity(self.batch))
        } else {
            self.pending.drain(..items).collect()
        };
        let _ = self.tx.send((part, bytes));
    }

    /// Waits until the reader's buffer has room for the next pending items (see
    /// [`Deliveries::hand_over`]). Borrows nothing, so the supervisor can do other work
    /// while it waits.
    pub(crate) fn room(&self) -> impl Future<Output = Result<Room, AcquireError>> + Send + 'static {
        let (items, bytes) = self.next_part();
        let count = u32::try_from(items.max(1)).unwrap_or(u32::MAX);
        let weight = u32::try_from(bytes).unwrap_or(u32::MAX);
        let room = Arc::clone(&self.room);
        let room_bytes = Arc::clone(&self.room_bytes);
        async move {
            let for_items = room.acquire_many_owned(count).await?;
            let for_bytes = room_bytes.acquire_many_owned(weight).await?;
            Ok((for_items, for_bytes))
        }
    }

    /// Hands over the items [`Deliveries::room`] made room for; true when none is left.
    /// Drops them if the reader is gone (a reader that dropped `Events` does not stop the
    /// client).
    pub(crate) fn hand_over(&mut self, room: Result<Room, AcquireError>) -> bool {
        match room {
            Ok((for_items, for_bytes)) => {
                let (items, bytes) = (for_items.num_permits(), for_bytes.num_permits());
                for_items.forget();
                for_bytes.forget();
                self.send_part(items, bytes);
            }
            Err(_) => self.pending.clear(),
        }
        self.pending.is_empty()
    }

    /// Hands one item over now, after what is pending, if there is room; otherwise it waits
    /// with them for the next hand-over (nothing is dropped: the reader learns, late, what
    /// happened while it was not reading).
    #[cfg(test)]
    pub(crate) fn send_or_keep(&mut self, item: Incoming) {
        self.pending.push(item);
        self.try_flush();
    }

    /// Hands over whatever is pending, room or not: the supervisor is ending, and nothing
    /// will be pushed after this, so the bound can give way for these few items.
    pub(crate) fn hand_over_all(&mut self) {
        if !self.pending.is_empty() {
            let items = self.pending.len();
            self.send_part(items, 0);
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
        let (mut deliveries, mut events) = channel(2, 1 << 20);
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
        let (mut deliveries, mut events) = channel(1, 1 << 20);
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
