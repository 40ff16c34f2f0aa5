//! What the connection hands to the application: events (with their acks), notices, and
//! [`Events`], the reader's end of the hand-over (`flow.rs`: one byte budget with the
//! handlers, backpressure by default, dropping on request).

use crate::core::connection::Delivery;
use crate::lane::Shared;
use crate::outbox::ServerAck;
use relink_proto::{IntoArgs, Payload};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
        /// Why (prints as `transport_close`, `ping_timeout`, `server_disconnect`, ...).
        reason: crate::Reason,
    },
    /// Only with [`crate::Overflow::Drop`]: the reader fell `max_buffered_bytes` (or
    /// `event_buffer` items) behind, and this many items (events and notices) that came
    /// meanwhile were dropped. Comes before the next item that was kept.
    Lagged {
        /// How many were dropped.
        missed: u64,
    },
}

impl Incoming {
    /// What the core hands to the user, as the reader sees it; an event's answer goes
    /// through `shared`.
    pub(crate) fn new(delivery: Delivery, shared: &Arc<Shared>) -> Self {
        match delivery {
            Delivery::Connected {
                socket_id,
                recovered,
            } => Incoming::Connected {
                socket_id,
                recovered,
            },
            Delivery::Event { name, args, ack } => Incoming::Event(Event::new(
                name,
                args,
                ack.map(|(generation, id)| (Arc::clone(shared), generation, id)),
            )),
            Delivery::Disconnected { reason } => Incoming::Disconnected { reason },
        }
    }
}

/// An event from the server.
///
/// Its arguments stay JSON text until read ([`Event::args`]); if the server asked for an
/// answer, [`Event::ack`] sends it.
///
/// ```
/// use relink::{Client, Incoming};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, mut events) = Client::builder(url).token("secret").connect()?;
/// // The test server's "ask" sends us the event named first and waits for our answer.
/// client.emit("ask", ("multiply", 6, 7)).await?;
/// while let Some(incoming) = events.next().await {
///     if let Incoming::Event(mut event) = incoming {
///         if event.name() == "multiply" {
///             let (a, b): (i64, i64) = event.args().deserialize()?;
///             assert!(event.wants_ack());
///             event.ack(a * b);
///             break;
///         }
///     }
/// }
/// client.disconnect().await;
/// # server.stop().await;
/// # Ok(()) }
/// ```
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

    /// Answers the server's ack request with `args` (a [`Payload`] or any `Serialize` value:
    /// see [`crate::IntoArgs`]). Returns false when none was asked for, it was already
    /// answered, or the arguments are not JSON (logged at WARN; the request stays
    /// unanswered). An answer to a connection that has since dropped is discarded (the
    /// server forgot the request with that connection).
    pub fn ack(&mut self, args: impl IntoArgs) -> bool {
        if self.ack.is_none() {
            return false;
        }
        let Some(acker) = self.ack.take() else {
            return false;
        };
        // Encoded here, in one pass for a `Serialize` answer: the connection task only
        // writes it.
        let frame = match args.into_ack(&acker.shared.namespace, acker.id) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(event = %self.name, error = %e, "ack not sent: its arguments are not JSON");
                self.ack = Some(acker);
                return false;
            }
        };
        acker.shared.lock().acks_out.push_back(ServerAck {
            generation: acker.generation,
            frame,
        });
        acker.shared.wake.notify_one();
        true
    }
}

impl crate::flow::Item for Incoming {
    fn weight(&self) -> usize {
        match self {
            Incoming::Event(event) => event.weight(),
            Incoming::Connected { .. }
            | Incoming::Disconnected { .. }
            | Incoming::Lagged { .. } => crate::flow::ITEM_COST,
        }
    }

    fn lagged(missed: u64) -> Option<Self> {
        Some(Incoming::Lagged { missed })
    }
}

impl crate::flow::Item for Event {
    fn weight(&self) -> usize {
        Event::weight(self)
    }

    fn lagged(_missed: u64) -> Option<Self> {
        // A handler has no notice: its drops are counted and logged.
        None
    }
}

impl Event {
    /// What the event weighs against `max_buffered_bytes`: its name, arguments and
    /// attachments, and the fixed cost of an item.
    fn weight(&self) -> usize {
        crate::flow::ITEM_COST
            + self.name.len()
            + self.args.as_json().len()
            + self
                .args
                .attachments()
                .iter()
                .map(|a| a.len())
                .sum::<usize>()
    }
}

/// The supervisor's end of [`Events`].
pub(crate) type Deliveries = crate::flow::Sender<Incoming>;

/// The hand-over's two ends over the client's budget.
pub(crate) fn channel(budget: &Arc<crate::flow::Budget>) -> (Deliveries, Events) {
    let (deliveries, rx) = crate::flow::queue(budget, "Events");
    (deliveries, Events { rx })
}

/// The stream of [`Incoming`] items, in order. Read it: while nobody does, the events
/// waiting for the application (here and in the handlers' queues together) grow up to
/// [`crate::ClientBuilder::max_buffered_bytes`], and then by default the connection stops
/// reading the socket until this reader makes room, so nothing is dropped (the server is
/// slowed down by TCP, as the official client slows it down while its handlers run). With
/// [`crate::Overflow::Drop`] the connection goes on reading instead, drops what does not
/// fit, and [`Incoming::Lagged`] says how much.
///
/// Dropping `Events` says nobody reads: events without a handler are then discarded.
/// Keeping it without reading it holds the connection once the budget is spent.
///
/// ```
/// use relink::{Client, Incoming};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = relink_testkit::node::NodeServer::start(Default::default()).await?;
/// let url = "http://127.0.0.1:3000";
/// # let url = server.url();
/// let (client, mut events) = Client::builder(url).token("secret").connect()?;
/// client.emit("echo", "ping").await?;
/// while let Some(incoming) = events.next().await {
///     match incoming {
///         Incoming::Connected { recovered, .. } => println!("connected (recovered: {recovered})"),
///         Incoming::Event(event) if event.name() == "echo" => {
///             assert_eq!(event.args().as_json(), r#"["ping"]"#);
///             break;
///         }
///         Incoming::Event(event) => println!("{}: {}", event.name(), event.args().as_json()),
///         Incoming::Disconnected { reason } => println!("link down ({reason}): reconnecting"),
///         Incoming::Lagged { missed } => println!("{missed} events dropped: read faster"),
///         _ => {}
///     }
/// }
/// client.disconnect().await;
/// # server.stop().await;
/// # Ok(()) }
/// ```
pub struct Events {
    rx: crate::flow::Receiver<Incoming>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next item; `None` once the client has ended and everything was read.
    pub async fn next(&mut self) -> Option<Incoming> {
        std::future::poll_fn(|cx| self.rx.poll_next(cx)).await
    }
}

impl futures_util::Stream for Events {
    type Item = Incoming;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        self.rx.poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Budget, Item, Overflow};

    fn event(name: &str, bytes: usize) -> Incoming {
        let args = Payload::json(&"x".repeat(bytes)).expect("json");
        Incoming::Event(Event::new(Arc::from(name), args, None))
    }

    #[test]
    fn an_event_weighs_its_name_arguments_and_attachments() {
        let item = event("chat", 10);
        // `"xxxxxxxxxx"` in an array: 14 bytes of JSON.
        assert_eq!(item.weight(), crate::flow::ITEM_COST + 4 + 14);
        let notice = Incoming::Lagged { missed: 3 };
        assert_eq!(notice.weight(), crate::flow::ITEM_COST);
    }

    #[tokio::test]
    async fn the_reader_gets_every_item_in_order_then_the_end() {
        let budget = Budget::new(Overflow::Backpressure, usize::MAX, 1 << 20, || {});
        let (mut deliveries, mut events) = channel(&budget);
        for n in 0..1000 {
            deliveries.push(event(&n.to_string(), 1));
        }
        deliveries.finish();
        drop(deliveries);
        for n in 0..1000 {
            match events.next().await {
                Some(Incoming::Event(e)) => assert_eq!(e.name(), n.to_string()),
                other => panic!("expected event {n}, got {other:?}"),
            }
        }
        assert!(events.next().await.is_none());
    }
}
