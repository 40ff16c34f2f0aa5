//! `relink daemon` end to end: the real binary, driven with jsonrpsee's HTTP and WebSocket
//! clients, against the Node socket.io server (`interop/node/server.mjs`).
//!
//! Every test starts its own daemon (killed on drop, and stopped explicitly at the end) and
//! its own Node server on port 0. Every wait is bounded by [`WAIT`], a bound and not a timing
//! assertion: a broken daemon fails the test instead of hanging it.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use jsonrpsee::core::client::{ClientT, Error as ClientError, Subscription, SubscriptionClientT};
use jsonrpsee::core::params::{ArrayParams, ObjectParams};
use jsonrpsee::http_client::{HeaderMap, HeaderValue, HttpClient, HttpClientBuilder};
use jsonrpsee::rpc_params;
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use relink_testkit::gateway::Gateway;
use relink_testkit::node::{NodeOptions, NodeServer};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use support::{pump, relink_command, unique_path};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for any single wait. A bound, not a timing assertion.
const WAIT: Duration = Duration::from_secs(30);

/// A token the Node server is started with in the leak test: distinctive enough to grep for.
const DISTINCT_TOKEN: &str = "tok-SECRET-77ab";

// ---------------------------------------------------------------------------------------
// harness

/// A running `relink daemon`; killed on drop.
struct Daemon {
    child: Child,
    url: String,
    port: u16,
    secret: String,
    secret_file: PathBuf,
    session_file: PathBuf,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
}

/// What a stopped daemon printed, and how it ended.
struct Stopped {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

fn daemon_command(args: &[&str], session_file: &Path) -> Command {
    let args: Vec<&str> = std::iter::once("daemon")
        .chain(args.iter().copied())
        .collect();
    relink_command(&args, session_file)
}

impl Daemon {
    async fn start() -> Daemon {
        Daemon::start_with(&[]).await
    }

    /// Starts `relink daemon --listen 127.0.0.1:0` with extra environment variables and a
    /// session file path that does not exist (yet).
    async fn start_with(env: &[(&str, &str)]) -> Daemon {
        Daemon::start_args(&["--listen", "127.0.0.1:0"], env).await
    }

    /// Starts `relink daemon ARGS` with extra environment variables.
    async fn start_args(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let session_file = unique_path("session.json");
        let mut cmd = daemon_command(args, &session_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn relink daemon");
        let mut out = pump(child.stdout.take().unwrap());
        let mut err = pump(child.stderr.take().unwrap());
        let line = match timeout(WAIT, out.recv()).await {
            Ok(Some(line)) => line,
            other => {
                let mut stderr = Vec::new();
                while let Ok(Some(line)) = timeout(Duration::from_secs(1), err.recv()).await {
                    stderr.push(line);
                }
                panic!("no ready line ({other:?}); stderr:\n{}", stderr.join("\n"));
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
        let object = ready.as_object().expect("ready line is an object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["secret_file", "url"], "{line}");
        let url = ready["url"].as_str().unwrap().to_owned();
        let port: u16 = url
            .strip_prefix("http://127.0.0.")
            .and_then(|rest| rest.split_once(':'))
            .unwrap_or_else(|| panic!("url is not http://127.0.0.N:PORT: {url}"))
            .1
            .parse()
            .unwrap();
        let secret_file = PathBuf::from(ready["secret_file"].as_str().unwrap());
        let secret = std::fs::read_to_string(&secret_file).unwrap();
        Daemon {
            child,
            url,
            port,
            secret: secret.trim().to_owned(),
            secret_file,
            session_file,
            out,
            err,
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {}", self.secret)).unwrap(),
        );
        headers
    }

    fn http(&self) -> HttpClient {
        HttpClientBuilder::default()
            .set_headers(self.headers())
            .request_timeout(WAIT)
            .build(&self.url)
            .unwrap()
    }

    async fn ws(&self) -> WsClient {
        WsClientBuilder::default()
            .set_headers(self.headers())
            .request_timeout(WAIT)
            .build(self.url.replace("http://", "ws://"))
            .await
            .unwrap()
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("daemon still running");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {pid} failed: {status}");
    }

    /// SIGTERM, then waits for the exit (killing after [`WAIT`]) and collects the output.
    async fn stop(mut self) -> Stopped {
        self.sigterm();
        let status = match timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => {
                self.child.kill().await.unwrap();
                panic!("the daemon did not exit within {WAIT:?} after SIGTERM");
            }
        };
        let mut stdout = Vec::new();
        while let Ok(Some(line)) = timeout(WAIT, self.out.recv()).await {
            stdout.push(line);
        }
        let mut stderr = Vec::new();
        while let Ok(Some(line)) = timeout(WAIT, self.err.recv()).await {
            stderr.push(line);
        }
        let _ = std::fs::remove_file(&self.session_file);
        Stopped {
            status,
            stdout,
            stderr,
        }
    }
}

fn params(pairs: &[(&str, Value)]) -> ObjectParams {
    let mut p = ObjectParams::new();
    for (k, v) in pairs {
        p.insert(k, v).unwrap();
    }
    p
}

/// The JSON-RPC error of a call that must fail: (code, message).
fn rpc_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (i32, String) {
    match result {
        Err(ClientError::Call(e)) => (e.code(), e.message().to_owned()),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

async fn call<C: ClientT>(client: &C, method: &str, p: ObjectParams) -> Result<Value, ClientError> {
    client.request(method, p).await
}

async fn state(client: &impl ClientT) -> Value {
    client.request("socket.state", rpc_params![]).await.unwrap()
}

async fn subscribe(ws: &WsClient, what: &str) -> Subscription<Value> {
    ws.subscribe(
        &format!("socket.subscribe_{what}"),
        rpc_params![],
        &format!("socket.unsubscribe_{what}"),
    )
    .await
    .unwrap()
}

async fn next(sub: &mut Subscription<Value>) -> Value {
    match timeout(WAIT, sub.next()).await {
        Ok(Some(Ok(value))) => value,
        other => panic!("no notification within {WAIT:?}: {other:?}"),
    }
}

/// Reads state notifications until one has `status`; returns every status seen on the way.
async fn until_status(sub: &mut Subscription<Value>, status: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        let state = next(sub).await;
        let s = state["status"].as_str().unwrap().to_owned();
        assert_state_shape(&state);
        seen.push(s.clone());
        if s == status {
            return seen;
        }
    }
    panic!("no `{status}` state in 200 notifications: {seen:?}")
}

/// Reads event notifications until one is named `name`.
async fn until_event(sub: &mut Subscription<Value>, name: &str) -> Value {
    for _ in 0..200 {
        let event = next(sub).await;
        if event["name"] == name {
            return event;
        }
    }
    panic!("no `{name}` event in 200 notifications")
}

fn assert_state_shape(state: &Value) {
    let object = state.as_object().expect("state is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["attempt", "error", "recovered", "socket_id", "status"],
        "{state}"
    );
    assert!(state["attempt"].is_u64(), "{state}");
    assert!(state["recovered"].is_boolean(), "{state}");
    assert!(
        state["error"].is_null() || state["error"].is_string(),
        "{state}"
    );
    assert!(
        state["socket_id"].is_null() || state["socket_id"].is_string(),
        "{state}"
    );
}

/// Collapses runs of the same status.
fn dedup(statuses: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for s in statuses {
        if out.last() != Some(&s.as_str()) {
            out.push(s);
        }
    }
    out
}

/// One raw HTTP/1.1 POST: (status code, body). The caller picks every header, Host included.
async fn raw_post(port: u16, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A refused request: what it tries, its headers, the status it must get.
type Refused<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A WebSocket client of the daemon that reads only when the test asks it to: jsonrpsee's
/// client reads its socket as fast as it can, and drops notifications past its buffer, so it
/// cannot be a slow reader. Frames as RFC 6455 has them: masked from the client, unmasked
/// from the server.
struct SlowWs {
    stream: tokio::io::BufReader<TcpStream>,
}

impl SlowWs {
    async fn connect(daemon: &Daemon) -> SlowWs {
        let stream = TcpStream::connect(("127.0.0.1", daemon.port))
            .await
            .unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        let request = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: cmVsaW5rLXNsb3ctcmVhZA==\r\n\r\n",
            daemon.port, daemon.secret
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .unwrap();
        let mut status = String::new();
        timeout(WAIT, stream.read_line(&mut status))
            .await
            .unwrap()
            .unwrap();
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "not upgraded: {status:?}"
        );
        loop {
            let mut header = String::new();
            let n = timeout(WAIT, stream.read_line(&mut header))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(n, 0, "closed during the upgrade");
            if header == "\r\n" {
                return SlowWs { stream };
            }
        }
    }

    /// Sends one frame (`opcode` 1: text, 10: pong).
    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x17, 0xc3, 0x81];
        let mut frame = vec![0x80 | opcode];
        match u16::try_from(payload.len()) {
            Ok(n @ 0..=125) => frame.push(0x80 | n as u8),
            Ok(n) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.get_mut().write_all(&frame).await.unwrap();
    }

    /// The next JSON-RPC message, within [`WAIT`]; pings are answered on the way.
    async fn next(&mut self) -> Value {
        let text = timeout(WAIT, self.next_text())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    async fn next_text(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream
                .read_exact(&mut head)
                .await
                .expect("the daemon closed the connection");
            assert_eq!(head[1] & 0x80, 0, "a server's frames are not masked");
            let len = match head[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await.unwrap()),
                127 => self.stream.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mut payload = vec![0; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).await.unwrap();
            match head[0] & 0x0f {
                0x9 => self.send(0xa, &payload).await,
                0xa => {}
                0x8 => panic!("the daemon closed the WebSocket: {payload:?}"),
                _ => {
                    message.extend_from_slice(&payload);
                    if head[0] & 0x80 != 0 {
                        return String::from_utf8(message).unwrap();
                    }
                }
            }
        }
    }

    /// The next `socket.event` notification's event; anything else fails the test.
    async fn next_event(&mut self) -> Value {
        let message = self.next().await;
        assert_eq!(message["method"], "socket.event", "{message}");
        let event = &message["params"]["result"];
        assert!(event.is_object(), "{message}");
        event.clone()
    }
}

// ---------------------------------------------------------------------------------------
// tests

#[tokio::test]
async fn announces_itself_keeps_the_secret_private_and_cleans_up_on_sigterm() {
    let daemon = Daemon::start().await;
    assert_eq!(mode(&daemon.secret_file), 0o600);
    let dir = daemon.secret_file.parent().unwrap().to_owned();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(daemon.secret.len(), 64);
    assert!(daemon.secret.bytes().all(|b| b.is_ascii_hexdigit()));
    // Answers, with no socket yet.
    let http = daemon.http();
    assert_eq!(
        state(&http).await,
        json!({"status": "disconnected", "socket_id": null, "attempt": 0, "error": null,
               "recovered": false})
    );
    let secret_file = daemon.secret_file.clone();
    let stopped = daemon.stop().await;
    assert_eq!(stopped.status.code(), Some(0), "{:?}", stopped.stderr);
    assert!(!secret_file.exists(), "secret file left behind");
    assert!(!dir.exists(), "secret directory left behind");
    assert!(
        stopped.stdout.is_empty(),
        "stdout after the ready line: {:?}",
        stopped.stdout
    );
}

#[tokio::test]
async fn each_start_has_its_own_secret() {
    let a = Daemon::start().await;
    let b = Daemon::start().await;
    assert_ne!(a.secret, b.secret);
    assert_ne!(a.secret_file, b.secret_file);
    // A's secret does not open B.
    let (status, _) = raw_post(
        b.port,
        &[
            ("Host", &format!("127.0.0.1:{}", b.port)),
            ("Authorization", &format!("Bearer {}", a.secret)),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"socket.state"}"#,
    )
    .await;
    assert_eq!(status, 401);
    for d in [a, b] {
        assert_eq!(d.stop().await.status.code(), Some(0));
    }
}

#[tokio::test]
async fn refuses_to_listen_beyond_loopback() {
    let session = unique_path("session.json");
    let output = daemon_command(&["--listen", "0.0.0.0:0"], &session)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[tokio::test]
async fn refuses_requests_without_the_secret_or_from_elsewhere() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let gateway = Gateway::start(SocketAddr::from(([127, 0, 0, 1], node.port())))
        .await
        .unwrap();
    let daemon = Daemon::start().await;
    let host = format!("127.0.0.1:{}", daemon.port);
    let bearer = format!("Bearer {}", daemon.secret);
    // A request that would dial the gateway if it were processed.
    let connect = json!({
        "jsonrpc": "2.0", "id": 1, "method": "socket.connect",
        "params": {"url": gateway.url(), "token": "secret"}
    })
    .to_string();
    let evil_host = format!("evil.example:{}", daemon.port);
    let refused: [Refused<'_>; 6] = [
        ("no secret", vec![("Host", &host)], 401),
        (
            "wrong secret",
            vec![
                ("Host", &host),
                (
                    "Authorization",
                    "Bearer 0000000000000000000000000000000000000000000000000000000000000000",
                ),
            ],
            401,
        ),
        (
            "not a bearer",
            vec![("Host", &host), ("Authorization", &daemon.secret)],
            401,
        ),
        (
            "foreign origin",
            vec![
                ("Host", &host),
                ("Authorization", &bearer),
                ("Origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "wrong host",
            vec![("Host", &evil_host), ("Authorization", &bearer)],
            403,
        ),
        (
            "other port",
            vec![("Host", "127.0.0.1:1"), ("Authorization", &bearer)],
            403,
        ),
    ];
    for (what, headers, expected) in &refused {
        let (status, body) = raw_post(daemon.port, headers, &connect).await;
        assert_eq!(status, *expected, "{what}: {body}");
        assert!(
            !body.contains("jsonrpc"),
            "{what}: JSON-RPC answered: {body}"
        );
    }
    // Nothing was processed: no dial, no socket.
    assert_eq!(gateway.stats().accepted, 0);
    let http = daemon.http();
    assert_eq!(state(&http).await["status"], "disconnected");

    // The same request from a loopback origin with the secret goes through.
    let state_request = r#"{"jsonrpc":"2.0","id":7,"method":"socket.state"}"#;
    for (h, origin) in [
        (host.clone(), format!("http://127.0.0.1:{}", daemon.port)),
        (
            format!("localhost:{}", daemon.port),
            format!("http://localhost:{}", daemon.port),
        ),
    ] {
        let (status, body) = raw_post(
            daemon.port,
            &[
                ("Host", &h),
                ("Authorization", &bearer),
                ("Origin", &origin),
            ],
            state_request,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["result"]["status"], "disconnected");
    }

    // WebSocket upgrades are checked the same way.
    let no_secret = WsClientBuilder::default()
        .build(format!("ws://127.0.0.1:{}", daemon.port))
        .await;
    assert!(no_secret.is_err(), "upgrade without the secret accepted");
    let mut foreign = daemon.headers();
    foreign.insert("origin", HeaderValue::from_static("https://evil.example"));
    let from_a_page = WsClientBuilder::default()
        .set_headers(foreign)
        .build(format!("ws://127.0.0.1:{}", daemon.port))
        .await;
    assert!(
        from_a_page.is_err(),
        "upgrade from a foreign origin accepted"
    );
    // And the HTTP client without the secret gets no JSON-RPC answer either.
    let anonymous = HttpClientBuilder::default().build(&daemon.url).unwrap();
    let result: Result<Value, _> = anonymous.request("socket.state", rpc_params![]).await;
    assert!(
        matches!(result, Err(ClientError::Transport(_))),
        "{result:?}"
    );

    assert_eq!(gateway.stats().accepted, 0);
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    gateway.shutdown().await;
    node.stop().await;
}

#[tokio::test]
async fn params_errors_name_the_field() {
    let daemon = Daemon::start().await;
    let http = daemon.http();
    let cases: Vec<(&str, ObjectParams, &str)> = vec![
        (
            "socket.connect",
            params(&[("token", json!("secret"))]),
            "missing field `url`",
        ),
        (
            "socket.connect",
            params(&[("url", json!("http://127.0.0.1:1"))]),
            "missing field `token`",
        ),
        (
            "socket.connect",
            params(&[("url", json!("http://127.0.0.1:1")), ("token", json!(42))]),
            "invalid type for `token`: expected a string",
        ),
        (
            "socket.connect",
            params(&[("url", json!(["x"])), ("token", json!("secret"))]),
            "invalid type for `url`: expected a string",
        ),
        (
            "socket.emit",
            params(&[("data", json!(1))]),
            "missing field `event`",
        ),
        (
            "socket.emit",
            params(&[("event", json!(7))]),
            "invalid type for `event`: expected a string",
        ),
        (
            "socket.emit",
            params(&[("event", json!("echo")), ("ack_timeout_ms", json!("soon"))]),
            "invalid type for `ack_timeout_ms`: expected a positive integer",
        ),
        (
            "socket.state",
            params(&[("verbose", json!(true))]),
            "unknown field `verbose`: this method takes no params",
        ),
    ];
    for (method, p, message) in cases {
        let (code, text) = rpc_error(call(&http, method, p).await);
        assert_eq!((code, text.as_str()), (-32602, message), "{method}");
    }
    // Positional params are refused, naming what is expected.
    let mut positional = ArrayParams::new();
    positional.insert("http://127.0.0.1:1").unwrap();
    positional.insert("secret").unwrap();
    let result: Result<Value, _> = http.request("socket.connect", positional).await;
    let (code, text) = rpc_error(result);
    assert_eq!(code, -32602);
    assert!(text.contains("named fields"), "{text}");
    // A URL the builder refuses: its message, and no socket.
    let (code, text) = rpc_error(
        call(
            &http,
            "socket.connect",
            params(&[("url", json!("ftp://h/")), ("token", json!("secret"))]),
        )
        .await,
    );
    assert_eq!(code, -32602);
    assert!(text.starts_with("invalid URL"), "{text}");
    // No socket yet: emit says so, disconnect is fine.
    let (code, text) =
        rpc_error(call(&http, "socket.emit", params(&[("event", json!("x"))])).await);
    assert_eq!(
        (code, text.as_str()),
        (-32000, "not connected: call socket.connect first")
    );
    let disconnected: Value = http
        .request("socket.disconnect", rpc_params![])
        .await
        .unwrap();
    assert_eq!(disconnected["status"], "disconnected");
    assert_eq!(state(&http).await["status"], "disconnected");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
}

#[tokio::test]
async fn an_empty_token_is_refused_without_dialling() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let gateway = Gateway::start(SocketAddr::from(([127, 0, 0, 1], node.port())))
        .await
        .unwrap();
    let daemon = Daemon::start().await;
    let http = daemon.http();
    for token in ["", "   ", "\t\n"] {
        let (code, text) = rpc_error(
            call(
                &http,
                "socket.connect",
                params(&[("url", json!(gateway.url())), ("token", json!(token))]),
            )
            .await,
        );
        assert_eq!(
            (code, text.as_str()),
            (-32602, "token must not be empty"),
            "{token:?}"
        );
    }
    // The refusal is synchronous: no client exists that could dial later.
    assert_eq!(gateway.stats().accepted, 0);
    assert_eq!(state(&http).await["status"], "disconnected");
    // The same URL with a real token does dial through the gateway.
    let ws = daemon.ws().await;
    let mut states = subscribe(&ws, "state").await;
    call(
        &http,
        "socket.connect",
        params(&[("url", json!(gateway.url())), ("token", json!("secret"))]),
    )
    .await
    .unwrap();
    until_status(&mut states, "connected").await;
    assert!(gateway.stats().accepted >= 1);
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    gateway.shutdown().await;
    node.stop().await;
}

#[tokio::test]
async fn connect_emit_ack_and_disconnect_over_http() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start().await;
    let http = daemon.http();
    let ws = daemon.ws().await;
    let mut states = subscribe(&ws, "state").await;

    let started = call(
        &http,
        "socket.connect",
        params(&[("url", json!(node.url())), ("token", json!("secret"))]),
    )
    .await
    .unwrap();
    assert_state_shape(&started);
    assert_eq!(started["status"], "connecting");
    until_status(&mut states, "connected").await;
    let connected = state(&http).await;
    assert_eq!(connected["status"], "connected");
    assert!(connected["socket_id"].is_string(), "{connected}");

    let emit = |data: Option<Value>, ack: Option<u64>| {
        let mut p = vec![("event", json!("echo"))];
        if let Some(data) = data {
            p.push(("data", data));
        }
        if let Some(ack) = ack {
            p.push(("ack_timeout_ms", json!(ack)));
        }
        params(&p)
    };
    // `data` is one argument, whatever its type; the ack's arguments come back as an array.
    let cases = [
        (Some(json!({"a": 1})), json!([{"a": 1}])),
        (Some(json!([1, 2])), json!([[1, 2]])),
        (Some(json!("hi")), json!(["hi"])),
        (Some(Value::Null), json!([null])),
        (None, json!([])),
    ];
    for (data, ack) in cases {
        let got = call(&http, "socket.emit", emit(data.clone(), Some(10_000)))
            .await
            .unwrap();
        assert_eq!(got, ack, "data {data:?}");
    }
    // Without ack_timeout_ms: null once queued.
    let queued = call(&http, "socket.emit", emit(Some(json!(1)), None))
        .await
        .unwrap();
    assert_eq!(queued, Value::Null);
    // An event the server never acknowledges.
    let (code, text) = rpc_error(
        call(
            &http,
            "socket.emit",
            params(&[
                ("event", json!("nobody-answers")),
                ("ack_timeout_ms", json!(200)),
            ]),
        )
        .await,
    );
    assert_eq!(
        (code, text.as_str()),
        (-32001, "no acknowledgement within 200 ms")
    );

    let last: Value = http
        .request("socket.disconnect", rpc_params![])
        .await
        .unwrap();
    assert_state_shape(&last);
    assert_eq!(last["status"], "disconnected");
    until_status(&mut states, "disconnected").await;
    assert_eq!(state(&http).await["status"], "disconnected");
    // The ended socket refuses emits.
    let (code, text) = rpc_error(call(&http, "socket.emit", emit(Some(json!(1)), None)).await);
    assert_eq!((code, text.as_str()), (-32002, "client is closed"));

    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn connect_with_session_uses_the_stored_session() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start().await;
    let ws = daemon.ws().await;
    assert!(!daemon.session_file.exists());
    let result: Result<Value, _> = ws
        .request("socket.connect_with_session", rpc_params![])
        .await;
    let (code, text) = rpc_error(result);
    assert_eq!(
        (code, text.as_str()),
        (-32000, "no session stored: run `relink login` first")
    );
    assert_eq!(state(&ws).await["status"], "disconnected");

    std::fs::write(
        &daemon.session_file,
        json!({"url": node.url(), "token": "secret"}).to_string(),
    )
    .unwrap();
    let mut states = subscribe(&ws, "state").await;
    // With an empty object as params, too.
    let started = call(&ws, "socket.connect_with_session", ObjectParams::new())
        .await
        .unwrap();
    assert_eq!(started["status"], "connecting");
    let seen = until_status(&mut states, "connected").await;
    assert_eq!(seen[0], "connecting", "{seen:?}");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn state_subscription_follows_a_server_restart_and_a_new_socket() {
    let mut node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start().await;
    let ws = daemon.ws().await;
    let mut states = subscribe(&ws, "state").await;
    let url = node.url();
    let connect = || params(&[("url", json!(url)), ("token", json!("secret"))]);
    call(&ws, "socket.connect", connect()).await.unwrap();
    let mut seen = until_status(&mut states, "connected").await;

    node.restart().await.unwrap();
    seen.extend(until_status(&mut states, "reconnecting").await);
    seen.extend(until_status(&mut states, "connected").await);
    assert_eq!(
        dedup(&seen),
        ["connecting", "connected", "reconnecting", "connected"],
        "{seen:?}"
    );
    assert_eq!(state(&ws).await["status"], "connected");

    // A new socket.connect replaces the client; the same subscription follows the new one:
    // the old client's end, then the new one's start.
    call(&ws, "socket.connect", connect()).await.unwrap();
    until_status(&mut states, "disconnected").await;
    let replaced = until_status(&mut states, "connected").await;
    assert_eq!(
        dedup(&replaced),
        ["connecting", "connected"],
        "{replaced:?}"
    );

    states.unsubscribe().await.unwrap();
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn events_subscription_sees_server_events() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start().await;
    let ws = daemon.ws().await;
    let mut events = subscribe(&ws, "events").await;
    let mut states = subscribe(&ws, "state").await;
    call(
        &ws,
        "socket.connect",
        params(&[("url", json!(node.url())), ("token", json!("secret"))]),
    )
    .await
    .unwrap();
    let welcome = until_event(&mut events, "welcome").await;
    let args = welcome["args"].as_array().expect("args is an array");
    assert_eq!(args.len(), 1, "{welcome}");
    assert_eq!(args[0]["nsp"], "/");
    assert!(welcome.get("attachments").is_none(), "{welcome}");
    until_status(&mut states, "connected").await;

    // Without an ack the server answers with an "echo" event carrying the same arguments.
    call(
        &ws,
        "socket.emit",
        params(&[("event", json!("echo")), ("data", json!({"n": 5}))]),
    )
    .await
    .unwrap();
    let echo = until_event(&mut events, "echo").await;
    assert_eq!(echo, json!({"name": "echo", "args": [{"n": 5}]}));

    events.unsubscribe().await.unwrap();
    states.unsubscribe().await.unwrap();
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn the_token_never_appears_in_any_output() {
    let node = NodeServer::start(NodeOptions {
        token: DISTINCT_TOKEN.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let daemon = Daemon::start_with(&[("RUST_LOG", "trace")]).await;
    let http = daemon.http();
    let ws = daemon.ws().await;
    let mut states = subscribe(&ws, "state").await;
    let mut responses = Vec::new();

    // Over HTTP (whose request bodies jsonrpsee traces) and over WebSocket.
    let good = || params(&[("url", json!(node.url())), ("token", json!(DISTINCT_TOKEN))]);
    responses.push(call(&http, "socket.connect", good()).await.unwrap());
    until_status(&mut states, "connected").await;
    responses.push(call(&ws, "socket.connect", good()).await.unwrap());
    until_status(&mut states, "connected").await;
    responses.push(
        call(
            &http,
            "socket.emit",
            params(&[
                ("event", json!("echo")),
                ("data", json!("x")),
                ("ack_timeout_ms", json!(10_000)),
            ]),
        )
        .await
        .unwrap(),
    );
    // A rejected credential (the server's error goes into the state), a bad URL, a wrong type.
    let wrong = format!("{DISTINCT_TOKEN}-wrong");
    responses.push(
        call(
            &http,
            "socket.connect",
            params(&[("url", json!(node.url())), ("token", json!(wrong))]),
        )
        .await
        .unwrap(),
    );
    until_status(&mut states, "failed").await;
    let failed = state(&http).await;
    assert!(failed["error"].is_string(), "{failed}");
    responses.push(failed);
    let (_, text) = rpc_error(
        call(
            &http,
            "socket.connect",
            params(&[
                (
                    "url",
                    json!(format!("ftp://user:{DISTINCT_TOKEN}@h/?t={DISTINCT_TOKEN}")),
                ),
                ("token", json!(DISTINCT_TOKEN)),
            ]),
        )
        .await,
    );
    responses.push(Value::from(text));
    let (_, text) = rpc_error(
        call(
            &http,
            "socket.connect",
            params(&[
                ("url", json!(node.url())),
                ("token", json!([DISTINCT_TOKEN])),
            ]),
        )
        .await,
    );
    responses.push(Value::from(text));
    // From the stored session too.
    std::fs::write(
        &daemon.session_file,
        json!({"url": node.url(), "token": DISTINCT_TOKEN}).to_string(),
    )
    .unwrap();
    responses.push(
        ws.request("socket.connect_with_session", rpc_params![])
            .await
            .unwrap(),
    );
    until_status(&mut states, "connected").await;
    responses.push(
        http.request("socket.disconnect", rpc_params![])
            .await
            .unwrap(),
    );

    for response in &responses {
        assert!(
            !response.to_string().contains("SECRET-77ab"),
            "token in a response: {response}"
        );
    }
    drop(states);
    let stopped = daemon.stop().await;
    assert_eq!(stopped.status.code(), Some(0));
    assert!(
        stopped.stderr.len() > 10,
        "expected trace logs: {:?}",
        stopped.stderr
    );
    for line in stopped.stdout.iter().chain(&stopped.stderr) {
        assert!(!line.contains("SECRET-77ab"), "token in output: {line}");
    }
    node.stop().await;
}

// ---------------------------------------------------------------------------------------
// hostile and unusual clients

// 127.0.0.2 is a loopback address on Linux only, out of the box.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn listens_on_the_loopback_address_it_is_given_and_answers_there() {
    let daemon = Daemon::start_args(&["--listen", "127.0.0.2:0"], &[]).await;
    assert!(
        daemon.url.starts_with("http://127.0.0.2:"),
        "{}",
        daemon.url
    );
    let http = daemon.http();
    assert_eq!(state(&http).await["status"], "disconnected");
    let ws = daemon.ws().await;
    assert_eq!(state(&ws).await["status"], "disconnected");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
}

#[tokio::test]
async fn requests_with_ids_json_rpc_does_not_allow_get_invalid_request() {
    let daemon = Daemon::start().await;
    let host = format!("127.0.0.1:{}", daemon.port);
    let auth = format!("Bearer {}", daemon.secret);
    let headers = [("Host", host.as_str()), ("Authorization", auth.as_str())];
    for id in ["[]", "{}", "1.5", "-1"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"socket.state"}}"#);
        let (status, reply) = raw_post(daemon.port, &headers, &body).await;
        assert_eq!(status, 200, "id {id}: {reply}");
        let reply: Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("id {id}: not JSON ({e}): {reply:?}"));
        assert_eq!(reply["error"]["code"], -32600, "id {id}: {reply}");
        assert_eq!(reply["id"], Value::Null, "id {id}: {reply}");
    }
    let (status, reply) = raw_post(
        daemon.port,
        &headers,
        r#"{"jsonrpc":"2.0","id":7,"method":"socket.state"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["id"], 7, "a valid id is answered as before: {reply}");
    assert_eq!(reply["result"]["status"], "disconnected");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
}

/// Whether the daemon closed `stream` (EOF or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A response to a complete request: keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// Opens a connection that sends half of a request's headers.
async fn half_request(port: u16) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        .await
        .unwrap();
    stream
}

/// How long a test waits for the daemon to close a connection it must close. A bound: the
/// daemon's own timeouts in these tests are 1 s, or a minute when only the cap may close.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

#[tokio::test]
async fn half_sent_requests_are_closed_after_the_header_timeout() {
    let daemon =
        Daemon::start_args(&["--listen", "127.0.0.1:0", "--header-timeout", "1s"], &[]).await;
    let mut halves = Vec::new();
    for _ in 0..10 {
        halves.push(half_request(daemon.port).await);
    }
    // A kept-alive connection: one whole, answered request, then half of the next one.
    let mut kept = TcpStream::connect(("127.0.0.1", daemon.port))
        .await
        .unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"socket.state"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         POST / HTTP/1.1\r\nHo",
        daemon.port,
        daemon.secret,
        body.len()
    );
    kept.write_all(request.as_bytes()).await.unwrap();
    for (i, stream) in halves.iter_mut().enumerate() {
        assert!(
            closed_within(stream, CLOSE_WITHIN).await,
            "half-sent request {i} still open"
        );
    }
    assert!(
        closed_within(&mut kept, CLOSE_WITHIN).await,
        "a half-sent second request on a kept-alive connection is still open"
    );
    assert_eq!(state(&daemon.http()).await["status"], "disconnected");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
}

#[tokio::test]
async fn connections_waiting_for_headers_are_capped() {
    // The header timeout is long here: only the cap can close a connection in time.
    let daemon =
        Daemon::start_args(&["--listen", "127.0.0.1:0", "--header-timeout", "60s"], &[]).await;
    let mut halves = Vec::new();
    for _ in 0..80 {
        halves.push(half_request(daemon.port).await);
    }
    // The daemon accepts in order: those past the cap (64) are closed at once.
    for (i, stream) in halves.iter_mut().enumerate().skip(64) {
        assert!(
            closed_within(stream, CLOSE_WITHIN).await,
            "connection {i}, past the cap, still open"
        );
    }
    // And only those: the first 64 wait for their headers (a close would show at once).
    let closed_now = futures_util::future::join_all(
        halves
            .iter_mut()
            .take(64)
            .map(|stream| closed_within(stream, Duration::from_millis(200))),
    )
    .await;
    let closed: Vec<usize> = (0..64).filter(|&i| closed_now[i]).collect();
    assert!(closed.is_empty(), "closed within the cap: {closed:?}");
    // Once they go away, the daemon answers again.
    drop(halves);
    let http = daemon.http();
    let mut answered = false;
    for _ in 0..100 {
        if http
            .request::<Value, _>("socket.state", rpc_params![])
            .await
            .is_ok()
        {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        answered,
        "the daemon answers once the half-sent requests are gone"
    );
    let stopped = daemon.stop().await;
    assert_eq!(stopped.status.code(), Some(0));
    let warnings = stopped
        .stderr
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("too many connections"))
        .count();
    assert_eq!(
        warnings, 1,
        "one WARN for the episode: {:?}",
        stopped.stderr
    );
}

#[tokio::test]
async fn connect_trims_the_token_as_the_command_line_does() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start().await;
    let ws = daemon.ws().await;
    let mut states = subscribe(&ws, "state").await;
    call(
        &ws,
        "socket.connect",
        params(&[("url", json!(node.url())), ("token", json!(" secret \n"))]),
    )
    .await
    .unwrap();
    let seen = until_status(&mut states, "connected").await;
    assert!(!seen.iter().any(|s| s == "failed"), "{seen:?}");
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn a_refused_request_closes_its_connection() {
    let daemon =
        Daemon::start_args(&["--listen", "127.0.0.1:0", "--header-timeout", "60s"], &[]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port))
        .await
        .unwrap();
    // Keep-alive is HTTP/1.1's default: only the daemon's answer can close it.
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
        daemon.port
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = timeout(WAIT, stream.read_to_end(&mut response)).await;
    assert!(
        read.is_ok(),
        "the connection stayed open after a refused request"
    );
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.to_lowercase().contains("connection: close"),
        "{response}"
    );
    assert_eq!(daemon.stop().await.status.code(), Some(0));
}

#[tokio::test]
async fn a_second_signal_exits_at_once_and_still_removes_the_secret() {
    let mut daemon = Daemon::start().await;
    // A request the stop has to wait for (up to its grace): its body never comes. Its
    // "100 Continue" says the daemon has started reading it.
    let mut stream = TcpStream::connect(("127.0.0.1", daemon.port))
        .await
        .unwrap();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        daemon.port, daemon.secret
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut interim = [0u8; 64];
    let n = timeout(WAIT, stream.read(&mut interim))
        .await
        .unwrap()
        .unwrap();
    let interim = String::from_utf8_lossy(&interim[..n]);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");

    let dir = daemon.secret_file.parent().unwrap().to_owned();
    daemon.sigterm();
    let mut stopping = false;
    while let Ok(Some(line)) = timeout(WAIT, daemon.err.recv()).await {
        if line.contains("daemon stopping") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no 'daemon stopping' line");
    let stopped = daemon.stop().await;
    assert_eq!(
        stopped.status.code(),
        Some(1),
        "the second signal forced the exit"
    );
    assert!(
        !dir.exists(),
        "the secret's directory outlived a forced exit"
    );
}

#[tokio::test]
async fn a_slow_event_subscriber_gets_a_whole_burst_in_order_while_methods_answer() {
    const BURST: u64 = 50_000;
    /// How long the slow subscriber reads nothing: far longer than the burst takes to arrive.
    const STALL: Duration = Duration::from_secs(2);
    let node = NodeServer::start(NodeOptions {
        burst_on_connect: BURST,
        ..Default::default()
    })
    .await
    .unwrap();
    let daemon = Daemon::start().await;
    let mut slow = SlowWs::connect(&daemon).await;
    slow.send(
        1,
        br#"{"jsonrpc":"2.0","id":1,"method":"socket.subscribe_events"}"#,
    )
    .await;
    let reply = slow.next().await;
    assert!(reply["id"] == 1 && reply.get("result").is_some(), "{reply}");
    // A second subscriber, which leaves in the middle of the burst.
    let leaving = daemon.ws().await;
    let mut leaving_events = subscribe(&leaving, "events").await;
    let http = daemon.http();
    call(
        &http,
        "socket.connect",
        params(&[("url", json!(node.url())), ("token", json!("secret"))]),
    )
    .await
    .unwrap();

    let first = loop {
        let event = slow.next_event().await;
        if event["name"] == "burst" {
            break event;
        }
    };
    assert_eq!(first["args"], json!([1]), "{first}");
    until_event(&mut leaving_events, "burst").await;
    drop(leaving_events);
    drop(leaving);

    // The slow subscriber reads nothing for a while: the burst piles up in front of it, the
    // daemon stops taking events from the socket, and its methods still answer.
    let stall_end = tokio::time::Instant::now() + STALL;
    while tokio::time::Instant::now() < stall_end {
        let answer = timeout(Duration::from_secs(5), state(&http))
            .await
            .expect("socket.state answers while a subscriber is slow");
        assert_eq!(answer["status"], "connected", "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut expected = 2;
    loop {
        let event = slow.next_event().await;
        match event["name"].as_str() {
            Some("burst") => {
                assert_eq!(
                    event["args"],
                    json!([expected]),
                    "every event once, in order"
                );
                expected += 1;
            }
            Some("burst-done") => {
                assert_eq!(event["args"], json!([BURST]), "{event}");
                break;
            }
            _ => panic!("only the burst after its first event: {event}"),
        }
    }
    assert_eq!(expected, BURST + 1);
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}

#[tokio::test]
async fn overflow_drop_is_accepted_by_the_daemon() {
    let node = NodeServer::start(NodeOptions::default()).await.unwrap();
    let daemon = Daemon::start_args(&["--listen", "127.0.0.1:0", "--overflow", "drop"], &[]).await;
    let ws = daemon.ws().await;
    let mut events = subscribe(&ws, "events").await;
    call(
        &ws,
        "socket.connect",
        params(&[("url", json!(node.url())), ("token", json!("secret"))]),
    )
    .await
    .unwrap();
    until_event(&mut events, "welcome").await;
    drop(events);
    drop(ws);
    assert_eq!(daemon.stop().await.status.code(), Some(0));
    node.stop().await;
}
