//! The driver: one task per client that dials, reads, writes and sleeps until the core's
//! deadline, and carries out what [`crate::core::connection`] decides (publish a state,
//! log a record, hand an event to the reader, answer a waiter, open or close the lane).
//! Every decision is the core's; what is here is IO and waiting.

use crate::config::Config;
use crate::core::connection::{Connection, Output, Phase};
use crate::error::LinkError;
use crate::events::{Deliveries, Incoming};
use crate::flow::{self, Pushed};
use crate::handlers::Handlers;
use crate::lane::{AckSender, Link, Shared, Until, Writer, sleep_until};
use crate::metrics;
use crate::records;
use crate::state::ConnectionState;
use crate::state::Transport;
use crate::transport::{self, Wire};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{error, info};

/// How long each step of a clean close may take (emits accepted before `disconnect()`,
/// then DISCONNECT and the WebSocket close): each is attempted whatever the one before did.
const CLOSE_STEP: Duration = Duration::from_millis(30);
/// Long-polling's close is up to two POST round trips (the one in flight, then what the
/// steps before queued, DISCONNECT and `1` included).
const POLLING_CLOSE: Duration = Duration::from_secs(1);
/// "Never" for a timer that has nothing to wait for (re-armed when it has).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

/// The user asked to stop (or dropped every handle).
struct Stop;

/// How a dial ended.
enum Dialled {
    /// The link is open (boxed: the other variants are small); the CONNECT payload.
    Open(Box<Wire>, Option<String>),
    Failed(LinkError),
    /// The attempt's deadline passed first.
    Deadline(std::time::Instant),
    Stopped,
}

/// The task's ends of one run's channels (the handle holds the others).
pub(crate) struct Ends {
    /// Set (or closed) when the user asks to stop.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The latest state.
    pub(crate) state_tx: watch::Sender<ConnectionState>,
    /// Every state, in order.
    pub(crate) transitions: broadcast::Sender<ConnectionState>,
    /// What the application reads.
    pub(crate) events: Deliveries,
}

pub(crate) struct Supervisor {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    state_tx: watch::Sender<ConnectionState>,
    transitions: broadcast::Sender<ConnectionState>,
    events: Deliveries,
    /// Events with a handler go to it instead of `events`.
    handlers: Arc<Handlers>,
    core: Connection<AckSender>,
    /// Set while this task's future is being polled (see [`Supervisor::run_registered`]): a
    /// panic unwinding with it set is this task's own.
    polling: Arc<AtomicBool>,
    /// This link's socket, while there is one.
    link: Option<Link>,
    writer: Writer,
    /// This client's part of `relink_acks_pending`.
    acks_pending: metrics::Share,
    /// What the metrics remember of this run.
    tally: records::Tally,
    /// The per-frame counters.
    traffic: metrics::Traffic,
}

impl Supervisor {
    pub(crate) fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        ends: Ends,
        handlers: Arc<Handlers>,
        seq: u64,
    ) -> Self {
        let Ends {
            shutdown,
            state_tx,
            transitions,
            events,
        } = ends;
        Supervisor {
            core: Connection::new(cfg.core_setup(), rand::random(), seq),
            cfg,
            shared,
            shutdown,
            state_tx,
            transitions,
            events,
            handlers,
            polling: Arc::default(),
            link: None,
            writer: Writer::new(),
            acks_pending: metrics::Share::new(metrics::ACKS_PENDING),
            tally: records::Tally::default(),
            traffic: metrics::Traffic::new(),
        }
    }

    /// Runs the loop, keeping [`Shared::task`] pointed at this task so that an emitter that
    /// took tungstenite's write waker (see [`crate::lane`]) can wake it.
    pub(crate) async fn run_registered(self) {
        let shared = Arc::clone(&self.shared);
        let polling = Arc::clone(&self.polling);
        let mut run = std::pin::pin!(self.run());
        std::future::poll_fn(|cx| {
            shared.task.register(cx.waker());
            // Left set if the poll panics: that is how `Drop` tells its own panic from an
            // unrelated one during which a runtime drops this task.
            polling.store(true, Ordering::Relaxed);
            let poll = run.as_mut().poll(cx);
            polling.store(false, Ordering::Relaxed);
            poll
        })
        .await
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.apply();
            match self.core.phase() {
                Phase::Dial => {
                    if self.room_to_dial().await.is_err() {
                        self.stop();
                        continue;
                    }
                    self.core.begin_attempt(now());
                    self.tally.attempt_began();
                    self.apply();
                    match self.dial().await {
                        Dialled::Stopped => self.stop(),
                        // The core decides what its deadline means (a connect timeout).
                        Dialled::Deadline(at) => self.core.handle_timeout(at.max(now())),
                        Dialled::Failed(error) => self.core.handle_lost(error, now()),
                        Dialled::Open(wire, auth) => {
                            let transport = wire.kind();
                            self.remember(transport);
                            self.core.link_open(auth, transport);
                            self.run_link(*wire).await;
                        }
                    }
                }
                Phase::Wait => match self.sleep().await {
                    Ok(()) => self.core.handle_timeout(now()),
                    Err(Stop) => self.stop(),
                },
                Phase::Ending => self.end(),
                Phase::Ended => return,
                // A link's phases end inside `run_link`; here they mean it returned early.
                Phase::Attempt | Phase::Connected | Phase::Closing => {
                    self.core.handle_lost(LinkError::TransportClose, now());
                }
            }
        }
    }

    /// Shutdown while not connected: what the outbox holds is never sent.
    fn stop(&mut self) {
        let stranded = self.shared.lock().outbox.close();
        self.shared.space.notify_waiters();
        self.core.shutdown(stranded, Vec::new(), now());
    }

    /// Ends for good: nothing more will be sent; waiting emits and acks learn it now.
    fn end(&mut self) {
        // What the core said before (a panic may leave some) is carried out first, so
        // nothing reopens the lane or requeues into the outbox after it closes.
        self.apply();
        let mut queue = self.shared.lock();
        let stranded = queue.outbox.close();
        queue.connected = false;
        queue.link = None;
        drop(queue);
        self.shared.space.notify_waiters();
        // Nothing more comes: what the reader has not been handed yet is its, before it
        // can see the terminal state. (The handlers stay, for a `reconnect()`.)
        self.events.finish();
        self.core.close(stranded);
        self.apply();
    }

    /// Carries out the core's outputs, handing events to the reader a batch at a time.
    fn apply(&mut self) {
        self.carry_out();
        self.acks_pending.set(self.core.acks_in_flight());
        self.events.flush();
        self.handlers.flush();
    }

    /// Carries out the core's outputs; events are admitted (against the budget) but only
    /// handed over when a batch is full.
    fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::State(state) => {
                    self.state_tx.send_replace(state.clone());
                    let _ = self.transitions.send(state);
                }
                Output::Log(record) => {
                    self.tally.record(&record);
                    records::log(
                        &record,
                        &self.cfg.endpoint.display,
                        self.cfg.token_provider.is_some(),
                    );
                }
                Output::Note(note) => {
                    self.tally.note(&note);
                    records::note(&note, &self.cfg.namespace);
                }
                Output::Deliver(delivery) => {
                    let incoming = match Incoming::new(delivery, &self.shared) {
                        Incoming::Event(event) => {
                            self.traffic.event_received();
                            match self.handlers.route(event) {
                                Some(event) => Incoming::Event(event),
                                None => continue,
                            }
                        }
                        other => other,
                    };
                    if self.events.push(incoming) == Pushed::BatchFull {
                        self.events.flush();
                    }
                }
                Output::Resolve(tx, result) => {
                    let _ = tx.send(result);
                }
                Output::MaxPayload(max) => self.shared.max_payload.store(max, Ordering::Relaxed),
                Output::Up => self.shared.link_up(self.link.clone()),
                Output::Requeue(items) => self.shared.lock().outbox.requeue_front(items),
                Output::Down { requeue } => {
                    self.writer.reset(&self.shared);
                    self.shared.link_down(requeue);
                }
            }
        }
    }

    /// Resolves once shutdown is asked for or every handle is gone.
    async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    /// The application holds all the events it may (backpressure): a new link would only
    /// be left unread until the server gives up on it, so the dial waits until the
    /// application makes room, or the user stops.
    async fn room_to_dial(&mut self) -> Result<(), Stop> {
        let budget = Arc::clone(self.handlers.budget());
        if !budget.blocks() {
            return Ok(());
        }
        info!(
            url = %self.cfg.endpoint.display,
            "reconnecting once the application reads the events it holds"
        );
        while budget.blocks() {
            tokio::select! {
                () = Self::stop_requested(&mut self.shutdown) => return Err(Stop),
                () = self.shared.wake.notified() => self.events.flush(),
            }
        }
        Ok(())
    }

    /// Waits for the core's deadline unless shutdown comes first; a reader that makes
    /// room meanwhile learns what it missed.
    async fn sleep(&mut self) -> Result<(), Stop> {
        let wake_at = sleep_until(self.core.poll_timeout().map(Instant::from_std));
        tokio::pin!(wake_at);
        loop {
            tokio::select! {
                () = &mut wake_at => return Ok(()),
                () = Self::stop_requested(&mut self.shutdown) => return Err(Stop),
                () = self.shared.wake.notified() => self.events.flush(),
            }
        }
    }

    /// The transport that worked is tried first next time: long-polling after a fallback,
    /// WebSocket again after an upgrade.
    fn remember(&self, transport: Transport) {
        self.shared
            .base64_attachments
            .store(transport == Transport::Polling, Ordering::Relaxed);
        let before = self.shared.preferred.swap(transport);
        if transport == Transport::Polling
            && before != Some(transport)
            && self.cfg.transports[0] == Transport::WebSocket
        {
            info!(
                url = %self.cfg.endpoint.display,
                "WebSocket was refused on the way to the server: connected over HTTP long-polling"
            );
        }
    }

    /// Credentials and the dial, within the attempt's deadline: the link and the CONNECT
    /// payload, or why not.
    async fn dial(&mut self) -> Dialled {
        let cfg = Arc::clone(&self.cfg);
        let deadline = self.core.poll_timeout();
        let first = self
            .shared
            .preferred
            .get()
            .unwrap_or(self.cfg.transports[0]);
        // The token provider counts against the connect timeout too: a provider that hangs
        // must not hold the client in `connecting` forever.
        let work = async move {
            let token = cfg.credentials().await?;
            let auth = cfg.auth_payload(token.as_ref());
            Ok((transport::dial(&cfg.dial_settings(), first).await?, auth))
        };
        tokio::select! {
            result = work => match result {
                Ok((wire, auth)) => Dialled::Open(Box::new(wire), auth),
                Err(error) => Dialled::Failed(error),
            },
            () = sleep_until(deadline.map(Instant::from_std)) => {
                Dialled::Deadline(deadline.unwrap_or_else(now))
            }
            () = Self::stop_requested(&mut self.shutdown) => Dialled::Stopped,
        }
    }

    /// One link, from the handshakes until it is lost or the user stops.
    async fn run_link(&mut self, wire: Wire) {
        let mut transport = wire.kind();
        let link = Link::new(wire, self.traffic.clone());
        self.link = Some(link.clone());
        // Re-armed only when the deadline moves (each arming takes the timer driver's
        // lock), never per frame. Early is harmless: the core checks its own deadlines.
        let timer = tokio::time::sleep_until(now_far());
        let flush_timer = tokio::time::sleep_until(now_far());
        let mut flush_armed = false;
        let mut shutdown = self.shutdown.clone();
        let budget = Arc::clone(self.handlers.budget());
        let mut reading = true;
        tokio::pin!(timer, flush_timer);
        while matches!(self.core.phase(), Phase::Attempt | Phase::Connected) {
            // Long-polling upgrades underneath (also while nothing arrives): the state says so.
            if transport == Transport::Polling && link.transport() != transport {
                transport = link.transport();
                self.remember(transport);
                self.core.transport_changed(transport);
            }
            self.apply();
            // Deadlines and emits are looked at every round, so a flood of inbound frames
            // cannot starve them (the select below prefers frames).
            if self.core.poll_timeout().is_some_and(|at| at <= now()) {
                self.core.handle_timeout(now());
                self.apply();
            }
            if !matches!(self.core.phase(), Phase::Attempt | Phase::Connected) {
                break;
            }
            self.writer.pump(&self.shared, &mut self.core);
            let until = Until::Shutdown(&mut shutdown);
            if let Err(error) = self
                .writer
                .write(&self.shared, &link, &mut self.core, false, until)
                .await
            {
                self.core.handle_lost(error, now());
                continue;
            }
            if let Some(at) = self.writer.flush_due()
                && !flush_armed
            {
                flush_timer.as_mut().reset(at);
                flush_armed = true;
            }
            // No room for more events (backpressure): the socket is not read until the
            // application makes room and wakes this task (`shared.wake`), so TCP pushes
            // back on the server. The core suspends the heartbeat meanwhile.
            // The handshake is always read: it holds no events (those that come before the
            // CONNECT reply wait in the session, bounded), and a link left unread there
            // would only time out.
            let room = self.core.phase() == Phase::Attempt || !budget.blocks();
            if room != reading {
                reading = room;
                self.core.set_reading(reading, now());
            }
            if let Some(at) = self.core.poll_timeout().map(Instant::from_std)
                && at < timer.deadline()
            {
                timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                () = Self::stop_requested(&mut shutdown) => {
                    self.goodbye(&link).await;
                    break;
                }
                frame = link.next(), if reading => self.read(&link, frame, &budget),
                () = self.shared.wake.notified() => {}
                () = &mut timer => {
                    self.core.handle_timeout(now());
                    timer.as_mut().reset(now_far());
                }
                // The interval has passed: the next write flushes.
                () = &mut flush_timer, if flush_armed => flush_armed = false,
            }
        }
        self.link = None;
    }

    /// Feeds what has arrived to the core, up to one batch of frames, so emits and
    /// deadlines get their turn between batches.
    fn read(
        &mut self,
        link: &Link,
        first: Option<Result<Message, LinkError>>,
        budget: &flow::Budget,
    ) {
        let now = now();
        let batch = flow::BATCH;
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(frame) = next.take() {
            match frame {
                Some(Ok(Message::Text(text))) => {
                    self.traffic.received(text.len());
                    self.core.handle_text(text.as_str(), now);
                }
                Some(Ok(Message::Binary(bytes))) => {
                    self.traffic.received(bytes.len());
                    self.core.handle_binary(bytes, now);
                }
                Some(Ok(Message::Close(_))) | None => {
                    self.core.handle_lost(LinkError::TransportClose, now);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => self.core.handle_lost(e, now),
            }
            handled += 1;
            // The budget is looked at after every frame: past it by one message at most.
            if handled < batch
                && matches!(self.core.phase(), Phase::Attempt | Phase::Connected)
                && !self.deliver_blocks(budget)
            {
                next = link.next_now();
            }
        }
    }

    /// Admits what the core delivered against the budget, and says whether the budget is
    /// spent (so the next frame waits, under backpressure).
    fn deliver_blocks(&mut self, budget: &flow::Budget) -> bool {
        self.carry_out();
        budget.blocks()
    }

    /// Leaves cleanly: emits accepted before `disconnect()` go out, then DISCONNECT, then
    /// the WebSocket close, each step attempted within [`CLOSE_STEP`] whatever the one
    /// before did. The outbox closes first, so an emitter that keeps emitting cannot hold
    /// the DISCONNECT back.
    async fn goodbye(&mut self, link: &Link) {
        let (accepted, answers) = {
            let mut queue = self.shared.lock();
            queue.link = None;
            (queue.outbox.close(), queue.acks_out.drain(..).collect())
        };
        self.shared.space.notify_waiters();
        self.core.shutdown(accepted, answers, now());
        for step in 0..2 {
            let write =
                self.writer
                    .write(&self.shared, link, &mut self.core, true, Until::Heartbeat);
            let written = tokio::time::timeout(CLOSE_STEP, write).await;
            if step == 0 {
                // Out of time: what is left is given up, and the DISCONNECT goes next.
                self.core.leave(written.is_err());
            }
        }
        let close = match link.transport() {
            Transport::Polling => POLLING_CLOSE,
            _ => CLOSE_STEP,
        };
        let _ = tokio::time::timeout(close, link.close()).await;
        self.apply();
    }
}

/// The task is gone without having ended the client: a panic in it (in relink or in a
/// callback it runs, like the token provider) or its runtime shutting down. Without this,
/// the handle would still say `connected`, emits would go into a dead link and waiters
/// would wait forever; this publishes `failed` and fails everything that waits.
impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.core.phase() == Phase::Ended {
            return;
        }
        // tokio drops a task's future while a panic in it unwinds; a runtime shutting down
        // drops it quietly (also when the runtime is dropped during another panic).
        let message = if std::thread::panicking() && self.polling.load(Ordering::Relaxed) {
            error!("the connection task panicked: the client is closed");
            "the connection task panicked (in relink or in a callback it runs)"
        } else {
            "the connection task was stopped: its runtime shut down"
        };
        self.core.fail_internal(message.to_owned());
        self.end();
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

fn now_far() -> Instant {
    Instant::now() + FAR_FUTURE
}
