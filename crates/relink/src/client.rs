//! The handle users hold: emit, acks, events, state, disconnect.

use crate::config::{ClientBuilder, Config};
use crate::error::{AckError, BuildError, EmitError};
use crate::link::{Link, TrySend};
use crate::outbox::{AckRequest, Acked, Body, Outbox, Outgoing};
use crate::state::ConnectionState;
use crate::supervisor::Supervisor;
use futures_util::task::AtomicWaker;
use relink_proto::Payload;
use relink_proto::session::EncodedEvent;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{
    AcquireError, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError, broadcast, mpsc,
    oneshot, watch,
};

/// How long `disconnect()` waits for the supervisor to say goodbye before it stops waiting.
const DISCONNECT_GRACE: Duration = Duration::from_millis(100);

/// State shared by the handle and the supervisor.
pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    /// Wakes the supervisor: something to send or to flush.
    pub(crate) wake: Notify,
    /// The supervisor's task, whatever it waits on: woken when a socket an emitter found
    /// not ready becomes writable (tungstenite keeps one write waker, and the emitter's
    /// replaced the supervisor's).
    pub(crate) task: AtomicWaker,
    /// Wakes emitters waiting for room in the outbox.
    pub(crate) space: Notify,
    /// The server's `maxPayload`, once known.
    pub(crate) max_payload: AtomicU64,
    /// An emitter wrote to the socket without flushing: the supervisor flushes.
    pub(crate) unflushed: AtomicBool,
}

/// What the handle hands to the supervisor.
pub(crate) struct Queue {
    pub(crate) outbox: Outbox,
    /// Answers to the server's events, sent before new emits.
    pub(crate) acks_out: VecDeque<ServerAck>,
    pub(crate) connected: bool,
    pub(crate) closed: bool,
    /// The connected socket, for plain emits written by the emitting task (see
    /// [`crate::link`]); `None` unless connected.
    pub(crate) link: Option<Link>,
    /// The supervisor took emits or acks from here, or has frames of its own, and has not
    /// handed them all to the socket yet: an emit written directly now would overtake them
    /// (or split a packet of several frames).
    pub(crate) in_transit: bool,
    /// The supervisor waits for the reader of `Events` and flushes nothing meanwhile.
    pub(crate) paused: bool,
}

impl Queue {
    /// The socket, when an emit may be written to it directly without overtaking another.
    fn direct_link(&self) -> Option<&Link> {
        if self.in_transit || self.paused || self.outbox.len() > 0 || !self.acks_out.is_empty() {
            return None;
        }
        self.link.as_ref()
    }
}

/// Our answer to a server event that asked for an ack.
pub(crate) struct ServerAck {
    pub(crate) generation: u64,
    pub(crate) id: u64,
    pub(crate) args: Payload,
}

/// Wakes the supervisor's task (see [`Shared::task`]).
struct WakeSupervisor(Arc<Shared>);

impl std::task::Wake for WakeSupervisor {
    fn wake(self: Arc<Self>) {
        self.0.task.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.task.wake();
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the client, so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
pub(crate) const EVENT_BATCH: usize = 64;

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
    pending: Vec<Incoming>,
    batch: usize,
}

impl Deliveries {
    fn new(tx: mpsc::UnboundedSender<Vec<Incoming>>, room: Arc<Semaphore>, batch: usize) -> Self {
        Deliveries {
            tx,
            room,
            pending: Vec::new(),
            batch,
        }
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

    /// Waits until the reader's buffer has room for the pending items (see
    /// [`Deliveries::hand_over`]). Borrows nothing, so the supervisor can do other work
    /// while it waits.
    pub(crate) fn room(
        &self,
    ) -> impl Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send + 'static {
        // A batch never holds more than `event_buffer` items, so this always can succeed.
        let n = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        Arc::clone(&self.room).acquire_many_owned(n)
    }

    /// Hands the pending items over once [`Deliveries::room`] made room for them; drops
    /// them if the reader is gone (a reader that dropped `Events` does not stop the client).
    pub(crate) fn hand_over(&mut self, room: Result<OwnedSemaphorePermit, AcquireError>) {
        match room {
            Ok(permits) => permits.forget(),
            Err(_) => {
                self.pending.clear();
                return;
            }
        }
        self.send_pending();
    }

    /// Hands one item over now if there is room, after what is pending; drops them
    /// otherwise.
    pub(crate) fn try_send_now(&mut self, item: Incoming) {
        self.pending.push(item);
        let n = u32::try_from(self.pending.len()).unwrap_or(u32::MAX);
        let room = self
            .room
            .try_acquire_many(n)
            .map(|permits| permits.forget());
        match room {
            Ok(()) => self.send_pending(),
            Err(_) => self.pending.clear(),
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    /// Wakes the supervisor's task; handed to the socket by emits written directly.
    wake_supervisor: Waker,
    /// Plain emits are encoded for it in the caller's task.
    namespace: String,
    shutdown: watch::Sender<bool>,
    state: watch::Receiver<ConnectionState>,
    /// Never read: kept to hand out new receivers. Holding a receiver rather than the sender
    /// lets the channel close when the supervisor ends, so listeners see the end.
    transitions: broadcast::Receiver<ConnectionState>,
}

/// A Socket.IO client that keeps itself connected. Cheap to clone; the connection ends when
/// the last clone is dropped or [`Client::disconnect`] is called.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

impl ClientBuilder {
    /// Validates the configuration and starts the client: the supervisor task connects in the
    /// background and keeps reconnecting. Must be called within a tokio runtime. Nothing is
    /// dialled when this returns an error.
    pub fn connect(self) -> Result<(Client, Events), BuildError> {
        let config = self.build()?;
        Client::start(config)
    }
}

impl Client {
    /// Starts a [`ClientBuilder`].
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    fn start(config: Config) -> Result<(Client, Events), BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                outbox: Outbox::new(config.outbox_packets, config.outbox_bytes),
                acks_out: VecDeque::new(),
                connected: false,
                closed: false,
                link: None,
                in_transit: false,
                paused: false,
            }),
            unflushed: AtomicBool::new(false),
            wake: Notify::new(),
            task: AtomicWaker::new(),
            space: Notify::new(),
            max_payload: AtomicU64::new(u64::MAX),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(ConnectionState::initial());
        let (transitions, transitions_rx) = broadcast::channel(64);
        let namespace = config.namespace.clone();
        let batch = config.event_buffer.min(EVENT_BATCH);
        let room = Arc::new(Semaphore::new(
            config.event_buffer.min(Semaphore::MAX_PERMITS),
        ));
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor::new(
            Arc::new(config),
            Arc::clone(&shared),
            shutdown_rx,
            state_tx,
            transitions,
            Deliveries::new(events_tx, Arc::clone(&room), batch),
        );
        runtime.spawn(supervisor.run_registered());
        let client = Client {
            inner: Arc::new(Inner {
                wake_supervisor: Waker::from(Arc::new(WakeSupervisor(Arc::clone(&shared)))),
                shared,
                namespace,
                shutdown: shutdown_tx,
                state: state_rx,
                transitions: transitions_rx,
            }),
        };
        Ok((
            client,
            Events {
                rx: events_rx,
                room,
                buffered: Vec::new().into_iter(),
            },
        ))
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// A receiver that always holds the latest state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// Every state transition from now on, in order, ending (`Closed`) after the terminal
    /// state. A slow reader that falls 64 behind sees `Lagged` and continues from there.
    /// To pair it with [`Client::state`] without gaps or repeats, compare
    /// [`ConnectionState::seq`].
    pub fn state_changes(&self) -> broadcast::Receiver<ConnectionState> {
        // Starts at the tail: nothing published before this call is replayed.
        self.inner.transitions.resubscribe()
    }

    /// The largest packet the server accepts (its `maxPayload`, in bytes), once a handshake
    /// has told it; `None` before the first. An emit larger than this fails with
    /// [`EmitError::TooLarge`], so a caller reading input can stop reading a message there.
    pub fn max_payload(&self) -> Option<u64> {
        let max = self.inner.shared.max_payload.load(Ordering::Relaxed);
        (max != u64::MAX).then_some(max)
    }

    /// Waits until connected, or returns the terminal state if the client ended first.
    pub async fn wait_connected(&self) -> Result<(), ConnectionState> {
        let mut rx = self.inner.state.clone();
        let result = rx
            .wait_for(|s| s.status == crate::Status::Connected || s.status.is_terminal())
            .await
            .map(|s| s.clone());
        match result {
            Ok(s) if s.status == crate::Status::Connected => Ok(()),
            Ok(s) => Err(s),
            Err(_) => Err(self.state()),
        }
    }

    /// Emits `event`. Connected: queued and written in order; waits only while the outbox is
    /// full. Disconnected: kept in the outbox and sent first after reconnecting, or handed
    /// back with [`EmitError::OutboxFull`] when the outbox is at its bound.
    pub async fn emit(&self, event: impl AsRef<str>, args: Payload) -> Result<(), EmitError> {
        let name = event.as_ref();
        let Some(item) = self.write_or_encode(name, &args)? else {
            return Ok(());
        };
        self.enqueue(item, true)
            .await
            .map(drop)
            .map_err(|rejected| rejected.1.into_error(name.to_owned(), args))
    }

    /// Like [`Client::emit`] but never waits: a full outbox is an error even while connected.
    pub fn try_emit(&self, event: impl AsRef<str>, args: Payload) -> Result<(), EmitError> {
        let name = event.as_ref();
        let Some(item) = self.write_or_encode(name, &args)? else {
            return Ok(());
        };
        self.push(item)
            .map_err(|rejected| rejected.1.into_error(name.to_owned(), args))
    }

    /// Emits only if connected right now; otherwise drops it (returns `Ok(false)`).
    /// For data that is worthless late, like positions or typing indicators.
    pub async fn emit_volatile(
        &self,
        event: impl AsRef<str>,
        args: Payload,
    ) -> Result<bool, EmitError> {
        if !self.inner.shared.lock().connected {
            return Ok(false);
        }
        self.emit(event, args).await.map(|()| true)
    }

    /// Emits `event` and waits for the server's acknowledgement, at most `timeout` from now.
    /// If the link drops after it was sent, fails with [`AckError::Disconnected`].
    pub async fn emit_with_ack(
        &self,
        event: impl Into<String>,
        args: Payload,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        self.emit_acked(event, args, timeout, 0).await?.await
    }

    /// At-least-once: emits `event` and resends it, across reconnects and after each
    /// `timeout` without an ack, up to `retries` more times. The receiver may see duplicates.
    pub async fn emit_with_retries(
        &self,
        event: impl Into<String>,
        args: Payload,
        timeout: Duration,
        retries: u32,
    ) -> Result<Payload, AckError> {
        self.emit_acked(event, args, timeout, retries).await?.await
    }

    /// Queues an acked emit and returns once it is queued, with a future for its ack.
    ///
    /// Use it to send many acked emits in order without waiting for each ack in turn. With
    /// `retries == 0` the future fails with [`AckError::Timeout`] `timeout` after this call;
    /// with retries each try gets `timeout` from when it is written.
    pub async fn emit_acked(
        &self,
        event: impl Into<String>,
        args: Payload,
        timeout: Duration,
        retries: u32,
    ) -> Result<impl Future<Output = Result<Payload, AckError>> + Send + 'static, EmitError> {
        let name = event.into();
        if let Some((size, limit)) = self.too_large(&name, &args) {
            return Err(EmitError::TooLarge {
                event: name,
                payload: args,
                size,
                limit,
            });
        }
        let (tx, rx) = oneshot::channel();
        // A timeout beyond any clock is no deadline at all.
        let deadline = (retries == 0)
            .then(|| tokio::time::Instant::now().checked_add(timeout))
            .flatten();
        let ack = AckRequest {
            tx,
            timeout,
            retries_left: retries,
            deadline: deadline.map(tokio::time::Instant::into_std),
        };
        let item = Outgoing {
            seq: 0,
            body: Body::Acked(Acked { name, args, ack }),
        };
        let seq = match self.enqueue(item, true).await {
            Ok(seq) => seq,
            Err(rejected) => {
                let (item, full) = *rejected;
                let Body::Acked(Acked { name, args, .. }) = item.body else {
                    unreachable!("an acked emit comes back as it went in")
                };
                return Err(full.into_error(name, args));
            }
        };
        let shared = Arc::clone(&self.inner.shared);
        Ok(async move {
            let result = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Timed out before it was sent (the reference client drops such
                        // packets too): it is not sent late, and its room is freed.
                        if shared.lock().outbox.remove(seq).is_some() {
                            shared.space.notify_waiters();
                        }
                        return Err(AckError::Timeout(timeout));
                    }
                },
                None => rx.await,
            };
            result.unwrap_or(Err(AckError::Closed))
        })
    }

    /// The frame's size and the server's limit, when `args` would make a frame (or an
    /// attachment) larger than the server's `maxPayload`.
    fn too_large(&self, name: &str, args: &Payload) -> Option<(usize, u64)> {
        // Header, quotes and brackets of the encoded frame are well under 32 bytes.
        let largest_attachment = args
            .attachments()
            .iter()
            .map(|a| a.len())
            .max()
            .unwrap_or(0);
        let size = (name.len() + args.as_json().len() + 32).max(largest_attachment);
        let max = self.inner.shared.max_payload.load(Ordering::Relaxed);
        (size as u64 > max).then_some((size, max))
    }

    /// Encodes a plain emit here, in the caller's task, and writes it to the socket when
    /// nothing waits before it (`Ok(None)`); otherwise returns it for the outbox.
    fn write_or_encode(&self, name: &str, args: &Payload) -> Result<Option<Outgoing>, EmitError> {
        if let Some((size, limit)) = self.too_large(name, args) {
            return Err(EmitError::TooLarge {
                event: name.to_owned(),
                payload: args.clone(),
                size,
                limit,
            });
        }
        let event = EncodedEvent::new(&self.inner.namespace, name, args);
        let shared = &self.inner.shared;
        let max = shared.max_payload.load(Ordering::Relaxed);
        if event.text().len() as u64 > max {
            // The estimate above leaves out the namespace; the frame is what counts.
            return Err(EmitError::TooLarge {
                event: name.to_owned(),
                payload: args.clone(),
                size: event.text().len(),
                limit: max,
            });
        }
        let queue = shared.lock();
        let Some(link) = queue.direct_link().cloned() else {
            drop(queue);
            return Ok(Some(Outgoing {
                seq: 0,
                body: Body::Encoded(event),
            }));
        };
        // Hand over hand: once the socket is held, nothing queued later can reach it first,
        // so the queue is let go before the write.
        let mut ws = link.lock();
        drop(queue);
        let event = match Link::try_send(&mut ws, event, &self.inner.wake_supervisor) {
            Ok(()) | Err(TrySend::Failed) => {
                drop(ws);
                // Written (or lost with a failing connection, as a write by the supervisor
                // would be): the supervisor flushes it out.
                // Streaming emits find it set already: one load, no wake-up.
                if !shared.unflushed.load(Ordering::Acquire)
                    && !shared.unflushed.swap(true, Ordering::AcqRel)
                {
                    shared.wake.notify_one();
                }
                return Ok(None);
            }
            Err(TrySend::NotReady(event)) => event,
        };
        drop(ws);
        Ok(Some(Outgoing {
            seq: 0,
            body: Body::Encoded(event),
        }))
    }

    fn push(&self, item: Outgoing) -> Result<(), Rejected> {
        let mut queue = self.inner.shared.lock();
        push_locked(&mut queue, item)?;
        drop(queue);
        self.inner.shared.wake.notify_one();
        Ok(())
    }

    /// Queues `item`; with `wait`, waits for room while connected and the outbox is full.
    /// Returns the number the outbox gave it.
    async fn enqueue(&self, mut item: Outgoing, wait: bool) -> Result<u64, Rejected> {
        loop {
            let space = self.inner.shared.space.notified();
            tokio::pin!(space);
            {
                let mut queue = self.inner.shared.lock();
                match push_locked(&mut queue, item) {
                    Ok(seq) => {
                        drop(queue);
                        self.inner.shared.wake.notify_one();
                        return Ok(seq);
                    }
                    Err(rejected) => {
                        let waits = wait
                            && matches!(
                                rejected.1,
                                FullInfo::Full {
                                    connected: true,
                                    ..
                                }
                            );
                        if !waits {
                            return Err(rejected);
                        }
                        // Registered before the lock is released, so a wake-up in between
                        // is not lost.
                        space.as_mut().enable();
                        item = rejected.0;
                    }
                }
            }
            space.await;
        }
    }

    /// Leaves the namespace cleanly (DISCONNECT, WebSocket close) and stops reconnecting.
    /// Returns within about 100 ms whatever the client is doing: sleeping in backoff, stuck
    /// in a TCP connect, or mid-handshake.
    pub async fn disconnect(&self) {
        self.inner.shutdown.send_replace(true);
        let mut rx = self.inner.state.clone();
        let _ =
            tokio::time::timeout(DISCONNECT_GRACE, rx.wait_for(|s| s.status.is_terminal())).await;
    }
}

/// Why an item did not go into the queue.
enum FullInfo {
    Closed,
    TooBig {
        limit: usize,
    },
    Full {
        connected: bool,
        packets: usize,
        bytes: usize,
    },
}

impl FullInfo {
    fn into_error(self, name: String, args: Payload) -> EmitError {
        match self {
            FullInfo::Closed => EmitError::Closed {
                event: name,
                payload: args,
            },
            FullInfo::TooBig { limit } => {
                let size = name.len() + args.as_json().len();
                EmitError::TooLarge {
                    event: name,
                    payload: args,
                    size,
                    limit: limit as u64,
                }
            }
            FullInfo::Full { packets, bytes, .. } => EmitError::OutboxFull {
                event: name,
                payload: args,
                packets,
                bytes,
            },
        }
    }
}

/// An emit handed back by the queue, and why. Boxed: it is the rare path.
type Rejected = Box<(Outgoing, FullInfo)>;

fn push_locked(queue: &mut Queue, item: Outgoing) -> Result<u64, Rejected> {
    if queue.closed {
        return Err(Box::new((item, FullInfo::Closed)));
    }
    if !queue.outbox.could_fit(item.size()) {
        let limit = queue.outbox.max_bytes();
        return Err(Box::new((item, FullInfo::TooBig { limit })));
    }
    let info = FullInfo::Full {
        connected: queue.connected,
        packets: queue.outbox.len(),
        bytes: queue.outbox.bytes(),
    };
    queue
        .outbox
        .push(item)
        .map_err(|item| Box::new((*item, info)))
}
