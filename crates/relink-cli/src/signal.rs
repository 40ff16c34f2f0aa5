//! SIGINT and SIGTERM both mean "stop cleanly".

use std::future::Future;

/// Registers the handlers now and returns a future that resolves on the first SIGINT or
/// SIGTERM. Registering before anything is printed means a signal sent as soon as the first
/// line appears is still a clean stop, not a kill.
pub(crate) fn terminate() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
