//! The handle users hold: emit, acks, events, state, disconnect.

use crate::config::{ClientBuilder, Config};
use crate::error::{AckError, BuildError, EmitError};
use crate::outbox::{AckRequest, Outbox, Outgoing};
use crate::state::ConnectionState;
use crate::supervisor::Supervisor;
use relink_proto::Payload;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};

/// How long `disconnect()` waits for the supervisor to say goodbye before it stops waiting.
const DISCONNECT_GRACE: Duration = Duration::from_millis(100);

/// State shared by the handle and the supervisor.
pub(crate) struct Shared {
    pub(crate) queue: Mutex<Queue>,
    /// Wakes the supervisor: something to send.
    pub(crate) wake: Notify,
    /// Wakes emitters waiting for room in the outbox.
    pub(crate) space: Notify,
    /// The server's `maxPayload`, once known.
    pub(crate) max_payload: AtomicU64,
}

/// What the handle hands to the supervisor.
pub(crate) struct Queue {
    pub(crate) outbox: Outbox,
    /// Answers to the server's events, sent before new emits.
    pub(crate) acks_out: VecDeque<ServerAck>,
    pub(crate) connected: bool,
    pub(crate) closed: bool,
}

/// Our answer to a server event that asked for an ack.
pub(crate) struct ServerAck {
    pub(crate) generation: u64,
    pub(crate) id: u64,
    pub(crate) args: Payload,
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
    name: String,
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
    pub(crate) fn new(name: String, args: Payload, ack: Option<(Arc<Shared>, u64, u64)>) -> Self {
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

/// The stream of [`Incoming`] items. Read it: while nobody does, the client stops reading the
/// socket once `event_buffer` items wait (backpressure, not unbounded memory).
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Incoming>,
}

impl Events {
    /// The next item; `None` once the client has ended and everything was read.
    pub async fn next(&mut self) -> Option<Incoming> {
        self.rx.recv().await
    }
}

impl futures_util::Stream for Events {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.rx.poll_recv(cx)
    }
}

struct Inner {
    shared: Arc<Shared>,
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
            }),
            wake: Notify::new(),
            space: Notify::new(),
            max_payload: AtomicU64::new(u64::MAX),
        });
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (state_tx, state_rx) = watch::channel(ConnectionState::initial());
        let (transitions, transitions_rx) = broadcast::channel(64);
        let (events_tx, events_rx) = mpsc::channel(config.event_buffer);
        let supervisor = Supervisor::new(
            Arc::new(config),
            Arc::clone(&shared),
            shutdown_rx,
            state_tx,
            transitions,
            events_tx,
        );
        runtime.spawn(supervisor.run());
        let client = Client {
            inner: Arc::new(Inner {
                shared,
                shutdown: shutdown_tx,
                state: state_rx,
                transitions: transitions_rx,
            }),
        };
        Ok((client, Events { rx: events_rx }))
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
    pub async fn emit(&self, event: impl Into<String>, args: Payload) -> Result<(), EmitError> {
        self.enqueue(event.into(), args, None, true).await
    }

    /// Like [`Client::emit`] but never waits: a full outbox is an error even while connected.
    pub fn try_emit(&self, event: impl Into<String>, args: Payload) -> Result<(), EmitError> {
        let item = self.prepare(event.into(), args, None)?;
        self.push(item).map_err(|rejected| {
            let (item, full) = *rejected;
            full.into_error(item)
        })
    }

    /// Emits only if connected right now; otherwise drops it (returns `Ok(false)`).
    /// For data that is worthless late, like positions or typing indicators.
    pub async fn emit_volatile(
        &self,
        event: impl Into<String>,
        args: Payload,
    ) -> Result<bool, EmitError> {
        if !self.inner.shared.lock().connected {
            return Ok(false);
        }
        self.enqueue(event.into(), args, None, true)
            .await
            .map(|()| true)
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
        let (tx, rx) = oneshot::channel();
        let ack = AckRequest {
            tx,
            timeout,
            retries_left: retries,
        };
        let deadline = (retries == 0).then(|| tokio::time::Instant::now() + timeout);
        self.enqueue(event.into(), args, Some(ack), true).await?;
        Ok(async move {
            let result = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(result) => result,
                    Err(_) => return Err(AckError::Timeout(timeout)),
                },
                None => rx.await,
            };
            result.unwrap_or(Err(AckError::Closed))
        })
    }

    fn prepare(
        &self,
        name: String,
        args: Payload,
        ack: Option<AckRequest>,
    ) -> Result<Outgoing, EmitError> {
        // Header, quotes and brackets of the encoded frame are well under 32 bytes.
        let largest_attachment = args
            .attachments()
            .iter()
            .map(|a| a.len())
            .max()
            .unwrap_or(0);
        let size = (name.len() + args.as_json().len() + 32).max(largest_attachment);
        let max = self.inner.shared.max_payload.load(Ordering::Relaxed);
        if size as u64 > max {
            return Err(EmitError::TooLarge {
                event: name,
                payload: args,
                size,
                limit: max,
            });
        }
        Ok(Outgoing {
            seq: 0,
            name,
            args,
            ack,
        })
    }

    fn push(&self, item: Outgoing) -> Result<(), Rejected> {
        let mut queue = self.inner.shared.lock();
        push_locked(&mut queue, item)?;
        drop(queue);
        self.inner.shared.wake.notify_one();
        Ok(())
    }

    async fn enqueue(
        &self,
        name: String,
        args: Payload,
        ack: Option<AckRequest>,
        wait: bool,
    ) -> Result<(), EmitError> {
        let mut item = self.prepare(name, args, ack)?;
        loop {
            let space = self.inner.shared.space.notified();
            tokio::pin!(space);
            {
                let mut queue = self.inner.shared.lock();
                match push_locked(&mut queue, item) {
                    Ok(()) => {
                        drop(queue);
                        self.inner.shared.wake.notify_one();
                        return Ok(());
                    }
                    Err(rejected) => {
                        let (back, full) = *rejected;
                        if !(wait
                            && matches!(
                                full,
                                FullInfo::Full {
                                    connected: true,
                                    ..
                                }
                            ))
                        {
                            return Err(full.into_error(back));
                        }
                        // Registered before the lock is released, so a wake-up in between
                        // is not lost.
                        space.as_mut().enable();
                        item = back;
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
    fn into_error(self, item: Outgoing) -> EmitError {
        let Outgoing { name, args, .. } = item;
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

fn push_locked(queue: &mut Queue, item: Outgoing) -> Result<(), Rejected> {
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
        .map_err(|item| Box::new((item, info)))
}
