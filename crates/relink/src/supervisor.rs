//! The one task that owns the socket: connect, run, classify how it ended, decide, wait.
//!
//! What to do after a failure, when an outage is over and which log records say so come
//! from [`crate::core::reconnect`]; this loop carries the decisions out, publishes every
//! state transition, and writes the records.

use crate::config::Config;
use crate::core::reconnect::{Decision, Failure, Reconnect, Record, Settings, Severity};
use crate::error::{AckError, EmitError, LinkError};
use crate::events::{Deliveries, Event, Incoming};
use crate::lane::{Link, Shared};
use crate::outbox::{AckRequest, Acked, Body, Outgoing};
use crate::policy::classify::{classify, reason};
use crate::state::{ConnectionState, EndReason, Status};
use crate::token::Token;
use crate::transport::{self, Ws};
use futures_util::{SinkExt, StreamExt};
use relink_proto::Payload;
use relink_proto::acks::AckTable;
use relink_proto::session::{
    CloseReason, Recovery, SendError, Session, SessionConfig, SessionEvent, SessionState, Transmit,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

/// Emits taken from the outbox per round, so inbound frames are read between batches.
const BATCH: usize = 256;
/// How long a clean close may take before the socket is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(50);
/// Flushes of emits written directly by their tasks happen at most this often while more
/// keep coming: a task streaming emits then pays one write to the socket per interval, not
/// one per emit. A lone emit is flushed at once.
const FLUSH_EVERY: Duration = Duration::from_millis(1);
/// "Never" for a timer that has nothing to wait for (re-armed when it has).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365);

/// An emit waiting for its ack.
struct InFlight {
    seq: u64,
    name: String,
    /// Kept only when it may be resent.
    args: Option<Payload>,
    ack: AckRequest,
}

impl InFlight {
    /// Uses up one retry: the emit to send again, or its ack request when none are left.
    fn retry(self) -> Result<Outgoing, AckRequest> {
        let InFlight {
            seq,
            name,
            args,
            mut ack,
        } = self;
        match args {
            Some(args) if ack.retries_left > 0 => {
                ack.retries_left -= 1;
                Ok(Outgoing {
                    seq,
                    body: Body::Acked(Acked { name, args, ack }),
                })
            }
            _ => Err(ack),
        }
    }
}

/// How a connection or a wait ended.
enum End {
    /// The user asked to stop (or dropped every handle).
    Shutdown,
    /// The link failed or ended.
    Lost(LinkError),
}

pub(crate) struct Supervisor {
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    state_tx: watch::Sender<ConnectionState>,
    transitions: broadcast::Sender<ConnectionState>,
    events: Deliveries,
    state: ConnectionState,
    acks: AckTable<InFlight>,
    reconnect: Reconnect,
    /// `finish` ran: the terminal state is published.
    ended: bool,
    /// Set while this task's future is being polled (see [`Supervisor::run_registered`]): a
    /// panic unwinding with it set is this task's own.
    polling: Arc<std::sync::atomic::AtomicBool>,
    /// Increases per connection, so acks for a dead connection's events are discarded.
    generation: u64,
    pid: Option<String>,
    offset: Option<String>,
    /// This connection's socket, while there is one.
    link: Option<Link>,
    /// Emits taken from the outbox are on their way to the socket (mirrors
    /// `Queue::in_transit`, so the queue is locked only to clear it).
    in_transit: bool,
    /// An emitter wrote without a flush after it.
    flush_needed: bool,
    /// That flush waits for the flush timer (see [`FLUSH_EVERY`]).
    flush_deferred: bool,
    last_flush: Instant,
}

impl Supervisor {
    pub(crate) fn new(
        cfg: Arc<Config>,
        shared: Arc<Shared>,
        shutdown: watch::Receiver<bool>,
        state_tx: watch::Sender<ConnectionState>,
        transitions: broadcast::Sender<ConnectionState>,
        events: Deliveries,
    ) -> Self {
        let reconnect = Reconnect::new(Settings {
            backoff: cfg.backoff,
            escalate_after: cfg.escalate_after,
            stable_after: cfg.stable_after,
            reconnect_on_server_disconnect: cfg.reconnect_on_server_disconnect,
        });
        Supervisor {
            cfg,
            shared,
            shutdown,
            state_tx,
            transitions,
            events,
            state: ConnectionState::initial(),
            acks: AckTable::new(),
            reconnect,
            ended: false,
            polling: Arc::default(),
            generation: 0,
            pid: None,
            offset: None,
            link: None,
            in_transit: false,
            flush_needed: false,
            flush_deferred: false,
            last_flush: Instant::now(),
        }
    }

    /// Runs the loop, keeping [`Shared::task`] pointed at this task so that an emitter that
    /// took tungstenite's write waker (see [`crate::link`]) can wake it.
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

    fn publish(&mut self, change: impl FnOnce(&mut ConnectionState)) {
        change(&mut self.state);
        self.state.seq += 1;
        self.state_tx.send_replace(self.state.clone());
        let _ = self.transitions.send(self.state.clone());
    }

    pub(crate) async fn run(mut self) {
        let end = loop {
            let (status, attempt) = self.reconnect.trying();
            self.publish(|s| {
                s.status = status;
                s.attempt = attempt;
                s.socket_id = None;
                s.next_attempt_in = None;
                s.recovered = false;
            });
            let outcome = match self.attempt().await {
                None => break EndReason::ClientDisconnect,
                Some(Ok((ws, session))) => self.run_connection(ws, session).await,
                Some(Err(error)) => End::Lost(error),
            };
            let End::Lost(error) = outcome else {
                break EndReason::ClientDisconnect;
            };
            match self.decide(error) {
                Decision::Retry(delay) => {
                    if !self.sleep(delay).await {
                        break EndReason::ClientDisconnect;
                    }
                }
                Decision::Stop(status, reason) => {
                    self.finish(status, reason);
                    return;
                }
            }
        };
        self.finish(Status::Disconnected, end);
    }

    /// Resolves once shutdown is asked for or every handle is gone.
    async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    /// Waits `delay` unless shutdown comes first; returns whether to go on.
    async fn sleep(&mut self, delay: Duration) -> bool {
        let wake_at = tokio::time::sleep(delay);
        tokio::pin!(wake_at);
        loop {
            // What the reader had no room for when the link went (and the notice of it)
            // goes to it as soon as it makes room, not at the next connection.
            let room = self.events.has_pending().then(|| self.events.room());
            tokio::select! {
                () = &mut wake_at => return true,
                () = Self::shutdown_requested(&mut self.shutdown) => return false,
                Some(granted) = async { match room { Some(room) => Some(room.await), None => None } } => {
                    self.events.hand_over(granted);
                }
            }
        }
    }

    /// One connection attempt up to a connected namespace; `None` if shutdown came first.
    async fn attempt(&mut self) -> Option<Result<(Ws, Session), LinkError>> {
        let cfg = Arc::clone(&self.cfg);
        let recovery = match (&self.pid, &self.offset) {
            (Some(pid), Some(offset)) if cfg.recovery => Some(Recovery {
                pid: pid.clone(),
                offset: offset.clone(),
            }),
            _ => None,
        };
        let work = async move {
            // The token provider counts against the connect timeout too: a provider that
            // hangs must not hold the client in `connecting` forever.
            let steps = async {
                // Defence in depth: the builder refused a blank token, but a provider may
                // return one; nothing is dialled with it.
                let token = credentials(&cfg).await?;
                let auth = auth_payload(&cfg, token.as_ref());
                let session = Session::new(SessionConfig {
                    namespace: cfg.namespace.clone(),
                    auth,
                    recovery,
                    max_attachments: cfg.max_attachments,
                    // One packet, attachments included, is bounded like one message, and
                    // what recovery replays before CONNECT may be at least one of those.
                    max_packet_bytes: cfg.max_message_size,
                    max_early_bytes: cfg
                        .max_message_size
                        .max(relink_proto::session::DEFAULT_MAX_EARLY_BYTES),
                });
                establish(&cfg, session).await
            };
            match tokio::time::timeout(cfg.connect_timeout, steps).await {
                Ok(result) => result,
                Err(_) => Err(LinkError::ConnectTimeout(cfg.connect_timeout)),
            }
        };
        tokio::select! {
            result = work => Some(result),
            () = Self::shutdown_requested(&mut self.shutdown) => None,
        }
    }

    async fn run_connection(&mut self, ws: Ws, mut session: Session) -> End {
        self.generation += 1;
        let link = Link::new(ws);
        self.link = Some(link.clone());
        // Timers live as long as the connection and are re-armed only when a deadline moves
        // earlier or after they fire: never per frame (each arming takes the timer driver's
        // lock). A timer that fires early is harmless: the session and the ack table check
        // their own deadlines.
        let far = Instant::now() + FAR_FUTURE;
        let heartbeat_timer = tokio::time::sleep_until(far);
        let ack_timer = tokio::time::sleep_until(far);
        let flush_timer = tokio::time::sleep_until(far);
        let mut flush_armed = false;
        let stable_timer = tokio::time::sleep_until(far);
        let mut shutdown_rx = self.shutdown.clone();
        let shutdown = async move {
            let _ = shutdown_rx.wait_for(|stop| *stop).await;
        };
        tokio::pin!(
            heartbeat_timer,
            ack_timer,
            flush_timer,
            stable_timer,
            shutdown
        );
        let end = loop {
            if let Err(end) = self.dispatch(&mut session).await {
                break end;
            }
            // Emits and ack deadlines are looked at every round, so a flood of inbound frames
            // cannot starve them (the select below prefers frames).
            if self
                .acks
                .next_deadline()
                .is_some_and(|at| at <= Instant::now().into_std())
            {
                self.expire_acks(&mut session);
            }
            self.flush_outbox(&mut session);
            if let Err(error) = self.write(&link, &mut session).await {
                break End::Lost(error);
            }
            if self.flush_deferred && !flush_armed {
                flush_timer.as_mut().reset(self.last_flush + FLUSH_EVERY);
                flush_armed = true;
            }
            if let Some(at) = session.poll_timeout().map(Instant::from_std)
                && at < heartbeat_timer.deadline()
            {
                heartbeat_timer.as_mut().reset(at);
            }
            if let Some(at) = self.acks.next_deadline().map(Instant::from_std)
                && at < ack_timer.deadline()
            {
                ack_timer.as_mut().reset(at);
            }
            if let Some(at) = self.reconnect.poll_timeout().map(Instant::from_std)
                && at < stable_timer.deadline()
            {
                stable_timer.as_mut().reset(at);
            }
            tokio::select! {
                biased;
                () = &mut shutdown => break End::Shutdown,
                frame = link.next() => {
                    // Everything already received is handled in one round, up to one batch
                    // of the user's events; the hand-over after it waits while their buffer
                    // is full, so a reader that stopped reading stops the socket being read
                    // (backpressure).
                    let now = Instant::now().into_std();
                    let batch = self.events.batch();
                    let mut next = Some(frame);
                    let mut handled = 0;
                    let mut failed = None;
                    while let Some(frame) = next.take() {
                        if let Err(error) = handle_frame(&mut session, frame, now) {
                            failed = Some(error);
                            break;
                        }
                        handled += 1;
                        if handled < batch {
                            next = link.next_now();
                        }
                    }
                    if let Some(error) = failed {
                        // What arrived before the failure is still the user's (an event
                        // and then the server closing, say), and a DISCONNECT among it says
                        // more about the end than the closed socket does.
                        if let Err(end) = self.dispatch(&mut session).await {
                            break end;
                        }
                        break End::Lost(error);
                    }
                }
                () = self.shared.wake.notified() => {}
                () = &mut heartbeat_timer => {
                    session.handle_timeout(Instant::now().into_std());
                    heartbeat_timer.as_mut().reset(Instant::now() + FAR_FUTURE);
                }
                () = &mut ack_timer => {
                    self.expire_acks(&mut session);
                    ack_timer.as_mut().reset(Instant::now() + FAR_FUTURE);
                }
                // The interval has passed: the next write flushes.
                () = &mut flush_timer, if flush_armed => flush_armed = false,
                () = &mut stable_timer => {
                    self.on_stable();
                    stable_timer.as_mut().reset(Instant::now() + FAR_FUTURE);
                }
            }
        };
        if matches!(end, End::Shutdown) {
            self.goodbye(&link, &mut session).await;
        }
        self.connection_ended(matches!(end, End::Shutdown));
        end
    }

    /// Leaves cleanly, within [`CLOSE_GRACE`]: emits accepted before `disconnect()` go out,
    /// then DISCONNECT and a WebSocket close.
    async fn goodbye(&mut self, link: &Link, session: &mut Session) {
        // From here on emits queue (and are written below, or reported as never sent).
        self.shared.lock().link = None;
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            loop {
                self.flush_outbox(session);
                if self.write_final(link, session).await.is_err() {
                    return;
                }
                if self.shared.lock().outbox.len() == 0 {
                    break;
                }
            }
            session.disconnect();
            let _ = self.write_final(link, session).await;
            let _ = link.close().await;
        })
        .await;
    }

    /// The stable timer fired: the connection may have held for the stable period, which
    /// ends the outage.
    fn on_stable(&mut self) {
        if let Some(record) = self.reconnect.handle_timeout(Instant::now().into_std()) {
            self.log(&record);
        }
        if self.reconnect.is_stable() && self.state.attempt != 0 {
            self.publish(|s| s.attempt = 0);
        }
    }

    /// Writes what the session queued; bounded by the heartbeat so a peer that stops
    /// reading cannot hold the loop forever.
    async fn write(&mut self, link: &Link, session: &mut Session) -> Result<(), LinkError> {
        self.write_inner(link, session, true, false).await
    }

    /// Writes and flushes now (no coalescing): for when nothing else will flush soon.
    async fn write_now(&mut self, link: &Link, session: &mut Session) -> Result<(), LinkError> {
        self.write_inner(link, session, true, true).await
    }

    /// Writes what the session queued, for the goodbye after shutdown was asked for.
    async fn write_final(&mut self, link: &Link, session: &mut Session) -> Result<(), LinkError> {
        self.write_inner(link, session, false, true).await
    }

    async fn write_inner(
        &mut self,
        link: &Link,
        session: &mut Session,
        interruptible: bool,
        flush_now: bool,
    ) -> Result<(), LinkError> {
        let first = session.poll_transmit();
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
            // Frames the session queued itself (a pong, an ack's attachments, a resend) go
            // out whole: an emit written directly must not land between a packet's frames.
            self.shared.lock().in_transit = true;
            self.in_transit = true;
        }
        let heartbeat = session.poll_timeout().map(Instant::from_std);
        let in_transit = self.in_transit;
        let shared = &self.shared;
        let work = async {
            let mut next = first;
            while let Some(t) = next.take() {
                let message = match t {
                    Transmit::Text(text) => Message::text(text),
                    Transmit::Binary(bytes) => Message::binary(bytes),
                };
                link.feed(message).await.map_err(transport::map_error)?;
                next = session.poll_transmit();
            }
            if in_transit {
                // Everything the session held is in tungstenite's buffer, in order:
                // emitters may write directly again.
                shared.lock().in_transit = false;
            }
            link.flush().await.map_err(transport::map_error)
        };
        let shutdown = async {
            if interruptible {
                Self::shutdown_requested(&mut self.shutdown).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        // Biased: a write that does not block never polls (and so never arms) the timer.
        let (result, done) = tokio::select! {
            biased;
            result = work => (result, true),
            () = sleep_until(heartbeat) => (Err(LinkError::PingTimeout), false),
            // Shutdown wins over a peer that stopped reading; the run loop sees it next.
            () = shutdown => (Ok(()), false),
        };
        // An interrupted write leaves frames in the session: direct emits stay off until a
        // later write finishes (or the connection ends, which resets all of this).
        if done && result.is_ok() {
            self.in_transit = false;
            self.flush_needed = false;
            self.flush_deferred = false;
            self.last_flush = Instant::now();
        }
        result
    }

    /// Hands session events to the user; `Err` ends the connection.
    async fn dispatch(&mut self, session: &mut Session) -> Result<(), End> {
        let result = self.dispatch_events(session).await;
        // Whatever was collected before an end is handed over too.
        self.flush_events(session).await?;
        result
    }

    async fn dispatch_events(&mut self, session: &mut Session) -> Result<(), End> {
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Opened(open) => {
                    self.shared
                        .max_payload
                        .store(open.max_payload, Ordering::Relaxed);
                }
                SessionEvent::Connected { sid, pid } => {
                    let recovered = pid.is_some() && self.pid == pid && self.offset.is_some();
                    if self.pid.is_some() && !recovered {
                        info!("previous session not recovered: missed events are lost");
                    }
                    if !recovered {
                        self.offset = None;
                    }
                    self.pid = pid;
                    self.reconnect.on_connected(Instant::now().into_std());
                    info!(namespace = %self.cfg.namespace, recovered, "connected");
                    let socket_id = sid.clone();
                    self.publish(|s| {
                        s.status = Status::Connected;
                        s.socket_id = Some(socket_id);
                        s.next_attempt_in = None;
                        s.recovered = recovered;
                    });
                    {
                        let mut queue = self.shared.lock();
                        queue.connected = true;
                        queue.link = self.link.clone();
                    }
                    self.flush_outbox(session);
                    self.deliver(
                        session,
                        Incoming::Connected {
                            socket_id: sid,
                            recovered,
                        },
                    )
                    .await?;
                }
                SessionEvent::Event {
                    name,
                    args,
                    ack_id,
                    offset,
                } => {
                    if offset.is_some() {
                        self.offset = offset;
                    }
                    let ack = ack_id.map(|id| (Arc::clone(&self.shared), self.generation, id));
                    self.deliver(session, Incoming::Event(Event::new(name, args, ack)))
                        .await?;
                }
                SessionEvent::Ack { id, args } => match self.acks.remove(id) {
                    Some(inflight) => {
                        let _ = inflight.ack.tx.send(Ok(args));
                    }
                    None => debug!(id, "ack for an emit no longer waiting"),
                },
                SessionEvent::Closed(reason) => {
                    return Err(End::Lost(close_error(reason)));
                }
            }
        }
        Ok(())
    }

    /// Queues an item for the user, handing a full batch over at once.
    async fn deliver(&mut self, session: &mut Session, item: Incoming) -> Result<(), End> {
        if self.events.push(item) {
            self.flush_events(session).await?;
        }
        Ok(())
    }

    /// Hands what is queued to the user, waiting while their buffer is full, unless shutdown
    /// comes first.
    async fn flush_events(&mut self, session: &mut Session) -> Result<(), End> {
        if self.events.try_flush() {
            return Ok(());
        }
        // The reader is behind and this task waits for it. Emits keep going out meanwhile,
        // written from here: the reader may be the one emitting, and must not wait for a
        // supervisor that waits for it. They queue in the outbox (a direct write would wait
        // for a flush nobody makes), and what was written directly before goes out now.
        self.shared.lock().paused = true;
        let mut room = Box::pin(self.events.room());
        let result = loop {
            if let Some(link) = self.link.clone() {
                self.flush_outbox(session);
                if let Err(error) = self.write_now(&link, session).await {
                    break Err(End::Lost(error));
                }
            }
            let woken = tokio::select! {
                granted = &mut room => {
                    // At most `event_buffer` items per hand-over: more may wait after a
                    // lost link (what was received, and the notice of the loss).
                    if self.events.hand_over(granted) {
                        break Ok(());
                    }
                    room = Box::pin(self.events.room());
                    true
                }
                () = self.shared.wake.notified() => true,
                () = Self::shutdown_requested(&mut self.shutdown) => false,
            };
            if !woken {
                break Err(End::Shutdown);
            }
        };
        self.shared.lock().paused = false;
        result
    }

    /// Moves queued acks and emits into the session, a batch at a time.
    fn flush_outbox(&mut self, session: &mut Session) {
        if session.state() != SessionState::Connected {
            return;
        }
        let mut queue = self.shared.lock();
        if !queue.acks_out.is_empty() || queue.outbox.len() > 0 {
            // Until what is taken here reaches the socket, emits must queue behind it.
            queue.in_transit = true;
            self.in_transit = true;
        }
        while let Some(ack) = queue.acks_out.pop_front() {
            if ack.generation == self.generation
                && let Err(e) = session.ack(ack.id, &ack.args)
            {
                warn!(error = %e, "ack not sent");
            }
        }
        let batch: Vec<Outgoing> = std::iter::from_fn(|| queue.outbox.pop())
            .take(BATCH)
            .collect();
        let more = queue.outbox.len() > 0;
        drop(queue);
        if self.shared.unflushed.swap(false, Ordering::AcqRel) {
            self.flush_needed = true;
        }
        if more {
            self.shared.wake.notify_one();
        }
        if !batch.is_empty() {
            self.shared.space.notify_waiters();
        }
        for item in batch {
            self.send(session, item);
        }
    }

    fn send(&mut self, session: &mut Session, item: Outgoing) {
        let Outgoing { seq, body } = item;
        match body {
            Body::Encoded(event) => match session.send_encoded(event) {
                Ok(()) => {}
                Err(rejected) => match *rejected {
                    (SendError::TooLarge { size, max }, _) => warn!(
                        size,
                        max, "emit larger than the server's maxPayload dropped"
                    ),
                    (e, event) => {
                        // Not connected after all: keep it for the next connection.
                        debug!(error = %e, "emit requeued");
                        self.shared.lock().outbox.requeue_front(vec![Outgoing {
                            seq,
                            body: Body::Encoded(event),
                        }]);
                    }
                },
            },
            Body::Acked(acked) => self.send_acked(session, seq, acked),
        }
    }

    fn send_acked(&mut self, session: &mut Session, seq: u64, acked: Acked) {
        let Acked { name, args, ack } = acked;
        let now = Instant::now().into_std();
        if ack.deadline.is_some_and(|deadline| deadline <= now) {
            // Its caller has stopped waiting (`Timeout`): sent now, it would arrive late,
            // for nobody.
            return;
        }
        // A timeout beyond any clock means no deadline; "far" is then as good as never.
        let deadline = now
            .checked_add(ack.timeout)
            .or_else(|| now.checked_add(FAR_FUTURE))
            .unwrap_or(now);
        let keep = (ack.retries_left > 0).then(|| args.clone());
        let id = self.acks.insert(
            InFlight {
                seq,
                name: name.clone(),
                args: keep,
                ack,
            },
            Some(deadline),
        );
        match session.emit(&name, &args, Some(id)) {
            Ok(()) => {}
            Err(SendError::TooLarge { size, max }) => {
                let error = EmitError::TooLarge {
                    event: name,
                    payload: args,
                    size,
                    limit: max,
                };
                if let Some(inflight) = self.acks.remove(id) {
                    let _ = inflight.ack.tx.send(Err(AckError::Emit(error)));
                }
            }
            Err(e) => {
                // Not connected after all: keep it for the next connection.
                debug!(error = %e, "emit requeued");
                if let Some(inflight) = self.acks.remove(id) {
                    self.shared.lock().outbox.requeue_front(vec![Outgoing {
                        seq,
                        body: Body::Acked(Acked {
                            name,
                            args,
                            ack: inflight.ack,
                        }),
                    }]);
                }
            }
        }
    }

    /// Acks past their deadline: resend while retries last, else fail with `Timeout`.
    fn expire_acks(&mut self, session: &mut Session) {
        for (_, inflight) in self.acks.expire(Instant::now().into_std()) {
            match inflight.retry() {
                Ok(item) => {
                    if let Body::Acked(acked) = &item.body {
                        debug!(event = %acked.name, "no ack in time: resending");
                    }
                    self.send(session, item);
                }
                Err(ack) => {
                    let _ = ack.tx.send(Err(AckError::Timeout(ack.timeout)));
                }
            }
        }
    }

    /// The link is gone: stop accepting sends, requeue what will be retried, fail the rest.
    fn connection_ended(&mut self, shutdown: bool) {
        let mut requeue = Vec::new();
        for (_, inflight) in self.acks.drain() {
            let retried = if shutdown {
                Err(inflight.ack)
            } else {
                inflight.retry()
            };
            match retried {
                Ok(item) => requeue.push(item),
                Err(ack) => {
                    let error = if shutdown {
                        AckError::Closed
                    } else {
                        AckError::Disconnected
                    };
                    let _ = ack.tx.send(Err(error));
                }
            }
        }
        self.link = None;
        self.in_transit = false;
        self.flush_needed = false;
        self.flush_deferred = false;
        self.shared.unflushed.store(false, Ordering::Release);
        let mut queue = self.shared.lock();
        queue.connected = false;
        queue.link = None;
        queue.in_transit = false;
        queue.paused = false;
        queue.acks_out.clear();
        queue.outbox.requeue_front(requeue);
        drop(queue);
        self.shared.space.notify_waiters();
    }

    /// Classifies, decides, logs what the decision says, and publishes the new state.
    fn decide(&mut self, error: LinkError) -> Decision {
        let kind = reason(&error);
        if self.state.status == Status::Connected {
            self.events
                .send_or_keep(Incoming::Disconnected { reason: kind });
        }
        let message = error.to_string();
        let failure = Failure {
            class: classify(&error),
            reason: kind,
            message: message.clone(),
            fatal_end: if error == LinkError::EmptyToken {
                EndReason::EmptyToken
            } else {
                EndReason::Configuration
            },
        };
        let now = Instant::now().into_std();
        let (decision, records) = self
            .reconnect
            .on_failure(failure, now, rand::random::<f64>());
        for record in &records {
            self.log(record);
        }
        match decision {
            Decision::Retry(delay) => {
                let (status, attempt) = self.reconnect.trying();
                self.publish(|s| {
                    s.status = status;
                    s.socket_id = None;
                    s.attempt = attempt;
                    s.last_error = Some(message);
                    s.reason = Some(kind);
                    s.next_attempt_in = Some(delay);
                });
            }
            Decision::Stop(..) => self.record_error(kind, message),
        }
        decision
    }

    /// Writes a record of the reconnect decisions, at the level they chose.
    fn log(&self, record: &Record) {
        match record {
            Record::ConnectionLost {
                reason,
                error,
                delay,
            } => {
                warn!(reason, error = %error, delay_ms = millis(*delay), "connection lost");
            }
            Record::AttemptFailed {
                streak,
                reason,
                error,
                delay,
            } => {
                warn!(attempt = streak, streak, reason, error = %error, delay_ms = millis(*delay), "connection attempt failed");
            }
            Record::KeepsFailing {
                streak,
                reason,
                error,
            } => {
                error!(attempt = streak, streak, reason, error = %error, url = %self.cfg.endpoint.display, "connection attempts keep failing");
            }
            Record::RetryingCredentials {
                streak,
                reason,
                error,
            } => {
                warn!(attempt = streak, streak, reason, error = %error, delay_ms = 0u64, "credentials rejected: retrying once with fresh credentials");
            }
            Record::CredentialsRejectedAgain {
                reason,
                error,
                severity,
            }
            | Record::Misconfigured {
                reason,
                error,
                severity,
            } => {
                let message = if matches!(record, Record::Misconfigured { .. }) {
                    "cannot connect: check the configuration"
                } else {
                    "credentials rejected again: giving up"
                };
                match severity {
                    Severity::Error => error!(reason, error = %error, "{message}"),
                    _ => warn!(reason, error = %error, "{message}"),
                }
            }
            Record::ServerDisconnected => info!("disconnected by the server"),
            Record::Recovered {
                outage,
                attempts,
                escalated,
            } => {
                info!(
                    outage_ms = millis(*outage),
                    attempts, escalated, "connection recovered"
                );
            }
        }
    }

    fn record_error(&mut self, kind: &'static str, message: String) {
        self.state.last_error = Some(message);
        self.state.reason = Some(kind);
    }

    /// Ends for good: nothing more will be sent, waiting emits and acks learn it now.
    fn finish(&mut self, status: Status, end: EndReason) {
        self.ended = true;
        // Nothing more comes; what the reader has not been handed yet is its.
        self.events.hand_over_all();
        let mut queue = self.shared.lock();
        queue.closed = true;
        queue.connected = false;
        queue.link = None;
        let stranded = queue.outbox.drain();
        drop(queue);
        self.shared.space.notify_waiters();
        if !stranded.is_empty() {
            warn!(
                emits = stranded.len(),
                "client closed with emits never sent"
            );
        }
        for item in stranded {
            if let Body::Acked(acked) = item.body {
                let _ = acked.ack.tx.send(Err(AckError::Closed));
            }
        }
        for (_, inflight) in self.acks.drain() {
            let _ = inflight.ack.tx.send(Err(AckError::Closed));
        }
        self.publish(|s| {
            s.status = status;
            s.socket_id = None;
            s.next_attempt_in = None;
            s.end = Some(end);
        });
    }
}

/// The task is gone without having ended the client: a panic in it (in relink or in a
/// callback it runs, like the token provider) or its runtime shutting down. Without this,
/// the handle would still say `connected`, emits would go into a dead link and waiters
/// would wait forever; this publishes `failed` and fails everything that waits.
impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.ended {
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
        self.record_error("internal", message.to_owned());
        self.finish(Status::Failed, EndReason::Internal);
    }
}

/// A duration in whole milliseconds, for log fields.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Feeds one frame to the session.
fn handle_frame(
    session: &mut Session,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    now: std::time::Instant,
) -> Result<(), LinkError> {
    let result = match frame {
        Some(Ok(Message::Text(text))) => session.handle_text(text.as_str(), now),
        Some(Ok(Message::Binary(bytes))) => session.handle_binary(bytes, now),
        Some(Ok(Message::Close(_))) | None => return Err(LinkError::TransportClose),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => return Err(transport::map_error(e)),
    };
    result.map_err(|e| LinkError::Protocol(e.to_string()))
}

/// Waits until `at`, or forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The token for this attempt: from the provider (asked every time) or the configured one.
async fn credentials(cfg: &Config) -> Result<Option<Token>, LinkError> {
    let token = match &cfg.token_provider {
        Some(provider) => Some(provider().await.map_err(LinkError::AuthProvider)?),
        None => cfg.token.clone(),
    };
    if token.as_ref().is_some_and(Token::is_blank) {
        return Err(LinkError::EmptyToken);
    }
    Ok(token)
}

/// The CONNECT payload: the user's auth fields plus the token. This string holds the secret:
/// it goes into the session and nowhere else.
fn auth_payload(cfg: &Config, token: Option<&Token>) -> Option<String> {
    if cfg.auth.is_empty() && token.is_none() {
        return None;
    }
    let mut auth = cfg.auth.clone();
    if let Some(token) = token {
        auth.insert(
            "token".into(),
            serde_json::Value::String(token.expose().to_owned()),
        );
    }
    Some(serde_json::Value::Object(auth).to_string())
}

/// Dials and runs both handshakes; returns once the namespace accepted us.
async fn establish(cfg: &Config, mut session: Session) -> Result<(Ws, Session), LinkError> {
    let mut ws = transport::dial(cfg).await?;
    loop {
        while let Some(t) = session.poll_transmit() {
            let message = match t {
                Transmit::Text(text) => Message::text(text),
                Transmit::Binary(bytes) => Message::binary(bytes),
            };
            ws.feed(message).await.map_err(transport::map_error)?;
        }
        ws.flush().await.map_err(transport::map_error)?;
        match session.state() {
            SessionState::Connected => return Ok((ws, session)),
            SessionState::Closed => {
                let reason = std::iter::from_fn(|| session.poll_event()).find_map(|e| match e {
                    SessionEvent::Closed(reason) => Some(reason),
                    _ => None,
                });
                return Err(reason.map_or(LinkError::TransportClose, close_error));
            }
            SessionState::AwaitOpen | SessionState::AwaitConnect => {}
        }
        let now = Instant::now().into_std();
        let result = match ws.next().await {
            Some(Ok(Message::Text(text))) => session.handle_text(text.as_str(), now),
            Some(Ok(Message::Binary(bytes))) => session.handle_binary(bytes, now),
            Some(Ok(Message::Close(_))) | None => return Err(LinkError::TransportClose),
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => return Err(transport::map_error(e)),
        };
        result.map_err(|e| LinkError::Protocol(e.to_string()))?;
    }
}

fn close_error(reason: CloseReason) -> LinkError {
    match reason {
        CloseReason::ConnectError { message, data } => LinkError::Rejected { message, data },
        CloseReason::ServerDisconnect => LinkError::ServerDisconnect,
        CloseReason::EngineClose | CloseReason::ClientDisconnect => LinkError::TransportClose,
        CloseReason::PingTimeout => LinkError::PingTimeout,
    }
}
