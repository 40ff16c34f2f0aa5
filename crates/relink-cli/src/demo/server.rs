//! The demo's embedded Socket.IO server (socketioxide behind axum) on `127.0.0.1:0`.
//!
//! It asks for the per-run demo token in the CONNECT auth (`{"token": ...}`) and refuses any
//! other with a connect error, sends every connected socket a `"tick"` event with a counter
//! every 500 ms, and acknowledges `"echo"` with its argument.

use crate::daemon::same_secret;
use serde::Deserialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Time between two `"tick"` events on one socket.
const TICK_EVERY: Duration = Duration::from_millis(500);
/// How long stopping may take before the remaining tasks are aborted.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The CONNECT auth the server expects.
#[derive(Deserialize)]
struct DemoAuth {
    token: String,
}

/// The connect error sent for a missing or wrong token.
#[derive(Debug)]
struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid demo token")
    }
}

/// The tick tasks, one per connected socket, and the signal that ends them.
#[derive(Clone)]
struct Tickers {
    tasks: Arc<Mutex<JoinSet<()>>>,
    stop: watch::Receiver<bool>,
}

impl Tickers {
    fn spawn(&self, socket: SocketRef) {
        let mut stop = self.stop.clone();
        let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap the tickers of sockets that are gone, so the set stays as small as the
        // number of live sockets.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(async move {
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + TICK_EVERY, TICK_EVERY);
            let mut count: u64 = 0;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => break,
                }
                if !socket.connected() {
                    break;
                }
                count += 1;
                // A send fails only when the socket is closing or its buffer is full: the
                // former ends the loop at the next check, the latter skips a tick.
                let _ = socket.emit("tick", &count);
            }
        });
    }
}

/// A running demo server.
pub(crate) struct DemoServer {
    addr: SocketAddr,
    io: SocketIo,
    stop: watch::Sender<bool>,
    tickers: Arc<Mutex<JoinSet<()>>>,
    task: JoinHandle<()>,
}

impl DemoServer {
    /// Serves on `127.0.0.1:0`, accepting only `token`.
    pub(crate) async fn start(token: Arc<str>) -> std::io::Result<DemoServer> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (layer, io) = SocketIo::new_layer();
        let (stop, stop_rx) = watch::channel(false);
        let tickers = Tickers {
            tasks: Arc::new(Mutex::new(JoinSet::new())),
            stop: stop_rx.clone(),
        };
        let tasks = Arc::clone(&tickers.tasks);

        // The middleware runs before the server acknowledges the CONNECT, the connect handler
        // only after (spawned): handlers registered here see the client's first emit.
        let check_token = move |socket: SocketRef, TryData(auth): TryData<DemoAuth>| {
            let expected = Arc::clone(&token);
            async move {
                match auth {
                    Ok(auth) if same_secret(auth.token.as_bytes(), expected.as_bytes()) => {
                        socket.on("echo", async |Data::<Value>(data), ack: AckSender| {
                            // The client may have gone already; nothing to do then.
                            let _ = ack.send(&data);
                        });
                        Ok(())
                    }
                    _ => Err(InvalidToken),
                }
            }
        };
        let on_connect = move |socket: SocketRef| {
            let tickers = tickers.clone();
            async move { tickers.spawn(socket) }
        };
        io.ns("/", on_connect.with(check_token));

        let app = axum::Router::new().layer(layer);
        let mut shutdown = stop_rx;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::debug!(error = %e, "demo server ended with an error");
            }
        });
        Ok(DemoServer {
            addr,
            io,
            stop,
            tickers: tasks,
            task,
        })
    }

    /// Where the server listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every socket, stops the tick tasks and the HTTP server, and waits for them
    /// (at most a couple of seconds, then aborts what is left).
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(STOP_GRACE, self.io.close()).await;
        let tickers =
            std::mem::take(&mut *self.tickers.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = tokio::time::timeout(STOP_GRACE, tickers.join_all()).await;
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}
