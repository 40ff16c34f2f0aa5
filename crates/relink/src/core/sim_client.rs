//! A seeded simulation of the whole client core in virtual time: a simulated server that
//! speaks Engine.IO/Socket.IO (its frames built and parsed with `relink-proto`'s codecs),
//! a simulated network with faults, and a user, around the real [`Connection`], the
//! real outbox and the real hand-over to the reader (`flow.rs`: its queue, its budget and
//! both overflow policies).
//!
//! Each seed draws settings (extremes the builder accepts included) and a random mix of:
//! links dropped at any point (mid-handshake, mid-write, with acks pending); 503 with and
//! without `Retry-After` (the transport turns seconds and HTTP dates into the same
//! duration, `transport::parse_retry_after`); 401, 403 and CONNECT_ERROR; refused and silent dials; half-open links;
//! server pings, events, asks and disconnects; recovery with and without the session
//! surviving; a slow, stalled and bursty reader behind a budget of a few items or a few
//! hundred bytes (the driver stops reading the link while it is spent, under
//! backpressure); plain, acked, retried and volatile emits (a
//! volatile emit's check and its push in separate steps, as two threads may interleave
//! them); `disconnect()` at any point, with the user emitting on after it. After every step
//! the invariants below are checked; at the end the user disconnects and the rest.
//!
//! Invariants:
//! - every acked emit is answered exactly once (ack, `Timeout`, `Disconnected`, `Closed`),
//!   an `Ok` with the server's answer to that very emit;
//! - plain emits reach the server in order, each at most once; one accepted is received,
//!   or was handed to a link that was then lost, or the client said it was never sent;
//! - a volatile emit is received only on the link it was made on;
//! - server events reach the user in order, each at most once, with no hole except at the
//!   end of a server session (which the next `Connected { recovered: false }` tells);
//!   every `Connected` after the first follows a `Disconnected`;
//! - the reader gets exactly what the core delivered, in order: under backpressure all of
//!   it (the hand-over's own drop counter stays 0); under the drop policy all but what a
//!   `Lagged` notice, placed where the gap is, counts exactly; at the end the budget is
//!   given back in full;
//! - no ping timeout while the driver is not reading; a link lost after going unread past
//!   the server's ping timeout says `unread`;
//! - at most one ERROR record per outage, and one once its streak reached
//!   `escalate_after`; each INFO `Recovered` ends an outage;
//! - states are published with `seq` one apart, along [`TRANSITIONS`](super::connection::TRANSITIONS);
//!   a wait is within the backoff's bounds;
//! - `disconnect()` needs no more time: the DISCONNECT is queued behind what was accepted
//!   before it, whatever the user emits after it, and is the last thing the server gets.
//!
//! `cargo test` runs 2,000 seeds; `RELINK_SIM_SEEDS=N` runs N; `RELINK_SIM_SEED=S` replays
//! one, which a failure prints.

use super::connection::{Connection, Delivery, Output, Phase, Setup, transition_allowed};
use super::reconnect::{Record, Settings, Severity};
use crate::error::{AckError, LinkError};
use crate::flow::{self, Budget, Overflow, Pushed};
use crate::outbox::{AckRequest, Acked, Body, Outbox, Outgoing, ServerAck};
use crate::policy::backoff::Backoff;
use crate::state::{Status, Transport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use relink_proto::Payload;
use relink_proto::packet::{Packet, PacketData, PacketKind};
use relink_proto::session::{EncodedEvent, Transmit};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Steps in one seed's life before the user disconnects.
const STEPS: usize = 800;
const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);

/// What an acked emit's waiter is in the simulation: its number.
type Waiter = u64;

/// What the user's reader gets through the real hand-over (`flow.rs`).
#[derive(Debug)]
enum Read {
    Delivery(Delivery),
    Lagged(u64),
}

impl flow::Item for Read {
    fn weight(&self) -> usize {
        flow::ITEM_COST
            + match self {
                Read::Delivery(Delivery::Event { args, .. }) => args.as_json().len(),
                _ => 0,
            }
    }

    fn lagged(missed: u64) -> Option<Self> {
        Some(Read::Lagged(missed))
    }
}

/// What the reader must see for a delivery, in order.
fn describe(delivery: &Delivery) -> String {
    match delivery {
        Delivery::Connected { recovered, .. } => format!("connected {recovered}"),
        Delivery::Disconnected { reason } => format!("disconnected {reason}"),
        Delivery::Event { name, args, .. } => format!("{name} {}", args.as_json()),
    }
}

/// How the server answers a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Unavailable,
    UnavailableRetryAfter(u64),
    Unauthorized,
    RejectConnect,
    Refused,
    Silent,
}

/// The server's side of the current link.
#[derive(Debug)]
struct ServerLink {
    id: u64,
    /// The session this link serves, once the namespace is joined.
    session: Option<String>,
    /// Stopped answering and reading: the client learns only from its heartbeat.
    half_open: bool,
    next_ping: Instant,
    pong_due: Option<Instant>,
    got_disconnect: bool,
}

/// Everything the simulated server saw and sent.
#[derive(Debug, Default)]
struct Server {
    link: Option<ServerLink>,
    /// Events sent per session (a pid, or `link:N` without recovery), in order.
    sent: HashMap<String, Vec<u64>>,
    next_event: u64,
    next_session: u64,
    next_ask: u64,
    plain: Vec<u64>,
    volatile: Vec<(u64, u64)>,
    acked: HashMap<u64, u32>,
    /// The packets the server got after a DISCONNECT (none may come).
    after_disconnect: usize,
    /// The link each ask went out on, and whether it was answered.
    asks: HashMap<u64, (u64, bool)>,
    answers: usize,
    bad_answer: Option<String>,
}

/// One acked emit, as its caller sees it.
#[derive(Debug)]
struct Call {
    n: u64,
    /// Its number in the outbox.
    seq: u64,
    /// When the caller stops waiting (no retries).
    deadline: Option<Instant>,
    /// Answers from the core.
    answers: u32,
    /// The caller's own timeout fired first.
    timed_out: bool,
    /// And took the emit out of the outbox before it was sent (the core never saw it).
    removed: bool,
}

struct World {
    rng: StdRng,
    now: Instant,
    core: Connection<Waiter>,
    setup: Setup,
    recovery_offered: bool,
    outbox: Outbox<Waiter>,
    answers_out: Vec<ServerAck>,
    /// The link as the client sees it (the network delivers both ways while set).
    link: Option<u64>,
    next_link: u64,
    to_server: VecDeque<Transmit>,
    to_client: VecDeque<String>,
    mode: Mode,
    server: Server,
    /// The lane is up (`Output::Up` .. `Output::Down`).
    lane_up: bool,
    /// The user's reader, through the real hand-over and budget.
    budget: std::sync::Arc<Budget>,
    to_reader: flow::Sender<Read>,
    reader: flow::Receiver<Read>,
    /// What the core delivered and the reader has not read (or been told of) yet.
    unread: VecDeque<String>,
    reader_stalled: bool,
    /// The reader reads in the next `drive` (which can fail the seed).
    wants_read: bool,
    /// Whether the driver reads the link (it stops while the budget is spent, under
    /// backpressure).
    reading: bool,
    /// Times the driver stopped reading, links lost while unread, drops the reader was
    /// told of.
    pauses: usize,
    unread_losses: usize,
    told_dropped: u64,
    /// Events the user got, per session, and whether each `Connected` was recovered.
    got: HashMap<String, Vec<u64>>,
    /// The session of the link whose events the user is getting now.
    user_session: Option<String>,
    told_down: bool,
    connects: usize,
    asks_to_answer: Vec<(u64, u64, u64)>,
    calls: HashMap<Waiter, Call>,
    next_n: u64,
    /// Plain emits accepted, handed to a link (with its number), or said never sent.
    accepted: Vec<u64>,
    handed: HashMap<u64, u64>,
    lost_links: Vec<u64>,
    /// Plain emits the client said it would never send: stranded in the outbox at the
    /// end, or given up by a goodbye out of time (with the note that says so).
    never_sent: std::collections::HashSet<u64>,
    /// Plain emits handed to the core by the goodbye, and whether it then gave up.
    goodbye_handed: Vec<u64>,
    abandoned: bool,
    /// Volatile emits checked and not yet pushed: (number, link at the check).
    volatile_checked: Vec<(u64, u64)>,
    volatile_made: HashMap<u64, u64>,
    /// Records by outage.
    errors_in_outage: u32,
    outage_streak: u32,
    last_seq: u64,
    last_status: Status,
    last_transport: Option<Transport>,
    shutdown: bool,
    recovered: usize,
    acks_ok: usize,
    errors_total: usize,
    goodbye_seen: bool,
    /// The next CONNECT is refused once.
    reject_next: bool,
    /// Connected states published with the transport changed (a polling link upgraded).
    upgrades: usize,
}

fn fail(seed: u64, step: usize, what: String) -> String {
    format!("seed {seed}, step {step}: {what} (replay: RELINK_SIM_SEED={seed})")
}

fn settings(rng: &mut StdRng) -> Settings {
    let ms = Duration::from_millis;
    let initial = [ms(1), ms(10), ms(50), ms(200), ms(1000), Duration::MAX][rng.random_range(0..6)];
    Settings {
        backoff: Backoff {
            initial,
            max: initial.saturating_add([ms(0), ms(500), ms(30_000)][rng.random_range(0..3)]),
            retry_after_max: [ms(0), ms(2000), Duration::MAX][rng.random_range(0..3)],
        },
        escalate_after: [0, 1, 3, 8][rng.random_range(0..4)],
        stable_after: [ms(0), ms(100), ms(5000), Duration::MAX][rng.random_range(0..4)],
        reconnect_on_server_disconnect: rng.random_bool(0.5),
        max_attempts: [None, None, None, Some(0), Some(6)][rng.random_range(0..5)],
    }
}

/// The number an event, an emit or an answer carries as its only argument.
fn number(args: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(args).ok()?;
    value.get(0)?.as_u64()
}

/// The number in an encoded emit's frame (`42["p",7]`).
fn frame_number(event: &EncodedEvent) -> Option<u64> {
    let text = event.text();
    let value: serde_json::Value = serde_json::from_str(&text[text.find('[')?..]).ok()?;
    value.get(1)?.as_u64()
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let ms = Duration::from_millis;
        let setup = Setup {
            namespace: "/".into(),
            recovery: rng.random_bool(0.7),
            max_attachments: 4,
            max_message_size: 1 << 16,
            connect_timeout: [ms(300), ms(2000), Duration::MAX][rng.random_range(0..3)],
            reconnect: settings(&mut rng),
        };
        let core = Connection::new(setup.clone(), rng.random(), 0);
        let policy = if rng.random_bool(0.5) {
            Overflow::Backpressure
        } else {
            Overflow::Drop
        };
        // A few items, or a few events' bytes (a numbered event weighs about 70).
        let (items, bytes) = if rng.random_bool(0.5) {
            (rng.random_range(1..8), usize::MAX)
        } else {
            (usize::MAX, rng.random_range(1..500))
        };
        let budget = Budget::new(policy, items, bytes, || {});
        let (to_reader, reader) = flow::queue(&budget, "the simulated reader");
        World {
            budget,
            to_reader,
            reader,
            unread: VecDeque::new(),
            reading: true,
            pauses: 0,
            unread_losses: 0,
            told_dropped: 0,
            recovery_offered: rng.random_bool(0.7),
            outbox: Outbox::new(rng.random_range(1..20), 1 << 20),
            core,
            setup,
            rng,
            now: Instant::now(),
            answers_out: Vec::new(),
            link: None,
            next_link: 0,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            mode: Mode::Up,
            server: Server::default(),
            lane_up: false,
            reader_stalled: false,
            wants_read: false,
            got: HashMap::new(),
            user_session: None,
            told_down: false,
            connects: 0,
            asks_to_answer: Vec::new(),
            calls: HashMap::new(),
            next_n: 0,
            accepted: Vec::new(),
            handed: HashMap::new(),
            lost_links: Vec::new(),
            never_sent: std::collections::HashSet::new(),
            goodbye_handed: Vec::new(),
            abandoned: false,
            volatile_checked: Vec::new(),
            volatile_made: HashMap::new(),
            errors_in_outage: 0,
            outage_streak: 0,
            last_seq: 0,
            last_status: Status::Connecting,
            last_transport: None,
            shutdown: false,
            recovered: 0,
            acks_ok: 0,
            errors_total: 0,
            goodbye_seen: false,
            reject_next: false,
            upgrades: 0,
        }
    }

    fn next_n(&mut self) -> u64 {
        self.next_n += 1;
        self.next_n
    }

    /// The network drops the link; the client hears of it unless `silently`.
    fn drop_link(&mut self, silently: bool) {
        self.to_server.clear();
        self.to_client.clear();
        self.server.link = None;
        if let Some(id) = self.link.take() {
            self.lost_links.push(id);
            if !silently {
                self.core.handle_lost(LinkError::TransportClose, self.now);
            }
        }
    }

    /// One random thing happens.
    fn act(&mut self) {
        let roll = self.rng.random_range(0..100);
        match roll {
            0..22 => self.deliver_to_server(),
            22..44 => self.deliver_to_client(),
            44..50 => self.advance(),
            50..56 => self.server_event(false),
            56..59 => self.server_event(true),
            59..66 => self.emit_plain(),
            66..70 => self.emit_acked(),
            70..72 => self.check_volatile(),
            72..74 => self.push_volatile(),
            74..79 => self.wants_read = true,
            79..80 => self.reader_stalled = true,
            80..82 => self.answer_ask(),
            82..84 => self.drop_link(false),
            84..85 => {
                if self.rng.random_bool(0.5) {
                    if let Some(link) = self.server.link.as_mut() {
                        link.half_open = true;
                    }
                } else if self.link.is_some() {
                    // A polling link upgrades (the driver tells the core what its link
                    // says).
                    self.core.transport_changed(Transport::WebSocket);
                }
            }
            85..86 => {
                if self.rng.random_bool(0.25) {
                    self.server_disconnect();
                }
            }
            86..90 => {
                self.mode = match self.rng.random_range(0..14) {
                    8 => Mode::Unavailable,
                    9 => Mode::UnavailableRetryAfter(self.rng.random_range(0..4)),
                    10 => Mode::Unauthorized,
                    11 => Mode::RejectConnect,
                    12 => Mode::Refused,
                    13 => Mode::Silent,
                    _ => Mode::Up,
                }
            }
            _ => self.advance_to_deadline(),
        }
    }

    fn advance(&mut self) {
        let dt = [1, 10, 50, 150, 700][self.rng.random_range(0..5)];
        self.advance_to(self.now + Duration::from_millis(dt));
    }

    fn advance_to_deadline(&mut self) {
        if let Some(at) = self.core.poll_timeout()
            && at > self.now
            && at - self.now < Duration::from_secs(3600)
        {
            self.advance_to(at);
        } else {
            self.advance_to(self.now);
        }
    }

    /// Time passes up to `target`, or up to the server's next ping if that comes first (a
    /// live server pings on time).
    fn advance_to(&mut self, target: Instant) {
        let ping = self
            .server
            .link
            .as_ref()
            .filter(|l| !l.half_open)
            .map(|l| l.next_ping);
        self.now = ping.map_or(target, |ping| target.min(ping)).max(self.now);
        self.core.handle_timeout(self.now);
        self.server_tick();
    }

    /// The server pings on schedule and drops a link whose pong is late.
    fn server_tick(&mut self) {
        let now = self.now;
        let Some(link) = self.server.link.as_mut() else {
            return;
        };
        if link.half_open {
            return;
        }
        if link.pong_due.is_some_and(|at| at <= now) {
            self.drop_link(false);
            return;
        }
        if link.next_ping <= now {
            link.next_ping = now + PING_INTERVAL;
            link.pong_due = Some(now + PING_TIMEOUT);
            self.to_client.push_back("2".into());
        }
    }

    fn deliver_to_client(&mut self) {
        if self.server.link.as_ref().is_some_and(|l| l.half_open) || !self.reading {
            return;
        }
        if let Some(frame) = self.to_client.pop_front() {
            self.core.handle_text(&frame, self.now);
        }
    }

    fn deliver_to_server(&mut self) {
        let Some(frame) = self.to_server.pop_front() else {
            return;
        };
        let Some(link) = self.server.link.as_mut() else {
            return;
        };
        if link.half_open {
            return;
        }
        let Transmit::Text(text) = frame else {
            return;
        };
        if link.got_disconnect {
            self.server.after_disconnect += 1;
        }
        if text == "3" {
            link.pong_due = None;
            return;
        }
        let Some(body) = text.strip_prefix('4') else {
            return;
        };
        let Ok(packet) = Packet::decode(body) else {
            return;
        };
        match (packet.kind, packet.data) {
            (PacketKind::Connect, data) => self.server_connect(data),
            (PacketKind::Disconnect, _) => link.got_disconnect = true,
            (PacketKind::Event, PacketData::Event { name, args }) => {
                let Some(n) = number(&args) else { return };
                match (name.as_str(), packet.id) {
                    ("p", None) => self.server.plain.push(n),
                    ("v", None) => self.server.volatile.push((n, link.id)),
                    ("a", Some(id)) => {
                        *self.server.acked.entry(n).or_default() += 1;
                        self.to_client.push_back(format!("43{id}[{n}]"));
                    }
                    _ => {}
                }
            }
            (PacketKind::Ack, PacketData::Ack { args }) => {
                let id = packet.id.unwrap_or(u64::MAX);
                let Some((on, answered)) = self.server.asks.get_mut(&id) else {
                    self.server.bad_answer = Some(format!("an answer to no ask: {id}"));
                    return;
                };
                if *on != link.id || *answered || number(&args) != Some(id) {
                    self.server.bad_answer = Some(format!(
                        "answer to ask {id} (link {on}, answered {answered}) on link {}: {args}",
                        link.id
                    ));
                }
                *answered = true;
                self.server.answers += 1;
            }
            _ => {}
        }
    }

    fn server_connect(&mut self, data: PacketData) {
        let Some(link) = self.server.link.as_mut() else {
            return;
        };
        if self.mode == Mode::RejectConnect || std::mem::take(&mut self.reject_next) {
            self.to_client
                .push_back(r#"44{"message":"not authorized"}"#.into());
            return;
        }
        let auth: serde_json::Value = match data {
            PacketData::Json(json) => serde_json::from_str(&json).unwrap_or_default(),
            _ => serde_json::Value::Null,
        };
        let asked = auth.get("pid").and_then(|p| p.as_str()).map(str::to_owned);
        let offset = auth
            .get("offset")
            .and_then(|o| o.as_str())
            .map(str::to_owned);
        // The session survives the drop, or the server forgot it.
        let restored = asked
            .filter(|pid| self.server.sent.contains_key(pid))
            .filter(|_| self.recovery_offered && self.rng.random_bool(0.6));
        let session = match (&restored, self.recovery_offered) {
            (Some(pid), _) => pid.clone(),
            (None, true) => {
                self.server.next_session += 1;
                let pid = format!("pid{}", self.server.next_session);
                self.server.sent.insert(pid.clone(), Vec::new());
                pid
            }
            (None, false) => {
                let key = format!("link:{}", link.id);
                self.server.sent.insert(key.clone(), Vec::new());
                key
            }
        };
        link.session = Some(session.clone());
        if self.recovery_offered {
            self.to_client
                .push_back(format!(r#"40{{"sid":"s{}","pid":"{session}"}}"#, link.id));
        } else {
            self.to_client
                .push_back(format!(r#"40{{"sid":"s{}"}}"#, link.id));
        }
        if restored.is_some() {
            let after: u64 = offset.and_then(|o| o.parse().ok()).unwrap_or(0);
            let missed: Vec<u64> = self.server.sent[&session]
                .iter()
                .copied()
                .filter(|n| *n > after)
                .collect();
            for n in missed {
                self.to_client.push_back(format!(r#"42["e",{n},"{n}"]"#));
            }
        }
    }

    /// The server sends an event (or an ask) on the joined namespace.
    fn server_event(&mut self, ask: bool) {
        let Some(link) = self.server.link.as_ref() else {
            return;
        };
        let Some(session) = link.session.clone() else {
            return;
        };
        if ask {
            self.server.next_ask += 1;
            let id = self.server.next_ask;
            self.server.asks.insert(id, (link.id, false));
            self.to_client.push_back(format!(r#"42{id}["q",{id}]"#));
            return;
        }
        self.server.next_event += 1;
        let n = self.server.next_event;
        self.server.sent.entry(session).or_default().push(n);
        if self.recovery_offered {
            self.to_client.push_back(format!(r#"42["e",{n},"{n}"]"#));
        } else {
            self.to_client.push_back(format!(r#"42["e",{n}]"#));
        }
    }

    fn server_disconnect(&mut self) {
        if self
            .server
            .link
            .as_ref()
            .is_some_and(|l| l.session.is_some())
        {
            self.to_client.push_back("41".into());
        }
    }

    /// Queues as the handle does; the number the outbox gave it, or `None` when refused.
    fn push(&mut self, body: Body<Waiter>) -> Option<u64> {
        self.outbox.push(Outgoing { seq: 0, body }).ok()
    }

    fn emit_plain(&mut self) {
        let n = self.next_n();
        let args = Payload::json(&n).expect("json");
        if self
            .push(Body::Encoded(EncodedEvent::new("/", "p", &args)))
            .is_some()
        {
            self.accepted.push(n);
        }
    }

    fn emit_acked(&mut self) {
        let n = self.next_n();
        let ms = Duration::from_millis;
        let timeout = [ms(50), ms(400), ms(3000), Duration::MAX][self.rng.random_range(0..4)];
        let retries = [0, 0, 1, 3][self.rng.random_range(0..4)];
        let deadline = (retries == 0)
            .then(|| self.now.checked_add(timeout))
            .flatten();
        let ack = AckRequest {
            tx: n,
            timeout,
            retries_left: retries,
            deadline,
        };
        let args = Payload::json(&n).expect("json");
        let body = Body::Acked(Acked {
            name: "a".into(),
            args,
            ack,
        });
        if let Some(seq) = self.push(body) {
            self.calls.insert(
                n,
                Call {
                    n,
                    seq,
                    deadline,
                    answers: 0,
                    timed_out: false,
                    removed: false,
                },
            );
        }
    }

    /// `emit_volatile`'s check, which another thread may separate from its push.
    fn check_volatile(&mut self) {
        if self.lane_up
            && let Some(link) = self.link
        {
            let n = self.next_n();
            self.volatile_checked.push((n, link));
        }
    }

    /// `emit_volatile`'s push (see `Client::emit_volatile`): checked again (the same
    /// connection still up), marked volatile.
    fn push_volatile(&mut self) {
        let Some((n, checked_on)) = self.volatile_checked.pop() else {
            return;
        };
        if !self.lane_up || self.link != Some(checked_on) {
            return;
        }
        let args = Payload::json(&n).expect("json");
        if self
            .push(Body::Volatile(EncodedEvent::new("/", "v", &args)))
            .is_some()
        {
            self.volatile_made.insert(n, checked_on);
        }
    }

    fn read(&mut self, seed: u64, step: usize) -> Result<(), String> {
        if self.rng.random_bool(0.2) {
            self.reader_stalled = false;
        }
        if self.reader_stalled {
            return Ok(());
        }
        for _ in 0..self.rng.random_range(1..6) {
            if !self.read_one(seed, step)? {
                break;
            }
        }
        Ok(())
    }

    /// The reader takes one item, if there is one, and checks it against what the core
    /// delivered: the same, in order; what it was not given, told by `Lagged` with the
    /// exact count, and only under the drop policy.
    fn read_one(&mut self, seed: u64, step: usize) -> Result<bool, String> {
        let fail = |what: String| Err(fail(seed, step, what));
        let item = match self.reader.try_next() {
            std::task::Poll::Ready(Some(item)) => item,
            std::task::Poll::Ready(None) | std::task::Poll::Pending => return Ok(false),
        };
        match item {
            Read::Lagged(missed) => {
                if self.budget.policy() != Overflow::Drop {
                    return fail(format!("{missed} dropped under backpressure"));
                }
                if missed == 0 || missed as usize > self.unread.len() {
                    return fail(format!(
                        "told of {missed} dropped, {} unread",
                        self.unread.len()
                    ));
                }
                self.unread.drain(..missed as usize);
                self.told_dropped += missed;
            }
            Read::Delivery(delivery) => {
                let got = describe(&delivery);
                match self.unread.pop_front() {
                    Some(due) if due == got => {}
                    due => return fail(format!("the reader got {got:?} where {due:?} was due")),
                }
                if let Delivery::Event {
                    ack: Some((generation, id)),
                    ..
                } = delivery
                {
                    self.asks_to_answer.push((generation, id, id));
                }
            }
        }
        Ok(true)
    }

    /// The driver reads the link while the budget has room (under backpressure), and tells
    /// the core when that changes, as the supervisor does.
    fn update_reading(&mut self) {
        // The handshake is always read (it holds no events).
        let room = self.core.phase() == Phase::Attempt || !self.budget.blocks();
        if self.link.is_some() && room != self.reading {
            self.reading = room;
            self.pauses += usize::from(!room);
            self.core.set_reading(room, self.now);
        }
    }

    /// The end: the reader reads all that is left and has been given, or told of,
    /// everything the core delivered.
    fn drain_reader(&mut self, seed: u64) -> Result<(), String> {
        self.to_reader.finish();
        while self.read_one(seed, STEPS)? {}
        if !self.unread.is_empty() {
            return Err(fail(
                seed,
                STEPS,
                format!("never reached the reader: {:?}", self.unread),
            ));
        }
        if self.budget.policy() == Overflow::Backpressure && self.budget.dropped() > 0 {
            return Err(fail(
                seed,
                STEPS,
                "events dropped under backpressure".into(),
            ));
        }
        if self.told_dropped != self.budget.dropped() {
            return Err(fail(
                seed,
                STEPS,
                format!(
                    "{} dropped, the reader was told of {}",
                    self.budget.dropped(),
                    self.told_dropped
                ),
            ));
        }
        if self.budget.used() != (0, 0) {
            return Err(fail(
                seed,
                STEPS,
                format!("budget not given back: {:?}", self.budget.used()),
            ));
        }
        Ok(())
    }

    fn answer_ask(&mut self) {
        while let Some((generation, id, n)) = self.asks_to_answer.pop() {
            self.answers_out.push(ServerAck {
                generation,
                frame: EncodedEvent::ack("/", id, &Payload::json(&n).expect("json")),
            });
        }
    }

    /// The caller of an acked emit without retries stops waiting at its deadline (and the
    /// emit leaves the outbox, as `Client::emit_acked` does).
    fn caller_timeouts(&mut self) {
        let now = self.now;
        for call in self.calls.values_mut() {
            if call.answers == 0 && !call.timed_out && call.deadline.is_some_and(|d| d <= now) {
                call.timed_out = true;
                call.removed = self.outbox.remove(call.seq).is_some();
            }
        }
    }

    /// What the driver does after every step: dial, carry out outputs, move the outbox and
    /// the user's answers into the core, put frames on the wire, end.
    fn drive(&mut self, seed: u64, step: usize) -> Result<(), String> {
        if std::mem::take(&mut self.wants_read) {
            self.read(seed, step)?;
        }
        for _ in 0..8 {
            self.caller_timeouts();
            // As the supervisor: no dial while the application holds all it may.
            if self.core.phase() == Phase::Dial && !self.budget.blocks() {
                self.core.begin_attempt(self.now);
                self.dial();
            }
            self.apply(seed, step)?;
            if self.core.is_connected() {
                for answer in std::mem::take(&mut self.answers_out) {
                    self.core.send_ack(answer);
                }
                let link = self.link.expect("connected on a link");
                while let Some(item) = self.outbox.pop() {
                    if let Body::Encoded(event) = &item.body
                        && let Some(n) = frame_number(event)
                    {
                        self.handed.insert(n, link);
                    }
                    self.core.send(item, self.now);
                }
            }
            if self.link.is_some() {
                while let Some(t) = self.core.poll_transmit() {
                    self.to_server.push_back(t);
                }
            }
            // The core gave the link up (ping timeout, CONNECT_ERROR, a server's
            // DISCONNECT, a protocol error): the driver drops the socket.
            if self.link.is_some()
                && !matches!(self.core.phase(), Phase::Attempt | Phase::Connected)
            {
                self.drop_link(true);
            }
            if self.core.phase() == Phase::Ending {
                let stranded = self.outbox.close();
                self.strand(&stranded);
                self.core.close(stranded);
            }
            self.apply(seed, step)?;
            self.update_reading();
            if self.core.phase() != Phase::Dial {
                break;
            }
        }
        Ok(())
    }

    /// Emits handed to the core as never to be sent.
    fn strand(&mut self, items: &[Outgoing<Waiter>]) {
        for item in items {
            if let Body::Encoded(event) = &item.body
                && let Some(n) = frame_number(event)
            {
                self.never_sent.insert(n);
            }
        }
    }

    fn dial(&mut self) {
        let error = match self.mode {
            Mode::Up | Mode::RejectConnect => None,
            Mode::Unavailable => Some(LinkError::Http {
                status: 503,
                retry_after: None,
                engine_code: None,
            }),
            Mode::UnavailableRetryAfter(secs) => Some(LinkError::Http {
                status: 503,
                retry_after: Some(Duration::from_secs(secs)),
                engine_code: None,
            }),
            Mode::Unauthorized => Some(LinkError::Http {
                status: if self.rng.random_bool(0.5) { 401 } else { 403 },
                retry_after: None,
                engine_code: None,
            }),
            Mode::Refused => Some(LinkError::Network("connection refused".into())),
            // Nothing answers: the attempt's deadline ends it.
            Mode::Silent => return,
        };
        // Most rejections are a stale token that the refresh fixes.
        if matches!(self.mode, Mode::Unauthorized | Mode::RejectConnect)
            && self.rng.random_bool(0.93)
        {
            self.mode = Mode::Up;
            if let Some(error) = error {
                self.core.handle_lost(error, self.now);
                return;
            }
            self.reject_next = true;
        }
        if let Some(error) = error {
            self.core.handle_lost(error, self.now);
            return;
        }
        self.next_link += 1;
        let id = self.next_link;
        self.link = Some(id);
        // A new link is read until the budget says otherwise (`update_reading`).
        self.reading = true;
        self.to_server.clear();
        self.to_client.clear();
        self.server.link = Some(ServerLink {
            id,
            session: None,
            half_open: false,
            next_ping: self.now + PING_INTERVAL,
            pong_due: None,
            got_disconnect: false,
        });
        self.to_client.push_back(format!(
            r#"0{{"sid":"e{id}","upgrades":[],"pingInterval":{},"pingTimeout":{},"maxPayload":100000}}"#,
            PING_INTERVAL.as_millis(),
            PING_TIMEOUT.as_millis()
        ));
        let transport = if self.rng.random_bool(0.5) {
            Transport::Polling
        } else {
            Transport::WebSocket
        };
        self.core
            .link_open(Some(r#"{"token":"t"}"#.into()), transport);
    }

    /// Carries out the core's outputs, then hands what was delivered to the reader.
    fn apply(&mut self, seed: u64, step: usize) -> Result<(), String> {
        self.apply_outputs(seed, step)?;
        self.to_reader.flush();
        Ok(())
    }

    fn apply_outputs(&mut self, seed: u64, step: usize) -> Result<(), String> {
        let fail = |what: String| Err(fail(seed, step, what));
        while let Some(output) = self.core.poll_output() {
            if std::env::var_os("RELINK_SIM_TRACE").is_some() {
                eprintln!("{:?} {output:?}", self.now);
            }
            match output {
                Output::State(state) => {
                    if state.seq != self.last_seq + 1 {
                        return fail(format!("seq {} after {}", state.seq, self.last_seq));
                    }
                    if !transition_allowed(self.last_status, state.status) {
                        return fail(format!("{:?} -> {:?}", self.last_status, state.status));
                    }
                    if let Some(wait) = state.next_attempt_in {
                        let b = self.setup.reconnect.backoff;
                        let bound = b.max.saturating_add(b.retry_after_max);
                        if wait > bound {
                            return fail(format!("wait {wait:?} beyond {bound:?}"));
                        }
                    }
                    if state.transport.is_some() != (state.status == Status::Connected) {
                        return fail(format!(
                            "transport {:?} while {:?}",
                            state.transport, state.status
                        ));
                    }
                    if state.status == Status::Connected
                        && self.last_status == Status::Connected
                        && self.last_transport != state.transport
                    {
                        self.upgrades += 1;
                    }
                    self.last_seq = state.seq;
                    self.last_status = state.status;
                    self.last_transport = state.transport;
                }
                Output::Log(record) => self.record(&record, seed, step)?,
                Output::Note(super::connection::Note::Abandoned { frames }) => {
                    if frames == 0 {
                        return fail("an empty abandon noted".into());
                    }
                    self.abandoned = true;
                }
                Output::Note(_) => {}
                Output::Deliver(delivery) => {
                    match &delivery {
                        Delivery::Connected { recovered, .. } => {
                            if self.connects > 0 && !self.told_down {
                                return fail("Connected without Disconnected before".into());
                            }
                            self.connects += 1;
                            self.recovered += usize::from(*recovered);
                            self.told_down = false;
                            let session = self
                                .server
                                .link
                                .as_ref()
                                .and_then(|l| l.session.clone())
                                .expect("the server joined the namespace");
                            let same = self.user_session.as_ref() == Some(&session);
                            if *recovered != same && self.user_session.is_some() {
                                return fail(format!("recovered {recovered}, same session {same}"));
                            }
                            self.user_session = Some(session);
                        }
                        Delivery::Disconnected { .. } => self.told_down = true,
                        Delivery::Event { args, ack, .. } => {
                            if ack.is_none() {
                                let n = number(args.as_json()).expect("numbered");
                                let session = self.user_session.clone().expect("connected");
                                self.got.entry(session).or_default().push(n);
                            }
                        }
                    }
                    if let Delivery::Disconnected { reason } = &delivery {
                        if *reason == crate::Reason::PingTimeout && !self.reading {
                            return fail("a ping timeout while the driver did not read".into());
                        }
                        self.unread_losses += usize::from(*reason == crate::Reason::Unread);
                    }
                    // The real hand-over decides: kept, or (drop policy) dropped and told.
                    self.unread.push_back(describe(&delivery));
                    if self.to_reader.push(Read::Delivery(delivery)) == Pushed::BatchFull {
                        self.to_reader.flush();
                    }
                }
                Output::Resolve(waiter, result) => {
                    let Some(call) = self.calls.get_mut(&waiter) else {
                        return fail(format!("answer for unknown emit {waiter}"));
                    };
                    call.answers += 1;
                    if call.answers > 1 {
                        return fail(format!("emit {waiter} answered twice"));
                    }
                    if let Ok(args) = &result
                        && number(args.as_json()) != Some(call.n)
                    {
                        return fail(format!("emit {} got the answer {args:?}", call.n));
                    }
                    self.acks_ok += usize::from(result.is_ok());
                    if let Err(AckError::Emit(e)) = &result {
                        return fail(format!("emit {} refused: {e}", call.n));
                    }
                }
                Output::MaxPayload(_) => {}
                Output::Requeue(items) => self.outbox.requeue_front(items),
                Output::Up => self.lane_up = true,
                Output::Down { requeue } => {
                    self.lane_up = false;
                    self.outbox.link_lost(requeue);
                }
            }
        }
        let threshold = self.setup.reconnect.escalate_after.max(1);
        if self.outage_streak >= threshold && self.errors_in_outage == 0 {
            return fail(format!("streak {} without its ERROR", self.outage_streak));
        }
        Ok(())
    }

    fn record(&mut self, record: &Record, seed: u64, step: usize) -> Result<(), String> {
        let fail = |what: String| Err(fail(seed, step, what));
        if let Record::AttemptFailed { streak, .. } | Record::KeepsFailing { streak, .. } = record {
            self.outage_streak = self.outage_streak.max(*streak);
        }
        if record.severity() == Severity::Error {
            self.errors_total += 1;
            self.errors_in_outage += 1;
            if self.errors_in_outage > 1 {
                return fail(format!("a second ERROR in one outage: {record:?}"));
            }
        }
        if let Record::Recovered { .. } = record {
            self.errors_in_outage = 0;
            self.outage_streak = 0;
        }
        Ok(())
    }

    /// The user calls `disconnect()` (and keeps emitting).
    fn disconnect(&mut self, seed: u64, step: usize) -> Result<(), String> {
        self.shutdown = true;
        let accepted = self.outbox.close();
        let connected = self.core.is_connected();
        let last_link = self.link;
        if connected {
            for item in &accepted {
                if let Body::Encoded(event) = &item.body
                    && let Some(n) = frame_number(event)
                {
                    self.handed.insert(n, last_link.expect("connected"));
                    self.goodbye_handed.push(n);
                }
            }
        } else {
            self.strand(&accepted);
        }
        let answers = std::mem::take(&mut self.answers_out);
        self.core.shutdown(accepted, answers, self.now);
        // The user emits on: refused, so nothing can hold the DISCONNECT back.
        let before = (self.accepted.len(), self.calls.len());
        self.emit_plain();
        self.emit_acked();
        if (self.accepted.len(), self.calls.len()) != before {
            return Err(fail(
                seed,
                step,
                "an emit accepted after disconnect()".into(),
            ));
        }
        if self.rng.random_bool(0.1) {
            self.drop_link(false);
        }
        // The driver may run out of time writing what was accepted: the rest is given up
        // (and said so) and the DISCONNECT goes next.
        let abandon = self.rng.random_bool(0.2);
        if self.link.is_some() && !abandon {
            while let Some(t) = self.core.poll_transmit() {
                self.to_server.push_back(t);
            }
        }
        self.core.leave(abandon);
        if self.link.is_some() {
            while let Some(t) = self.core.poll_transmit() {
                self.to_server.push_back(t);
            }
        }
        if self.core.phase() != Phase::Ending {
            return Err(fail(
                seed,
                step,
                format!("disconnect left the core in {:?}", self.core.phase()),
            ));
        }
        let stranded = self.outbox.close();
        self.strand(&stranded);
        self.core.close(stranded);
        self.apply(seed, step)?;
        if self.abandoned {
            // Given up, and said so: what of it did not arrive.
            let given_up = std::mem::take(&mut self.goodbye_handed);
            self.never_sent.extend(given_up);
        }
        let half_open = self.server.link.as_ref().is_some_and(|l| l.half_open);
        if connected && self.link.is_some() {
            // The server reads all that was written.
            while !self.to_server.is_empty() {
                self.deliver_to_server();
            }
            let got = self.server.link.as_ref().is_some_and(|l| l.got_disconnect);
            if !half_open && !got {
                return Err(fail(seed, step, "no DISCONNECT reached the server".into()));
            }
            self.goodbye_seen = got;
        }
        // The socket closes: what a half-open peer did not read is gone with it; a live one
        // has read everything.
        let live = self.link.is_some() && !half_open;
        self.drop_link(true);
        if live {
            self.lost_links.pop();
        }
        Ok(())
    }

    fn check_end(&self, seed: u64) -> Result<(), String> {
        let fail = |what: String| Err(fail(seed, STEPS, what));
        if self.core.phase() != Phase::Ended || !self.last_status.is_terminal() {
            return fail(format!("not ended: {:?}", self.core.phase()));
        }
        for call in self.calls.values() {
            // The core answers everything it was handed, even after the caller gave up.
            if call.answers == 0 && !call.removed {
                return fail(format!("acked emit {} never answered", call.n));
            }
        }
        if let Some(bad) = &self.server.bad_answer {
            return fail(bad.clone());
        }
        if self.server.after_disconnect > 0 {
            return fail("packets after the DISCONNECT".into());
        }
        if self.server.plain.windows(2).any(|w| w[0] >= w[1]) {
            return fail(format!("plain emits out of order: {:?}", self.server.plain));
        }
        let received: std::collections::HashSet<u64> = self.server.plain.iter().copied().collect();
        let unaccounted: Vec<(u64, Option<u64>)> = self
            .accepted
            .iter()
            .filter(|n| !received.contains(n))
            .filter(|n| {
                !self
                    .handed
                    .get(n)
                    .is_some_and(|l| self.lost_links.contains(l))
            })
            .map(|n| (*n, self.handed.get(n).copied()))
            .collect();
        let unaccounted: Vec<_> = unaccounted
            .into_iter()
            .filter(|(n, _)| !self.never_sent.contains(n))
            .collect();
        if !unaccounted.is_empty() {
            return fail(format!(
                "plain emits lost without a word (emit, link): {unaccounted:?}; links lost {:?}",
                self.lost_links
            ));
        }
        for (n, link) in &self.server.volatile {
            if self.volatile_made.get(n) != Some(link) {
                return fail(format!("volatile emit {n} arrived on link {link}"));
            }
        }
        for (session, got) in &self.got {
            let sent = self.server.sent.get(session).map_or(&[][..], Vec::as_slice);
            if got.len() > sent.len() || got[..] != sent[..got.len()] {
                return fail(format!(
                    "session {session}: sent {sent:?}, user got {got:?}"
                ));
            }
        }
        Ok(())
    }
}

/// How often each thing the invariants speak of happened, over all seeds: a simulation
/// whose runs never reach a case proves nothing about it.
#[derive(Debug, Default)]
struct Tally {
    connected: usize,
    recovered: usize,
    events: usize,
    acks_ok: usize,
    acks_failed: usize,
    timed_out_waiting: usize,
    plain_received: usize,
    volatile_received: usize,
    goodbyes: usize,
    errors: usize,
    failed: usize,
    answers: usize,
    dropped_for_reader: u64,
    reader_pauses: usize,
    unread_losses: usize,
    upgrades: usize,
}

impl World {
    fn tally(&self, t: &mut Tally) {
        t.connected += self.connects;
        t.recovered += self.recovered;
        t.events += self.got.values().map(Vec::len).sum::<usize>();
        t.acks_ok += self.acks_ok;
        t.acks_failed += self.calls.values().filter(|c| c.answers > 0).count() - self.acks_ok;
        t.timed_out_waiting += self.calls.values().filter(|c| c.timed_out).count();
        t.plain_received += self.server.plain.len();
        t.volatile_received += self.server.volatile.len();
        t.goodbyes += usize::from(self.goodbye_seen);
        t.errors += self.errors_total;
        t.failed += usize::from(self.last_status == Status::Failed);
        t.answers += self.server.answers;
        t.dropped_for_reader += self.budget.dropped();
        t.reader_pauses += self.pauses;
        t.unread_losses += self.unread_losses;
        t.upgrades += self.upgrades;
    }
}

fn run(seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut world = World::new(seed);
    // The user disconnects at a random point (the last step at the latest).
    let stop_at = world.rng.random_range(STEPS / 4..STEPS * 2).min(STEPS);
    for step in 0..stop_at {
        world.act();
        world.drive(seed, step)?;
        if world.core.phase() == Phase::Ended {
            break;
        }
    }
    // Half the users disconnect while connected (if the client gets there in time): the
    // goodbye is a path of its own.
    if world.rng.random_bool(0.5) {
        for step in stop_at..stop_at + STEPS / 2 {
            if matches!(world.core.phase(), Phase::Connected | Phase::Ended) {
                break;
            }
            world.act();
            world.drive(seed, step)?;
        }
    }
    if world.core.phase() != Phase::Ended {
        world.disconnect(seed, stop_at)?;
    }
    world.drain_reader(seed)?;
    world.check_end(seed)?;
    world.tally(tally);
    Ok(())
}

#[test]
fn the_whole_client_keeps_its_promises_under_any_mix_of_faults() {
    // The same RELINK_SIM_SEEDS / RELINK_SIM_SEED as the reconnect simulation.
    let seeds = super::sim::seeds();
    let mut tally = Tally::default();
    for &seed in &seeds {
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed, &mut tally)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => panic!("{message}"),
            Err(_) => panic!("seed {seed} panicked (replay: RELINK_SIM_SEED={seed})"),
        }
    }
    eprintln!("{} seeds: {tally:?}", seeds.len());
    if seeds.len() >= 1_000 {
        let reached = [
            tally.connected,
            tally.recovered,
            tally.events,
            tally.acks_ok,
            tally.acks_failed,
            tally.timed_out_waiting,
            tally.plain_received,
            tally.volatile_received,
            tally.goodbyes,
            tally.errors,
            tally.failed,
            tally.answers,
            tally.dropped_for_reader as usize,
            tally.reader_pauses,
            tally.unread_losses,
            tally.upgrades,
        ];
        assert!(
            reached.iter().all(|&n| n > 0),
            "some case was never reached: {tally:?}"
        );
    }
}

#[test]
fn frame_number_reads_the_emit() {
    let args = Payload::json(&7).expect("json");
    let event = EncodedEvent::new("/", "p", &args);
    assert_eq!(frame_number(&event), Some(7), "{}", event.text());
}
