//! A loopback HTTP CONNECT proxy, with or without Basic credentials.
//!
//! It tunnels to loopback targets only (tests never leave the machine) and counts what it
//! did, so a test can tell whether a client went through it. Dropping the [`Proxy`] stops
//! it and every tunnel.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// What the proxy did, see [`Proxy::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Tunnels opened (CONNECT answered 200).
    pub tunnels: u64,
    /// CONNECTs answered 407 (no credentials, or the wrong ones).
    pub auth_failures: u64,
    /// Requests refused otherwise (not CONNECT, a target off loopback, unreachable).
    pub refused: u64,
}

#[derive(Default)]
struct Counters {
    tunnels: AtomicU64,
    auth_failures: AtomicU64,
    refused: AtomicU64,
}

/// A running CONNECT proxy on `127.0.0.1`.
pub struct Proxy {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).finish()
    }
}

impl Proxy {
    /// Listens on `127.0.0.1:0`; with `credentials`, every CONNECT must carry them as
    /// `Proxy-Authorization: Basic ...` or is answered 407.
    pub async fn start(credentials: Option<(&str, &str)>) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let expected = credentials.map(|(user, pass)| STANDARD.encode(format!("{user}:{pass}")));
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let task = tokio::spawn(crate::accept::each(listener, move |stream| {
            serve(stream, expected.clone(), Arc::clone(&shared))
        }));
        Ok(Proxy {
            addr,
            counters,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://USER:PASS@127.0.0.1:PORT`.
    pub fn url_with(&self, user: &str, pass: &str) -> String {
        format!("http://{user}:{pass}@{}", self.addr)
    }

    /// What it did so far.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            tunnels: self.counters.tunnels.load(Ordering::Relaxed),
            auth_failures: self.counters.auth_failures.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut client: TcpStream, expected: Option<String>, counters: Arc<Counters>) {
    let Some(head) = read_head(&mut client).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request = lines.next().unwrap_or_default();
    let mut parts = request.split(' ');
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("proxy-authorization")
            .then(|| value.trim().to_owned())
    });
    let answer = |status: &str| format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    if method != "CONNECT" {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client
            .write_all(answer("405 Method Not Allowed").as_bytes())
            .await;
        return;
    }
    if let Some(expected) = expected {
        // The scheme is case-insensitive, the credentials are not.
        let ok = authorization
            .as_deref()
            .and_then(|value| value.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("basic") && token.trim() == expected
            });
        if !ok {
            counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            let _ = client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"relink-testkit\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    let loopback = target
        .parse::<SocketAddr>()
        .ok()
        .filter(|a| a.ip().is_loopback())
        .or_else(|| {
            let port = target.strip_prefix("localhost:")?.parse().ok()?;
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        });
    let Some(upstream) = loopback else {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(answer("403 Forbidden").as_bytes()).await;
        return;
    };
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(answer("502 Bad Gateway").as_bytes()).await;
        return;
    };
    counters.tunnels.fetch_add(1, Ordering::Relaxed);
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// The request head, up to `\r\n\r\n` (a CONNECT has no body).
async fn read_head(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    // Byte by byte: nothing past the head may be consumed (the tunnel's first bytes).
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return None;
        }
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}
