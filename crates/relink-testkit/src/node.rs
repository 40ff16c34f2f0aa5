//! Runs the official Node socket.io server (`interop/node/server.mjs`) for interop tests.
//!
//! The server prints `{"port":N}` on stdout once it listens on `127.0.0.1`, then answers
//! JSON-line commands written to its stdin (one reply line per command). It exits when its
//! stdin closes, so a [`NodeServer`] that is dropped (or a test process that dies) never
//! leaves it running; [`NodeServer`] also kills it on drop.
//!
//! Prerequisites: `node` (>= 18) on `PATH` (or in the `RELINK_NODE` environment variable)
//! and the npm dependencies installed with `npm ci --prefix interop/node`.
//!
//! Set `RELINK_NODE_VERBOSE=1` to make the server log connections and events to stderr.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

/// How long [`NodeServer::start`] waits for the `{"port":N}` line.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long [`NodeServer::command`] waits for the reply line.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`NodeServer::stop`] waits for a graceful exit before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`NodeServer::restart`] keeps retrying while the port is still busy.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Number of stderr lines kept for error messages.
const STDERR_TAIL: usize = 40;

/// How to start the Node socket.io server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeOptions {
    /// Enable `connectionStateRecovery` (`maxDisconnectionDuration: 120000`,
    /// `skipMiddlewares: true`).
    pub recovery: bool,
    /// The token the auth middleware of `/` and `/admin` expects in `auth.token`.
    pub token: String,
    /// Engine.IO `pingInterval` in milliseconds (`None`: socket.io's default, 25000).
    pub ping_interval_ms: Option<u64>,
    /// Engine.IO `pingTimeout` in milliseconds (`None`: socket.io's default, 20000).
    pub ping_timeout_ms: Option<u64>,
    /// Engine.IO `maxHttpBufferSize` in bytes (`None`: socket.io's default, 1e6).
    pub max_payload: Option<u64>,
    /// Engine.IO `transports` (`None`: both, `["polling", "websocket"]`); `Some(vec!["polling"])`
    /// makes a polling-only server, which answers WebSocket upgrades with HTTP 400.
    pub transports: Option<Vec<&'static str>>,
    /// Port to listen on (on 127.0.0.1); 0 lets the OS pick a free one.
    pub port: u16,
    /// Numbered events `("burst", i)` for i = 1..=N, then `("burst-done", N)`, sent to every
    /// socket of `/` and `/admin` right after it connects (not after a recovery): a history
    /// replay or a busy room. 0: none.
    pub burst_on_connect: u64,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            recovery: false,
            token: "secret".to_owned(),
            ping_interval_ms: None,
            ping_timeout_ms: None,
            max_payload: None,
            transports: None,
            port: 0,
            burst_on_connect: 0,
        }
    }
}

/// A running `interop/node/server.mjs` process.
///
/// Dropping it kills the process (and closes its stdin, which makes it exit by itself too).
pub struct NodeServer {
    opts: NodeOptions,
    port: u16,
    proc: Proc,
}

/// One spawned server process.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<Vec<String>>>,
    stderr_task: Option<JoinHandle<()>>,
}

impl fmt::Debug for NodeServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeServer")
            .field("port", &self.port)
            .field("pid", &self.proc.child.id())
            .field("opts", &self.opts)
            .finish()
    }
}

impl NodeServer {
    /// Starts the server and waits (up to 15 s) until it listens.
    ///
    /// Fails with a message telling what to do if `node` or `interop/node/node_modules`
    /// is missing.
    pub async fn start(opts: NodeOptions) -> io::Result<NodeServer> {
        let (proc, port) = Proc::spawn(&opts, opts.port).await?;
        tracing::debug!(port, "node socket.io server started");
        Ok(NodeServer { opts, port, proc })
    }

    /// The port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The options the server was started with (`port` is the requested one, see
    /// [`NodeServer::port`] for the actual one).
    pub fn options(&self) -> &NodeOptions {
        &self.opts
    }

    /// The OS process id of the running server, if it has not been reaped yet.
    pub fn pid(&self) -> Option<u32> {
        self.proc.child.id()
    }

    /// Sends one JSON command line to the server and returns its JSON reply line
    /// (waits up to 10 s).
    ///
    /// Commands: `{"cmd":"stats"}`, `{"cmd":"disconnect-all"}` (with `"burst":N`: see
    /// [`NodeServer::disconnect_all_then_burst`]), `{"cmd":"close"}`.
    /// Unknown commands get `{"ok":false,"error":...}`.
    pub async fn command(&mut self, cmd: Value) -> io::Result<Value> {
        self.proc.command(&cmd).await
    }

    /// `{"cmd":"stats"}`: returns
    /// `{"ok":true,"received":N,"unique":M,"duplicates":D,"clients":C}` where the first three
    /// count the `"count"` events received from clients and `clients` is the number of open
    /// Engine.IO connections.
    pub async fn stats(&mut self) -> io::Result<Value> {
        let reply = self.command(serde_json::json!({ "cmd": "stats" })).await?;
        check_ok(&reply)?;
        Ok(reply)
    }

    /// `{"cmd":"disconnect-all"}`: closes every Engine.IO connection from the server side
    /// (a transport drop: clients see `"transport close"` and sessions stay recoverable),
    /// rather than a namespace-level disconnect.
    pub async fn disconnect_all(&mut self) -> io::Result<()> {
        let reply = self
            .command(serde_json::json!({ "cmd": "disconnect-all" }))
            .await?;
        check_ok(&reply)
    }

    /// Like [`NodeServer::disconnect_all`], then sends `n` numbered events `("burst", i)`
    /// (i = 1..=n, each with `size` bytes of `x` when `size` is not 0), then
    /// `("burst-done", n)`, to each closed socket of `/`: missed while it is away, replayed
    /// by connection state recovery when it comes back (needs `recovery`).
    pub async fn disconnect_all_then_burst(&mut self, n: u64, size: u64) -> io::Result<()> {
        let reply = self
            .command(serde_json::json!({ "cmd": "disconnect-all", "burst": n, "size": size }))
            .await?;
        check_ok(&reply)
    }

    /// Asks the server to close, waits up to 5 s for it to exit, then kills it.
    pub async fn stop(mut self) {
        self.proc.shutdown().await;
    }

    /// Stops the server and starts a new one with the same options on the same port,
    /// retrying for a few seconds while the port is still busy.
    ///
    /// All server state (sessions kept for connection state recovery, `count` statistics)
    /// is lost.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.proc.shutdown().await;
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match Proc::spawn(&self.opts, self.port).await {
                Ok((proc, port)) => {
                    self.proc = proc;
                    self.port = port;
                    tracing::debug!(port, "node socket.io server restarted");
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    tracing::debug!(port = self.port, "port still busy, retrying: {e}");
                    sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Proc {
    /// Spawns the server on `port` and reads its port line.
    async fn spawn(opts: &NodeOptions, port: u16) -> io::Result<(Proc, u16)> {
        let dir = interop_dir();
        let script = dir.join("server.mjs");
        if !script.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("Node interop server not found at {}", script.display()),
            ));
        }
        if !dir.join("node_modules").join("socket.io").is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing the socket.io npm package: run `npm ci --prefix interop/node` \
                     (from the workspace root) first",
                    dir.join("node_modules").display()
                ),
            ));
        }

        let node = std::env::var_os("RELINK_NODE").unwrap_or_else(|| "node".into());
        let mut cmd = Command::new(&node);
        cmd.current_dir(&dir)
            .arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--token")
            .arg(&opts.token);
        if opts.recovery {
            cmd.arg("--recovery");
        }
        if let Some(ms) = opts.ping_interval_ms {
            cmd.arg("--ping-interval").arg(ms.to_string());
        }
        if let Some(ms) = opts.ping_timeout_ms {
            cmd.arg("--ping-timeout").arg(ms.to_string());
        }
        if let Some(transports) = &opts.transports {
            cmd.arg("--transports").arg(transports.join(","));
        }
        if let Some(n) = opts.max_payload {
            cmd.arg("--max-payload").arg(n.to_string());
        }
        if opts.burst_on_connect > 0 {
            cmd.arg("--burst-on-connect")
                .arg(opts.burst_on_connect.to_string());
        }
        if std::env::var_os("RELINK_NODE_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0") {
            cmd.arg("--verbose");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);

        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "could not run `{}`: Node.js (>= 18) is required for interop tests; \
                         install it (or set RELINK_NODE to its path), then run \
                         `npm ci --prefix interop/node`",
                        Path::new(&node).display()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("could not spawn node: {e}"))
            }
        })?;

        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("node stdout was not captured"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("node stderr was not captured"))?;

        // Forward node's stderr to ours, keeping the last lines for error messages.
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_task = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[node] {line}");
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() >= STDERR_TAIL {
                        tail.remove(0);
                    }
                    tail.push(line);
                }
            }
        });

        let mut proc = Proc {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            stderr_tail,
            stderr_task: Some(stderr_task),
        };

        let first = match timeout(START_TIMEOUT, proc.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = proc.wait_exit(Duration::from_secs(2)).await;
                return Err(proc.startup_error(status).await);
            }
            Ok(Err(e)) => {
                proc.kill().await;
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading the node server's port line: {e}"),
                ));
            }
            Err(_) => {
                proc.kill().await;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the node server did not print its port within {START_TIMEOUT:?}{}",
                        proc.stderr_hint()
                    ),
                ));
            }
        };

        let actual = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        match actual {
            Some(actual) => Ok((proc, actual)),
            None => {
                proc.kill().await;
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected first line from the node server: {first:?}"),
                ))
            }
        }
    }

    /// Writes one command line and reads one reply line.
    async fn command(&mut self, cmd: &Value) -> io::Result<Value> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "node server is stopped"))?;
        let mut line = serde_json::to_string(cmd)?;
        line.push('\n');
        let written = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.flush().await
        };
        match timeout(COMMAND_TIMEOUT, written).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "writing to the node server failed: {e}{}",
                        self.stderr_hint()
                    ),
                ));
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "writing to the node server timed out",
                ));
            }
        }
        match timeout(COMMAND_TIMEOUT, self.stdout.next_line()).await {
            Ok(Ok(Some(reply))) => serde_json::from_str(&reply).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad reply line from the node server ({e}): {reply:?}"),
                )
            }),
            Ok(Ok(None)) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the node server exited{}", self.stderr_hint()),
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no reply from the node server to {cmd} within {COMMAND_TIMEOUT:?}"),
            )),
        }
    }

    /// Asks the process to close, waits for it, kills it if needed.
    async fn shutdown(&mut self) {
        if self.stdin.is_some() {
            // Best effort: the process may already be gone.
            let _ = timeout(
                Duration::from_secs(1),
                self.command(&serde_json::json!({ "cmd": "close" })),
            )
            .await;
        }
        // Closing stdin makes the server exit even if the command was lost.
        self.stdin = None;
        if self.wait_exit(STOP_TIMEOUT).await.is_none() {
            tracing::warn!("node server did not exit within {STOP_TIMEOUT:?}, killing it");
            self.kill().await;
        }
        self.join_stderr().await;
    }

    /// Waits up to `limit` for the process to exit.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        match timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        }
    }

    /// Kills the process and reaps it.
    async fn kill(&mut self) {
        self.stdin = None;
        let _ = self.child.kill().await;
    }

    /// Waits briefly for the stderr forwarder to reach EOF.
    async fn join_stderr(&mut self) {
        if let Some(task) = self.stderr_task.take()
            && timeout(Duration::from_secs(1), task).await.is_err()
        {
            tracing::debug!("node stderr forwarder did not finish");
        }
    }

    /// The last stderr lines, formatted for an error message.
    fn stderr_hint(&self) -> String {
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; node stderr:\n{tail}")
        }
    }

    /// Builds the error for a process that exited before printing its port.
    async fn startup_error(&mut self, status: Option<ExitStatus>) -> io::Error {
        if status.is_none() {
            self.kill().await;
        }
        self.join_stderr().await;
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.join("\n"))
            .unwrap_or_default();
        let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
        if tail.contains("EADDRINUSE") {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("the node server could not listen ({status}): {tail}"),
            )
        } else if tail.contains("ERR_MODULE_NOT_FOUND") || tail.contains("Cannot find package") {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the node server could not load its npm dependencies ({status}): run \
                     `npm ci --prefix interop/node` (from the workspace root); node stderr:\n{tail}"
                ),
            )
        } else {
            io::Error::other(format!(
                "the node server exited before printing its port ({status}); node stderr:\n{tail}"
            ))
        }
    }
}

/// `interop/node/` in the workspace.
fn interop_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/node");
    dir.canonicalize().unwrap_or(dir)
}

/// Turns a `{"ok":false,"error":...}` reply into an error.
fn check_ok(reply: &Value) -> io::Result<()> {
    if reply.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the node server refused the command: {reply}"
        )))
    }
}
