//! The JSON-RPC methods of `relink daemon`: one socket, its state and its events.
//!
//! Methods take their params by name (a JSON object); methods whose params are all optional
//! also accept none. Every failure is an [`RpcError`], and [`RpcError::to_error_object`] is the
//! one place that turns it into a JSON-RPC error code and message.
//!
//! | method | params | result |
//! |---|---|---|
//! | `socket.connect` | `url`, `token` (strings) | the state object |
//! | `socket.connect_with_session` | none | the state object |
//! | `socket.disconnect` | none | the final state object |
//! | `socket.state` | none | the state object |
//! | `socket.emit` | `event`, `data`?, `ack_timeout_ms`? | the ack's arguments (an array) or `null` |
//! | `socket.subscribe_state` | none | notifications `socket.state_changed` |
//! | `socket.subscribe_events` | none | notifications `socket.event` |
//!
//! The state object is `{"status", "socket_id", "attempt", "error", "recovered"}`; an event is
//! `{"name", "args": [...]}` plus `"attachments": [sizes]` when it carried binary data (whose
//! places in `args` hold Socket.IO placeholders). `socket.emit` sends `data` as ONE argument,
//! whatever its type: `"data": [1, 2]` sends one array argument, not two arguments, and
//! `"data": null` sends one `null`; without `data` the event has no argument.
//!
//! Event subscribers get every event, in order: the daemon takes the next event from the
//! socket only once every subscriber has room for it, so a slow subscriber slows the socket
//! down (and, under the default `--overflow backpressure`, the server) rather than missing
//! events. One that goes away or unsubscribes is forgotten and holds nobody up. With no
//! subscriber, events are read and discarded. Under `--overflow drop` the socket drops what
//! the subscribers have no room for, and a `socket.event` notification `{"lagged": N}` says
//! that N events were dropped at that point.
//!
//! The token goes from the params straight into a [`Token`]; it is never logged, never part
//! of an error message, and never in a result.

use jsonrpsee::core::{RegisterMethodError, SubscriptionError};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::{PendingSubscriptionSink, RpcModule, SubscriptionSink};
use relink::{
    AckError, BuildError, Client, ConnectionState, EmitError, Events, Incoming, Payload, Status,
    Token,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio::task::JoinHandle;

/// How long a replaced or stopped socket gets to report its last state and events.
const FORWARD_GRACE: Duration = Duration::from_millis(500);
/// State transitions buffered for slow subscribers (a lagging one gets the latest state).
const STATE_BUFFER: usize = 256;
/// Event notifications queued for each subscriber ahead of what it has taken; jsonrpsee
/// buffers more per connection. Past that the subscriber pushes back.
const SUBSCRIBER_QUEUE: usize = 64;

/// Why a method failed. Codes and messages are decided in [`RpcError::to_error_object`] only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RpcError {
    /// Params missing, of the wrong type or unusable; the message names the field.
    InvalidParams(String),
    /// `socket.connect_with_session` without a stored session.
    NoSession,
    /// The stored session exists but cannot be used.
    Session(String),
    /// A method that needs a socket was called before `socket.connect`.
    NotConnected,
    /// No acknowledgement within `ack_timeout_ms`.
    AckTimeout(u64),
    /// The link dropped before the acknowledgement arrived.
    AckLost(String),
    /// The emit was not accepted: outbox full, client closed, payload too large.
    Emit(String),
    /// A bug or resource failure in the daemon itself.
    Internal(String),
}

impl RpcError {
    /// The one mapping from errors to JSON-RPC error objects:
    /// -32602 invalid params, -32000 no socket or no session, -32001 no acknowledgement,
    /// -32002 emit refused, -32603 internal error.
    pub(crate) fn to_error_object(&self) -> ErrorObjectOwned {
        let (code, message) = match self {
            RpcError::InvalidParams(message) => (-32602, message.clone()),
            RpcError::NoSession => (
                -32000,
                "no session stored: run `relink login` first".to_owned(),
            ),
            RpcError::Session(message) => (-32000, message.clone()),
            RpcError::NotConnected => (
                -32000,
                "not connected: call socket.connect first".to_owned(),
            ),
            RpcError::AckTimeout(ms) => (-32001, format!("no acknowledgement within {ms} ms")),
            RpcError::AckLost(message) => (-32001, message.clone()),
            RpcError::Emit(message) => (-32002, message.clone()),
            RpcError::Internal(message) => (-32603, message.clone()),
        };
        ErrorObject::owned(code, message, None::<()>)
    }

    fn from_emit(e: &EmitError) -> Self {
        RpcError::Emit(e.to_string())
    }

    fn from_ack(e: &AckError, timeout_ms: u64) -> Self {
        match e {
            AckError::Timeout(_) => RpcError::AckTimeout(timeout_ms),
            AckError::Emit(e) => RpcError::from_emit(e),
            AckError::Disconnected => RpcError::AckLost(e.to_string()),
            _ => RpcError::Emit(e.to_string()),
        }
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(e: RpcError) -> Self {
        e.to_error_object()
    }
}

/// The state object returned by methods and sent to `socket.subscribe_state`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StateView {
    status: Status,
    socket_id: Option<String>,
    attempt: u32,
    /// relink's `last_error`: described without secrets.
    error: Option<String>,
    recovered: bool,
}

impl StateView {
    fn of(state: &ConnectionState) -> Self {
        StateView {
            status: state.status,
            socket_id: state.socket_id.clone(),
            attempt: state.attempt,
            error: state.last_error.clone(),
            recovered: state.recovered,
        }
    }

    /// No socket yet.
    fn idle() -> Self {
        StateView {
            status: Status::Disconnected,
            socket_id: None,
            attempt: 0,
            error: None,
            recovered: false,
        }
    }
}

/// A server event as sent to `socket.subscribe_events`.
#[derive(Debug, Serialize)]
struct EventNote {
    name: String,
    /// The arguments as the server sent them; binary attachments are placeholders.
    args: Box<RawValue>,
    /// The size of each binary attachment, in placeholder order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<usize>,
}

impl EventNote {
    fn of(event: &relink::Event) -> Result<Self, serde_json::Error> {
        let args = event.args();
        Ok(EventNote {
            name: event.name().to_owned(),
            args: RawValue::from_string(args.as_json().to_owned())?,
            attachments: args.attachments().iter().map(|a| a.len()).collect(),
        })
    }
}

/// Sent to `socket.subscribe_events` in place of the events dropped under `--overflow drop`.
#[derive(Debug, Serialize)]
struct LaggedNote {
    /// How many events were dropped.
    lagged: u64,
}

/// The notification for an item from the socket; `None` for what subscribers are not sent.
fn notification(incoming: &Incoming) -> Option<Box<RawValue>> {
    let encoded = match incoming {
        Incoming::Event(event) => EventNote::of(event).and_then(|note| to_raw(&note)),
        Incoming::Lagged { missed } => to_raw(&LaggedNote { lagged: *missed }),
        _ => return None,
    };
    encoded
        .inspect_err(|e| tracing::warn!(error = %e, "event not forwarded"))
        .ok()
}

fn to_raw(value: &impl Serialize) -> Result<Box<RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(value)
}

/// The current event subscribers, shared by the methods and every socket's forwarder (so
/// that subscriptions follow the socket across `socket.connect` calls).
#[derive(Clone, Default)]
struct EventSubscribers(Arc<std::sync::Mutex<Vec<mpsc::Sender<Arc<RawValue>>>>>);

impl EventSubscribers {
    /// A new subscriber's queue: it gets every event forwarded from now on.
    fn join(&self) -> mpsc::Receiver<Arc<RawValue>> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        self.list().push(tx);
        rx
    }

    /// The subscribers still there; those that went away are forgotten.
    fn current(&self) -> Vec<mpsc::Sender<Arc<RawValue>>> {
        let mut list = self.list();
        list.retain(|tx| !tx.is_closed());
        list.clone()
    }

    /// Held for a few instructions, never across an `.await`.
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Arc<RawValue>>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The current socket and the tasks that forward its state and events.
struct Socket {
    client: Client,
    forwarders: Vec<JoinHandle<()>>,
}

/// Disconnects `client`, lets the forwarders pass on the last state and events, then stops
/// them. The client stays in its slot meanwhile: its state tells how it ended, and emits on
/// it say it is closed.
async fn close(client: &Client, forwarders: Vec<JoinHandle<()>>) -> ConnectionState {
    client.disconnect().await;
    for mut task in forwarders {
        if tokio::time::timeout(FORWARD_GRACE, &mut task)
            .await
            .is_err()
        {
            // A subscriber too slow to take the closed socket's last events within the
            // grace: closing does not wait for it, and says what it gave up.
            tracing::warn!(
                "a subscriber had not taken all of the closed socket's events: the rest were dropped"
            );
        }
        task.abort();
    }
    client.state()
}

/// What the methods share: the one socket, and hubs that outlive any one client so that
/// subscriptions follow the socket across `socket.connect` calls.
///
/// Two locks, taken in this order: `lifecycle` serialises connecting and disconnecting,
/// which wait for a socket to close (up to about a second), and is held across those
/// waits; `socket` is only ever held for a few instructions and never across an `.await`,
/// so `socket.state` and `socket.emit` are never stalled by a disconnect.
pub(crate) struct Daemon {
    lifecycle: Mutex<()>,
    socket: std::sync::Mutex<Option<Socket>>,
    states: broadcast::Sender<ConnectionState>,
    events: EventSubscribers,
    /// `--overflow`, for every socket.
    overflow: relink::Overflow,
}

impl Daemon {
    pub(crate) fn new(overflow: relink::Overflow) -> Self {
        Daemon {
            lifecycle: Mutex::new(()),
            socket: std::sync::Mutex::new(None),
            states: broadcast::channel(STATE_BUFFER).0,
            events: EventSubscribers::default(),
            overflow,
        }
    }

    /// The slot; a panic elsewhere while holding it leaves nothing half-written (every
    /// critical section is a single read or assignment), so a poisoned lock is still usable.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Socket>> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Disconnects the socket, if any (the daemon is stopping).
    pub(crate) async fn shutdown(&self) {
        let _lifecycle = self.lifecycle.lock().await;
        self.close_current().await;
    }

    /// Closes the socket in the slot, if any, without holding the slot's lock meanwhile;
    /// the caller holds `lifecycle`. `None` when there was no socket.
    async fn close_current(&self) -> Option<ConnectionState> {
        let (client, forwarders) = {
            let mut slot = self.slot();
            let socket = slot.as_mut()?;
            (
                socket.client.clone(),
                std::mem::take(&mut socket.forwarders),
            )
        };
        Some(close(&client, forwarders).await)
    }

    fn client(&self) -> Option<Client> {
        self.slot().as_ref().map(|s| s.client.clone())
    }

    fn state(&self) -> StateView {
        match self.client() {
            Some(client) => StateView::of(&client.state()),
            None => StateView::idle(),
        }
    }

    async fn connect(&self, params: &Params<'_>) -> Result<StateView, RpcError> {
        let mut fields = Fields::parse(params, &["url", "token"])?;
        let url = fields.required_string("url")?;
        // `Token::new` trims it: the same rule as the command line's.
        let token = fields.required_string("token")?;
        crate::telemetry::scrub_also(&token);
        let token = Token::new(token);
        if token.is_blank() {
            return Err(RpcError::InvalidParams("token must not be empty".into()));
        }
        self.replace(url, token)
            .await
            .map_err(|e| RpcError::InvalidParams(e.to_string()))
    }

    async fn connect_with_session(&self, params: &Params<'_>) -> Result<StateView, RpcError> {
        Fields::parse(params, &[])?;
        // The keychain may take a while (D-Bus): not on the runtime's threads.
        let session = tokio::task::spawn_blocking(crate::session::load)
            .await
            .map_err(|e| RpcError::Session(format!("cannot read the stored session: {e}")))?
            .map_err(|e| RpcError::Session(e.to_string()))?
            .ok_or(RpcError::NoSession)?;
        // Stored after the daemon started, it is not among the secrets known at start.
        if let Some(secret) = crate::session::stored_secret() {
            crate::telemetry::scrub_also(&secret);
        }
        if session.token.is_blank() {
            return Err(RpcError::Session(
                "the stored token is empty: run `relink login` again".into(),
            ));
        }
        self.replace(session.url, session.token)
            .await
            .map_err(|e| RpcError::Session(format!("the stored session cannot be used: {e}")))
    }

    /// Replaces the socket with a new client for `url`. The settings are checked first, so
    /// a bad URL leaves the current socket alone and dials nothing.
    async fn replace(&self, url: String, token: Token) -> Result<StateView, BuildError> {
        let builder = || {
            Client::builder(url.clone())
                .token(token.clone())
                .overflow(self.overflow)
        };
        builder().validate()?;
        let _lifecycle = self.lifecycle.lock().await;
        self.close_current().await;
        let (client, events) = builder().connect()?;
        let states = self.start_state_forwarder(&client);
        let events = tokio::spawn(forward_events(events, self.events.clone()));
        let state = StateView::of(&client.state());
        *self.slot() = Some(Socket {
            client,
            forwarders: vec![states, events],
        });
        tracing::info!("socket started");
        Ok(state)
    }

    /// Forwards `client`'s transitions to the shared hub, starting with the ones that may
    /// have happened between `connect()` and now.
    fn start_state_forwarder(&self, client: &Client) -> JoinHandle<()> {
        let hub = self.states.clone();
        let mut changes = client.state_changes();
        let latest = client.watch_state();
        // The supervisor writes the watch before it broadcasts, so the snapshot is at least
        // as new as anything missed before `state_changes()`. Every published state has a
        // `seq`: what the changes bring up to the snapshot's is skipped, so nobody sees a
        // state twice or out of order. The initial state (`seq` 0) was never a transition.
        let snapshot = client.state();
        let mut sent = snapshot.seq;
        let mut ended = snapshot.status.is_terminal();
        if snapshot.seq > 0 {
            let _ = hub.send(snapshot);
        }
        while let Ok(state) = changes.try_recv() {
            if state.seq > sent {
                sent = state.seq;
                ended = state.status.is_terminal();
                let _ = hub.send(state);
            }
        }
        if ended {
            // Failed at once (nothing to wait for: the client keeps its sender open).
            return tokio::spawn(async {});
        }
        tokio::spawn(async move {
            loop {
                let state = match changes.recv().await {
                    Ok(state) => state,
                    Err(broadcast::error::RecvError::Lagged(_)) => latest.borrow().clone(),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if state.seq <= sent {
                    continue;
                }
                sent = state.seq;
                let end = state.status.is_terminal();
                let _ = hub.send(state);
                if end {
                    return;
                }
            }
        })
    }

    async fn disconnect(&self, params: &Params<'_>) -> Result<StateView, RpcError> {
        Fields::parse(params, &[])?;
        let _lifecycle = self.lifecycle.lock().await;
        let Some(state) = self.close_current().await else {
            return Ok(StateView::idle());
        };
        tracing::info!("socket disconnected");
        Ok(StateView::of(&state))
    }

    async fn emit(&self, params: &Params<'_>) -> Result<Option<Box<RawValue>>, RpcError> {
        let mut fields = Fields::parse(params, &["event", "data", "ack_timeout_ms"])?;
        let event = fields.required_string("event")?;
        if event.is_empty() {
            return Err(RpcError::InvalidParams(
                "invalid value for `event`: must not be empty".into(),
            ));
        }
        let data = fields.0.remove("data");
        let ack_timeout_ms = fields.optional_positive("ack_timeout_ms")?;
        let mut payload = Payload::new();
        if let Some(data) = &data {
            payload
                .push(data)
                .map_err(|e| RpcError::InvalidParams(format!("invalid value for `data`: {e}")))?;
        }
        let client = self.client().ok_or(RpcError::NotConnected)?;
        match ack_timeout_ms {
            None => {
                client
                    .emit(event, payload)
                    .await
                    .map_err(|e| RpcError::from_emit(&e))?;
                Ok(None)
            }
            Some(ms) => {
                let args = client
                    .emit_with_ack(event, payload, Duration::from_millis(ms))
                    .await
                    .map_err(|e| RpcError::from_ack(&e, ms))?;
                let raw = RawValue::from_string(args.as_json().to_owned())
                    .map_err(|e| RpcError::Internal(format!("unreadable acknowledgement: {e}")))?;
                Ok(Some(raw))
            }
        }
    }
}

/// Forwards the server's events (and, under `--overflow drop`, notices of those dropped) to
/// every subscriber; ends with the client.
async fn forward_events(mut events: Events, subscribers: EventSubscribers) {
    while let Some(incoming) = events.next().await {
        let to = subscribers.current();
        // What nobody subscribed to is not even converted.
        if to.is_empty() {
            continue;
        }
        let Some(message) = notification(&incoming) else {
            continue;
        };
        let message: Arc<RawValue> = message.into();
        // Waits until every subscriber has room, and only then takes the next event: a slow
        // subscriber slows the reading down instead of missing events. One that went away
        // fails at once, and is forgotten at the next event.
        for tx in to {
            let _ = tx.send(Arc::clone(&message)).await;
        }
    }
}

/// Named params, checked field by field so that every message names the field and none
/// repeats a value (a value could be the token).
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(params: &Params<'_>, allowed: &[&str]) -> Result<Fields, RpcError> {
        let map = match params.as_str() {
            None => Map::new(),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Object(map)) => map,
                Ok(Value::Null) => Map::new(),
                Ok(Value::Array(items)) if items.is_empty() => Map::new(),
                _ => {
                    return Err(RpcError::InvalidParams(
                        "params must be an object of named fields".into(),
                    ));
                }
            },
        };
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            let expected = if allowed.is_empty() {
                "this method takes no params".to_owned()
            } else {
                let names: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
                format!("expected {}", names.join(", "))
            };
            return Err(RpcError::InvalidParams(format!(
                "unknown field `{}`: {expected}",
                unknown.chars().take(64).collect::<String>()
            )));
        }
        Ok(Fields(map))
    }

    fn required_string(&mut self, name: &str) -> Result<String, RpcError> {
        match self.0.remove(name) {
            None => Err(RpcError::InvalidParams(format!("missing field `{name}`"))),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(RpcError::InvalidParams(format!(
                "invalid type for `{name}`: expected a string"
            ))),
        }
    }

    /// An optional positive integer; `null` counts as absent.
    fn optional_positive(&mut self, name: &str) -> Result<Option<u64>, RpcError> {
        match self.0.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => Ok(n.as_u64()),
            Some(_) => Err(RpcError::InvalidParams(format!(
                "invalid type for `{name}`: expected a positive integer"
            ))),
        }
    }
}

/// The daemon's methods, registered on `daemon`.
pub(crate) fn module(daemon: Arc<Daemon>) -> Result<RpcModule<Daemon>, RegisterMethodError> {
    let mut module = RpcModule::from_arc(daemon);
    module.register_async_method("socket.connect", |params, daemon, _| async move {
        daemon
            .connect(&params)
            .await
            .map_err(ErrorObjectOwned::from)
    })?;
    module.register_async_method(
        "socket.connect_with_session",
        |params, daemon, _| async move {
            daemon
                .connect_with_session(&params)
                .await
                .map_err(ErrorObjectOwned::from)
        },
    )?;
    module.register_async_method("socket.disconnect", |params, daemon, _| async move {
        daemon
            .disconnect(&params)
            .await
            .map_err(ErrorObjectOwned::from)
    })?;
    module.register_async_method("socket.state", |params, daemon, _| async move {
        Fields::parse(&params, &[]).map_err(ErrorObjectOwned::from)?;
        Ok::<_, ErrorObjectOwned>(daemon.state())
    })?;
    module.register_async_method("socket.emit", |params, daemon, _| async move {
        daemon.emit(&params).await.map_err(ErrorObjectOwned::from)
    })?;
    module.register_subscription(
        "socket.subscribe_state",
        "socket.state_changed",
        "socket.unsubscribe_state",
        |params, pending, daemon, _| state_subscription(params, pending, daemon),
    )?;
    module.register_subscription(
        "socket.subscribe_events",
        "socket.event",
        "socket.unsubscribe_events",
        |params, pending, daemon, _| event_subscription(params, pending, daemon),
    )?;
    Ok(module)
}

/// Accepts a subscription, which takes no parameters; `None` when it was refused for
/// having some, or the client went away.
async fn accept(
    params: &Params<'static>,
    pending: PendingSubscriptionSink,
) -> Option<SubscriptionSink> {
    if let Err(e) = Fields::parse(params, &[]) {
        pending.reject(e).await;
        return None;
    }
    pending.accept().await.ok()
}

async fn state_subscription(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    daemon: Arc<Daemon>,
) -> Result<(), SubscriptionError> {
    // Subscribed before accepting: every transition after the reply is delivered.
    let mut rx = daemon.states.subscribe();
    let Some(sink) = accept(&params, pending).await else {
        return Ok(());
    };
    // Transitions that differ only in what the state object leaves out (the delay before
    // the next attempt) are not sent twice.
    let mut last: Option<StateView> = None;
    loop {
        let state = tokio::select! {
            () = sink.closed() => return Ok(()),
            state = rx.recv() => match state {
                Ok(state) => StateView::of(&state),
                Err(broadcast::error::RecvError::Lagged(_)) => daemon.state(),
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        };
        if last.as_ref() == Some(&state) {
            continue;
        }
        let message = serde_json::value::to_raw_value(&state)?;
        if sink.send(message).await.is_err() {
            return Ok(());
        }
        last = Some(state);
    }
}

async fn event_subscription(
    params: Params<'static>,
    pending: PendingSubscriptionSink,
    daemon: Arc<Daemon>,
) -> Result<(), SubscriptionError> {
    // Joined before accepting: every event after the reply is delivered. Returning drops
    // the queue, which tells the forwarder not to wait for this subscriber any more.
    let mut queue = daemon.events.join();
    let Some(sink) = accept(&params, pending).await else {
        return Ok(());
    };
    loop {
        let message = tokio::select! {
            () = sink.closed() => return Ok(()),
            message = queue.recv() => match message {
                Some(message) => message,
                None => return Ok(()),
            },
        };
        // Waits for room in the connection's buffer: a subscriber that reads slowly slows
        // the forwarder down. Unsubscribing ends the wait.
        tokio::select! {
            () = sink.closed() => return Ok(()),
            sent = sink.send(RawValue::to_owned(&message)) => if sent.is_err() {
                return Ok(());
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &'static str) -> Params<'static> {
        Params::new(Some(json))
    }

    #[test]
    fn error_codes_are_mapped_in_one_place() {
        let cases = [
            (
                RpcError::InvalidParams("missing field `url`".into()),
                -32602,
            ),
            (RpcError::NoSession, -32000),
            (RpcError::NotConnected, -32000),
            (RpcError::AckTimeout(250), -32001),
            (RpcError::Emit("client is closed".into()), -32002),
        ];
        for (error, code) in cases {
            assert_eq!(error.to_error_object().code(), code, "{error:?}");
        }
        assert_eq!(
            RpcError::AckTimeout(250).to_error_object().message(),
            "no acknowledgement within 250 ms"
        );
        assert_eq!(
            RpcError::NoSession.to_error_object().message(),
            "no session stored: run `relink login` first"
        );
    }

    #[test]
    fn fields_name_the_field_and_never_echo_values() {
        let mut f = Fields::parse(
            &params(r#"{"url": 5, "token": "tok-x"}"#),
            &["url", "token"],
        )
        .expect("an object");
        let e = f.required_string("url").expect_err("wrong type");
        assert_eq!(
            e,
            RpcError::InvalidParams("invalid type for `url`: expected a string".into())
        );
        let mut f = Fields::parse(&params(r#"{"token": 12345}"#), &["url", "token"]).expect("ok");
        assert_eq!(
            f.required_string("url"),
            Err(RpcError::InvalidParams("missing field `url`".into()))
        );
        let e = f.required_string("token").expect_err("wrong type");
        assert!(!format!("{e:?}").contains("12345"));
        let e = Fields::parse(&params(r#"{"x": 1}"#), &[])
            .err()
            .expect("unknown");
        assert_eq!(
            e,
            RpcError::InvalidParams("unknown field `x`: this method takes no params".into())
        );
        assert!(Fields::parse(&params("[1]"), &["url"]).is_err());
        assert!(Fields::parse(&params("[]"), &[]).is_ok());
        assert!(Fields::parse(&Params::new(None), &[]).is_ok());
        let mut f =
            Fields::parse(&params(r#"{"ack_timeout_ms": 0}"#), &["ack_timeout_ms"]).expect("ok");
        assert!(f.optional_positive("ack_timeout_ms").is_err());
    }

    /// A socket whose close takes [`FORWARD_GRACE`]: its forwarder never ends.
    fn slow_to_close(daemon: &Daemon) {
        let (client, _events) = Client::builder("http://127.0.0.1:9")
            .token("tok")
            .connect()
            .expect("valid settings");
        *daemon.slot() = Some(Socket {
            client,
            forwarders: vec![tokio::spawn(std::future::pending())],
        });
    }

    #[tokio::test(start_paused = true)]
    async fn methods_answer_while_a_socket_is_closing() {
        let daemon = Arc::new(Daemon::new(relink::Overflow::default()));
        slow_to_close(&daemon);
        let closing = tokio::spawn({
            let daemon = Arc::clone(&daemon);
            async move { daemon.disconnect(&Params::new(None)).await }
        });
        while daemon.lifecycle.try_lock().is_ok() {
            tokio::task::yield_now().await;
        }
        // Virtual time: waiting for the close would let the clock run past this timeout.
        let emit = tokio::time::timeout(
            Duration::from_millis(1),
            daemon.emit(&params(r#"{"event": "x"}"#)),
        )
        .await;
        assert!(emit.is_ok(), "socket.emit waited for the socket to close");
        assert_eq!(daemon.state().status, Status::Disconnected);
        assert!(!closing.is_finished(), "the close was still going on");
        let closed = closing.await.expect("no panic").expect("closed");
        assert_eq!(closed.status, Status::Disconnected);
    }

    #[test]
    fn subscribers_are_told_of_dropped_events_and_of_nothing_else_but_events() {
        let lagged = notification(&Incoming::Lagged { missed: 3 }).expect("a notification");
        assert_eq!(lagged.get(), r#"{"lagged":3}"#);
        let connected = Incoming::Connected {
            socket_id: "sid".into(),
            recovered: false,
        };
        assert!(notification(&connected).is_none());
    }

    #[test]
    fn the_idle_state_is_disconnected() {
        let json = serde_json::to_value(StateView::idle()).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "status": "disconnected", "socket_id": null, "attempt": 0,
                "error": null, "recovered": false
            })
        );
    }
}
