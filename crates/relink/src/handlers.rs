//! Handlers by event name, as socket.io-client's `socket.on(name, fn)`: an event goes to
//! its named handler, else to the catch-all, else to [`crate::Events`].
//!
//! Each handler runs on a task of its own and gets its events in order, one at a time.
//! Like `Events`, a handler that falls `event_buffer` events behind loses what comes on
//! top (one WARN per episode): the connection never waits for a handler.

use crate::events::Event;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{self, error::TrySendError};

/// A handler, type-erased.
pub(crate) type HandlerFn =
    Arc<dyn Fn(Event) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Boxes a handler closure.
pub(crate) fn boxed<F, Fut>(handler: F) -> HandlerFn
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |event| Box::pin(handler(event)))
}

/// Where a handler's events go.
struct Route {
    tx: mpsc::Sender<Event>,
    /// Events were dropped and the episode's WARN was logged.
    lagging: bool,
}

/// The registered handlers.
pub(crate) struct Handlers {
    runtime: tokio::runtime::Handle,
    capacity: usize,
    routes: Mutex<Routes>,
    /// Whether any handler is registered: without one, routing takes no lock (the
    /// receive path of a client that reads `Events` only).
    any: AtomicBool,
}

#[derive(Default)]
struct Routes {
    named: HashMap<String, Route>,
    any: Option<Route>,
}

impl Handlers {
    pub(crate) fn new(runtime: tokio::runtime::Handle, capacity: usize) -> Self {
        Handlers {
            runtime,
            capacity: capacity.max(1),
            routes: Mutex::new(Routes::default()),
            any: AtomicBool::new(false),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `handler` for `name` (`None`: the catch-all), replacing the one before.
    pub(crate) fn on(&self, name: Option<String>, handler: HandlerFn) {
        let (tx, mut rx) = mpsc::channel::<Event>(self.capacity);
        self.runtime.spawn(async move {
            while let Some(event) = rx.recv().await {
                handler(event).await;
            }
        });
        let route = Route { tx, lagging: false };
        let mut routes = self.routes();
        self.any.store(true, Ordering::Release);
        match name {
            Some(name) => {
                routes.named.insert(name, route);
            }
            None => routes.any = Some(route),
        }
    }

    /// Removes the handler for `name` (`None`: the catch-all); its task ends after the
    /// events it has.
    pub(crate) fn off(&self, name: Option<&str>) {
        let mut routes = self.routes();
        match name {
            Some(name) => {
                routes.named.remove(name);
            }
            None => routes.any = None,
        }
    }

    /// Hands `event` to its handler; gives it back when none takes it.
    pub(crate) fn route(&self, event: Event) -> Option<Event> {
        if !self.any.load(Ordering::Acquire) {
            return Some(event);
        }
        let mut routes = self.routes();
        let Routes { named, any } = &mut *routes;
        let route = match (named.get_mut(event.name()), any.as_mut()) {
            (Some(route), _) | (None, Some(route)) => route,
            (None, None) => return Some(event),
        };
        match route.tx.try_send(event) {
            Ok(()) => route.lagging = false,
            Err(TrySendError::Full(event)) => {
                if !route.lagging {
                    route.lagging = true;
                    tracing::warn!(
                        event = event.name(),
                        "events dropped: the handler is not keeping up"
                    );
                }
            }
            // The handler's task is gone (its runtime shut down): nothing takes it.
            Err(TrySendError::Closed(event)) => return Some(event),
        }
        None
    }

    /// The client ended: the handlers' tasks end after the events they have.
    pub(crate) fn clear(&self) {
        *self.routes() = Routes::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relink_proto::Payload;

    fn event(name: &str) -> Event {
        Event::new(Arc::from(name), Payload::new(), None)
    }

    #[tokio::test]
    async fn an_event_without_a_handler_is_given_back_for_the_stream() {
        let handlers = Handlers::new(tokio::runtime::Handle::current(), 8);
        assert!(handlers.route(event("a")).is_some(), "no handlers at all");
        let (tx, mut rx) = mpsc::unbounded_channel();
        handlers.on(
            Some("chat".into()),
            boxed(move |e: Event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(e.name().to_owned());
                }
            }),
        );
        assert!(
            handlers.route(event("other")).is_some(),
            "no handler for it"
        );
        assert!(handlers.route(event("chat")).is_none(), "taken");
        assert_eq!(rx.recv().await.as_deref(), Some("chat"));
        handlers.off(Some("chat"));
        assert!(handlers.route(event("chat")).is_some(), "off again");
    }
}
