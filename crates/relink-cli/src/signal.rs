//! SIGINT and SIGTERM both mean "stop cleanly"; a second one means "stop now".

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Registers the handlers now and returns a future that resolves on the first SIGINT or
/// SIGTERM. Call it inside the runtime before anything is printed or dialled: until the
/// handlers are registered, a signal takes its default action and kills the process without
/// a DISCONNECT.
///
/// Once registered, a handler replaces the default action for the rest of the process, so
/// after the first signal a task keeps listening: a second signal exits at once (code 1)
/// instead of being swallowed while the clean stop finishes. That exit skips destructors,
/// so what must not outlive the process is registered with [`remove_at_forced_exit`].
pub(crate) fn terminate() -> impl Future<Output = ()> + Send + 'static {
    let mut signals = Signals::register();
    async move {
        signals.recv().await;
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("relink: second signal: stopping now");
            for dir in forced_exit_removals().drain(..) {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(1);
        });
    }
}

/// Directories removed by the exit a second signal forces (the daemon's secret).
fn forced_exit_removals() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    DIRS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes `dir` if a second signal forces the exit; its owner removes it otherwise, and
/// then calls [`keep_at_forced_exit`].
pub(crate) fn remove_at_forced_exit(dir: &Path) {
    forced_exit_removals().push(dir.to_owned());
}

/// Undoes [`remove_at_forced_exit`].
pub(crate) fn keep_at_forced_exit(dir: &Path) {
    forced_exit_removals().retain(|d| d != dir);
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
