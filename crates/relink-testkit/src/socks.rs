//! A loopback SOCKS5 proxy (RFC 1928), with or without username/password (RFC 1929).
//!
//! CONNECT to loopback targets only; it records whether each request named the target by
//! address or by name (`socks5h://` leaves name resolution to the proxy). Dropping the
//! [`Socks5`] stops it and every tunnel.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy did, see [`Socks5::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocksStats {
    /// Tunnels opened.
    pub tunnels: u64,
    /// Of those, requests that named the target by host name (not an address).
    pub by_name: u64,
    /// Authentications refused.
    pub auth_failures: u64,
}

#[derive(Default)]
struct Counters {
    tunnels: AtomicU64,
    by_name: AtomicU64,
    auth_failures: AtomicU64,
}

/// A running SOCKS5 proxy on `127.0.0.1`.
pub struct Socks5 {
    addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Socks5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socks5").field("addr", &self.addr).finish()
    }
}

type Credentials = Option<(String, String)>;

impl Socks5 {
    /// Listens on `127.0.0.1:0`; with `credentials`, username/password is required.
    pub async fn start(credentials: Option<(&str, &str)>) -> io::Result<Socks5> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        let task = tokio::spawn(crate::accept::each(listener, move |stream| {
            let (credentials, counters) = (credentials.clone(), Arc::clone(&shared));
            async move {
                let _ = serve(stream, credentials, counters).await;
            }
        }));
        Ok(Socks5 {
            addr,
            counters,
            task,
        })
    }

    /// `SCHEME://127.0.0.1:PORT` (`socks5` or `socks5h`).
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// `SCHEME://USER:PASS@127.0.0.1:PORT`.
    pub fn url_with(&self, scheme: &str, user: &str, pass: &str) -> String {
        format!("{scheme}://{user}:{pass}@{}", self.addr)
    }

    /// What it did so far.
    pub fn stats(&self) -> SocksStats {
        SocksStats {
            tunnels: self.counters.tunnels.load(Ordering::Relaxed),
            by_name: self.counters.by_name.load(Ordering::Relaxed),
            auth_failures: self.counters.auth_failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    credentials: Credentials,
    counters: Arc<Counters>,
) -> io::Result<()> {
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if head[0] != 5 || !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, pass)) = credentials {
        let mut version_len = [0u8; 2];
        client.read_exact(&mut version_len).await?;
        let mut name = vec![0u8; usize::from(version_len[1])];
        client.read_exact(&mut name).await?;
        let mut len = [0u8; 1];
        client.read_exact(&mut len).await?;
        let mut password = vec![0u8; usize::from(len[0])];
        client.read_exact(&mut password).await?;
        if name != user.as_bytes() || password != pass.as_bytes() {
            counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            client.write_all(&[1, 1]).await?;
            return Ok(());
        }
        client.write_all(&[1, 0]).await?;
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            Some(Ipv4Addr::from(ip).to_string())
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            Some(Ipv6Addr::from(ip).to_string())
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len).await?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name).await?;
            counters.by_name.fetch_add(1, Ordering::Relaxed);
            String::from_utf8(name).ok()
        }
        _ => None,
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port).await?;
    let port = u16::from_be_bytes(port);
    let target = match host.as_deref() {
        Some("localhost") => Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        Some(host) => host
            .parse::<std::net::IpAddr>()
            .ok()
            .filter(std::net::IpAddr::is_loopback)
            .map(|ip| SocketAddr::new(ip, port)),
        None => None,
    };
    let refuse = [5, 2, 0, 1, 0, 0, 0, 0, 0, 0];
    let Some(target) = target else {
        client.write_all(&refuse).await?;
        return Ok(());
    };
    let Ok(mut server) = TcpStream::connect(target).await else {
        client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    };
    counters.tunnels.fetch_add(1, Ordering::Relaxed);
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
