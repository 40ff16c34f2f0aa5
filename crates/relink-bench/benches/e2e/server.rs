//! The local server every end-to-end figure runs against: a minimal Socket.IO v4 peer.
//!
//! It speaks Engine.IO v4 / Socket.IO v5 over WebSocket only, with the same events as
//! `interop/node/server.mjs` (`count`, `stats`, `flood`, `echo`), and does as little work per
//! frame as the protocol allows, so that the client under test is the bottleneck and not the
//! server. It runs in a process of its own (this bench binary started again with
//! `RELINK_BENCH_ROLE=server`) on one thread: the clients' RSS is not mixed with the server's,
//! each process gets its own file descriptors, and the server uses at most one of the two
//! cores.
//!
//! Protocol with the parent: prints `{"port":N}` once listening; exits when stdin closes.

use futures_util::{SinkExt, StreamExt};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The token the server expects in CONNECT (the same as the Node server's default).
pub const TOKEN: &str = "secret";
const PING_INTERVAL: Duration = Duration::from_secs(25);

/// Runs the server until stdin closes. Entry point of the `server` role.
pub fn run() {
    crate::raise_fd_limit();
    // A parent that goes away (or closes our stdin on purpose) ends us.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        // A backlog for thousands of connections dialled at once (`bind` gives 128).
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(([127, 0, 0, 1], 0).into())
            .expect("bind 127.0.0.1");
        let listener = socket.listen(4096).expect("listen");
        let port = listener.local_addr().expect("addr").port();
        println!("{{\"port\":{port}}}");
        let received = Rc::new(Cell::new(0u64));
        let mut next_sid = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            next_sid += 1;
            tokio::task::spawn_local(connection(stream, next_sid, Rc::clone(&received)));
        }
    });
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn connection(stream: TcpStream, sid: u64, received: Rc<Cell<u64>>) {
    let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let open = format!(
        r#"0{{"sid":"e{sid}","upgrades":[],"pingInterval":{},"pingTimeout":20000,"maxPayload":100000000}}"#,
        PING_INTERVAL.as_millis()
    );
    if ws.send(Message::text(open)).await.is_err() {
        return;
    }
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    // Binary frames still due for the last BINARY_EVENT (skipped: no figure needs them).
    let mut skip_binary = 0usize;
    loop {
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = ping.tick() => {
                if ws.send(Message::text("2")).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                skip_binary = skip_binary.saturating_sub(1);
                continue;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        };
        let text = text.as_str();
        if debug() {
            eprintln!("server <- {}", &text[..text.len().min(200)]);
        }
        // The hot path of the emit figure: count and nothing else.
        if text.starts_with(r#"42["count","#) {
            received.set(received.get() + 1);
            continue;
        }
        match handle(text, sid, &received, &mut skip_binary) {
            Reply::None => {}
            Reply::Close => return,
            Reply::Frames(frames) => {
                for frame in frames {
                    if ws.feed(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            Reply::Flood { ack, frame, n } => {
                if flood(&mut ws, ack, frame, n).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `RELINK_BENCH_DEBUG=1`: log every frame received (slow; for debugging a client).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("RELINK_BENCH_DEBUG").is_some())
}

enum Reply {
    None,
    Close,
    Frames(Vec<String>),
    Flood {
        ack: Option<String>,
        frame: String,
        n: u64,
    },
}

fn handle(text: &str, sid: u64, received: &Cell<u64>, skip_binary: &mut usize) -> Reply {
    let Some(kind) = text.chars().next() else {
        return Reply::None;
    };
    match kind {
        // Engine.IO ping from a client (v3 style): answer it.
        '2' => Reply::Frames(vec![format!("3{}", &text[1..])]),
        '1' => Reply::Close,
        '4' => socket_io(&text[1..], sid, received, skip_binary),
        _ => Reply::None,
    }
}

fn socket_io(packet: &str, sid: u64, received: &Cell<u64>, skip_binary: &mut usize) -> Reply {
    let bytes = packet.as_bytes();
    match bytes.first() {
        Some(b'0') => {
            if packet.contains(&format!(r#""token":"{TOKEN}""#)) {
                Reply::Frames(vec![format!(r#"40{{"sid":"s{sid}"}}"#)])
            } else {
                Reply::Frames(vec![
                    r#"44{"message":"unauthorized","data":{"reason":"invalid token"}}"#.into(),
                ])
            }
        }
        Some(b'1') => Reply::Close,
        Some(b'5') => {
            // `5<n>-...`: n binary frames follow.
            let digits: String = packet[1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            *skip_binary += digits.parse::<usize>().unwrap_or(0);
            Reply::None
        }
        Some(b'2') => {
            let rest = &packet[1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let id = (digits > 0).then(|| &rest[..digits]);
            event(&rest[digits..], id, received)
        }
        _ => Reply::None,
    }
}

/// Handles `["name",args...]` with an optional ack id (kept as its wire digits).
fn event(json: &str, id: Option<&str>, received: &Cell<u64>) -> Reply {
    let Some(after) = json.strip_prefix("[\"") else {
        return Reply::None;
    };
    let Some(end) = after.find('"') else {
        return Reply::None;
    };
    let name = &after[..end];
    // The arguments after the name, as a JSON array: `[` + what follows `"name",`.
    let tail = &after[end + 1..];
    let args = match tail.strip_prefix(',') {
        Some(rest) => format!("[{rest}"),
        None => "[]".to_owned(),
    };
    let ack = |body: &str| id.map(|id| format!("43{id}{body}"));
    match name {
        "count" => {
            received.set(received.get() + 1);
            Reply::Frames(ack("[]").into_iter().collect())
        }
        "stats" => {
            let r = received.get();
            let body = format!(r#"[{{"received":{r},"unique":{r},"duplicates":0}}]"#);
            match ack(&body) {
                Some(frame) => Reply::Frames(vec![frame]),
                None => Reply::Frames(vec![format!(r#"42["stats",{}]"#, &body[1..body.len() - 1])]),
            }
        }
        "echo" => match ack(&args) {
            Some(frame) => Reply::Frames(vec![frame]),
            None => Reply::Frames(vec![format!(r#"42["echo",{}"#, &args[1..])]),
        },
        "flood" => {
            let parsed: Result<(u64, u64), _> = serde_json::from_str(&args);
            let (n, size) = parsed.unwrap_or((0, 0));
            let frame = format!(r#"42["flood","{}"]"#, "x".repeat(size as usize));
            // Acked before the flood, so the ack does not wait behind it.
            let ack = id.map(|id| format!("43{id}[{n}]"));
            Reply::Flood { ack, frame, n }
        }
        _ => Reply::None,
    }
}

async fn flood(
    ws: &mut Ws,
    ack: Option<String>,
    frame: String,
    n: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if let Some(ack) = ack {
        ws.feed(Message::text(ack)).await?;
    }
    let frame = tokio_tungstenite::tungstenite::Utf8Bytes::from(frame);
    for _ in 0..n {
        ws.feed(Message::Text(frame.clone())).await?;
    }
    ws.feed(Message::text(format!(r#"42["flood-done",{n}]"#)))
        .await?;
    ws.flush().await
}

/// A server process started by the orchestrator; ended when dropped.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl ServerProcess {
    /// Starts this binary in the `server` role and waits for its port.
    ///
    /// `RELINK_BENCH_SERVER=node` starts `interop/node/server.mjs` instead (same events, same
    /// stdout/stdin protocol): to see how a Node socket.io server caps every client.
    pub fn start() -> ServerProcess {
        let mut command = if std::env::var("RELINK_BENCH_SERVER").as_deref() == Ok("node") {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../interop/node/server.mjs");
            let mut command =
                Command::new(std::env::var("RELINK_NODE").unwrap_or_else(|_| "node".into()));
            command.arg(script);
            command
        } else {
            let mut command = Command::new(std::env::current_exe().expect("current exe"));
            command.env("RELINK_BENCH_ROLE", "server");
            command
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the bench server");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server port line");
        let value: serde_json::Value = serde_json::from_str(line.trim()).expect("port json");
        let port = value["port"].as_u64().expect("port") as u16;
        ServerProcess { child, stdin, port }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The WebSocket URL a raw client dials.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
            self.port
        )
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
