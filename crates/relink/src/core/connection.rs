//! One client's connection decisions, sans IO: the [`Session`] of the current link, the
//! acks in flight (deadlines, retries), what happens to each emit taken from the outbox,
//! the recovery pid and offset, the reconnect state ([`Reconnect`]) and the published
//! [`ConnectionState`].
//!
//! The driver (`supervisor.rs`) dials, reads, writes and sleeps; it feeds this what
//! happened (frames, a lost link with its error, the user's emits and acks, the time) and
//! carries out what comes back: frames to write ([`Connection::poll_transmit`]), everything
//! else as [`Output`]s, and one deadline ([`Connection::poll_timeout`]). No tokio, no IO,
//! no clock: `now` comes in, randomness comes from a seed given at construction, so the
//! simulation (`core/sim_client.rs`) replays any run exactly.
//!
//! The phases and the published statuses follow [`TRANSITIONS`].

use crate::core::reconnect::{Decision, Failure, Reconnect, Record, Settings};
use crate::error::{AckError, EmitError, LinkError};
use crate::outbox::{AckRequest, Acked, Body, Outgoing, ServerAck};
use crate::policy::classify::{Class, classify, reason};
use crate::state::{ConnectionState, EndReason, Reason, Status, Transport};
use bytes::Bytes;
use relink_proto::Payload;
use relink_proto::acks::AckTable;
use relink_proto::session::{
    CloseReason, Recovery, SendError, Session, SessionConfig, SessionEvent, SessionState, Transmit,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every status change the core may publish, as `(from, to)`; a status may also be
/// published again with other fields changed. Terminal statuses change no more.
pub(crate) const TRANSITIONS: &[(Status, Status)] = &[
    (Status::Connecting, Status::Connected),
    (Status::Connecting, Status::Failed),
    (Status::Connecting, Status::Disconnected),
    (Status::Connected, Status::Reconnecting),
    (Status::Connected, Status::Failed),
    (Status::Connected, Status::Disconnected),
    (Status::Reconnecting, Status::Connected),
    (Status::Reconnecting, Status::Failed),
    (Status::Reconnecting, Status::Disconnected),
];

/// Whether the state may go from `from` to `to` (see [`TRANSITIONS`]).
pub(crate) fn transition_allowed(from: Status, to: Status) -> bool {
    (from == to && !from.is_terminal()) || TRANSITIONS.contains(&(from, to))
}

/// What the core needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The namespace to join.
    pub(crate) namespace: String,
    /// Whether to ask the server to restore the session after a drop.
    pub(crate) recovery: bool,
    /// Most attachments in one received packet.
    pub(crate) max_attachments: usize,
    /// Most bytes in one received packet, attachments included.
    pub(crate) max_message_size: usize,
    /// How long an attempt may take, from dialling to the namespace's acceptance.
    pub(crate) connect_timeout: Duration,
    /// The reconnect settings.
    pub(crate) reconnect: Settings,
}

/// Something the connection hands to the user.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The namespace accepted us.
    Connected {
        /// The socket id.
        socket_id: String,
        /// Whether the server restored the previous session.
        recovered: bool,
    },
    /// An event from the server; `ack` is `(generation, id)` when it asked for an answer.
    Event {
        /// The event's name.
        name: Arc<str>,
        /// Its arguments.
        args: Payload,
        /// Where an answer goes.
        ack: Option<(u64, u64)>,
    },
    /// The connection is lost.
    Disconnected {
        /// Why.
        reason: Reason,
    },
}

/// A log record of the connection's own (the reconnect decisions have [`Record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Note {
    /// The namespace accepted us (INFO).
    Connected {
        /// Whether the previous session was restored.
        recovered: bool,
    },
    /// Recovery was asked for and the server started a new session (INFO).
    NotRecovered,
    /// A plain emit larger than the server's `maxPayload` was dropped (WARN).
    EmitTooLarge {
        /// Its size.
        size: usize,
        /// The server's limit.
        max: u64,
    },
    /// An answer to the server's event could not be sent (WARN).
    AckNotSent {
        /// Why.
        error: String,
    },
    /// No ack in time: the emit is sent again (DEBUG).
    Resending {
        /// The event's name.
        event: String,
    },
    /// An ack for an emit nobody waits for any more (DEBUG).
    LateAck {
        /// Its id.
        id: u64,
    },
    /// The client ended before these frames (emits accepted before `disconnect()`) could be
    /// written (WARN).
    Abandoned {
        /// How many.
        frames: usize,
    },
    /// The client ended with emits never sent (WARN).
    NeverSent {
        /// How many.
        emits: usize,
    },
}

/// What the driver must carry out, in order.
#[derive(Debug)]
pub(crate) enum Output<W> {
    /// Publish this state.
    State(ConnectionState),
    /// Log a reconnect record.
    Log(Record),
    /// Log a note.
    Note(Note),
    /// Hand this to the user.
    Deliver(Delivery),
    /// Tell this waiter how its acked emit ended.
    Resolve(W, Result<Payload, AckError>),
    /// The server's `maxPayload` is known.
    MaxPayload(u64),
    /// Emits handed in when they could not be sent: back to the outbox's front.
    Requeue(Vec<Outgoing<W>>),
    /// The namespace accepted us: emits may be written.
    Up,
    /// The link is lost: emits queue again; `requeue` (retried emits that were in flight)
    /// goes back to the outbox's front (see `Outbox::link_lost`).
    Down {
        /// What goes back.
        requeue: Vec<Outgoing<W>>,
    },
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Ready to dial: call [`Connection::begin_attempt`].
    Dial,
    /// An attempt is under way (dialling or in the handshakes), until its deadline.
    Attempt,
    /// The namespace accepted us.
    Connected,
    /// Leaving: DISCONNECT after what was accepted before the user asked to stop.
    Closing,
    /// Waiting before the next attempt, until [`Connection::poll_timeout`].
    Wait,
    /// Decided to end: call [`Connection::close`] with what the outbox still holds.
    Ending,
    /// Over: the terminal state is published.
    Ended,
}

/// An emit waiting for its ack.
struct InFlight<W> {
    seq: u64,
    name: String,
    /// Kept only when it may be resent.
    args: Option<Payload>,
    ack: AckRequest<W>,
}

impl<W> InFlight<W> {
    /// Uses up one retry: the emit to send again, or its ack request when none are left.
    fn retry(self) -> Result<Outgoing<W>, AckRequest<W>> {
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

/// The connection core of one client. `W` is what waits for an acked emit's answer.
pub(crate) struct Connection<W> {
    setup: Setup,
    reconnect: Reconnect,
    phase: Phase,
    /// The attempt's deadline (phase `Attempt`) or the end of the wait (phase `Wait`).
    deadline: Option<Instant>,
    /// How the client ends (phase `Ending`).
    end: Option<(Status, EndReason)>,
    session: Option<Session>,
    acks: AckTable<InFlight<W>>,
    /// Increases per link, so answers to a dead link's events are discarded.
    generation: u64,
    pid: Option<String>,
    offset: Option<String>,
    state: ConnectionState,
    outputs: VecDeque<Output<W>>,
    /// xorshift64* state: the jitter's randomness, seeded by the driver.
    rng: u64,
    /// Since when the driver has not read the link (the application's buffer is full).
    unread_since: Option<Instant>,
    /// The longest stall of this link as long as the server's ping timeout, until the link
    /// has been read without a stall for a heartbeat window (the server's verdict on it
    /// comes after the backlog it left, which may take several short stalls to read).
    long_stall: Option<Duration>,
    /// When the driver last started reading again.
    resumed: Option<Instant>,
}

impl<W> std::fmt::Debug for Connection<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("phase", &self.phase)
            .field("state", &self.state)
            .field("acks_in_flight", &self.acks.len())
            .finish_non_exhaustive()
    }
}

impl<W> Connection<W> {
    /// A client about to make its first attempt; `seed` drives the jitter, and the states
    /// it publishes follow `seq` (0 for a new client, the end's for a restart).
    pub(crate) fn new(setup: Setup, seed: u64, seq: u64) -> Self {
        Connection {
            reconnect: Reconnect::new(setup.reconnect),
            setup,
            phase: Phase::Dial,
            deadline: None,
            end: None,
            session: None,
            acks: AckTable::new(),
            generation: 0,
            pid: None,
            offset: None,
            state: ConnectionState {
                seq,
                ..ConnectionState::initial()
            },
            outputs: VecDeque::new(),
            // xorshift must not start at 0.
            rng: seed | 1,
            unread_since: None,
            long_stall: None,
            resumed: None,
        }
    }

    /// Where the connection is.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// The namespace accepted us and emits may be handed in.
    pub(crate) fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// A uniform sample in [0, 1).
    fn sample(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn publish(&mut self, change: impl FnOnce(&mut ConnectionState)) {
        let from = self.state.status;
        change(&mut self.state);
        debug_assert!(
            transition_allowed(from, self.state.status),
            "{from:?} -> {:?} is not in TRANSITIONS",
            self.state.status
        );
        self.state.seq += 1;
        self.outputs.push_back(Output::State(self.state.clone()));
    }

    /// Starts an attempt (phase `Dial`): publishes `connecting`/`reconnecting` with the
    /// attempt number; the attempt fails with a connect timeout at its deadline.
    pub(crate) fn begin_attempt(&mut self, now: Instant) {
        if self.phase != Phase::Dial {
            return;
        }
        let (status, attempt) = self.reconnect.trying();
        self.publish(|s| {
            s.status = status;
            s.attempt = attempt;
            s.socket_id = None;
            s.next_attempt_in = None;
            s.recovered = false;
            s.transport = None;
        });
        self.phase = Phase::Attempt;
        self.deadline = now.checked_add(self.setup.connect_timeout);
    }

    /// The link is open (dialled, WebSocket upgraded or polling session open): the
    /// handshakes start. `auth` is the CONNECT payload (it may hold the token: it goes into
    /// the session and nowhere else); `transport` is what carries the link.
    pub(crate) fn link_open(&mut self, auth: Option<String>, transport: Transport) {
        if self.phase != Phase::Attempt {
            return;
        }
        self.generation += 1;
        self.unread_since = None;
        self.long_stall = None;
        self.resumed = None;
        // Published with the connection.
        self.state.transport = Some(transport);
        let recovery = match (&self.pid, &self.offset) {
            (Some(pid), Some(offset)) if self.setup.recovery => Some(Recovery {
                pid: pid.clone(),
                offset: offset.clone(),
            }),
            _ => None,
        };
        self.session = Some(Session::new(SessionConfig {
            namespace: self.setup.namespace.clone(),
            auth,
            recovery,
            max_attachments: self.setup.max_attachments,
            // One packet, attachments included, is bounded like one message, and what
            // recovery replays before CONNECT may be at least one of those.
            max_packet_bytes: self.setup.max_message_size,
            max_early_bytes: self
                .setup
                .max_message_size
                .max(relink_proto::session::DEFAULT_MAX_EARLY_BYTES),
            // Kept after an upgrade: stricter than WebSocket needs, never too lax.
            base64_attachments: transport == Transport::Polling,
        }));
    }

    /// The link's transport changed (long-polling upgraded to WebSocket): published at
    /// once while connected, else with the connection.
    pub(crate) fn transport_changed(&mut self, transport: Transport) {
        if !matches!(self.phase, Phase::Attempt | Phase::Connected)
            || self.state.transport == Some(transport)
        {
            return;
        }
        if self.phase == Phase::Connected {
            self.publish(|s| s.transport = Some(transport));
        } else {
            self.state.transport = Some(transport);
        }
    }

    /// The driver stopped reading the link (`false`: the application has no room for more
    /// events) or reads it again. The heartbeat does not count silence meanwhile; a link
    /// lost after going unread for longer than the server's ping timeout was most likely
    /// closed by the server for the pings it did not hear back about, and says so.
    pub(crate) fn set_reading(&mut self, reading: bool, now: Instant) {
        if let Some(session) = self.session.as_mut() {
            session.set_reading(reading, now);
        }
        if reading {
            if let Some(since) = self.unread_since.take() {
                let stall = now.saturating_duration_since(since);
                let ping_timeout = self
                    .session
                    .as_ref()
                    .and_then(Session::open_data)
                    .map(|open| open.ping_timeout);
                if ping_timeout.is_some_and(|t| stall >= t) {
                    self.long_stall = self.long_stall.max(Some(stall));
                }
                self.resumed = Some(now);
            }
        } else {
            self.unread_since.get_or_insert(now);
        }
    }

    /// Why a link was lost, knowing how long it went unread: a stall still going on, or a
    /// long one after which the link has not yet been read for a heartbeat window without
    /// a stall; either as long as the server's ping timeout or longer.
    fn blame_unread(&self, error: LinkError, now: Instant) -> LinkError {
        let Some(open) = self.session.as_ref().and_then(Session::open_data) else {
            return error;
        };
        let ongoing = self
            .unread_since
            .map(|since| now.saturating_duration_since(since));
        let recent = self.long_stall.filter(|_| {
            ongoing.is_some()
                || self
                    .resumed
                    .is_some_and(|at| now.saturating_duration_since(at) <= open.heartbeat_window())
        });
        let unread = ongoing.into_iter().chain(recent).max();
        // What a server that gave up on its pings looks like: the socket closed, or (over
        // long-polling) the session it forgot.
        let closed = matches!(
            error,
            LinkError::TransportClose | LinkError::Network(_) | LinkError::WebSocket(_)
        ) || error.engine_error()
            == Some(relink_proto::engine::EngineError::SessionIdUnknown);
        match unread {
            Some(unread) if closed && unread >= open.ping_timeout => LinkError::Unread { unread },
            _ => error,
        }
    }

    /// Emits written and waiting for the server's ack.
    pub(crate) fn acks_in_flight(&self) -> usize {
        self.acks.len()
    }

    pub(crate) fn handle_text(&mut self, frame: &str, now: Instant) {
        if let Some(session) = self.session.as_mut() {
            let result = session.handle_text(frame, now);
            self.after_input(result, now);
        }
    }

    /// A binary frame arrived.
    pub(crate) fn handle_binary(&mut self, frame: Bytes, now: Instant) {
        if let Some(session) = self.session.as_mut() {
            let result = session.handle_binary(frame, now);
            self.after_input(result, now);
        }
    }

    fn after_input(
        &mut self,
        result: Result<(), relink_proto::session::ProtocolError>,
        now: Instant,
    ) {
        // What arrived before a failure is still the user's (an event, then the server
        // closing), and a DISCONNECT among it says more about the end than the failure.
        self.poll_session(now);
        if let Err(e) = result {
            self.handle_lost(LinkError::Protocol(e.to_string()), now);
        }
    }

    /// The attempt or the link failed (dial error, transport error, closed socket). Ignored
    /// unless an attempt or a connection is under way.
    pub(crate) fn handle_lost(&mut self, error: LinkError, now: Instant) {
        let error = match error {
            LinkError::Rejected { message, .. } if message == "Invalid namespace" => {
                LinkError::UnknownNamespace {
                    namespace: self.setup.namespace.clone(),
                }
            }
            other => other,
        };
        match self.phase {
            Phase::Attempt | Phase::Connected => {}
            Phase::Closing => {
                // The goodbye failed half way: the client ends all the same.
                self.session = None;
                self.phase = Phase::Ending;
                return;
            }
            Phase::Dial | Phase::Wait | Phase::Ending | Phase::Ended => return,
        }
        let error = self.blame_unread(error, now);
        self.unread_since = None;
        let was_connected = self.phase == Phase::Connected;
        self.session = None;
        self.state.transport = None;
        self.deadline = None;
        let kind = reason(&error);
        if was_connected {
            let mut requeue = Vec::new();
            for (_, inflight) in self.acks.drain() {
                match inflight.retry() {
                    Ok(item) => requeue.push(item),
                    Err(ack) => self
                        .outputs
                        .push_back(Output::Resolve(ack.tx, Err(AckError::Disconnected))),
                }
            }
            self.outputs.push_back(Output::Down { requeue });
            self.outputs
                .push_back(Output::Deliver(Delivery::Disconnected { reason: kind }));
        }
        let message = error.to_string();
        let cause = Some(Arc::new(error.clone()));
        let mut class = classify(&error);
        // Plain text (or a certificate refused) where TLS worked before is more likely a
        // gateway mid-deploy or a captive portal than a wrong setup: retried like any
        // transient failure.
        if matches!(error, LinkError::NotTls | LinkError::Certificate { .. })
            && self.reconnect.trying().0 == Status::Reconnecting
        {
            class = Class::Transient { retry_after: None };
        }
        let failure = Failure {
            class,
            reason: kind.as_str(),
            message: message.clone(),
            fatal_end: if error == LinkError::EmptyToken {
                EndReason::EmptyToken
            } else {
                EndReason::Configuration
            },
        };
        let sample = self.sample();
        let (decision, records) = self.reconnect.on_failure(failure, now, sample);
        self.outputs.extend(records.into_iter().map(Output::Log));
        match decision {
            Decision::Retry(delay) => {
                let (status, attempt) = self.reconnect.trying();
                self.publish(|s| {
                    s.status = status;
                    s.socket_id = None;
                    s.attempt = attempt;
                    s.last_error = Some(message);
                    s.reason = Some(kind);
                    s.cause = cause;
                    s.next_attempt_in = Some(delay);
                    s.recovered = false;
                });
                self.phase = Phase::Wait;
                // A delay beyond any clock is a wait without end (until shutdown).
                self.deadline = now.checked_add(delay);
            }
            Decision::Stop(status, end) => {
                self.state.last_error = Some(message);
                self.state.reason = Some(kind);
                self.state.cause = cause;
                self.end = Some((status, end));
                self.phase = Phase::Ending;
            }
        }
    }

    /// Time has passed: the heartbeat, ack deadlines, the attempt's deadline, the end of a
    /// wait, the stable period.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Attempt if self.deadline.is_some_and(|at| at <= now) => {
                let timeout = self.setup.connect_timeout;
                self.handle_lost(LinkError::ConnectTimeout(timeout), now);
                return;
            }
            Phase::Wait if self.deadline.is_some_and(|at| at <= now) => {
                self.phase = Phase::Dial;
                self.deadline = None;
                return;
            }
            _ => {}
        }
        if let Some(record) = self.reconnect.handle_timeout(now) {
            self.outputs.push_back(Output::Log(record));
        }
        if self.reconnect.is_stable() && self.state.attempt != 0 {
            self.publish(|s| s.attempt = 0);
        }
        if self.phase == Phase::Connected && self.acks.next_deadline().is_some_and(|at| at <= now) {
            self.expire_acks(now);
        }
        if let Some(session) = self.session.as_mut() {
            session.handle_timeout(now);
            self.poll_session(now);
        }
    }

    /// When [`Connection::handle_timeout`] next has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let session = self.session.as_ref().and_then(Session::poll_timeout);
        let mut at = [session, self.reconnect.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match self.phase {
            Phase::Attempt | Phase::Wait => {
                at = at.into_iter().chain(self.deadline).min();
            }
            Phase::Connected => {
                at = at.into_iter().chain(self.acks.next_deadline()).min();
            }
            _ => {}
        }
        at
    }

    /// The next frame to write.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.session.as_mut()?.poll_transmit()
    }

    /// When the link counts as dead if nothing arrives (the heartbeat): a write that has
    /// not finished by then has failed.
    pub(crate) fn heartbeat_deadline(&self) -> Option<Instant> {
        self.session.as_ref().and_then(Session::poll_timeout)
    }

    /// The next thing for the driver to do.
    pub(crate) fn poll_output(&mut self) -> Option<Output<W>> {
        self.outputs.pop_front()
    }

    /// An emit taken from the outbox, in order (connected only; otherwise it goes back).
    pub(crate) fn send(&mut self, item: Outgoing<W>, now: Instant) {
        let Outgoing { seq, body } = item;
        if self.phase != Phase::Connected && self.phase != Phase::Closing {
            if !matches!(body, Body::Volatile(_)) {
                self.outputs
                    .push_back(Output::Requeue(vec![Outgoing { seq, body }]));
            }
            return;
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let volatile = matches!(body, Body::Volatile(_));
        match body {
            Body::Encoded(event) | Body::Volatile(event) => {
                match session.send_encoded(event) {
                    Ok(()) => {}
                    Err(rejected) => match *rejected {
                        (SendError::TooLarge { size, max }, _) => {
                            self.outputs
                                .push_back(Output::Note(Note::EmitTooLarge { size, max }));
                        }
                        // Not connected after all: kept for the next connection (a
                        // volatile one is not).
                        (_, event) if !volatile => {
                            self.outputs.push_back(Output::Requeue(vec![Outgoing {
                                seq,
                                body: Body::Encoded(event),
                            }]));
                        }
                        (_, _) => {}
                    },
                }
            }
            Body::Acked(acked) => self.send_acked(seq, acked, now),
        }
    }

    fn send_acked(&mut self, seq: u64, acked: Acked<W>, now: Instant) {
        let Acked { name, args, ack } = acked;
        if ack.deadline.is_some_and(|deadline| deadline <= now) {
            // Its caller has stopped waiting (`Timeout`): sent now, it would arrive late,
            // for nobody.
            self.outputs
                .push_back(Output::Resolve(ack.tx, Err(AckError::Timeout(ack.timeout))));
            return;
        }
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // A timeout beyond any clock is no deadline.
        let deadline = now.checked_add(ack.timeout);
        let keep = (ack.retries_left > 0).then(|| args.clone());
        let id = self.acks.insert(
            InFlight {
                seq,
                name: name.clone(),
                args: keep,
                ack,
            },
            deadline,
        );
        let sent = session.emit(&name, &args, Some(id));
        let Err(error) = sent else {
            return;
        };
        let Some(inflight) = self.acks.remove(id) else {
            return;
        };
        match error {
            SendError::TooLarge { size, max } => {
                let error = EmitError::TooLarge {
                    event: name,
                    payload: args,
                    size,
                    limit: max,
                };
                self.outputs
                    .push_back(Output::Resolve(inflight.ack.tx, Err(AckError::Emit(error))));
            }
            // Not connected after all: kept for the next connection.
            _ => self.outputs.push_back(Output::Requeue(vec![Outgoing {
                seq,
                body: Body::Acked(Acked {
                    name,
                    args,
                    ack: inflight.ack,
                }),
            }])),
        }
    }

    /// The user's answer to a server event.
    pub(crate) fn send_ack(&mut self, ack: ServerAck) {
        if ack.generation != self.generation {
            return;
        }
        if let Some(session) = self.session.as_mut()
            && session.state() == SessionState::Connected
            && let Err(e) = session.send_encoded(ack.frame)
        {
            self.outputs.push_back(Output::Note(Note::AckNotSent {
                error: e.0.to_string(),
            }));
        }
    }

    /// Acks past their deadline: resent while retries last, else failed with `Timeout`.
    fn expire_acks(&mut self, now: Instant) {
        for (_, inflight) in self.acks.expire(now) {
            match inflight.retry() {
                Ok(item) => {
                    if let Body::Acked(acked) = &item.body {
                        self.outputs.push_back(Output::Note(Note::Resending {
                            event: acked.name.clone(),
                        }));
                    }
                    self.send(item, now);
                }
                Err(ack) => {
                    self.outputs
                        .push_back(Output::Resolve(ack.tx, Err(AckError::Timeout(ack.timeout))));
                }
            }
        }
    }

    /// The user asks to stop. Connected, `accepted` (what the outbox held when it closed)
    /// and `answers` are handed to the session and the phase becomes `Closing`: the driver
    /// writes them, then [`Connection::leave`]. Otherwise the phase becomes `Ending`.
    pub(crate) fn shutdown(
        &mut self,
        accepted: Vec<Outgoing<W>>,
        answers: Vec<ServerAck>,
        now: Instant,
    ) {
        match self.phase {
            Phase::Connected => {
                for ack in answers {
                    self.send_ack(ack);
                }
                for item in accepted {
                    self.send(item, now);
                }
                self.phase = Phase::Closing;
                self.end = Some((Status::Disconnected, EndReason::ClientDisconnect));
            }
            Phase::Ending | Phase::Ended | Phase::Closing => {}
            Phase::Dial | Phase::Attempt | Phase::Wait => {
                self.session = None;
                self.end = Some((Status::Disconnected, EndReason::ClientDisconnect));
                self.phase = Phase::Ending;
                self.strand(accepted);
            }
        }
    }

    /// Leaves the namespace (phase `Closing`): queues DISCONNECT, then the phase becomes
    /// `Ending`. With `abandon`, what is still to be written is given up first (the driver
    /// ran out of time writing it), so the DISCONNECT goes next.
    pub(crate) fn leave(&mut self, abandon: bool) {
        if self.phase != Phase::Closing {
            return;
        }
        if let Some(session) = self.session.as_mut() {
            if abandon {
                let frames = std::iter::from_fn(|| session.poll_transmit()).count();
                if frames > 0 {
                    self.outputs
                        .push_back(Output::Note(Note::Abandoned { frames }));
                }
            }
            if let Some(session) = self.session.as_mut() {
                session.disconnect();
            }
        }
        self.phase = Phase::Ending;
    }

    /// The driver's task ended without deciding to (a panic, its runtime shutting down).
    pub(crate) fn fail_internal(&mut self, message: String) {
        if self.phase == Phase::Ended {
            return;
        }
        self.state.last_error = Some(message);
        self.state.reason = Some(Reason::Internal);
        self.state.cause = None;
        self.end = Some((Status::Failed, EndReason::Internal));
        self.phase = Phase::Ending;
    }

    /// Ends for good (phase `Ending`): `stranded` is what the closed outbox still held; every
    /// waiter learns it now, and the terminal state is published.
    pub(crate) fn close(&mut self, stranded: Vec<Outgoing<W>>) {
        if self.phase != Phase::Ending {
            return;
        }
        self.session = None;
        self.strand(stranded);
        for (_, inflight) in self.acks.drain() {
            self.outputs
                .push_back(Output::Resolve(inflight.ack.tx, Err(AckError::Closed)));
        }
        let (status, end) = self
            .end
            .unwrap_or((Status::Disconnected, EndReason::ClientDisconnect));
        self.phase = Phase::Ended;
        self.deadline = None;
        self.publish(|s| {
            s.status = status;
            s.socket_id = None;
            s.next_attempt_in = None;
            s.transport = None;
            s.end = Some(end);
        });
    }

    /// Emits that will never be sent: acked ones fail with `Closed`, the count is logged.
    fn strand(&mut self, items: Vec<Outgoing<W>>) {
        if items.is_empty() {
            return;
        }
        self.outputs
            .push_back(Output::Note(Note::NeverSent { emits: items.len() }));
        for item in items {
            if let Body::Acked(acked) = item.body {
                self.outputs
                    .push_back(Output::Resolve(acked.ack.tx, Err(AckError::Closed)));
            }
        }
    }

    /// Turns what the session has to say into outputs.
    fn poll_session(&mut self, now: Instant) {
        while let Some(event) = self.session.as_mut().and_then(Session::poll_event) {
            match event {
                SessionEvent::Opened(open) => {
                    self.outputs.push_back(Output::MaxPayload(open.max_payload));
                }
                SessionEvent::Connected { sid, pid } => self.on_connected(sid, pid, now),
                SessionEvent::Event {
                    name,
                    args,
                    ack_id,
                    offset,
                } => {
                    if offset.is_some() {
                        self.offset = offset;
                    }
                    let ack = ack_id.map(|id| (self.generation, id));
                    self.outputs
                        .push_back(Output::Deliver(Delivery::Event { name, args, ack }));
                }
                SessionEvent::Ack { id, args } => match self.acks.remove(id) {
                    Some(inflight) => {
                        self.outputs
                            .push_back(Output::Resolve(inflight.ack.tx, Ok(args)));
                    }
                    None => self.outputs.push_back(Output::Note(Note::LateAck { id })),
                },
                SessionEvent::Closed(reason) => {
                    if self.phase == Phase::Closing || self.phase == Phase::Ending {
                        // Our own DISCONNECT.
                        continue;
                    }
                    self.handle_lost(close_error(reason), now);
                    return;
                }
            }
        }
    }

    fn on_connected(&mut self, sid: String, pid: Option<String>, now: Instant) {
        if self.phase != Phase::Attempt {
            return;
        }
        let recovered = pid.is_some() && self.pid == pid && self.offset.is_some();
        if self.pid.is_some() && !recovered {
            self.outputs.push_back(Output::Note(Note::NotRecovered));
        }
        if !recovered {
            self.offset = None;
        }
        self.pid = pid;
        self.phase = Phase::Connected;
        self.deadline = None;
        self.reconnect.on_connected(now);
        self.outputs
            .push_back(Output::Note(Note::Connected { recovered }));
        let socket_id = sid.clone();
        self.publish(|s| {
            s.status = Status::Connected;
            s.socket_id = Some(socket_id);
            s.next_attempt_in = None;
            s.recovered = recovered;
        });
        self.outputs.push_back(Output::Up);
        self.outputs.push_back(Output::Deliver(Delivery::Connected {
            socket_id: sid,
            recovered,
        }));
    }
}

/// What a session's end means for the loop.
fn close_error(reason: CloseReason) -> LinkError {
    match reason {
        CloseReason::ConnectError { message, data } => LinkError::Rejected { message, data },
        CloseReason::ServerDisconnect => LinkError::ServerDisconnect,
        CloseReason::EngineClose | CloseReason::ClientDisconnect => LinkError::TransportClose,
        CloseReason::PingTimeout => LinkError::PingTimeout,
    }
}
