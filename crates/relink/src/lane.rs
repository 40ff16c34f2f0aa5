//! The direct-write lane: what the handle's emitting tasks and the supervisor share, in
//! one place.
//!
//! - [`Shared`]: the queue (outbox, acks to send, the lane's state) behind one mutex, and
//!   the wake-ups (the supervisor's task, waiters for room).
//! - [`Link`]: the connected transport ([`Wire`]: a WebSocket, or long-polling) behind a
//!   mutex of its own.
//!
//! The supervisor reads the socket, answers pings and writes everything that waits in the
//! outbox. A plain emit made while nothing waits is written by the emitting task itself,
//! straight into tungstenite's write buffer: handing every emit to the supervisor's task
//! costs a cross-thread hand-over per message, several times the cost of writing it.
//! Writers never wait here: whoever finds the socket not ready to take a frame leaves the
//! frame to the supervisor, and only the supervisor waits for the socket.
//!
//! Lock order: the queue, then the link, hand over hand (an emitter locks the link before it
//! lets go of the queue, so nothing queued later reaches the socket first). Each lock is held
//! for a few instructions or one non-blocking poll, never across an `.await`.
//!
//! Invariant: an emitting task writes directly only when [`Queue::direct_link`] gives it the
//! link: connected, outbox empty, no acks to send, nothing of the supervisor's in transit
//! (`in_transit`: taken from the queue or queued by the session and not yet all in
//! tungstenite's buffer). Otherwise the emit goes through the outbox, so a plain emit never overtakes one queued
//! before it, nor lands between a packet's frames. What an emitter wrote without a flush
//! sets [`Shared::unflushed`]; the supervisor flushes ([`Writer`], which also moves the
//! queue into the core and keeps the supervisor's side of `in_transit`).

use crate::core::connection::Connection;
use crate::error::{AckError, EmitError, LinkError};
use crate::metrics;
use crate::outbox::{self, ServerAck};
use crate::transport::{Transport, Wire};
use futures_util::task::AtomicWaker;
use relink_proto::Payload;
use relink_proto::session::{EncodedEvent, Transmit};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Resolves an acked emit.
pub(crate) type AckSender = oneshot::Sender<Result<Payload, AckError>>;
/// The outbox of a running client.
pub(crate) type Outbox = outbox::Outbox<AckSender>;
/// One of its emits.
pub(crate) type Outgoing = outbox::Outgoing<AckSender>;

/// A shared handle to one connection's transport.
#[derive(Clone)]
pub(crate) struct Link {
    ws: Arc<Mutex<Wire>>,
    /// The client's counters of what goes out.
    traffic: metrics::Traffic,
}

impl Link {
    pub(crate) fn new(wire: Wire, traffic: metrics::Traffic) -> Self {
        Link {
            ws: Arc::new(Mutex::new(wire)),
            traffic,
        }
    }

    /// What carries the session now (it changes once, when polling upgrades).
    pub(crate) fn transport(&self) -> Transport {
        self.lock().kind()
    }

    /// Whether both handles are to the same connection.
    pub(crate) fn same(&self, other: &Link) -> bool {
        Arc::ptr_eq(&self.ws, &other.ws)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Wire> {
        // A panic inside one poll of tungstenite leaves nothing worse than a broken socket,
        // which the next read reports.
        self.ws.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls for the next message.
    pub(crate) fn poll_next(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, LinkError>>> {
        self.lock().poll_next(cx)
    }

    /// The next message.
    pub(crate) async fn next(&self) -> Option<Result<Message, LinkError>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next message if one is ready now.
    pub(crate) fn next_now(&self) -> Option<Option<Result<Message, LinkError>>> {
        match self.poll_next(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        }
    }

    /// Hands `message` to the transport, waiting while its write buffer is full.
    pub(crate) async fn feed(&self, message: Message) -> Result<(), LinkError> {
        let mut message = Some(message);
        std::future::poll_fn(|cx| {
            let mut ws = self.lock();
            std::task::ready!(ws.poll_ready(cx))?;
            match message.take() {
                Some(message) => {
                    let (event, bytes) = what_is_sent(&message);
                    let sent = ws.start_send(message);
                    if sent.is_ok() {
                        self.traffic.sent(event, bytes);
                    }
                    Poll::Ready(sent)
                }
                None => Poll::Ready(Ok(())),
            }
        })
        .await
    }

    /// Writes everything buffered (over long-polling: starts the POST).
    pub(crate) async fn flush(&self) -> Result<(), LinkError> {
        std::future::poll_fn(|cx| self.lock().poll_flush(cx)).await
    }

    /// Closes the transport: the WebSocket close handshake, or polling's `1`.
    pub(crate) async fn close(&self) -> Result<(), LinkError> {
        std::future::poll_fn(|cx| self.lock().poll_close(cx)).await
    }

    /// Hands `event` to the locked socket now if it can take it without waiting; gives it back
    /// otherwise. `waker` is woken when a socket that was not ready becomes writable (it
    /// should wake the supervisor, which then writes what was given back).
    ///
    /// Nothing is flushed: the caller asks the supervisor to.
    pub(crate) fn try_send(
        &self,
        ws: &mut MutexGuard<'_, Wire>,
        event: EncodedEvent,
        waker: &Waker,
    ) -> Result<(), TrySend> {
        match ws.poll_ready(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(())) => {}
            // Failing or full, nothing was written: the event stays whole, for the outbox
            // (a failed connection is the supervisor's to notice; the emit goes out on the
            // next one).
            Poll::Ready(Err(_)) | Poll::Pending => return Err(TrySend::NotReady(event)),
        }
        // Once ready, tungstenite accepts whole messages into its buffer (it only tries the
        // socket when the buffer is large, and keeps the message if the socket is full).
        let (text, attachments) = event.into_parts();
        // Counted once taken whole: an event lost half-way was not sent.
        let event = is_event(&text);
        let bytes = text.len() + attachments.iter().map(|a| a.len()).sum::<usize>();
        ws.start_send(Message::text(text))
            .map_err(|_| TrySend::Failed)?;
        for bytes in attachments {
            ws.start_send(Message::binary(bytes))
                .map_err(|_| TrySend::Failed)?;
        }
        self.traffic.sent(event, bytes);
        Ok(())
    }
}

/// What the metrics count of a frame going out: whether it is an event, and its size.
fn what_is_sent(message: &Message) -> (bool, usize) {
    match message {
        Message::Text(text) => (is_event(text), text.len()),
        Message::Binary(bytes) => (false, bytes.len()),
        _ => (false, 0),
    }
}

/// Whether a text frame is a Socket.IO event: Engine.IO `4` (message), then Socket.IO `2`
/// (event) or `5` (binary event); answers, pings and handshakes are not.
fn is_event(text: &str) -> bool {
    matches!(text.as_bytes(), [b'4', b'2' | b'5', ..])
}

/// Why [`Link::try_send`] did not take an event.
pub(crate) enum TrySend {
    /// The socket cannot take it now: the event, for the outbox.
    NotReady(EncodedEvent),
    /// The connection failed while writing; the event is gone with it (the supervisor sees
    /// the failure on its next read or write).
    Failed,
}

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
    /// The namespace, for answers to the server's events encoded by the tasks that give them.
    pub(crate) namespace: Arc<str>,
    /// The transport that worked last: tried first on the next attempt, in this run and
    /// the next.
    pub(crate) preferred: Preferred,
    /// The link is long-polling: attachments travel base64-encoded, a third larger, and
    /// must fit the server's `maxPayload` so.
    pub(crate) base64_attachments: AtomicBool,
    /// An emitter wrote to the socket without flushing: the supervisor flushes.
    pub(crate) unflushed: AtomicBool,
}

/// What the handle hands to the supervisor.
pub(crate) struct Queue {
    pub(crate) outbox: Outbox,
    /// Answers to the server's events, sent before new emits.
    pub(crate) acks_out: VecDeque<ServerAck>,
    pub(crate) connected: bool,
    /// The connected socket, for plain emits written by the emitting task (see
    /// [`crate::lane`]); `None` unless connected.
    pub(crate) link: Option<Link>,
    /// The supervisor took emits or acks from here, or has frames of its own, and has not
    /// handed them all to the socket yet: an emit written directly now would overtake them
    /// (or split a packet of several frames).
    pub(crate) in_transit: bool,
}

impl Queue {
    /// The socket, when an emit may be written to it directly without overtaking another.
    pub(crate) fn direct_link(&self) -> Option<&Link> {
        if self.in_transit || self.outbox.len() > 0 || !self.acks_out.is_empty() {
            return None;
        }
        self.link.as_ref()
    }
}

/// Wakes the supervisor's task (see [`Shared::task`]).
pub(crate) struct WakeSupervisor(pub(crate) Arc<Shared>);

impl std::task::Wake for WakeSupervisor {
    fn wake(self: Arc<Self>) {
        self.0.task.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.task.wake();
    }
}

impl Shared {
    /// Nothing queued, not connected, the server's limit not known yet.
    pub(crate) fn new(outbox: Outbox, namespace: &str) -> Self {
        Shared {
            queue: Mutex::new(Queue {
                outbox,
                acks_out: VecDeque::new(),
                connected: false,
                link: None,
                in_transit: false,
            }),
            unflushed: AtomicBool::new(false),
            wake: Notify::new(),
            task: AtomicWaker::new(),
            space: Notify::new(),
            max_payload: AtomicU64::new(u64::MAX),
            namespace: Arc::from(namespace),
            preferred: Preferred(AtomicU8::new(0)),
            base64_attachments: AtomicBool::new(false),
        }
    }

    /// A run of the connection task that ended is followed by a new one: the outbox accepts
    /// again, and nothing of the old link is left.
    pub(crate) fn reopen(&self) {
        self.link_down(Vec::new());
        self.lock().outbox.reopen();
        self.unflushed.store(false, Ordering::Release);
    }

    /// The namespace accepted us on `link`: emits may be written to it.
    pub(crate) fn link_up(&self, link: Option<Link>) {
        let mut queue = self.lock();
        queue.connected = true;
        queue.link = link;
    }

    /// The link is lost: emits queue again, volatile ones are dropped, `requeue` (retried
    /// emits that were in flight) goes first, and waiters for room look again.
    pub(crate) fn link_down(&self, requeue: Vec<Outgoing>) {
        let mut queue = self.lock();
        queue.connected = false;
        queue.link = None;
        queue.in_transit = false;
        queue.acks_out.clear();
        queue.outbox.link_lost(requeue);
        drop(queue);
        self.space.notify_waiters();
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue half-updated in a way that
        // matters more than losing the client, so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A transport, or none yet, in one atomic.
pub(crate) struct Preferred(AtomicU8);

impl Preferred {
    pub(crate) fn get(&self) -> Option<Transport> {
        decode(self.0.load(Ordering::Relaxed))
    }

    /// Sets `transport`; what was there.
    pub(crate) fn swap(&self, transport: Transport) -> Option<Transport> {
        let code = match transport {
            Transport::WebSocket => 1,
            Transport::Polling => 2,
        };
        decode(self.0.swap(code, Ordering::Relaxed))
    }
}

fn decode(code: u8) -> Option<Transport> {
    match code {
        1 => Some(Transport::WebSocket),
        2 => Some(Transport::Polling),
        _ => None,
    }
}

/// Why an item did not go into the queue.
pub(crate) enum FullInfo {
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
    pub(crate) fn into_error(self, name: String, args: Payload) -> EmitError {
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
pub(crate) type Rejected = Box<(Outgoing, FullInfo)>;

/// Queues `item` under the queue's lock, or hands it back with the reason.
pub(crate) fn push_locked(queue: &mut Queue, item: Outgoing) -> Result<u64, Rejected> {
    if queue.outbox.is_closed() {
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

/// Emits taken from the outbox per round, so inbound frames are read between batches.
const BATCH: usize = 256;
/// Flushes of emits written directly by their tasks happen at most this often while more
/// keep coming: a task streaming emits then pays one write to the socket per interval, not
/// one per emit. A lone emit is flushed at once.
const FLUSH_EVERY: Duration = Duration::from_millis(1);

/// How a write may end early.
pub(crate) enum Until<'a> {
    /// Only when the heartbeat says the link is dead.
    Heartbeat,
    /// Also when shutdown is asked for (the run loop sees it next).
    Shutdown(&'a mut watch::Receiver<bool>),
}

/// The supervisor's side of the lane: moving the queue into the core, and writing and
/// flushing, coalesced with what emitting tasks wrote directly.
pub(crate) struct Writer {
    /// Emits taken from the queue, or frames of the core's own, are on their way to the
    /// socket (mirrors `Queue::in_transit`, so the queue is locked only to clear it).
    in_transit: bool,
    /// An emitter wrote without a flush after it.
    flush_needed: bool,
    /// That flush waits for the flush timer (see [`FLUSH_EVERY`]).
    flush_deferred: bool,
    last_flush: Instant,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Writer {
            in_transit: false,
            flush_needed: false,
            flush_deferred: false,
            last_flush: Instant::now(),
        }
    }

    /// The link is gone: nothing of it waits to be written or flushed.
    pub(crate) fn reset(&mut self, shared: &Shared) {
        self.in_transit = false;
        self.flush_needed = false;
        self.flush_deferred = false;
        shared.unflushed.store(false, Ordering::Release);
    }

    /// When a deferred flush is due.
    pub(crate) fn flush_due(&self) -> Option<Instant> {
        self.flush_deferred.then(|| self.last_flush + FLUSH_EVERY)
    }

    /// Moves the user's answers and a batch of queued emits into the core (connected only).
    pub(crate) fn pump(&mut self, shared: &Shared, core: &mut Connection<AckSender>) {
        if !core.is_connected() {
            return;
        }
        let mut queue = shared.lock();
        if !queue.acks_out.is_empty() || queue.outbox.len() > 0 {
            // Until what is taken here reaches the socket, emits must queue behind it.
            queue.in_transit = true;
            self.in_transit = true;
        }
        let answers: Vec<ServerAck> = queue.acks_out.drain(..).collect();
        let batch: Vec<Outgoing> = std::iter::from_fn(|| queue.outbox.pop())
            .take(BATCH)
            .collect();
        let more = queue.outbox.len() > 0;
        drop(queue);
        if shared.unflushed.swap(false, Ordering::AcqRel) {
            self.flush_needed = true;
        }
        if more {
            shared.wake.notify_one();
        }
        if !batch.is_empty() {
            shared.space.notify_waiters();
        }
        let now = Instant::now().into_std();
        for answer in answers {
            core.send_ack(answer);
        }
        for item in batch {
            core.send(item, now);
        }
    }

    /// Writes what the core queued and flushes; with `flush_now` false, a flush only for
    /// emitters' direct writes may be deferred (see [`FLUSH_EVERY`]). Bounded by the
    /// heartbeat, so a peer that stops reading cannot hold the loop forever.
    pub(crate) async fn write(
        &mut self,
        shared: &Shared,
        link: &Link,
        core: &mut Connection<AckSender>,
        flush_now: bool,
        until: Until<'_>,
    ) -> Result<(), LinkError> {
        let first = core.poll_transmit();
        if first.is_none() && !self.in_transit {
            // Nothing to write: no futures, no timer.
            if !self.flush_needed {
                return Ok(());
            }
            // Only emits written by their tasks wait: coalesce their flushes while they
            // keep coming.
            if !flush_now && Instant::now() < self.last_flush + FLUSH_EVERY {
                self.flush_deferred = true;
                return Ok(());
            }
        }
        if first.is_some() && !self.in_transit {
            // Frames the core queued itself (a pong, an ack's attachments, a resend) go
            // out whole: an emit written directly must not land between a packet's frames.
            shared.lock().in_transit = true;
            self.in_transit = true;
        }
        let heartbeat = core.heartbeat_deadline().map(Instant::from_std);
        let in_transit = self.in_transit;
        let work = async {
            let mut next = first;
            while let Some(t) = next.take() {
                let message = match t {
                    Transmit::Text(text) => Message::text(text),
                    Transmit::Binary(bytes) => Message::binary(bytes),
                };
                link.feed(message).await?;
                next = core.poll_transmit();
            }
            if in_transit {
                // Everything the core held is in tungstenite's buffer, in order: emitters
                // may write directly again.
                shared.lock().in_transit = false;
            }
            link.flush().await
        };
        let stop = async {
            match until {
                Until::Shutdown(rx) => {
                    let _ = rx.wait_for(|stop| *stop).await;
                }
                Until::Heartbeat => std::future::pending::<()>().await,
            }
        };
        let heartbeat_lost = sleep_until(heartbeat);
        // Biased: a write that does not block never polls (and so never arms) the timer.
        let (result, done) = tokio::select! {
            biased;
            result = work => (result, true),
            () = heartbeat_lost => (Err(LinkError::PingTimeout), false),
            () = stop => (Ok(()), false),
        };
        // An interrupted write leaves frames in the core: direct emits stay off until a
        // later write finishes (or the link is lost, which resets all of this).
        if done && result.is_ok() {
            self.in_transit = false;
            self.flush_needed = false;
            self.flush_deferred = false;
            self.last_flush = Instant::now();
        }
        result
    }
}

/// Waits until `at`, or forever when there is no deadline.
pub(crate) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
