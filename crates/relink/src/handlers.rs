//! Handlers by event name, as socket.io-client's `socket.on(name, fn)`: an event goes to
//! its named handler, else to the catch-all, else to [`crate::Events`].
//!
//! Each handler runs on a task of its own and gets its events in order, one at a time.
//! What waits for the handlers counts against the same budget as `Events` (`flow.rs`):
//! by default a handler that falls behind makes the connection stop reading until it
//! catches up; with `Overflow::Drop` what comes meanwhile is dropped, counted and logged
//! (one WARN per episode).

use crate::events::Event;
use crate::flow::{Budget, Pushed, Receiver, Sender};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

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
    tx: Sender<Event>,
    /// The handler's task: one that replaces it starts after it has finished what it has,
    /// so a name's events never run out of order.
    task: JoinHandle<()>,
}

/// The registered handlers.
pub(crate) struct Handlers {
    runtime: tokio::runtime::Handle,
    budget: Arc<Budget>,
    routes: Mutex<Routes>,
    /// Whether any handler is registered: without one, routing takes no lock (the
    /// receive path of a client that reads `Events` only).
    any: AtomicBool,
}

#[derive(Default)]
struct Routes {
    named: HashMap<String, Route>,
    any: Option<Route>,
    /// Tasks of handlers removed by `off`, finishing what they have.
    retired: HashMap<Option<String>, JoinHandle<()>>,
}

impl Handlers {
    pub(crate) fn new(runtime: tokio::runtime::Handle, budget: Arc<Budget>) -> Self {
        Handlers {
            runtime,
            budget,
            routes: Mutex::new(Routes::default()),
            any: AtomicBool::new(false),
        }
    }

    /// The client's budget, shared with `Events`.
    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `handler` for `name` (`None`: the catch-all), replacing the one before.
    pub(crate) fn on(&self, name: Option<String>, handler: HandlerFn) {
        let reader = match &name {
            Some(name) => format!("the handler of {name:?}"),
            None => "the catch-all handler".to_owned(),
        };
        let (tx, mut rx): (Sender<Event>, Receiver<Event>) =
            crate::flow::queue(&self.budget, &reader);
        let mut routes = self.routes();
        routes.retired.retain(|_, task| !task.is_finished());
        let replaced = match &name {
            Some(name) => routes.named.remove(name),
            None => routes.any.take(),
        };
        // Dropping the replaced route's sender lets its task finish what it has.
        let before = replaced
            .map(|route| route.task)
            .or_else(|| routes.retired.remove(&name));
        let task = self.runtime.spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            while let Some(event) = std::future::poll_fn(|cx| rx.poll_next(cx)).await {
                let name = event.name().to_owned();
                // A handler that panics loses that event, not the ones after it.
                let run = std::panic::catch_unwind(AssertUnwindSafe(|| handler(event)));
                let finished = match run {
                    Ok(future) => AssertUnwindSafe(future).catch_unwind().await.is_ok(),
                    Err(_) => false,
                };
                if !finished {
                    tracing::error!(event = %name, "an event handler panicked; it goes on with the next event");
                }
            }
        });
        let route = Route { tx, task };
        self.any.store(true, Ordering::Release);
        match name {
            Some(name) => {
                routes.named.insert(name, route);
            }
            None => routes.any = Some(route),
        }
    }

    /// Removes the handler for `name` (`None`: the catch-all); its task ends after the
    /// event it is running, and the events still waiting for it are discarded.
    pub(crate) fn off(&self, name: Option<&str>) {
        let mut routes = self.routes();
        // Tasks that have finished what they had are forgotten.
        routes.retired.retain(|_, task| !task.is_finished());
        let removed = match name {
            Some(name) => routes.named.remove(name),
            None => routes.any.take(),
        };
        if let Some(mut route) = removed {
            // Removed means no more of them: what waits for it is freed (its budget given
            // back), and its task ends after the event it is running.
            route.tx.abandon();
            routes.retired.insert(name.map(str::to_owned), route.task);
        }
    }

    /// Hands `event` to its handler; gives it back when none takes it.
    pub(crate) fn route(&self, event: Event) -> Option<Event> {
        if !self.any.load(Ordering::Acquire) {
            return Some(event);
        }
        let mut routes = self.routes();
        let Routes { named, any, .. } = &mut *routes;
        let route = match (named.get_mut(event.name()), any.as_mut()) {
            (Some(route), _) | (None, Some(route)) => route,
            (None, None) => return Some(event),
        };
        // The handler's task is gone (its runtime shut down): the stream takes it.
        if route.tx.is_gone() {
            return Some(event);
        }
        if route.tx.push(event) == Pushed::BatchFull {
            route.tx.flush();
        }
        None
    }

    /// Hands what was routed to the handlers' tasks (after each round of deliveries).
    pub(crate) fn flush(&self) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut routes = self.routes();
        let Routes { named, any, .. } = &mut *routes;
        for route in named.values_mut().chain(any.as_mut()) {
            route.tx.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Overflow;
    use relink_proto::Payload;
    use tokio::sync::mpsc;

    fn handlers() -> Handlers {
        let budget = Budget::new(Overflow::Backpressure, usize::MAX, 1 << 20, || {});
        Handlers::new(tokio::runtime::Handle::current(), budget)
    }

    fn event(name: &str) -> Event {
        Event::new(Arc::from(name), Payload::new(), None)
    }

    #[tokio::test]
    async fn an_event_without_a_handler_is_given_back_for_the_stream() {
        let handlers = handlers();
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
        handlers.flush();
        assert_eq!(rx.recv().await.as_deref(), Some("chat"));
        handlers.off(Some("chat"));
        assert!(handlers.route(event("chat")).is_some(), "off again");
    }

    fn recorder(tag: &'static str, log: &mpsc::UnboundedSender<String>, pause: u64) -> HandlerFn {
        let log = log.clone();
        boxed(move |e: Event| {
            let log = log.clone();
            async move {
                if e.name() == "boom" {
                    panic!("a handler's own panic");
                }
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                let _ = log.send(format!("{tag}{}", e.name()));
            }
        })
    }

    #[tokio::test]
    async fn a_removed_handler_frees_what_waits_for_it() {
        let handlers = handlers();
        let (started, mut running) = mpsc::unbounded_channel();
        let (release, gate) = tokio::sync::watch::channel(false);
        handlers.on(
            Some("slow".into()),
            boxed(move |_e: Event| {
                let started = started.clone();
                let mut gate = gate.clone();
                async move {
                    let _ = started.send(());
                    let _ = gate.wait_for(|open| *open).await;
                }
            }),
        );
        for _ in 0..3 {
            assert!(handlers.route(event("slow")).is_none());
        }
        handlers.flush();
        running.recv().await.expect("the first event runs");
        assert!(handlers.budget().used().0 >= 2, "two wait behind it");
        handlers.off(Some("slow"));
        let _ = release.send(true);
        // The running event finishes; the two behind it are not run, and their budget is back.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while handlers.budget().used() != (0, 0) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("budget given back");
        assert!(running.try_recv().is_err(), "no other event ran");
    }

    #[tokio::test]
    async fn a_panicking_handler_goes_on_and_a_replacement_waits_for_its_predecessor() {
        let handlers = handlers();
        let (log, mut seen) = mpsc::unbounded_channel();
        handlers.on(None, recorder("A", &log, 20));
        for name in ["1", "boom", "2"] {
            assert!(handlers.route(event(name)).is_none());
        }
        handlers.flush();
        // Replaced while "1" and "2" are still queued: B starts after A has finished them.
        handlers.on(None, recorder("B", &log, 0));
        assert!(handlers.route(event("3")).is_none());
        handlers.flush();
        let mut order = Vec::new();
        while order.len() < 3 {
            order.push(seen.recv().await.expect("handled"));
        }
        assert_eq!(order, ["A1", "A2", "B3"]);
    }
}
