//! One connection's protocol state: Engine.IO handshake, heartbeat, one Socket.IO namespace.
//!
//! Feed it every frame with [`Session::handle_text`] / [`Session::handle_binary`] and the time
//! with [`Session::handle_timeout`]; drain what it wants sent with [`Session::poll_transmit`]
//! and what happened with [`Session::poll_event`]; sleep until [`Session::poll_timeout`].
//! It answers pings itself and never reads a clock.

use crate::arena::Arena;
use crate::engine::{EnginePacket, OpenData};
use crate::packet::{self, Header, PacketData, PacketKind};
use crate::{DecodeError, Payload};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// Default bound on attachments in one packet: more is treated as a hostile peer.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 256;

/// Most events held while waiting for the CONNECT reply (recovery replays missed events
/// before it; the server keeps at most its session's backlog).
pub const MAX_EARLY_EVENTS: usize = 65_536;

/// Default bound on one packet's bytes, text and attachments together.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 64 << 20;

/// Default bound on the bytes of events held before the CONNECT reply.
pub const DEFAULT_MAX_EARLY_BYTES: usize = 64 << 20;

/// What a session needs to know before the first frame.
#[derive(Clone)]
pub struct SessionConfig {
    /// The namespace to connect to (`/` by default).
    pub namespace: String,
    /// The CONNECT payload: a JSON object text, e.g. `{"token":"..."}`.
    pub auth: Option<String>,
    /// What to ask the server to restore (connection state recovery).
    pub recovery: Option<Recovery>,
    /// Most attachments accepted in one packet.
    pub max_attachments: usize,
    /// Most bytes in one packet, its text and attachments together.
    pub max_packet_bytes: usize,
    /// Most bytes of events (names, arguments, attachments) held before the CONNECT reply.
    pub max_early_bytes: usize,
    /// Attachments travel base64-encoded (HTTP long-polling): each must fit the server's
    /// `maxPayload` as base64, a third larger.
    pub base64_attachments: bool,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `auth` carries the token: never print it.
        f.debug_struct("SessionConfig")
            .field("namespace", &self.namespace)
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field("recovery", &self.recovery)
            .field("max_attachments", &self.max_attachments)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("max_early_bytes", &self.max_early_bytes)
            .field("base64_attachments", &self.base64_attachments)
            .finish()
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            namespace: packet::ROOT_NAMESPACE.to_owned(),
            auth: None,
            recovery: None,
            max_attachments: DEFAULT_MAX_ATTACHMENTS,
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            max_early_bytes: DEFAULT_MAX_EARLY_BYTES,
            base64_attachments: false,
        }
    }
}

/// The server session to restore: its private id and the last offset seen.
#[derive(Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The private session id from the last CONNECT reply.
    pub pid: String,
    /// The offset of the last event received.
    pub offset: String,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pid lets whoever holds it take over the session: keep it out of logs.
        f.debug_struct("Recovery")
            .field("pid", &"<redacted>")
            .field("offset", &self.offset)
            .finish()
    }
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the Engine.IO OPEN packet.
    AwaitOpen,
    /// CONNECT sent, waiting for the namespace's answer.
    AwaitConnect,
    /// The namespace accepted us.
    Connected,
    /// Over; see the [`SessionEvent::Closed`] reason.
    Closed,
}

/// A frame to write to the WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A text frame.
    Text(String),
    /// A binary frame (an attachment).
    Binary(Bytes),
}

/// Something that happened on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The Engine.IO handshake arrived.
    Opened(OpenData),
    /// The namespace accepted the connection.
    Connected {
        /// The socket id.
        sid: String,
        /// The private session id, present when the server offers state recovery.
        pid: Option<String>,
    },
    /// An event from the server.
    Event {
        /// Event name (shared between events of the same name: see [`Session`]).
        name: Arc<str>,
        /// Arguments, with the recovery offset already removed.
        args: Payload,
        /// Set when the server wants an acknowledgement.
        ack_id: Option<u64>,
        /// The recovery offset the server appended, if any.
        offset: Option<String>,
    },
    /// An acknowledgement of one of our emits.
    Ack {
        /// The id we sent.
        id: u64,
        /// Its arguments.
        args: Payload,
    },
    /// The session is over.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The namespace refused the connection (CONNECT_ERROR), e.g. middleware rejected the token.
    ConnectError {
        /// The error message.
        message: String,
        /// The `data` field as JSON text, if any.
        data: Option<String>,
    },
    /// The server disconnected us from the namespace on purpose (`io server disconnect`).
    ServerDisconnect,
    /// The Engine.IO session was closed by the server (`transport close`).
    EngineClose,
    /// Nothing arrived within pingInterval + pingTimeout (`ping timeout`).
    PingTimeout,
    /// We disconnected (`io client disconnect`).
    ClientDisconnect,
}

/// The peer broke the protocol; the connection must be dropped (`parse error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A valid packet arrived where the protocol does not allow it.
    #[error("unexpected {0} in state {1:?}")]
    Unexpected(&'static str, SessionState),
    /// A packet announced more attachments than allowed.
    #[error("{0} attachments exceed the limit of {1}")]
    TooManyAttachments(usize, usize),
    /// A packet's text and attachments together grew past the limit.
    #[error("a packet of at least {size} bytes exceeds the limit of {limit}")]
    PacketTooLarge {
        /// Bytes received for the packet so far.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why an emit could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SendError {
    /// The namespace is not connected.
    #[error("not connected")]
    NotConnected,
    /// A frame would exceed the server's `maxPayload`, which would make it drop the link.
    #[error("frame of {size} bytes exceeds the server's maxPayload of {max}")]
    TooLarge {
        /// Frame size.
        size: usize,
        /// The server's limit.
        max: u64,
    },
}

/// A binary packet whose attachments are still arriving.
struct PendingBinary {
    kind: PacketKind,
    id: Option<u64>,
    /// `None` for another namespace's packet: its attachments are counted and dropped.
    data: Option<PacketData>,
    expected: usize,
    /// Attachments arrived so far (kept only for our own packets).
    arrived: usize,
    /// Bytes of the packet so far, its text and attachments.
    bytes: usize,
    received: Vec<Bytes>,
}

/// An event encoded before it reaches the session, e.g. in the task that emitted it, and sent
/// later with [`Session::send_encoded`] on a connection to the same namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    text: String,
    attachments: Vec<Bytes>,
}

impl EncodedEvent {
    /// Encodes event `name` with `args` for `namespace`, without an ack id. The attachments
    /// are shared with `args`, not copied.
    pub fn new(namespace: &str, name: &str, args: &Payload) -> Self {
        EncodedEvent {
            text: packet::frame(namespace, Some(name), args, None),
            attachments: args.attachments().to_vec(),
        }
    }

    /// The answer to the server's event `id` in `namespace`, carrying `args`.
    pub fn ack(namespace: &str, id: u64, args: &Payload) -> Self {
        EncodedEvent {
            text: packet::frame(namespace, None, args, Some(id)),
            attachments: args.attachments().to_vec(),
        }
    }

    /// A frame written elsewhere in this crate (no attachments).
    pub(crate) fn from_text(text: String) -> Self {
        EncodedEvent {
            text,
            attachments: Vec::new(),
        }
    }

    /// The text frame.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The arguments again, read back from the frame (to hand an emit that could not be
    /// sent back to its caller; not for the hot path).
    pub fn args(&self) -> Payload {
        // After the header: a namespace may hold a `[` of its own.
        let json = self
            .text
            .get(1..)
            .and_then(|packet| packet::Header::decode(packet).ok())
            .map_or("", |header| header.rest);
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(json).unwrap_or_default();
        let json = crate::packet::join_array(items.get(1..).unwrap_or_default());
        Payload::from_wire(json, self.attachments.clone())
    }

    /// The binary attachments, sent after the text frame.
    pub fn attachments(&self) -> &[Bytes] {
        &self.attachments
    }

    /// Splits into the text frame and the attachments.
    pub fn into_parts(self) -> (String, Vec<Bytes>) {
        (self.text, self.attachments)
    }

    /// Bytes on the wire: the text frame and every attachment.
    pub fn size(&self) -> usize {
        self.text.len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }
}

/// One connection's protocol state machine.
pub struct Session {
    config: SessionConfig,
    state: SessionState,
    open: Option<OpenData>,
    pid: Option<String>,
    deadline: Option<Instant>,
    /// The driver does not read the link (the application's buffer is full).
    unread: bool,
    binary: Option<PendingBinary>,
    /// Events that arrived before the CONNECT reply (recovery replays them there).
    early: Vec<(Arc<str>, Payload, Option<u64>)>,
    /// Their bytes: names, arguments and attachments.
    early_bytes: usize,
    names: Names,
    /// Where received arguments are copied to (see `arena.rs`).
    arena: Arena,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("namespace", &self.config.namespace)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session waiting for the server's OPEN packet.
    pub fn new(config: SessionConfig) -> Self {
        Session {
            config,
            state: SessionState::AwaitOpen,
            open: None,
            pid: None,
            deadline: None,
            unread: false,
            binary: None,
            early: Vec::new(),
            early_bytes: 0,
            names: Names::default(),
            arena: Arena::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The OPEN data, once received.
    pub fn open_data(&self) -> Option<&OpenData> {
        self.open.as_ref()
    }

    /// The namespace this session connects to.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    /// Handles one text frame received at `now`.
    pub fn handle_text(&mut self, frame: &str, now: Instant) -> Result<(), ProtocolError> {
        if self.state == SessionState::Closed {
            return Ok(());
        }
        let result = self.handle_text_inner(frame, now);
        if result.is_err() {
            self.state = SessionState::Closed;
        }
        result
    }

    fn handle_text_inner(&mut self, frame: &str, now: Instant) -> Result<(), ProtocolError> {
        let engine = EnginePacket::decode(frame)?;
        if self.binary.is_some() {
            return Err(ProtocolError::Unexpected(
                "text frame while attachments are due",
                self.state,
            ));
        }
        self.touch(now);
        match engine {
            EnginePacket::Open(open) => {
                if self.state != SessionState::AwaitOpen {
                    return Err(ProtocolError::Unexpected("OPEN", self.state));
                }
                self.deadline = Some(now + open.heartbeat_window());
                self.open = Some(open.clone());
                self.events.push_back(SessionEvent::Opened(open));
                self.send_connect();
                self.state = SessionState::AwaitConnect;
            }
            EnginePacket::Ping(data) => {
                self.require_open("PING")?;
                let mut out = String::with_capacity(1 + data.len());
                EnginePacket::Pong(data).encode(&mut out);
                self.transmits.push_back(Transmit::Text(out));
            }
            EnginePacket::Pong(_) | EnginePacket::Noop | EnginePacket::Upgrade => {}
            EnginePacket::Close => self.close(CloseReason::EngineClose),
            EnginePacket::Message(text) => {
                self.require_open("MESSAGE")?;
                let header = Header::decode(text)?;
                if header.kind.is_binary() && header.attachments > self.config.max_attachments {
                    return Err(ProtocolError::TooManyAttachments(
                        header.attachments,
                        self.config.max_attachments,
                    ));
                }
                if header.namespace != self.config.namespace {
                    // Another namespace multiplexed on this engine: not ours to handle. Its
                    // attachments still follow as binary frames, to be skipped, not taken
                    // for ours (or for a protocol error).
                    if header.kind.is_binary() && header.attachments > 0 {
                        self.binary = Some(PendingBinary {
                            kind: header.kind,
                            id: header.id,
                            data: None,
                            expected: header.attachments,
                            arrived: 0,
                            bytes: frame.len(),
                            received: Vec::new(),
                        });
                    }
                    return Ok(());
                }
                if header.kind == PacketKind::Event {
                    // The common case, without the owned name a `PacketData` would need, and
                    // with the arguments copied once, into the arena.
                    let (name, mut args) = packet::decode_event_parts(header.kind, header.rest)?;
                    let name = self.names.get(&name);
                    if self.state == SessionState::Connected {
                        // Taken before the copy, so the arguments are copied without it.
                        let offset = self
                            .recovers(header.id)
                            .then(|| args.take_trailing_string());
                        let args = Payload::from_shared(self.arena.array(args.inner()), Vec::new());
                        self.push_event(name, args, header.id, offset);
                    } else {
                        let args = Payload::from_shared(self.arena.array(args.inner()), Vec::new());
                        self.handle_event(name, args, header.id)?;
                    }
                    return Ok(());
                }
                if header.kind == PacketKind::Ack && self.state == SessionState::Connected {
                    let args = packet::decode_ack_args(header.kind, header.rest)?;
                    let Some(id) = header.id else {
                        return Err(DecodeError::AckId.into());
                    };
                    let args = Payload::from_shared(self.arena.copy(args), Vec::new());
                    self.events.push_back(SessionEvent::Ack { id, args });
                    return Ok(());
                }
                let data = header.data()?;
                if header.kind.is_binary() && header.attachments > 0 {
                    self.binary = Some(PendingBinary {
                        kind: header.kind,
                        id: header.id,
                        data: Some(data),
                        expected: header.attachments,
                        arrived: 0,
                        bytes: frame.len(),
                        received: Vec::with_capacity(header.attachments),
                    });
                    return Ok(());
                }
                self.handle_packet(header.kind, header.id, data, Vec::new())?;
            }
        }
        Ok(())
    }

    /// Handles one binary frame (an attachment) received at `now`.
    pub fn handle_binary(&mut self, frame: Bytes, now: Instant) -> Result<(), ProtocolError> {
        if self.state == SessionState::Closed {
            return Ok(());
        }
        let Some(pending) = self.binary.as_mut() else {
            let state = std::mem::replace(&mut self.state, SessionState::Closed);
            return Err(ProtocolError::Unexpected("binary frame", state));
        };
        pending.arrived += 1;
        pending.bytes = pending.bytes.saturating_add(frame.len());
        if pending.bytes > self.config.max_packet_bytes {
            let error = ProtocolError::PacketTooLarge {
                size: pending.bytes,
                limit: self.config.max_packet_bytes,
            };
            self.binary = None;
            self.state = SessionState::Closed;
            return Err(error);
        }
        if pending.data.is_some() {
            pending.received.push(frame);
        }
        if pending.arrived == pending.expected
            && let Some(done) = self.binary.take()
            && let Some(data) = done.data
        {
            let result = self.handle_packet(done.kind, done.id, data, done.received);
            if result.is_err() {
                self.state = SessionState::Closed;
            }
            result?;
        }
        self.touch(now);
        Ok(())
    }

    fn touch(&mut self, now: Instant) {
        // Any frame proves the link is alive, not only pings.
        if let Some(open) = &self.open
            && !self.unread
        {
            self.deadline = Some(now + open.heartbeat_window());
        }
    }

    fn require_open(&self, what: &'static str) -> Result<(), ProtocolError> {
        if self.state == SessionState::AwaitOpen {
            return Err(ProtocolError::Unexpected(what, self.state));
        }
        Ok(())
    }

    fn send_connect(&mut self) {
        let auth = self.connect_payload();
        let mut out = String::from("4");
        packet::encode_header(
            &mut out,
            PacketKind::Connect,
            0,
            &self.config.namespace,
            None,
        );
        if let Some(auth) = auth {
            out.push_str(&auth);
        }
        self.transmits.push_back(Transmit::Text(out));
    }

    fn connect_payload(&self) -> Option<String> {
        let Some(recovery) = &self.config.recovery else {
            return self.config.auth.clone();
        };
        // Like the reference client: pid and offset first, the user's auth may override them.
        let mut map = Map::new();
        map.insert("pid".into(), Value::String(recovery.pid.clone()));
        map.insert("offset".into(), Value::String(recovery.offset.clone()));
        if let Some(auth) = &self.config.auth
            && let Ok(Value::Object(user)) = serde_json::from_str::<Value>(auth)
        {
            map.extend(user);
        }
        Some(Value::Object(map).to_string())
    }

    fn handle_packet(
        &mut self,
        kind: PacketKind,
        id: Option<u64>,
        data: PacketData,
        attachments: Vec<Bytes>,
    ) -> Result<(), ProtocolError> {
        match (kind, data) {
            (PacketKind::Connect, data) => {
                if self.state != SessionState::AwaitConnect {
                    return Err(ProtocolError::Unexpected("CONNECT", self.state));
                }
                let PacketData::Json(json) = data else {
                    return Err(DecodeError::Shape {
                        packet: "CONNECT",
                        expected: "an object with sid",
                    }
                    .into());
                };
                let reply: ConnectReply =
                    serde_json::from_str(&json).map_err(|_| DecodeError::Shape {
                        packet: "CONNECT",
                        expected: "an object with sid",
                    })?;
                self.state = SessionState::Connected;
                self.pid = reply.pid.clone();
                self.events.push_back(SessionEvent::Connected {
                    sid: reply.sid,
                    pid: reply.pid,
                });
                self.early_bytes = 0;
                for (name, args, ack_id) in std::mem::take(&mut self.early) {
                    self.push_event(name, args, ack_id, None);
                }
            }
            (PacketKind::ConnectError, _) if self.state == SessionState::Connected => {
                // Rejections answer the CONNECT; one after the acceptance is no rejection of
                // the credentials, and retrying it at once would loop.
                return Err(ProtocolError::Unexpected("CONNECT_ERROR", self.state));
            }
            (PacketKind::ConnectError, data) => {
                let (message, data) = match data {
                    PacketData::Json(json) => parse_connect_error(&json),
                    _ => ("connect error".to_owned(), None),
                };
                self.close(CloseReason::ConnectError { message, data });
            }
            (PacketKind::Disconnect, _) => self.close(CloseReason::ServerDisconnect),
            (PacketKind::Event | PacketKind::BinaryEvent, PacketData::Event { name, args }) => {
                let name = self.names.get(&name);
                self.handle_event(name, Payload::from_wire(args, attachments), id)?;
            }
            (PacketKind::Ack | PacketKind::BinaryAck, PacketData::Ack { args }) => {
                let Some(id) = id else {
                    return Err(DecodeError::AckId.into());
                };
                self.events.push_back(SessionEvent::Ack {
                    id,
                    args: Payload::from_wire(args, attachments),
                });
            }
            // The decoder only pairs kinds with their data shapes; anything else is malformed.
            (_, _) => return Err(ProtocolError::Unexpected("packet shape", self.state)),
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        name: Arc<str>,
        args: Payload,
        id: Option<u64>,
    ) -> Result<(), ProtocolError> {
        match self.state {
            SessionState::Connected => self.push_event(name, args, id, None),
            SessionState::AwaitConnect => {
                // Recovery replays missed events here; a peer that never answers CONNECT
                // must not make this grow without bound.
                if self.early.len() >= MAX_EARLY_EVENTS {
                    return Err(ProtocolError::Unexpected(
                        "more events before CONNECT than the limit",
                        self.state,
                    ));
                }
                let size = name.len()
                    + args.as_json().len()
                    + args.attachments().iter().map(Bytes::len).sum::<usize>();
                self.early_bytes = self.early_bytes.saturating_add(size);
                if self.early_bytes > self.config.max_early_bytes {
                    return Err(ProtocolError::Unexpected(
                        "more bytes of events before CONNECT than the limit",
                        self.state,
                    ));
                }
                self.early.push((name, args, id));
            }
            _ => return Err(ProtocolError::Unexpected("EVENT", self.state)),
        }
        Ok(())
    }

    /// Whether the server appends a recovery offset to an event with this ack id: servers
    /// with connection state recovery do to every event without one.
    fn recovers(&self, ack_id: Option<u64>) -> bool {
        self.pid.is_some() && ack_id.is_none()
    }

    /// Queues an event for the application. `offset` is the recovery offset if the caller
    /// already took it out of `args` (`Some`), or `None` to look for it here.
    fn push_event(
        &mut self,
        name: Arc<str>,
        mut args: Payload,
        ack_id: Option<u64>,
        offset: Option<Option<String>>,
    ) {
        let offset = match offset {
            Some(taken) => taken,
            None if self.recovers(ack_id) => args.pop_trailing_string(),
            None => None,
        };
        self.events.push_back(SessionEvent::Event {
            name,
            args,
            ack_id,
            offset,
        });
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != SessionState::Closed {
            self.state = SessionState::Closed;
            self.deadline = None;
            self.events.push_back(SessionEvent::Closed(reason));
        }
    }

    /// The driver stopped reading the link (`false`: the application's buffer is full) or
    /// reads it again (`true`). Silence proves nothing while nobody listens: the heartbeat
    /// window is suspended meanwhile, and starts again in full when reading resumes.
    pub fn set_reading(&mut self, reading: bool, now: Instant) {
        if self.unread != reading || self.state == SessionState::Closed {
            return;
        }
        self.unread = !reading;
        if reading {
            self.touch(now);
        } else {
            self.deadline = None;
        }
    }

    /// Handles the passage of time: a silent link past its heartbeat window is dead.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.deadline
            && now >= deadline
        {
            self.close(CloseReason::PingTimeout);
        }
    }

    /// When [`Session::handle_timeout`] next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == SessionState::Closed {
            None
        } else {
            self.deadline
        }
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing that happened.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Queues an event `name` with `args`, asking for an ack when `ack_id` is set.
    pub fn emit(
        &mut self,
        name: &str,
        args: &Payload,
        ack_id: Option<u64>,
    ) -> Result<(), SendError> {
        self.send(Some(name), args, ack_id)
    }

    /// Queues the acknowledgement of the server's event `id`.
    pub fn ack(&mut self, id: u64, args: &Payload) -> Result<(), SendError> {
        self.send(None, args, Some(id))
    }

    /// Encodes (only when connected) and queues an event, or an ack when `name` is `None`.
    fn send(
        &mut self,
        name: Option<&str>,
        args: &Payload,
        id: Option<u64>,
    ) -> Result<(), SendError> {
        self.check_connected()?;
        let event = EncodedEvent {
            text: packet::frame(&self.config.namespace, name, args, id),
            attachments: args.attachments().to_vec(),
        };
        self.queue(event).map_err(|rejected| rejected.0)
    }

    /// Queues an event encoded ahead of time; hands it back when it cannot be sent.
    pub fn send_encoded(
        &mut self,
        event: EncodedEvent,
    ) -> Result<(), Box<(SendError, EncodedEvent)>> {
        if let Err(e) = self.check_connected() {
            return Err(Box::new((e, event)));
        }
        self.queue(event)
    }

    fn check_connected(&self) -> Result<(), SendError> {
        if self.state == SessionState::Connected {
            Ok(())
        } else {
            Err(SendError::NotConnected)
        }
    }

    /// Queues a frame and its attachments unless one exceeds the server's `maxPayload`.
    fn queue(&mut self, event: EncodedEvent) -> Result<(), Box<(SendError, EncodedEvent)>> {
        let max = self.open.as_ref().map_or(u64::MAX, |o| o.max_payload);
        let too_large = |size: usize| (size as u64) > max;
        let base64 = self.config.base64_attachments;
        let attachment_size = |a: &Bytes| {
            if base64 {
                crate::polling::binary_len(a)
            } else {
                a.len()
            }
        };
        let biggest = std::iter::once(event.text.len())
            .chain(event.attachments.iter().map(attachment_size))
            .find(|&size| too_large(size));
        if let Some(size) = biggest {
            return Err(Box::new((SendError::TooLarge { size, max }, event)));
        }
        let EncodedEvent { text, attachments } = event;
        self.transmits.push_back(Transmit::Text(text));
        self.transmits
            .extend(attachments.into_iter().map(Transmit::Binary));
        Ok(())
    }

    /// Leaves the namespace: queues a DISCONNECT and ends the session.
    pub fn disconnect(&mut self) {
        if matches!(
            self.state,
            SessionState::Connected | SessionState::AwaitConnect
        ) {
            let mut out = String::from("4");
            packet::encode_header(
                &mut out,
                PacketKind::Disconnect,
                0,
                &self.config.namespace,
                None,
            );
            self.transmits.push_back(Transmit::Text(out));
        }
        self.close(CloseReason::ClientDisconnect);
    }
}

/// Event names seen lately. A server uses a handful of names over and over: handing out a
/// shared one costs a reference count, where a new string per event costs an allocation
/// (and a free, usually on another thread). Bounded, so a peer sending ever new names only
/// churns it.
#[derive(Default)]
struct Names {
    recent: Vec<Arc<str>>,
    /// The entry replaced next once full.
    next: usize,
}

/// How many names [`Names`] keeps.
const RECENT_NAMES: usize = 16;
/// Longer names are not kept: a peer could otherwise make an idle client hold
/// `RECENT_NAMES` huge strings for the whole connection.
const LONGEST_KEPT_NAME: usize = 64;

impl Names {
    fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.recent.iter().find(|known| ***known == *name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(name);
        if name.len() > LONGEST_KEPT_NAME {
            return new;
        }
        if self.recent.len() < RECENT_NAMES {
            self.recent.push(Arc::clone(&new));
        } else {
            self.recent[self.next] = Arc::clone(&new);
            self.next = (self.next + 1) % RECENT_NAMES;
        }
        new
    }
}

#[derive(serde::Deserialize)]
struct ConnectReply {
    sid: String,
    #[serde(default)]
    pid: Option<String>,
}

fn parse_connect_error(json: &str) -> (String, Option<String>) {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::String(message)) => (message, None),
        Ok(Value::Object(mut map)) => {
            let message = match map.remove("message") {
                Some(Value::String(m)) => m,
                _ => "connect error".to_owned(),
            };
            let data = map.remove("data").map(|d| d.to_string());
            (message, data)
        }
        _ => ("connect error".to_owned(), None),
    }
}

#[cfg(test)]
mod tests;
