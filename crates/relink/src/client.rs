//! The handle users hold: emit, acks, events, state, disconnect.

use crate::config::{ClientBuilder, Config};
use crate::error::{AckError, BuildError, EmitError, ReconnectError};
use crate::events::Events;
use crate::handlers::Handlers;
use crate::lane::{
    FullInfo, Link, Outbox, Outgoing, Rejected, Shared, TrySend, WakeSupervisor, push_locked,
};
use crate::outbox::{AckRequest, Acked, Body};
use crate::state::ConnectionState;
use crate::supervisor::{Ends, Supervisor};
use relink_proto::session::EncodedEvent;
use relink_proto::{IntoArgs, Payload};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};

/// The arguments as a payload, or why they cannot be.
fn arguments(event: &str, args: impl IntoArgs) -> Result<Payload, EmitError> {
    args.into_args().map_err(|e| EmitError::InvalidArgs {
        event: event.to_owned(),
        reason: e.to_string(),
    })
}

/// Event `event` encoded as its frame, in the caller's task (a `Serialize` value in one
/// pass, straight into the frame).
fn encoded(namespace: &str, event: &str, args: impl IntoArgs) -> Result<EncodedEvent, EmitError> {
    args.into_event(namespace, event)
        .map_err(|e| EmitError::InvalidArgs {
            event: event.to_owned(),
            reason: e.to_string(),
        })
}

/// The arguments of an emit that is handed back (read back from its frame).
fn handed_back(item: &Outgoing) -> Payload {
    match &item.body {
        Body::Encoded(event) | Body::Volatile(event) => event.args(),
        Body::Acked(acked) => acked.args.clone(),
    }
}

/// A plain emit for the outbox.
fn queued(event: EncodedEvent) -> Outgoing {
    Outgoing {
        seq: 0,
        body: Body::Encoded(event),
    }
}

/// How long `disconnect()` waits for the supervisor to say goodbye before it stops waiting.
const DISCONNECT_GRACE: Duration = Duration::from_millis(100);

struct Inner {
    shared: Arc<Shared>,
    handlers: Arc<Handlers>,
    /// Wakes the supervisor's task; handed to the socket by emits written directly.
    wake_supervisor: Waker,
    /// Plain emits are encoded for it in the caller's task.
    namespace: String,
    /// For [`Client::reconnect`]: a new run of the connection task.
    config: Arc<Config>,
    runtime: tokio::runtime::Handle,
    /// The current run of the connection task.
    run: std::sync::Mutex<Run>,
}

/// One run of the connection task, from `connect()` or `reconnect()` to its end: how to
/// stop it and what it publishes. Each run has channels of its own, so listeners of one
/// see it end (`Closed`, `None`) whatever comes after.
struct Run {
    shutdown: watch::Sender<bool>,
    state: watch::Receiver<ConnectionState>,
    /// Never read: kept to hand out new receivers. Holding a receiver rather than the sender
    /// lets the channel close when the run ends, so listeners see the end.
    transitions: broadcast::Receiver<ConnectionState>,
}

impl Inner {
    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a run of the connection task; its first state follows `seq`.
    fn launch(
        config: &Arc<Config>,
        shared: &Arc<Shared>,
        handlers: &Arc<Handlers>,
        runtime: &tokio::runtime::Handle,
        seq: u64,
    ) -> (Run, Events) {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let first = ConnectionState {
            seq,
            ..ConnectionState::initial()
        };
        let (state_tx, state_rx) = watch::channel(first);
        let (transitions, transitions_rx) = broadcast::channel(64);
        let (deliveries, events) = crate::events::channel(handlers.budget());
        let ends = Ends {
            shutdown: shutdown_rx,
            state_tx,
            transitions,
            events: deliveries,
        };
        let supervisor = Supervisor::new(
            Arc::clone(config),
            Arc::clone(shared),
            ends,
            Arc::clone(handlers),
            seq,
        );
        runtime.spawn(supervisor.run_registered());
        let run = Run {
            shutdown: shutdown_tx,
            state: state_rx,
            transitions: transitions_rx,
        };
        (run, events)
    }
}

/// A Socket.IO client that keeps itself connected. Cheap to clone; the connection ends when
/// the last clone is dropped or [`Client::disconnect`] is called.
///
/// ```
/// use relink::Client;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, _) = Client::builder(url).token("secret").connect()?;
///
/// // Fire and forget: queued in the outbox while disconnected, sent in order.
/// client.emit("echo", "hello").await?;
/// // A tuple is the argument list; the server's answer comes back as a `Payload`.
/// let reply = client
///     .emit_with_ack("echo", ("sum", 2, 3), Duration::from_secs(5))
///     .await?;
/// let (what, a, b): (String, i32, i32) = reply.deserialize()?;
/// assert_eq!((what.as_str(), a + b), ("sum", 5));
///
/// client.disconnect().await;
/// # server.stop().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A handle that does not keep the client alive (see [`Client::downgrade`]): for a handler
/// that emits, which would otherwise keep its own client running forever.
#[derive(Clone, Debug)]
pub struct WeakClient {
    inner: std::sync::Weak<Inner>,
}

impl WeakClient {
    /// The client, while some [`Client`] handle still holds it.
    pub fn upgrade(&self) -> Option<Client> {
        self.inner.upgrade().map(|inner| Client { inner })
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("state", &*self.inner.run().state.borrow())
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
        let shared = Arc::new(Shared::new(
            Outbox::new(config.outbox_packets, config.outbox_bytes),
            &config.namespace,
        ));
        let namespace = config.namespace.clone();
        // One budget for `Events` and every handler, for the client's life: a reader that
        // makes room wakes the supervisor (it stopped reading, or owes a `Lagged` notice).
        let budget = {
            let shared = Arc::clone(&shared);
            crate::flow::Budget::new(
                config.overflow,
                config.event_buffer,
                config.max_buffered_bytes,
                move || shared.wake.notify_one(),
            )
        };
        let handlers = Arc::new(Handlers::new(runtime.clone(), budget));
        // Registered on the builder: in place before any event can arrive.
        for (name, handler) in &config.handlers {
            handlers.on(name.clone(), Arc::clone(handler));
        }
        let config = Arc::new(config);
        let (run, events) = Inner::launch(&config, &shared, &handlers, &runtime, 0);
        let client = Client {
            inner: Arc::new(Inner {
                wake_supervisor: Waker::from(Arc::new(WakeSupervisor(Arc::clone(&shared)))),
                shared,
                handlers,
                namespace,
                config,
                runtime,
                run: std::sync::Mutex::new(run),
            }),
        };
        Ok((client, events))
    }

    /// Starts the client again after it ended (`disconnected` or `failed`), with the same
    /// configuration, handlers and outbox bound, without building a new client: the state
    /// goes on from the end's `seq`, and a new [`Events`] comes back (the old one ended).
    /// Receivers from [`Client::watch_state`] and [`Client::state_changes`] taken before
    /// belong to the run that ended; take new ones. Fails while the client is running.
    ///
    /// Events the old [`Events`] still holds count against the same budget
    /// ([`ClientBuilder::max_buffered_bytes`]): read it to its end, or drop it, before
    /// relying on the new one (shadowing a variable does not drop it).
    pub fn reconnect(&self) -> Result<Events, ReconnectError> {
        let inner = &self.inner;
        let mut run = inner.run();
        let ended = run.state.borrow().clone();
        if !ended.status.is_terminal() {
            return Err(ReconnectError::StillRunning);
        }
        inner.shared.reopen();
        let (next, events) = Inner::launch(
            &inner.config,
            &inner.shared,
            &inner.handlers,
            &inner.runtime,
            ended.seq,
        );
        *run = next;
        Ok(events)
    }

    /// Calls `handler` with every server event named `event`, in order, one at a time, on a
    /// task of its own; it replaces the handler before it for that name. An event goes to
    /// its named handler, else to [`Client::on_any`]'s, else to [`Events`]. Events that came
    /// before this call went to `Events`: to be sure to see the first ones, register on the
    /// builder ([`ClientBuilder::on`]). The events waiting for handlers count against
    /// [`ClientBuilder::max_buffered_bytes`] with those in `Events`: a handler that falls
    /// behind makes the connection stop reading until it catches up (or, with
    /// [`crate::Overflow::Drop`], loses what comes meanwhile, one WARN per episode); one
    /// that panics loses that event
    /// (logged at ERROR) and goes on. Answer an ack request with
    /// [`Event::ack`](crate::Event::ack).
    ///
    /// The handler lives as long as the client: if it must emit, give it a
    /// [`Client::downgrade`] handle, not a `Client` clone, or the client it holds never
    /// ends until `disconnect()`.
    ///
    /// ```no_run
    /// # async fn run(client: relink::Client) {
    /// client.on("chat", |mut event| async move {
    ///     if let Ok((text,)) = event.args().deserialize::<(String,)>() {
    ///         println!("chat: {text}");
    ///     }
    ///     event.ack("received");
    /// });
    /// # }
    /// ```
    pub fn on<F, Fut>(&self, event: impl Into<String>, handler: F)
    where
        F: Fn(crate::Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .handlers
            .on(Some(event.into()), crate::handlers::boxed(handler));
    }

    /// Calls `handler` with every server event no named handler takes (see [`Client::on`]).
    pub fn on_any<F, Fut>(&self, handler: F)
    where
        F: Fn(crate::Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.inner
            .handlers
            .on(None, crate::handlers::boxed(handler));
    }

    /// Removes the handler for `event`; its events go to the catch-all or `Events` again.
    /// Events that were already waiting for it are discarded (it ends after the one it is
    /// running), so a handler that is stuck can be removed to free the connection.
    pub fn off(&self, event: &str) {
        self.inner.handlers.off(Some(event));
    }

    /// Removes the catch-all handler.
    pub fn off_any(&self) {
        self.inner.handlers.off(None);
    }

    /// A handle that does not keep the client alive, for handlers (see [`Client::on`]).
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// The current state.
    pub fn state(&self) -> ConnectionState {
        self.inner.run().state.borrow().clone()
    }

    /// A receiver that always holds the latest state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.run().state.clone()
    }

    /// Every state transition from now on, in order, ending (`Closed`) after the terminal
    /// state (of this run: after [`Client::reconnect`], take a new one). A slow reader that falls 64 behind sees `Lagged` and continues from there.
    /// To pair it with [`Client::state`] without gaps or repeats, compare
    /// [`ConnectionState::seq`].
    pub fn state_changes(&self) -> broadcast::Receiver<ConnectionState> {
        // Starts at the tail: nothing published before this call is replayed.
        self.inner.run().transitions.resubscribe()
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
        let mut rx = self.inner.run().state.clone();
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
    pub async fn emit(&self, event: impl AsRef<str>, args: impl IntoArgs) -> Result<(), EmitError> {
        let name = event.as_ref();
        let event = encoded(&self.inner.namespace, name, args)?;
        let Some(item) = self.write_or_queue(name, event, None)? else {
            return Ok(());
        };
        let item = queued(item);
        self.enqueue(item, true)
            .await
            .map(drop)
            .map_err(|rejected| {
                let args = handed_back(&rejected.0);
                rejected.1.into_error(name.to_owned(), args)
            })
    }

    /// Like [`Client::emit`] but never waits: a full outbox is an error even while connected.
    pub fn try_emit(&self, event: impl AsRef<str>, args: impl IntoArgs) -> Result<(), EmitError> {
        let name = event.as_ref();
        let event = encoded(&self.inner.namespace, name, args)?;
        let Some(item) = self.write_or_queue(name, event, None)? else {
            return Ok(());
        };
        self.push(queued(item)).map_err(|rejected| {
            let args = handed_back(&rejected.0);
            rejected.1.into_error(name.to_owned(), args)
        })
    }

    /// Emits only on the connection there is right now: `Ok(true)` when written or queued
    /// on it, `Ok(false)` when dropped because the client is not connected or the outbox is
    /// full. Queued and then overtaken by a lost link, it is dropped too: it never goes out
    /// after a reconnect. For data that is worthless late, like positions or typing
    /// indicators. Never waits.
    pub async fn emit_volatile(
        &self,
        event: impl AsRef<str>,
        args: impl IntoArgs,
    ) -> Result<bool, EmitError> {
        let name = event.as_ref();
        let event = encoded(&self.inner.namespace, name, args)?;
        // The connection it is for: written on it or dropped, never on a later one.
        let Some(on) = self.inner.shared.lock().link.clone() else {
            return Ok(false);
        };
        let Some(event) = self.write_or_queue(name, event, Some(&on))? else {
            return Ok(true);
        };
        let mut queue = self.inner.shared.lock();
        // Checked again under the lock the link's loss takes to drop volatile emits from
        // the outbox: queued on this connection, it is written on it or dropped.
        if !queue.link.as_ref().is_some_and(|link| link.same(&on)) {
            return Ok(false);
        }
        let item = Outgoing {
            seq: 0,
            body: Body::Volatile(event),
        };
        match push_locked(&mut queue, item) {
            Ok(_) => {
                drop(queue);
                self.inner.shared.wake.notify_one();
                Ok(true)
            }
            Err(rejected) => match rejected.1 {
                FullInfo::Closed => {
                    let args = handed_back(&rejected.0);
                    Err(rejected.1.into_error(name.to_owned(), args))
                }
                FullInfo::TooBig { .. } | FullInfo::Full { .. } => Ok(false),
            },
        }
    }

    /// Emits `event` and waits for the server's acknowledgement, at most `timeout` from now.
    /// If the link drops after it was sent, fails with [`AckError::Disconnected`].
    pub async fn emit_with_ack(
        &self,
        event: impl Into<String>,
        args: impl IntoArgs,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        self.emit_acked(event, args, timeout, 0).await?.await
    }

    /// At-least-once: emits `event` and resends it, across reconnects and after each
    /// `timeout` without an ack, up to `retries` more times. The receiver may see duplicates.
    pub async fn emit_with_retries(
        &self,
        event: impl Into<String>,
        args: impl IntoArgs,
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
        args: impl IntoArgs,
        timeout: Duration,
        retries: u32,
    ) -> Result<impl Future<Output = Result<Payload, AckError>> + Send + 'static, EmitError> {
        let name = event.into();
        let args = arguments(&name, args)?;
        if let Some((size, limit)) = self.too_large_args(&name, &args) {
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

    /// The frame's size and the server's limit, when `event` is larger than the server's
    /// `maxPayload`: its text frame, or an attachment (as base64 over long-polling).
    fn too_large(&self, event: &EncodedEvent) -> Option<(usize, u64)> {
        self.over_limit(event.text().len(), event.attachments())
    }

    /// [`Client::too_large`] for an acked emit, whose frame the connection task writes (the
    /// ack id is the connection's): estimated, header and brackets being well under 32
    /// bytes.
    fn too_large_args(&self, name: &str, args: &Payload) -> Option<(usize, u64)> {
        self.over_limit(name.len() + args.as_json().len() + 32, args.attachments())
    }

    fn over_limit(&self, text: usize, attachments: &[bytes::Bytes]) -> Option<(usize, u64)> {
        let shared = &self.inner.shared;
        let base64 = shared.base64_attachments.load(Ordering::Relaxed);
        let largest_attachment = attachments
            .iter()
            .map(|a| {
                if base64 {
                    relink_proto::polling::binary_len(a)
                } else {
                    a.len()
                }
            })
            .max()
            .unwrap_or(0);
        let size = text.max(largest_attachment);
        let max = shared.max_payload.load(Ordering::Relaxed);
        (size as u64 > max).then_some((size, max))
    }

    /// Writes a plain emit to the socket here, in the caller's task, when nothing waits
    /// before it (`Ok(None)`); otherwise returns it for the outbox. With `only_on`, it is
    /// written directly only on that connection.
    fn write_or_queue(
        &self,
        name: &str,
        event: EncodedEvent,
        only_on: Option<&Link>,
    ) -> Result<Option<EncodedEvent>, EmitError> {
        if let Some((size, limit)) = self.too_large(&event) {
            return Err(EmitError::TooLarge {
                event: name.to_owned(),
                payload: event.args(),
                size,
                limit,
            });
        }
        let shared = &self.inner.shared;
        let queue = shared.lock();
        let direct = queue
            .direct_link()
            .filter(|link| only_on.is_none_or(|on| link.same(on)));
        let Some(link) = direct.cloned() else {
            drop(queue);
            return Ok(Some(event));
        };
        // Hand over hand: once the socket is held, nothing queued later can reach it first,
        // so the queue is let go before the write.
        let mut ws = link.lock();
        drop(queue);
        let event = match link.try_send(&mut ws, event, &self.inner.wake_supervisor) {
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
        Ok(Some(event))
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
        let mut rx = {
            let run = self.inner.run();
            run.shutdown.send_replace(true);
            run.state.clone()
        };
        let _ =
            tokio::time::timeout(DISCONNECT_GRACE, rx.wait_for(|s| s.status.is_terminal())).await;
    }
}
