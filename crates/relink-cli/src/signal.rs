//! SIGINT and SIGTERM both mean "stop cleanly"; a second one means "stop now".

use std::future::Future;

/// Registers the handlers now and returns a future that resolves on the first SIGINT or
/// SIGTERM. Call it inside the runtime before anything is printed or dialled: until the
/// handlers are registered, a signal takes its default action and kills the process without
/// a DISCONNECT.
///
/// Once registered, a handler replaces the default action for the rest of the process, so
/// after the first signal a task keeps listening: a second signal exits at once (code 1)
/// instead of being swallowed while the clean stop finishes.
pub(crate) fn terminate() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = Signals::register();
    async move {
        signals.recv().await;
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("relink: second signal: stopping now");
            std::process::exit(1);
        });
    }
}

/// The two stop signals; one that could not be registered never fires.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                () = one(&mut self.term) => {}
                () = one(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
